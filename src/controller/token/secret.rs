//! The token's Secret as the reconciler writes it: its labels and
//! annotations (the operator's, `spec.secret`'s and the record of the
//! latter's keys), the value written by create or by apply at the version
//! the decision saw, reads of its current state, and its deletion.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::api::ApiToken;
use crate::controller::error::{Error, kube_err};
use crate::controller::hashed_secret::HashedSecret;
use crate::controller::token_state::{SecretView, view};
use crate::controller::write::write_light;
use crate::controller::{FIELD_MANAGER, MANAGED_BY, MANAGED_BY_LABEL, TOKEN_LABEL};

/// Annotation on a token's Secret naming the label and annotation keys that
/// came from `spec.secret`, so that a key later dropped from the spec can be
/// removed without touching what others put on the Secret.
pub const TEMPLATE_ANNOTATION: &str = "apikeys.dev/secret-template";

/// The keys recorded in [`TEMPLATE_ANNOTATION`].
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct TemplateKeys {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    annotations: Vec<String>,
}

type Metadata = (BTreeMap<String, String>, BTreeMap<String, String>);

/// The labels and annotations a token's Secret carries: `spec.secret`'s, the
/// operator's own over them, and the record of the spec's keys.
fn desired_metadata(token: &ApiToken) -> Metadata {
    let template = token.spec.secret.clone().unwrap_or_default();
    let keys = TemplateKeys {
        labels: template.labels.keys().cloned().collect(),
        annotations: template.annotations.keys().cloned().collect(),
    };
    let mut labels: BTreeMap<String, String> = template.labels;
    labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned());
    labels.insert(TOKEN_LABEL.to_owned(), token_label_value(&token.name_any()));
    let mut annotations = template.annotations;
    // The label value is cut to 63 characters; the annotation names the token in full.
    annotations.insert(TOKEN_LABEL.to_owned(), token.name_any());
    if keys != TemplateKeys::default() {
        annotations.insert(TEMPLATE_ANNOTATION.to_owned(), json!(keys).to_string());
    }
    (labels, annotations)
}

/// After a spec edit, brings the Secret's labels and annotations in line
/// with `spec.secret` without a new value: the spec's are set, those an
/// earlier spec set and this one does not are removed, and anything else on
/// the Secret is left alone. No write when they already match.
pub(super) async fn sync_secret_metadata(
    api: &Api<HashedSecret>,
    token: &ApiToken,
    name: &str,
) -> Result<(), Error> {
    let Some(secret) = api
        .get_opt(name)
        .await
        .map_err(kube_err("reading the token's Secret"))?
    else {
        return Ok(());
    };
    let (labels, annotations) = desired_metadata(token);
    let recorded: TemplateKeys = secret
        .annotations()
        .get(TEMPLATE_ANNOTATION)
        .and_then(|keys| serde_json::from_str(keys).ok())
        .unwrap_or_default();
    let mut dropped_annotations = recorded.annotations;
    if !annotations.contains_key(TEMPLATE_ANNOTATION) {
        dropped_annotations.push(TEMPLATE_ANNOTATION.to_owned());
    }
    let changes = |current: &BTreeMap<String, String>,
                   desired: &BTreeMap<String, String>,
                   dropped: &[String]| {
        let mut changes = serde_json::Map::new();
        for (key, value) in desired {
            if current.get(key) != Some(value) {
                changes.insert(key.clone(), json!(value));
            }
        }
        for key in dropped {
            if !desired.contains_key(key) && current.contains_key(key) {
                changes.insert(key.clone(), serde_json::Value::Null);
            }
        }
        changes
    };
    let labels = changes(secret.labels(), &labels, &recorded.labels);
    let annotations = changes(secret.annotations(), &annotations, &dropped_annotations);
    if labels.is_empty() && annotations.is_empty() {
        return Ok(());
    }
    let patch = json!({"metadata": {
        "resourceVersion": secret.resource_version(),
        "labels": labels,
        "annotations": annotations,
    }});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..Default::default()
    };
    write_light(api, |r| r.patch(name, &params, &Patch::Merge(&patch)))
        .await
        .map_err(kube_err(
            "updating the labels and annotations of the token's Secret",
        ))?;
    Ok(())
}

pub(super) fn desired_secret(
    token: &ApiToken,
    name: &str,
    key: &str,
    value: &str,
) -> Result<Secret, Error> {
    let (labels, annotations) = desired_metadata(token);
    let owner = token
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))?;
    Ok(Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            namespace: token.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            key.to_owned(),
            ByteString(value.as_bytes().to_vec()),
        )])),
        ..Default::default()
    })
}

/// The value of the `apikeys.dev/token` label on a token's Secret: the
/// token's name when it fits in a label value (63 characters), else its first
/// 46 characters, a dash and 16 hex digits of the name's SHA-256, so that
/// long names stay distinct. The full name is in the annotation of the same key.
pub fn token_label_value(name: &str) -> String {
    const MAX: usize = 63;
    if name.len() <= MAX {
        return name.to_owned();
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    // Token names are DNS subdomains (ASCII); a label value must start and end alphanumeric.
    let head = name[..MAX - 1 - hex.len()].trim_end_matches(['-', '.']);
    format!("{head}-{hex}")
}

/// Writes the Secret with the new value. Never takes over a Secret that is
/// not ours: the decision saw it missing (create: fails if someone created
/// it since) or ours at `rv` (apply with that resourceVersion: fails if it
/// changed since, e.g. another token claimed it). The next reconcile looks
/// again.
pub(super) async fn write_secret(
    api: &Api<Secret>,
    mut secret: Secret,
    name: &str,
    rv: Option<&str>,
) -> Result<(), Error> {
    match rv {
        None => {
            let params = kube::api::PostParams {
                dry_run: false,
                field_manager: Some(FIELD_MANAGER.to_owned()),
            };
            let body = serde_json::to_vec(&secret).map_err(|source| Error::Serialize {
                what: "the token's Secret",
                source,
            })?;
            write_light(api, |r| r.create(&params, body))
                .await
                .map_err(kube_err("creating the token's Secret"))?;
        }
        Some(rv) => {
            secret.metadata.resource_version = Some(rv.to_owned());
            let params = PatchParams::apply(FIELD_MANAGER).force();
            write_light(api, |r| r.patch(name, &params, &Patch::Apply(&secret)))
                .await
                .map_err(kube_err("writing the token's Secret"))?;
        }
    }
    Ok(())
}

/// The Secret as it is now, and its resourceVersion (none when missing).
pub(super) async fn fetch_view(
    api: &Api<HashedSecret>,
    name: &str,
    uid: &str,
    key: &str,
) -> Result<(SecretView, Option<String>), Error> {
    match api
        .get_opt(name)
        .await
        .map_err(kube_err("reading the token's Secret"))?
    {
        None => Ok((SecretView::Missing, None)),
        Some(secret) => Ok((view(&secret, uid, key), secret.resource_version())),
    }
}

pub(super) async fn delete_secret(
    api: &Api<HashedSecret>,
    name: &str,
    uid: &str,
) -> Result<(), Error> {
    let Some(secret) = api
        .get_opt(name)
        .await
        .map_err(kube_err("reading a Secret to delete"))?
    else {
        return Ok(());
    };
    let ours = secret
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && o.uid == uid);
    if !ours {
        return Ok(());
    }
    // Precondition on the uid: never delete a Secret someone recreated meanwhile.
    let params = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: secret.uid(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(kube_err("deleting the token's Secret")(e)),
    }
}
