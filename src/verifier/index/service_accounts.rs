//! Which ServiceAccounts exist, by uid: a ServiceAccount key's values
//! authenticate only while the ServiceAccount it was bound to exists.

use std::collections::HashSet;

use super::{Index, NO_OWNER, uid_fingerprint};

impl Index {
    /// Adds or replaces a ServiceAccount (namespace, name and uid are all the
    /// index keeps of it).
    pub fn upsert_service_account(&mut self, namespace: &str, name: &str, uid: &str) {
        let namespace = self.namespace_name(namespace);
        self.service_accounts
            .entry(namespace)
            .or_default()
            .insert(name.into(), uid_fingerprint(uid));
    }

    /// Removes a ServiceAccount: its keys' values are refused from now on.
    pub fn remove_service_account(&mut self, namespace: &str, name: &str) {
        if let Some(accounts) = self.service_accounts.get_mut(namespace) {
            accounts.remove(name);
        }
    }

    /// After a relist: drops every ServiceAccount not in `seen` (`namespace/name`).
    pub fn retain_service_accounts(&mut self, seen: &HashSet<String>) {
        for (namespace, accounts) in &mut self.service_accounts {
            accounts.retain(|name, _| seen.contains(&format!("{namespace}/{name}")));
        }
    }

    /// The ServiceAccount `namespace/name` exists with the uid `bound`
    /// fingerprints (never true for `NO_OWNER`).
    pub(super) fn service_account_is(&self, namespace: &str, name: &str, bound: u32) -> bool {
        bound != NO_OWNER
            && self
                .service_accounts
                .get(namespace)
                .and_then(|accounts| accounts.get(name))
                == Some(&bound)
    }
}
