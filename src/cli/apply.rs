//! Applying manifest files to a cluster, as `kubectl apply --server-side
//! --force-conflicts` would: `local --apply` and the tests use it.

use std::path::Path;

use kube::api::{DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use kube::{Api, Client};
use serde::Deserialize;

/// Field manager of manifests applied by `local --apply`.
pub const APPLY_MANAGER: &str = "apikey-operator-local";

/// Why a manifest could not be applied; each names the file and the document.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("could not read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: document {index} is not valid YAML: {source}; fix the manifest")]
    Yaml {
        path: String,
        index: usize,
        source: serde_yaml::Error,
    },
    #[error(
        "{path}: document {index} has no apiVersion, kind or metadata.name; every manifest needs all three"
    )]
    Incomplete { path: String, index: usize },
    #[error("{path}: {kind} ({api_version}) is not served by the API server: {source}")]
    UnknownKind {
        path: String,
        kind: String,
        api_version: String,
        source: kube::Error,
    },
    #[error("{path}: applying {kind} {name} failed: {source}")]
    Apply {
        path: String,
        kind: String,
        name: String,
        source: kube::Error,
    },
}

/// Applies every manifest under `path` (a file, or a directory's YAML/JSON
/// files in name order) by server-side apply. Returns how many objects.
pub async fn apply_path(client: &Client, path: &Path) -> Result<usize, ApplyError> {
    let mut files = Vec::new();
    if path.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|source| ApplyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| ApplyError::Read {
                path: path.display().to_string(),
                source,
            })?;
            let p = entry.path();
            if p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
            {
                files.push(p);
            }
        }
        files.sort();
    } else {
        files.push(path.to_owned());
    }
    let mut count = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| ApplyError::Read {
            path: file.display().to_string(),
            source,
        })?;
        count += apply_manifests(client, &file.display().to_string(), &text).await?;
    }
    Ok(count)
}

/// Applies `objects` (each a complete manifest); `origin` names them in errors.
pub async fn apply_objects(
    client: &Client,
    origin: &str,
    objects: &[serde_json::Value],
) -> Result<usize, ApplyError> {
    // JSON is YAML: one document per object.
    let text = objects
        .iter()
        .map(serde_json::Value::to_string)
        .collect::<Vec<_>>()
        .join("\n---\n");
    apply_manifests(client, origin, &text).await
}

/// Applies a multi-document YAML stream; `origin` names it in errors.
pub async fn apply_manifests(
    client: &Client,
    origin: &str,
    text: &str,
) -> Result<usize, ApplyError> {
    let mut count = 0;
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value =
            serde_json::Value::deserialize(document).map_err(|source| ApplyError::Yaml {
                path: origin.to_owned(),
                index: index + 1,
                source,
            })?;
        if value.is_null() {
            continue;
        }
        let object: DynamicObject =
            serde_json::from_value(value).map_err(|_| ApplyError::Incomplete {
                path: origin.to_owned(),
                index: index + 1,
            })?;
        let (Some(types), Some(name)) = (object.types.clone(), object.metadata.name.clone()) else {
            return Err(ApplyError::Incomplete {
                path: origin.to_owned(),
                index: index + 1,
            });
        };
        let gvk = GroupVersionKind::try_from(&types).map_err(|_| ApplyError::Incomplete {
            path: origin.to_owned(),
            index: index + 1,
        })?;
        let (resource, capabilities) =
            discovery::pinned_kind(client, &gvk)
                .await
                .map_err(|source| ApplyError::UnknownKind {
                    path: origin.to_owned(),
                    kind: types.kind.clone(),
                    api_version: types.api_version.clone(),
                    source,
                })?;
        let api: Api<DynamicObject> = match capabilities.scope {
            Scope::Namespaced => {
                let ns = object
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".to_owned());
                Api::namespaced_with(client.clone(), &ns, &resource)
            }
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        api.patch(
            &name,
            &PatchParams::apply(APPLY_MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await
        .map_err(|source| ApplyError::Apply {
            path: origin.to_owned(),
            kind: types.kind.clone(),
            name: name.clone(),
            source,
        })?;
        count += 1;
    }
    Ok(count)
}
