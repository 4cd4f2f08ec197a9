//! Garbage collection the controller-manager would do: ownerReference cascading (background,
//! foreground, orphan), namespace termination and CRD cleanup. Runs on `State` after deletions,
//! through the same `ops` verbs so finalizers of dependents are honoured.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Value, json};

use super::ops::{self, CRD_CLEANUP, DeleteOpts, FOREGROUND, ORPHAN, WriteCtx};
use super::registry::ResourceDef;
use super::store::State;

enum Action {
    Delete(Arc<ResourceDef>, String, String, Option<&'static str>),
    DropOwnerRefs(Arc<ResourceDef>, String, String, HashSet<String>),
    DropFinalizer(Arc<ResourceDef>, String, String, &'static str),
    RemoveNamespace(Arc<ResourceDef>, String),
}

struct Entry {
    def: Arc<ResourceDef>,
    obj: Arc<Value>,
}

fn deleting(obj: &Value) -> bool {
    obj["metadata"]["deletionTimestamp"].is_string()
}

fn has_finalizer(obj: &Value, f: &str) -> bool {
    obj["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(f)))
}

fn name_of(obj: &Value) -> (String, String) {
    (
        obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// Works out the next round of GC actions from the whole store.
fn plan(st: &State) -> Vec<Action> {
    let mut entries = Vec::new();
    // A view's objects are its store's, already listed under that resource.
    for def in st.registry.all().iter().filter(|d| d.view_of.is_none()) {
        for (_, obj) in st.range(&def.key(), None, None) {
            entries.push(Entry {
                def: def.clone(),
                obj: obj.clone(),
            });
        }
    }
    let by_uid: HashMap<&str, &Entry> = entries
        .iter()
        .filter_map(|e| e.obj["metadata"]["uid"].as_str().map(|u| (u, e)))
        .collect();
    // owner uid -> dependents that still reference it (and whether they block).
    let mut dependents: HashMap<&str, Vec<(&Entry, bool)>> = HashMap::new();
    let mut actions = Vec::new();

    for e in &entries {
        let Some(refs) = e.obj["metadata"]["ownerReferences"].as_array() else {
            continue;
        };
        let (ns, name) = name_of(&e.obj);
        let mut live = 0;
        let mut foreground_owner = false;
        let mut orphaned = HashSet::new();
        for r in refs {
            let uid = r["uid"].as_str().unwrap_or_default();
            let blocking = r["blockOwnerDeletion"].as_bool().unwrap_or(false);
            dependents.entry(uid).or_default().push((e, blocking));
            match by_uid.get(uid) {
                Some(owner) if deleting(&owner.obj) && has_finalizer(&owner.obj, ORPHAN) => {
                    orphaned.insert(uid.to_string());
                }
                Some(owner) if deleting(&owner.obj) && has_finalizer(&owner.obj, FOREGROUND) => {
                    foreground_owner = true;
                }
                // An owner held by other finalizers is still solid, as in the real GC.
                Some(_) => live += 1,
                None => {}
            }
        }
        if !orphaned.is_empty() {
            actions.push(Action::DropOwnerRefs(e.def.clone(), ns, name, orphaned));
        } else if live == 0 && !deleting(&e.obj) {
            let policy = foreground_owner.then_some("Foreground");
            actions.push(Action::Delete(e.def.clone(), ns, name, policy));
        }
    }

    let mut terminating_ns: HashMap<String, Arc<ResourceDef>> = HashMap::new();
    let mut terminating_crds: Vec<(&Entry, Option<Arc<ResourceDef>>)> = Vec::new();
    for e in &entries {
        if !deleting(&e.obj) {
            continue;
        }
        let uid = e.obj["metadata"]["uid"].as_str().unwrap_or_default();
        let (ns, name) = name_of(&e.obj);
        let deps = dependents.get(uid);
        if has_finalizer(&e.obj, ORPHAN) && deps.is_none() {
            actions.push(Action::DropFinalizer(
                e.def.clone(),
                ns.clone(),
                name.clone(),
                ORPHAN,
            ));
        }
        if has_finalizer(&e.obj, FOREGROUND)
            && !deps.is_some_and(|d| d.iter().any(|(_, blocking)| *blocking))
        {
            actions.push(Action::DropFinalizer(
                e.def.clone(),
                ns.clone(),
                name.clone(),
                FOREGROUND,
            ));
        }
        if e.def.group.is_empty() && e.def.plural == "namespaces" {
            terminating_ns.insert(name.clone(), e.def.clone());
        }
        if ops::is_crd(&e.def) && has_finalizer(&e.obj, CRD_CLEANUP) {
            let group = e.obj["spec"]["group"].as_str().unwrap_or_default();
            let plural = e.obj["spec"]["names"]["plural"]
                .as_str()
                .unwrap_or_default();
            let served = st
                .registry
                .all()
                .iter()
                .find(|d| d.group == group && d.plural == plural && d.custom.is_some())
                .cloned();
            terminating_crds.push((e, served));
        }
    }

    for (ns, nsdef) in terminating_ns {
        let mut empty = true;
        for e in entries.iter().filter(|e| e.def.namespaced) {
            let (ons, name) = name_of(&e.obj);
            if ons != ns {
                continue;
            }
            empty = false;
            if !deleting(&e.obj) {
                actions.push(Action::Delete(e.def.clone(), ons, name, None));
            }
        }
        if empty {
            actions.push(Action::RemoveNamespace(nsdef, ns));
        }
    }
    for (crd, served) in terminating_crds {
        let mut empty = true;
        if let Some(def) = served {
            for (_, obj) in st.range(&def.key(), None, None) {
                empty = false;
                if !deleting(obj) {
                    let (ns, name) = name_of(obj);
                    actions.push(Action::Delete(def.clone(), ns, name, None));
                }
            }
        }
        if empty {
            let (_, name) = name_of(&crd.obj);
            actions.push(Action::DropFinalizer(
                crd.def.clone(),
                String::new(),
                name,
                CRD_CLEANUP,
            ));
        }
    }
    actions
}

fn execute(st: &mut State, action: Action) {
    match action {
        Action::Delete(def, ns, name, policy) => {
            let ctx = WriteCtx::system(def, &ns);
            let opts = DeleteOpts {
                propagation: policy.map(str::to_string),
                ..DeleteOpts::default()
            };
            let _ = ops::delete(st, &ctx, &name, &opts);
        }
        Action::DropOwnerRefs(def, ns, name, uids) => {
            let Some(old) = st.get(&def.key(), &ns, &name) else {
                return;
            };
            let mut obj = (**old).clone();
            let kept: Vec<Value> = obj["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| !r["uid"].as_str().is_some_and(|u| uids.contains(u)))
                .cloned()
                .collect();
            if kept.is_empty() {
                if let Some(m) = obj["metadata"].as_object_mut() {
                    m.remove("ownerReferences");
                }
            } else {
                obj["metadata"]["ownerReferences"] = json!(kept);
            }
            ops::rewrite(st, &def, obj);
        }
        Action::DropFinalizer(def, ns, name, finalizer) => {
            ops::drop_finalizer(st, &def, &ns, &name, finalizer);
        }
        Action::RemoveNamespace(def, name) => {
            st.remove(&def, "", &name);
        }
    }
}

/// Runs GC rounds until nothing is left to do (bounded, so a cycle cannot spin forever).
pub fn collect(st: &mut State) {
    for _ in 0..64 {
        let actions = plan(st);
        if actions.is_empty() {
            return;
        }
        let before = st.rv;
        for a in actions {
            execute(st, a);
        }
        if st.rv == before {
            return;
        }
    }
}
