//! [`Lean`]: decodes an API object without its `metadata.managedFields`.
//!
//! Every object the API server sends carries its field managers (one entry
//! per writer, each with a nested `fieldsV1` tree). The operator never reads
//! them, yet decoding and dropping them was 13% of its CPU in a rotation storm
//! (callgrind, BENCHMARKS.md). Watches decode `Lean<K>`, whose decoder skips
//! that key without building anything, and hand on the plain `K`.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::Event;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, forward_to_deserialize_any};

/// Keys of `metadata` that are never decoded.
const SKIPPED: &[&str] = &["managedFields"];

/// A `K` decoded without `metadata.managedFields` (left empty).
#[derive(Clone, Debug)]
pub struct Lean<K>(pub K);

impl<K> Lean<K> {
    /// The watch event with the plain object in it.
    pub fn event(event: Event<Lean<K>>) -> Event<K> {
        match event {
            Event::Apply(Lean(k)) => Event::Apply(k),
            Event::Delete(Lean(k)) => Event::Delete(k),
            Event::InitApply(Lean(k)) => Event::InitApply(k),
            Event::Init => Event::Init,
            Event::InitDone => Event::InitDone,
        }
    }
}

impl<K: kube::Resource> kube::Resource for Lean<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }

    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        self.0.meta()
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        self.0.meta_mut()
    }
}

impl<'de, K: Deserialize<'de>> Deserialize<'de> for Lean<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        K::deserialize(Filter {
            inner: deserializer,
            level: Level::Object,
        })
        .map(Lean)
    }
}

/// For `#[serde(deserialize_with)]` on a `metadata` field of a hand-written type.
pub fn metadata<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ObjectMeta, D::Error> {
    ObjectMeta::deserialize(Filter {
        inner: deserializer,
        level: Level::Metadata,
    })
}

/// Where a filtered map sits: the object (whose `metadata` value is filtered
/// in turn) or its metadata (whose skipped keys are passed over).
#[derive(Clone, Copy)]
enum Level {
    Object,
    Metadata,
}

/// A deserializer that filters the map it is asked for at `level`.
struct Filter<D> {
    inner: D,
    level: Level,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Filter<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_any(FilterVisitor {
            inner: visitor,
            level: self.level,
        })
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct FilterVisitor<V> {
    inner: V,
    level: Level,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for FilterVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.inner.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(FilterMap {
            inner: map,
            level: self.level,
            metadata_next: false,
        })
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }
}

struct FilterMap<A> {
    inner: A,
    level: Level,
    /// The value about to be read is the object's `metadata`.
    metadata_next: bool,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for FilterMap<A> {
    type Error = A::Error;

    fn next_key_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        loop {
            let Some(key) = self.inner.next_key::<Key<'de>>()? else {
                return Ok(None);
            };
            let key = key.as_str();
            match self.level {
                Level::Metadata if SKIPPED.contains(&key) => {
                    self.inner.next_value::<IgnoredAny>()?;
                }
                Level::Metadata => {
                    return seed
                        .deserialize(de::value::StrDeserializer::new(key))
                        .map(Some);
                }
                Level::Object => {
                    self.metadata_next = key == "metadata";
                    return seed
                        .deserialize(de::value::StrDeserializer::new(key))
                        .map(Some);
                }
            }
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        if std::mem::take(&mut self.metadata_next) {
            self.inner.next_value_seed(MetadataSeed(seed))
        } else {
            self.inner.next_value_seed(seed)
        }
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// Decodes the `metadata` value through a metadata-level filter.
struct MetadataSeed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for MetadataSeed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Filter {
            inner: deserializer,
            level: Level::Metadata,
        })
    }
}

/// A map key, borrowed from the input when it has no escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor<'de>(PhantomData<&'de ()>);
        impl<'de> Visitor<'de> for KeyVisitor<'de> {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_owned()))
            }
        }
        deserializer.deserialize_str(KeyVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use kube::ResourceExt;
    use serde_json::json;

    use super::*;
    use crate::api::ApiToken;

    fn token_json() -> serde_json::Value {
        json!({
            "apiVersion": "apikeys.dev/v1alpha1",
            "kind": "ApiToken",
            "metadata": {
                "name": "t", "namespace": "ns", "uid": "u-1", "resourceVersion": "7",
                "labels": {"team": "a"},
                "annotations": {"apikeys.dev/rotate": "now"},
                "managedFields": [{
                    "manager": "kubectl", "operation": "Update", "apiVersion": "apikeys.dev/v1alpha1",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:apiKeyRef": {}}}
                }],
                "ownerReferences": [{
                    "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiKey", "name": "k",
                    "uid": "u-k", "controller": true
                }]
            },
            "spec": {"apiKeyRef": {"name": "k"}, "displayName": "managedFields"},
            "status": {"tokenId": "abc", "conditions": [{
                "type": "Ready", "status": "True", "reason": "Issued", "message": "m",
                "lastTransitionTime": "2026-01-01T00:00:00Z"
            }]}
        })
    }

    #[test]
    fn decodes_everything_but_the_field_managers() {
        let text = token_json().to_string();
        let Lean(lean): Lean<ApiToken> = serde_json::from_str(&text).expect("decodes");
        let full: ApiToken = serde_json::from_str(&text).expect("decodes");
        assert_eq!(full.managed_fields().len(), 1, "the fixture has a manager");
        assert!(lean.managed_fields().is_empty());
        let mut expected = full;
        expected.metadata.managed_fields = None;
        assert_eq!(lean, expected);
    }

    #[test]
    fn escaped_keys_and_bad_input_decode_as_without_the_filter() {
        // An escaped key cannot be borrowed; it still matches its field.
        let text = r#"{"metadata":{"na\u006de":"t","managedFields":[]},"spec":{"apiKeyRef":{"name":"k"}}}"#;
        let Lean(token): Lean<ApiToken> = serde_json::from_str(text).expect("decodes");
        assert_eq!(token.name_any(), "t");
        for bad in [
            r#"{"metadata":{"name":"t"}}"#,
            r#"{"metadata":[],"spec":{"apiKeyRef":{"name":"k"}}}"#,
            r#"{"metadata":{"name":7},"spec":{"apiKeyRef":{"name":"k"}}}"#,
        ] {
            let filtered = serde_json::from_str::<Lean<ApiToken>>(bad).map(|_| ());
            let plain = serde_json::from_str::<ApiToken>(bad).map(|_| ());
            assert!(filtered.is_err(), "{bad} must not decode");
            assert_eq!(
                filtered.unwrap_err().to_string(),
                plain.unwrap_err().to_string(),
                "same error as the plain decoder for {bad}"
            );
        }
    }

    #[test]
    fn metadata_alone_skips_the_field_managers() {
        #[derive(Deserialize)]
        struct Only {
            #[serde(deserialize_with = "metadata")]
            metadata: ObjectMeta,
        }
        let only: Only = serde_json::from_value(token_json()).expect("decodes");
        assert!(only.metadata.managed_fields.is_none());
        assert_eq!(only.metadata.uid.as_deref(), Some("u-1"));
    }
}
