//! Writes whose answer is read for its resourceVersion only.

use kube::{Api, Resource};

/// A write's answer as far as the operator reads it: the new resourceVersion.
#[derive(serde::Deserialize)]
struct Written {
    metadata: WrittenMeta,
}

#[derive(serde::Deserialize)]
struct WrittenMeta {
    #[serde(rename = "resourceVersion")]
    resource_version: Option<String>,
}

/// Sends a write built for `api`'s URL and decodes only the new resourceVersion
/// from the answer. Decoding whole objects (managedFields included) for every
/// write was the operator's largest CPU cost in a rotation storm (callgrind,
/// BENCHMARKS.md); a Secret's answer would also carry the token value.
pub(super) async fn write_light<K>(
    api: &Api<K>,
    build: impl FnOnce(
        kube::core::Request,
    ) -> Result<axum::http::Request<Vec<u8>>, kube::core::request::Error>,
) -> kube::Result<Option<String>>
where
    K: Resource<DynamicType = ()> + Clone,
{
    let request =
        build(kube::core::Request::new(api.resource_url())).map_err(kube::Error::BuildRequest)?;
    let written: Written = api.clone().into_client().request(request).await?;
    Ok(written.metadata.resource_version)
}
