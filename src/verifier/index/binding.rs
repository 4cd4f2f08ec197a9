//! The token-id binding: which of several ApiTokens claiming one tokenId is
//! accepted, settled again whenever a claim is added, changed or dropped.

use super::{IdKey, Index};

impl Index {
    /// Decides which claim of `id` is accepted: the one whose object the id
    /// was derived for; else, for an id from before derivation, the only
    /// claim (two objects with one random id: accept neither rather than
    /// guess which one is genuine).
    pub(super) fn settle(&mut self, id: IdKey) {
        let mut claims = self.contenders.remove(&id).unwrap_or_default();
        claims.extend(self.tokens.remove(&id));
        let mut bound = claims.iter().enumerate().filter(|(_, c)| c.bound);
        let winner = match (bound.next(), bound.next()) {
            (Some((at, _)), None) => Some(at),
            _ if claims.len() == 1 => Some(0),
            _ => None,
        };
        if let Some(at) = winner {
            self.tokens.insert(id, claims.swap_remove(at));
        }
        if !claims.is_empty() {
            self.contenders.insert(id, claims);
        }
    }

    /// Drops the object's claim, and settles the id it claimed.
    pub(super) fn remove_object(&mut self, fingerprint: u64, namespace: &str, name: &str) {
        let Some(id) = self.by_object.remove(&fingerprint) else {
            return;
        };
        if self
            .tokens
            .get(&id)
            .is_some_and(|entry| entry.is_object(namespace, name))
        {
            self.tokens.remove(&id);
        }
        if let Some(claims) = self.contenders.get_mut(&id) {
            claims.retain(|entry| !entry.is_object(namespace, name));
            self.settle(id);
        }
    }
}
