//! What authorization asks about a request: verb, API group, resource, subresource, namespace
//! and name, or the path of a non-resource request, read from the URL as apiserver's
//! `RequestInfoFactory` reads it (purely from the path, without knowing which kinds exist).

/// The attributes one authorization decision is about (`authorizer.Attributes` without the user).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attributes {
    pub verb: String,
    /// False for `/version`, `/healthz`, discovery and other non-resource paths.
    pub resource_request: bool,
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// The URL path, for non-resource requests.
    pub path: String,
}

impl Attributes {
    /// A resource request, as impersonation, escalation checks and reviews build them.
    pub fn resource(verb: &str, group: &str, resource: &str, namespace: &str, name: &str) -> Self {
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        Attributes {
            verb: verb.to_owned(),
            resource_request: true,
            api_group: group.to_owned(),
            resource: resource.to_owned(),
            subresource: subresource.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            path: String::new(),
        }
    }

    /// A non-resource request.
    pub fn non_resource(verb: &str, path: &str) -> Self {
        Attributes {
            verb: verb.to_owned(),
            path: path.to_owned(),
            ..Attributes::default()
        }
    }

    /// Reads a request: `method` upper case as on the wire, `query` the raw query string.
    pub fn of_request(method: &str, path: &str, query: Option<&str>) -> Self {
        let mut a = Attributes::non_resource(&method.to_ascii_lowercase(), path);
        let parts: Vec<&str> = path
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let mut rest: &[&str] = match parts.as_slice() {
            ["api", _, rest @ ..] if !rest.is_empty() => rest,
            ["apis", group, _, rest @ ..] if !rest.is_empty() => {
                a.api_group = (*group).to_owned();
                rest
            }
            _ => return a,
        };
        a.resource_request = true;
        a.path = String::new();
        a.verb = match method {
            "POST" => "create",
            "GET" | "HEAD" => "get",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" => "delete",
            _ => "",
        }
        .to_owned();
        if rest[0] == "namespaces"
            && let Some(ns) = rest.get(1)
        {
            a.namespace = (*ns).to_owned();
            if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
                rest = &rest[2..];
            }
        }
        if let Some(r) = rest.first() {
            a.resource = (*r).to_owned();
        }
        if let Some(n) = rest.get(1) {
            a.name = (*n).to_owned();
        }
        if let Some(s) = rest.get(2) {
            a.subresource = (*s).to_owned();
        }
        let params = || {
            query
                .unwrap_or_default()
                .split('&')
                .filter_map(|kv| kv.split_once('='))
        };
        if a.name.is_empty() && a.verb == "get" {
            let watch = params().any(|(k, v)| k == "watch" && !matches!(v, "false" | "0"));
            a.verb = if watch { "watch" } else { "list" }.to_owned();
            if let Some(name) = params()
                .find(|(k, _)| *k == "fieldSelector")
                .and_then(|(_, v)| exact_name(&percent_decode(v)))
            {
                a.name = name;
            }
        }
        if a.name.is_empty() && a.verb == "delete" {
            a.verb = "deletecollection".to_owned();
        }
        a
    }

    /// `resource` or `resource/subresource`, as 403 messages and rules name it.
    pub fn resource_path(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// The name a field selector pins (`metadata.name=x` or `==`), if it pins exactly one.
fn exact_name(selector: &str) -> Option<String> {
    let mut found = None;
    for term in selector.split(',') {
        let (k, v) = term
            .split_once("==")
            .or_else(|| term.split_once('='))
            .filter(|(k, _)| !k.ends_with('!'))?;
        if k.trim() == "metadata.name" {
            found = Some(v.trim().to_owned());
        }
    }
    found.filter(|n| !n.is_empty() && n != "." && n != ".." && !n.contains(['/', '%']))
}

/// Query values as Go's url.ParseQuery reads them (`+` is a space, `%XX` a byte).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(method: &str, path: &str, query: Option<&str>) -> Attributes {
        Attributes::of_request(method, path, query)
    }

    #[test]
    fn requests_read_as_request_info_reads_them() {
        // method, path, query, then verb, group, resource/sub, namespace, name
        type Case<'a> = (
            &'a str,
            &'a str,
            Option<&'a str>,
            &'a str,
            &'a str,
            &'a str,
            &'a str,
            &'a str,
        );
        let cases: &[Case] = &[
            // method, path, query, verb, group, resource/sub, namespace, name
            (
                "GET",
                "/api/v1/namespaces/a/secrets/s",
                None,
                "get",
                "",
                "secrets",
                "a",
                "s",
            ),
            (
                "GET",
                "/api/v1/namespaces/a/secrets",
                None,
                "list",
                "",
                "secrets",
                "a",
                "",
            ),
            (
                "GET",
                "/api/v1/secrets",
                Some("watch=true"),
                "watch",
                "",
                "secrets",
                "",
                "",
            ),
            (
                "GET",
                "/api/v1/namespaces/a/secrets",
                Some("watch=1&fieldSelector=metadata.name%3Ds"),
                "watch",
                "",
                "secrets",
                "a",
                "s",
            ),
            (
                "GET",
                "/api/v1/namespaces/a/secrets",
                Some("fieldSelector=metadata.name!%3Ds"),
                "list",
                "",
                "secrets",
                "a",
                "",
            ),
            (
                "POST",
                "/api/v1/namespaces/a/serviceaccounts/robot/token",
                None,
                "create",
                "",
                "serviceaccounts/token",
                "a",
                "robot",
            ),
            (
                "PATCH",
                "/apis/apikeys.dev/v1/namespaces/a/apitokens/t/status",
                None,
                "patch",
                "apikeys.dev",
                "apitokens/status",
                "a",
                "t",
            ),
            (
                "DELETE",
                "/apis/apps/v1/namespaces/a/deployments",
                None,
                "deletecollection",
                "apps",
                "deployments",
                "a",
                "",
            ),
            (
                "GET",
                "/api/v1/namespaces/a",
                None,
                "get",
                "",
                "namespaces",
                "a",
                "a",
            ),
            (
                "PUT",
                "/api/v1/namespaces/a/finalize",
                None,
                "update",
                "",
                "namespaces/finalize",
                "a",
                "a",
            ),
            (
                "POST",
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                None,
                "create",
                "authorization.k8s.io",
                "selfsubjectaccessreviews",
                "",
                "",
            ),
        ];
        for (m, p, q, verb, group, res, ns, name) in cases {
            let a = attrs(m, p, *q);
            assert!(a.resource_request, "{p}");
            assert_eq!(
                (
                    a.verb.as_str(),
                    a.api_group.as_str(),
                    a.resource_path().as_str(),
                    a.namespace.as_str(),
                    a.name.as_str()
                ),
                (*verb, *group, *res, *ns, *name),
                "{m} {p}"
            );
        }
    }

    #[test]
    fn discovery_and_health_are_non_resource_paths() {
        for (m, p, verb) in [
            ("GET", "/api", "get"),
            ("GET", "/api/v1", "get"),
            ("GET", "/apis/apps/v1", "get"),
            ("GET", "/version", "get"),
            ("POST", "/healthz", "post"),
        ] {
            let a = attrs(m, p, None);
            assert!(!a.resource_request, "{p}");
            assert_eq!((a.verb.as_str(), a.path.as_str()), (verb, p));
        }
    }
}
