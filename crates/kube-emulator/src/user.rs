//! Who made a request: the identity authentication gives it, which
//! authorization checks and admission webhooks receive as `userInfo`.

use std::collections::BTreeMap;

/// The authenticated user of a request, as Kubernetes' `user.Info`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// The identity of the emulator's own writes (garbage collection,
    /// namespace cleanup) and of requests made with the admin credentials.
    pub fn admin() -> UserInfo {
        UserInfo {
            username: "system:admin".to_owned(),
            uid: String::new(),
            groups: vec![
                "system:masters".to_owned(),
                "system:authenticated".to_owned(),
            ],
            extra: BTreeMap::new(),
        }
    }

    /// The `userInfo` of an AdmissionReview (and the user fields of access
    /// reviews): empty fields are left out, as the real server does.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({ "username": self.username });
        if !self.uid.is_empty() {
            v["uid"] = self.uid.clone().into();
        }
        if !self.groups.is_empty() {
            v["groups"] = serde_json::json!(self.groups);
        }
        if !self.extra.is_empty() {
            v["extra"] = serde_json::json!(self.extra);
        }
        v
    }
}
