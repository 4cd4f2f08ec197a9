//! A CA and serving certificate (the webhook's, the verifier's) shared by
//! every replica through one Secret: the first replica to start makes them, the others read them;
//! whoever finds them due renews them, with the Secret's resourceVersion as
//! the lock (a lost race re-reads). A renewed CA is added to the bundle in
//! front of the previous one, so replicas still serving a certificate of the
//! old CA stay trusted until they re-read the Secret.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};

use super::{Authority, CertError, Serving};

const CA_BUNDLE: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const CERT: &str = "tls.crt";
const KEY: &str = "tls.key";
const CA_NOT_AFTER: &str = "apikeys.dev/ca-not-after";
const NOT_AFTER: &str = "apikeys.dev/serving-not-after";
const HOSTS: &str = "apikeys.dev/serving-hosts";
/// Races lost in a row before giving up (each one means another replica
/// wrote a fresh pair, which the next read finds).
const ATTEMPTS: usize = 5;

/// The CA bundle and serving certificate in the Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    pub ca_bundle: String,
    pub serving: Serving,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error(transparent)]
    Cert(#[from] CertError),
}

/// Reads the pair from the Secret `name`, making or renewing what is
/// missing or due at `now` for `hosts`.
pub async fn ensure(
    api: &Api<Secret>,
    name: &str,
    hosts: &[String],
    now: Timestamp,
) -> Result<Pair, SecretError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let existing = api.get_opt(name).await?;
        let stored = existing.as_ref().and_then(read);
        if let Some((authority, pair)) = &stored
            && !authority.due(now)
            && !pair.serving.due(hosts, now)
        {
            return Ok(pair.clone());
        }
        let (authority, previous_ca) = match stored {
            Some((authority, _)) if !authority.due(now) => (authority, None),
            Some((old, _)) => (Authority::new(now)?, Some(old.cert_pem)),
            None => (Authority::new(now)?, None),
        };
        let serving = authority.issue(hosts, now)?;
        let ca_bundle = match previous_ca {
            Some(old) if old != authority.cert_pem => format!("{}{old}", authority.cert_pem),
            _ => authority.cert_pem.clone(),
        };
        let pair = Pair { ca_bundle, serving };
        let secret = write(name, &authority, &pair, existing.as_ref());
        let written = match existing {
            Some(_) => api.replace(name, &PostParams::default(), &secret).await,
            None => api.create(&PostParams::default(), &secret).await,
        };
        match written {
            Ok(_) => return Ok(pair),
            // Another replica wrote first: use (or renew) what it wrote.
            Err(kube::Error::Api(s)) if (s.code == 409) && attempt < ATTEMPTS => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The CA and pair a Secret holds, if it holds a complete, readable one.
fn read(secret: &Secret) -> Option<(Authority, Pair)> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| {
        data.get(key)
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
    };
    let annotations = secret.metadata.annotations.as_ref()?;
    let at = |key: &str| annotations.get(key)?.parse::<Timestamp>().ok();
    let ca_bundle = text(CA_BUNDLE)?;
    // The current CA is the bundle's first certificate.
    let end = "-----END CERTIFICATE-----";
    let first = ca_bundle.find(end).map(|i| i + end.len())?;
    let authority = Authority {
        cert_pem: format!("{}\n", ca_bundle[..first].trim_start()),
        key_pem: text(CA_KEY)?,
        not_after: at(CA_NOT_AFTER)?,
    };
    let hosts = annotations
        .get(HOSTS)?
        .split(',')
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .collect();
    let serving = Serving {
        cert_pem: text(CERT)?,
        key_pem: text(KEY)?,
        hosts,
        not_after: at(NOT_AFTER)?,
    };
    Some((authority, Pair { ca_bundle, serving }))
}

/// The Secret holding `authority` and `pair`, replacing `existing`.
fn write(name: &str, authority: &Authority, pair: &Pair, existing: Option<&Secret>) -> Secret {
    let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
    let data = BTreeMap::from([
        (CA_BUNDLE.to_owned(), bytes(&pair.ca_bundle)),
        (CA_KEY.to_owned(), bytes(&authority.key_pem)),
        (CERT.to_owned(), bytes(&pair.serving.cert_pem)),
        (KEY.to_owned(), bytes(&pair.serving.key_pem)),
    ]);
    let mut annotations = existing
        .and_then(|s| s.metadata.annotations.clone())
        .unwrap_or_default();
    annotations.insert(CA_NOT_AFTER.to_owned(), authority.not_after.to_string());
    annotations.insert(NOT_AFTER.to_owned(), pair.serving.not_after.to_string());
    annotations.insert(HOSTS.to_owned(), pair.serving.hosts.join(","));
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            resource_version: existing.and_then(|s| s.metadata.resource_version.clone()),
            labels: existing.and_then(|s| s.metadata.labels.clone()),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        data: Some(data),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_pair_reads_back_and_a_partial_secret_reads_as_none() {
        let now: Timestamp = "2026-12-01T00:00:00Z".parse().expect("time");
        let authority = Authority::new(now).expect("ca");
        let hosts = vec![
            "hook.ns.svc".to_owned(),
            "hook.ns.svc.cluster.local".to_owned(),
        ];
        let pair = Pair {
            ca_bundle: authority.cert_pem.clone(),
            serving: authority.issue(&hosts, now).expect("serving"),
        };
        let secret = write("hook-tls", &authority, &pair, None);
        assert_eq!(read(&secret), Some((authority.clone(), pair.clone())));

        let older = Authority::new(now).expect("older ca");
        let bundled = Pair {
            ca_bundle: format!("{}{}", authority.cert_pem, older.cert_pem),
            ..pair.clone()
        };
        let (current, _) = read(&write("hook-tls", &authority, &bundled, None)).expect("read");
        assert_eq!(
            current, authority,
            "the bundle's first certificate is the current CA"
        );

        let mut partial = secret.clone();
        partial.data.as_mut().expect("data").remove(KEY);
        assert_eq!(read(&partial), None);
    }
}
