//! Reads: label and field selectors, paging with limit and continue, watches from a
//! resourceVersion with bookmarks, 410 Gone for a too old one, and kube-runtime's watcher
//! through an outage.

use std::time::Duration;

use super::*;
use crate::support::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::{WatchStreamExt, watcher};
use kube_emulator::EmulatorConfig;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_and_field_selectors() {
    let (_emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    for (n, l) in [
        ("a", vec![("app", "web"), ("tier", "fe")]),
        ("b", vec![("app", "db")]),
        ("c", vec![]),
    ] {
        cms.create(&PostParams::default(), &cm(n, &l))
            .await
            .unwrap();
    }
    let names = |lp: ListParams| {
        let cms = cms.clone();
        async move {
            let mut v: Vec<String> = cms
                .list(&lp)
                .await
                .unwrap()
                .items
                .into_iter()
                .filter_map(|c| c.metadata.name)
                .collect();
            v.sort();
            v
        }
    };
    assert_eq!(names(ListParams::default().labels("app=web")).await, ["a"]);
    assert_eq!(names(ListParams::default().labels("app==web")).await, ["a"]);
    assert_eq!(
        names(ListParams::default().labels("app!=web")).await,
        ["b", "c"]
    );
    assert_eq!(
        names(ListParams::default().labels("app in (web,db)")).await,
        ["a", "b"]
    );
    assert_eq!(
        names(ListParams::default().labels("app notin (web)")).await,
        ["b", "c"]
    );
    assert_eq!(names(ListParams::default().labels("tier")).await, ["a"]);
    assert_eq!(names(ListParams::default().labels("!app")).await, ["c"]);
    assert_eq!(
        names(ListParams::default().fields("metadata.name=b")).await,
        ["b"]
    );
    assert_eq!(
        names(ListParams::default().fields("metadata.namespace=default,metadata.name!=b")).await,
        ["a", "c"]
    );
    assert_eq!(
        api_code(cms.list(&ListParams::default().fields("data.k=v")).await).0,
        400
    );

    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    for (n, t) in [("s1", "Opaque"), ("s2", "kubernetes.io/tls")] {
        let s: Secret = serde_json::from_value(
            json!({"metadata": {"name": n}, "type": t, "stringData": {"x": "y"}}),
        )
        .unwrap();
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
    let tls = secrets
        .list(&ListParams::default().fields("type=kubernetes.io/tls"))
        .await
        .unwrap();
    assert_eq!(tls.items.len(), 1);
    // stringData is folded into data, base64-encoded.
    assert_eq!(tls.items[0].data.as_ref().unwrap()["x"].0, b"y");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_paging_with_limit_and_continue() {
    let (_emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    for i in 0..5 {
        cms.create(&PostParams::default(), &cm(&format!("c{i}"), &[]))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut lp = ListParams::default().limit(2);
    loop {
        let page = cms.list(&lp).await.unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.into_iter().filter_map(|c| c.metadata.name));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(seen, ["c0", "c1", "c2", "c3", "c4"]);
    assert_eq!(
        api_code(cms.list(&ListParams::default().continue_token("zz")).await).0,
        400
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_resource_version_with_bookmarks() {
    let (_emu, client) = start().await;
    install_crd(&client, WIDGET_CRD).await;
    let api = widgets(&client, "default");
    let first = api
        .create(&PostParams::default(), &widget("before", 1))
        .await
        .unwrap();
    let rv = first.metadata.resource_version.clone().unwrap();
    let mut stream = api
        .watch(&WatchParams::default().labels("").timeout(20), &rv)
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &widget("after", 1))
        .await
        .unwrap();
    api.patch(
        "after",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"size": 2}})),
    )
    .await
    .unwrap();
    api.delete("after", &DeleteParams::default()).await.unwrap();
    let mut kinds = Vec::new();
    let mut bookmark = false;
    tokio::time::timeout(T, async {
        while let Some(ev) = stream.try_next().await.unwrap() {
            match ev {
                WatchEvent::Added(o) => kinds.push(format!("ADDED {}", o.metadata.name.unwrap())),
                WatchEvent::Modified(o) => {
                    kinds.push(format!("MODIFIED {}", o.metadata.name.unwrap()))
                }
                WatchEvent::Deleted(o) => {
                    kinds.push(format!("DELETED {}", o.metadata.name.unwrap()))
                }
                WatchEvent::Bookmark(_) => bookmark = true,
                WatchEvent::Error(e) => panic!("{e:?}"),
            }
            if kinds.len() == 3 && bookmark {
                break;
            }
        }
    })
    .await
    .expect("events and a bookmark arrive");
    assert_eq!(kinds, ["ADDED after", "MODIFIED after", "DELETED after"]);

    // Without a resourceVersion the watch starts with the current objects as ADDED.
    let mut initial = api
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(T, initial.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        Some(WatchEvent::Added(o)) => assert_eq!(o.metadata.name.as_deref(), Some("before")),
        other => panic!("{other:?}"),
    }

    // Label selector watches see objects leave the selection as DELETED.
    let mut sel = api
        .watch(
            &WatchParams::default().labels("keep=yes"),
            &api.list(&ListParams::default())
                .await
                .unwrap()
                .metadata
                .resource_version
                .unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    api.patch(
        "before",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"keep": "yes"}}})),
    )
    .await
    .unwrap();
    api.patch(
        "before",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"keep": "no"}}})),
    )
    .await
    .unwrap();
    let a = tokio::time::timeout(T, sel.try_next())
        .await
        .unwrap()
        .unwrap();
    let d = tokio::time::timeout(T, sel.try_next())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(a, Some(WatchEvent::Added(_))), "{a:?}");
    assert!(matches!(d, Some(WatchEvent::Deleted(_))), "{d:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_too_old_resource_version_is_gone() {
    let (_emu, client) = start_with(EmulatorConfig {
        watch_history: 5,
        ..quick_config()
    })
    .await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let first = cms
        .create(&PostParams::default(), &cm("c0", &[]))
        .await
        .unwrap();
    for i in 1..20 {
        cms.create(&PostParams::default(), &cm(&format!("c{i}"), &[]))
            .await
            .unwrap();
    }
    let rv = first.metadata.resource_version.unwrap();
    let mut stream = cms
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(T, stream.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        Some(WatchEvent::Error(e)) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
        }
        other => panic!("expected 410, got {other:?}"),
    }
    // kube-runtime's watcher recovers by relisting.
    let seen = tokio::time::timeout(
        T,
        watcher(cms.clone(), watcher::Config::default())
            .applied_objects()
            .take(20)
            .try_collect::<Vec<_>>(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(seen.len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_runtime_watcher_and_unavailability() {
    let (emu, client) = start().await;
    install_crd(&client, WIDGET_CRD).await;
    let api = widgets(&client, "default");
    let writer = kube::runtime::reflector::store::Writer::new(widget_resource());
    let reader = writer.as_reader();
    let cfg = watcher::Config::default();
    let rf = kube::runtime::reflector(writer, watcher(api.clone(), cfg).default_backoff());
    let handle = tokio::spawn(rf.for_each(|_| async {}));
    api.create(&PostParams::default(), &widget("a", 1))
        .await
        .unwrap();
    eventually("reflector sees a", T, || {
        let r = reader.clone();
        async move { (r.state().len() == 1).then_some(()) }
    })
    .await;
    // Outage: requests get 503 and the watch is closed; the watcher recovers afterwards.
    emu.set_available(false);
    // kube-rs retries 503 by default (that is what the reflector relies on); look at one answer.
    let mut cfg = kube::Config::new(emu.url().parse().unwrap());
    cfg.default_retry = false;
    let no_retry = widgets(&kube::Client::try_from(cfg).unwrap(), "default");
    assert_eq!(api_code(no_retry.get("a").await).0, 503);
    emu.set_available(true);
    api.create(&PostParams::default(), &widget("b", 1))
        .await
        .unwrap();
    eventually(
        "reflector sees b after the outage",
        Duration::from_secs(20),
        || {
            let r = reader.clone();
            async move { (r.state().len() == 2).then_some(()) }
        },
    )
    .await;
    handle.abort();
}
