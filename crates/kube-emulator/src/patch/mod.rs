//! Patch application (JSON patch, JSON merge patch, strategic merge as "merge with name-keyed
//! lists") and server-side apply with managedFields tracking. Pure functions over JSON values;
//! `ops` decides which object they run on and stores the result. This file holds `PatchKind` and
//! the JSON and merge patches; `strategic` the strategic merge, `apply` server-side apply,
//! `managed_fields` the managedFields entries (and non-apply writes), `fields` their field sets.

mod apply;
mod fields;
mod managed_fields;
mod strategic;

use serde_json::Value;

use super::error::ApiError;

pub use apply::server_side_apply;
pub use managed_fields::{Writer, record_update};
pub use strategic::strategic_patch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(ct: &str) -> Option<PatchKind> {
        match ct.split(';').next().unwrap_or_default().trim() {
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Some(PatchKind::Apply)
            }
            _ => None,
        }
    }
}

/// Applies an RFC 6902 patch.
pub fn json_patch(target: &mut Value, body: &[u8]) -> Result<(), ApiError> {
    let ops: json_patch::Patch = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
    json_patch::patch(target, &ops).map_err(|e| {
        ApiError::new(
            422,
            "Invalid",
            format!("the JSON patch could not be applied: {e}"),
        )
    })
}

/// Applies an RFC 7386 merge patch.
pub fn merge_patch(target: &mut Value, body: &[u8]) -> Result<(), ApiError> {
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid merge patch: {e}")))?;
    if !patch.is_object() {
        return Err(ApiError::bad_request("a merge patch must be a JSON object"));
    }
    json_patch::merge(target, &patch);
    Ok(())
}
