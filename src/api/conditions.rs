//! Condition types and reasons, named once so that the controller, the tests
//! and the docs agree (Kubernetes API conventions: CamelCase reasons).

/// The object is usable: for a key, its owner resolves; for a token, a valid value is in its Secret.
pub const READY: &str = "Ready";
/// The token's value expired and was removed.
pub const EXPIRED: &str = "Expired";
/// The token's value expires soon and no renewal is scheduled before then.
pub const EXPIRING_SOON: &str = "ExpiringSoon";

/// Reasons for the conditions above.
pub mod reason {
    /// Key: the owner resolves to a principal.
    pub const OWNER_RESOLVED: &str = "OwnerResolved";
    /// Key: the owning ServiceAccount does not exist in the namespace.
    pub const OWNER_NOT_FOUND: &str = "OwnerNotFound";
    /// Key: the rules forbid the owner (a User named `system:…` or with a
    /// control character, an invalid ServiceAccount name); no principal.
    pub const FORBIDDEN_OWNER: &str = "ForbiddenOwner";
    /// Key: its ServiceAccount was deleted and created again (another uid);
    /// the key stays bound to the first and its tokens authenticate no one.
    pub const OWNER_REPLACED: &str = "OwnerReplaced";
    /// Token: a value is issued and recorded.
    pub const ISSUED: &str = "Issued";
    /// Token: a value is issued and recorded, and the token has been rotated or renewed.
    pub const ROTATED: &str = "Rotated";
    /// Token: a new value is being issued (between the two phases).
    pub const ISSUING: &str = "Issuing";
    /// Token: the referenced ApiKey does not exist.
    pub const KEY_NOT_FOUND: &str = "ApiKeyNotFound";
    /// Token: the referenced ApiKey is not Ready.
    pub const KEY_NOT_READY: &str = "ApiKeyNotReady";
    /// Token: the ApiKey its value was issued under was deleted and one of the
    /// same name created (another uid): that value is removed.
    pub const KEY_REPLACED: &str = "ApiKeyReplaced";
    /// Token: a Secret of the wanted name exists and is not owned by this token.
    pub const SECRET_CONFLICT: &str = "SecretConflict";
    /// Token: the spec cannot be acted on (for example renewBefore >= lifetime).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Token: the value expired.
    pub const EXPIRED: &str = "Expired";
    /// Token: `spec.disabled` is true.
    pub const DISABLED: &str = "Disabled";
    /// Token: its values were revoked (the Event, and `status.retired` of the revoked value).
    pub const REVOKED: &str = "Revoked";
    /// Token: not expired / not expiring soon.
    pub const VALID: &str = "Valid";
    /// Token: expires within the warning window with no renewal before.
    pub const EXPIRES_SOON: &str = "ExpiresSoon";
    /// Token: a renewal is scheduled before the expiry.
    pub const RENEWAL_SCHEDULED: &str = "RenewalScheduled";
    /// Token: the value never expires.
    pub const NO_EXPIRY: &str = "NoExpiry";
}
