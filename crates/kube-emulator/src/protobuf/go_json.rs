//! Writes decoded messages as Go's `encoding/json` writes the Kubernetes API structs, so that
//! a protobuf body stores the same JSON as the JSON body of a client that encoded the same
//! struct: `omitempty` fields drop Go's zero value, pointer fields keep any set value,
//! fields without `omitempty` (and non-pointer structs) are always written.

use std::collections::BTreeMap;

use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Map, Value};

/// A field the converters do not convert was set; the body is refused rather than stored
/// without it. `field` is the JSON path, e.g. `spec.template.spec.volumes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Unconverted {
    pub(super) field: String,
}

/// The Go zero value test behind `omitempty`.
pub(super) trait GoZero {
    fn is_go_zero(&self) -> bool;
}

impl GoZero for String {
    fn is_go_zero(&self) -> bool {
        self.is_empty()
    }
}
impl GoZero for bool {
    fn is_go_zero(&self) -> bool {
        !*self
    }
}
impl GoZero for i32 {
    fn is_go_zero(&self) -> bool {
        *self == 0
    }
}
impl GoZero for i64 {
    fn is_go_zero(&self) -> bool {
        *self == 0
    }
}

/// One JSON object under construction, field by field in Go declaration order.
#[derive(Default)]
pub(super) struct GoJson(Map<String, Value>);

impl GoJson {
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// A field without `omitempty`, or a non-pointer struct: always written.
    pub(super) fn always(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.0.insert(name.to_string(), value.into());
        self
    }

    /// A pointer field: written when set, whatever the value (`replicas: 0` stays).
    pub(super) fn ptr(self, name: &str, value: Option<impl Into<Value>>) -> Self {
        match value {
            Some(v) => self.always(name, v),
            None => self,
        }
    }

    /// An `omitempty` scalar: written unless unset or Go's zero value.
    pub(super) fn omitempty<T: GoZero + Into<Value>>(self, name: &str, value: Option<T>) -> Self {
        self.ptr(name, value.filter(|v| !v.is_go_zero()))
    }

    /// An `omitempty` list or map (already converted): written unless empty.
    pub(super) fn nonempty(self, name: &str, value: Value) -> Self {
        let empty = match &value {
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            Value::Null => true,
            _ => false,
        };
        if empty {
            self
        } else {
            self.always(name, value)
        }
    }

    /// A list or map without `omitempty`: Go writes `null` for an empty one (the decoder
    /// leaves it nil).
    pub(super) fn always_list(self, name: &str, value: Value) -> Self {
        let empty = matches!(&value, Value::Array(a) if a.is_empty())
            || matches!(&value, Value::Object(o) if o.is_empty());
        self.always(name, if empty { Value::Null } else { value })
    }

    pub(super) fn end(self) -> Value {
        Value::Object(self.0)
    }
}

/// A scalar of a non-pointer field without `omitempty`: unset is Go's zero.
pub(super) fn or_zero<T: Default>(value: Option<T>) -> T {
    value.unwrap_or_default()
}

pub(super) fn strings(values: Vec<String>) -> Value {
    Value::from(values)
}

pub(super) fn string_map(map: BTreeMap<String, String>) -> Value {
    Value::Object(map.into_iter().map(|(k, v)| (k, Value::from(v))).collect())
}

/// `map[string][]byte`: each value base64, as Go writes `[]byte`.
pub(super) fn bytes_map(map: BTreeMap<String, Vec<u8>>) -> Value {
    Value::Object(
        map.into_iter()
            .map(|(k, v)| (k, base64(v)))
            .collect::<Map<String, Value>>(),
    )
}

pub(super) fn base64(bytes: Vec<u8>) -> Value {
    serde_json::to_value(k8s_openapi::ByteString(bytes)).unwrap_or(Value::Null)
}

/// `resource.Quantity` as its string; the emulator does not canonicalise quantities (the
/// real server re-formats `1000m` as `1`), neither here nor on the JSON path.
pub(super) fn quantity(q: Quantity) -> Value {
    Value::from(q.string.unwrap_or_default())
}

pub(super) fn quantity_map(map: BTreeMap<String, Quantity>) -> Value {
    Value::Object(map.into_iter().map(|(k, q)| (k, quantity(q))).collect())
}

/// `intstr.IntOrString`: type 1 is the string form.
pub(super) fn int_or_string(v: IntOrString) -> Value {
    if v.r#type == Some(1) {
        Value::from(v.str_val.unwrap_or_default())
    } else {
        Value::from(v.int_val.unwrap_or_default())
    }
}

/// `metav1.Time`: RFC 3339 in UTC to the second; the zero time (what Go writes for an unset
/// non-pointer Time) is `None`.
pub(super) fn time(t: Option<Time>) -> Option<Value> {
    let t = t?;
    timestamp(t.seconds, t.nanos).map(|(secs, _)| Value::from(secs))
}

/// A non-pointer `metav1.Time` field without `omitzero`: Go writes the zero time as `null`.
pub(super) fn time_or_null(t: Option<Time>) -> Value {
    time(t).unwrap_or(Value::Null)
}

/// `metav1.MicroTime`: RFC 3339 with six fractional digits.
pub(super) fn micro_time(t: Option<MicroTime>) -> Option<Value> {
    let t = t?;
    timestamp(t.seconds, t.nanos).map(|(secs, nanos)| {
        let whole = secs.trim_end_matches('Z');
        Value::from(format!("{whole}.{:06}Z", nanos / 1000))
    })
}

/// `(YYYY-MM-DDTHH:MM:SSZ, nanos)`, or `None` for Go's zero time (all unset or zero, or the
/// year-1 instant Go's zero `time.Time` encodes to).
fn timestamp(seconds: Option<i64>, nanos: Option<i32>) -> Option<(String, i32)> {
    const GO_ZERO_UNIX: i64 = -62_135_596_800; // 0001-01-01T00:00:00Z
    let (seconds, nanos) = (seconds.unwrap_or(0), nanos.unwrap_or(0));
    if (seconds == 0 || seconds == GO_ZERO_UNIX) && nanos == 0 {
        return None;
    }
    let ts = jiff::Timestamp::from_second(seconds).ok()?;
    Some((ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(), nanos))
}

/// Checks the fields a converter leaves out: the first one set is an error naming it.
pub(super) fn refuse_unconverted(path: &str, fields: &[(&str, bool)]) -> Result<(), Unconverted> {
    match fields.iter().find(|(_, set)| *set) {
        Some((name, _)) => Err(Unconverted {
            field: join(path, name),
        }),
        None => Ok(()),
    }
}

pub(super) fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}
