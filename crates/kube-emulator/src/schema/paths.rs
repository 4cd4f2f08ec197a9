//! Validation paths: the `Seg` steps a walk pushes as it descends, and their two renderings,
//! kube-openapi's (`spec.items[0].name`) and apimachinery's `field.Path` (`spec.tags[foo]`).
//! Used by every walk in `keywords`, `lists`, `embedded` and `cel`.

/// A step of a validation path, borrowed from the object being validated (one
/// `String` per visited field was a large share of the emulator's allocations).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Seg<'a> {
    Field(&'a str),
    Index(usize),
    Key(&'a str),
}

/// `openapi_name` of a path, built only when an error message is formatted
/// (validation visits every node; most produce no error).
#[derive(Clone, Copy)]
pub(super) struct PathName<'p, 'a>(pub(super) &'p [Seg<'a>]);

impl std::fmt::Display for PathName<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&openapi_name(self.0))
    }
}

impl PathName<'_, '_> {
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `path` and one more step not borrowed from the object (an absent field, for an error).
pub(super) fn child<'b>(path: &[Seg<'b>], seg: Seg<'b>) -> Vec<Seg<'b>> {
    let mut out = path.to_vec();
    out.push(seg);
    out
}

/// kube-openapi's path name: `spec.items[0].name`, map keys joined with a dot.
pub(super) fn openapi_name(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Field(n) | Seg::Key(n) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(n);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// The field of an error converted from kube-openapi: `<nil>` at the root.
pub(super) fn openapi_field(path: &[Seg]) -> String {
    let n = openapi_name(path);
    if n.is_empty() { "<nil>".to_string() } else { n }
}

/// apimachinery `field.Path.String()`: `spec.tags[foo]`, `<nil>` for the root.
pub(super) fn field_path(path: &[Seg]) -> String {
    if path.is_empty() {
        return "<nil>".to_string();
    }
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Field(n) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(n);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
            Seg::Key(k) => s.push_str(&format!("[{k}]")),
        }
    }
    s
}
