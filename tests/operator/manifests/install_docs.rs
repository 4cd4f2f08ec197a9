//! The install instructions against the chart they install: README.md's `helm install` (release
//! name, namespace, `--set` values) rendered with `helm template`, and every in-cluster address
//! in README.md and docs/*.md held to the rendered Services: the README's namespace, a Service
//! the chart makes, one of its ports, the scheme its pods serve there and, over the operator's
//! own certificate, a name that certificate is made for. And one instruction to apply the CRDs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use apikey_operator::certs::service_names;
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use super::helm_chart::{CHART, args_of, find, helm, run};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Services that are not the chart's, named in the docs on purpose: the API server's own
/// (`https://kubernetes.default.svc…`, the default audience) and the NGINX example's placeholder
/// for the protected service (`proxy_pass http://backend`).
const NOT_THE_CHARTS: &[&str] = &["kubernetes.default", "backend"];

/// The README's `helm install`.
#[derive(Debug)]
struct Install {
    release: String,
    namespace: String,
    sets: Vec<String>,
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// README.md and docs/*.md, by path relative to the repository.
fn docs() -> Vec<(String, String)> {
    let mut paths = vec![PathBuf::from(ROOT).join("README.md")];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(PathBuf::from(ROOT).join("docs"))
        .expect("docs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    pages.sort();
    paths.extend(pages);
    paths
        .into_iter()
        .map(|p| {
            let name = p.strip_prefix(ROOT).expect("in the repository").display();
            (
                name.to_string().trim_start_matches('/').to_owned(),
                read(&p),
            )
        })
        .collect()
}

/// The lines of the fenced code blocks of `text`, continuation lines (`\`) joined.
fn commands(text: &str) -> Vec<String> {
    let mut in_block = false;
    let mut out: Vec<String> = Vec::new();
    let mut continued = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continued = false;
            continue;
        }
        if !in_block {
            continue;
        }
        let (body, more) = match line.trim_end().strip_suffix('\\') {
            Some(body) => (body, true),
            None => (line, false),
        };
        match out.last_mut() {
            Some(last) if continued => {
                last.push(' ');
                last.push_str(body.trim());
            }
            _ => out.push(body.trim().to_owned()),
        }
        continued = more;
    }
    out
}

/// The one `helm install` of README.md, after the `kubectl create namespace` of its namespace.
fn readme_install(readme: &str) -> Install {
    let commands = commands(readme);
    let installs: Vec<usize> = (0..commands.len())
        .filter(|&i| commands[i].starts_with("helm install "))
        .collect();
    let [at] = installs[..] else {
        panic!("README.md: one `helm install`, found {}", installs.len());
    };
    let words: Vec<&str> = commands[at].split_whitespace().collect();
    let [_, _, release, chart, flags @ ..] = words.as_slice() else {
        panic!(
            "README.md: `helm install RELEASE CHART …`, found {:?}",
            commands[at]
        );
    };
    assert_eq!(
        *chart, "charts/apikey-operator",
        "README.md installs another chart"
    );
    let (mut namespace, mut sets) = (None, Vec::new());
    let mut flags = flags.iter();
    while let Some(flag) = flags.next() {
        let mut value = || {
            flags
                .next()
                .map(|v| v.trim_matches(['"', '\'']))
                .unwrap_or_default()
        };
        match *flag {
            "-n" | "--namespace" => namespace = Some(value().to_owned()),
            "--set" => sets.push(value().to_owned()),
            other => panic!(
                "README.md's helm install: {other:?} is a flag this test does not know; read it here"
            ),
        }
    }
    let namespace = namespace.expect("README.md's helm install names no namespace (-n)");
    let created = at
        .checked_sub(1)
        .and_then(|before| commands[before].strip_prefix("kubectl create namespace "));
    assert_eq!(
        created.map(str::trim),
        Some(namespace.as_str()),
        "README.md: `kubectl create namespace` of the namespace right before the helm install"
    );
    Install {
        release: release.to_string(),
        namespace,
        sets,
    }
}

fn render(helm: &PathBuf, install: &Install) -> Vec<Value> {
    let mut args = vec![
        "template",
        install.release.as_str(),
        CHART,
        "--namespace",
        install.namespace.as_str(),
    ];
    for set in &install.sets {
        args.extend(["--set", set.as_str()]);
    }
    serde_yaml::Deserializer::from_str(&run(helm, &args))
        .map(|d| Value::deserialize(d).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

/// What a port of a rendered Service leads to.
#[derive(Debug, Clone)]
struct Served {
    scheme: &'static str,
    /// The names of the certificate the operator makes for it; `None` when it makes none.
    cert_names: Option<Vec<String>>,
}

/// The rendered Services, `name.namespace` → port → what the pods serve there.
type Services = BTreeMap<String, BTreeMap<u64, Served>>;

/// The value of `--flag=value` in `args`.
fn flag<'a>(args: &[&'a str], flag: &str) -> Option<&'a str> {
    args.iter()
        .find_map(|a| a.strip_prefix(flag)?.strip_prefix('='))
}

/// What a container serves on `port`, from the address flag that binds it: the admin server is
/// plain HTTP, the webhook always HTTPS, the verifier HTTPS with a certificate given as files or
/// made by the operator (`--verify-cert-secret`, which makes it for `--verify-cert-service`).
fn served_on(port: u64, args: &[&str], all_args: &[Vec<&str>], namespace: &str) -> Served {
    let binds = |name: &str| flag(args, name).is_some_and(|a| a.ends_with(&format!(":{port}")));
    let cert_names = |service_flag: &str| {
        all_args
            .iter()
            .find_map(|a| flag(a, service_flag))
            .map(|svc| service_names(svc, namespace))
    };
    if binds("--admin-addr") {
        Served {
            scheme: "http",
            cert_names: None,
        }
    } else if binds("--webhook-addr") {
        Served {
            scheme: "https",
            cert_names: cert_names("--webhook-service"),
        }
    } else if binds("--verify-addr") {
        let tls = flag(args, "--verify-tls-cert").is_some()
            || flag(args, "--verify-cert-secret").is_some();
        match tls {
            true => Served {
                scheme: "https",
                cert_names: cert_names("--verify-cert-service"),
            },
            false => Served {
                scheme: "http",
                cert_names: None,
            },
        }
    } else {
        panic!("no address flag binds port {port} in {args:?}: read the new one here")
    }
}

fn services(docs: &[Value], namespace: &str) -> Services {
    let deployments = find(docs, "Deployment");
    let all_args: Vec<Vec<&str>> = deployments.iter().map(|d| args_of(d)).collect();
    let mut out = Services::new();
    for service in find(docs, "Service") {
        let name = service["metadata"]["name"].as_str().expect("name");
        let ns = service["metadata"]["namespace"]
            .as_str()
            .unwrap_or(namespace);
        let selector = service["spec"]["selector"].as_object().expect("selector");
        let selected: Vec<&Value> = deployments
            .iter()
            .copied()
            .filter(|d| {
                let labels = &d["spec"]["template"]["metadata"]["labels"];
                selector.iter().all(|(k, v)| labels[k] == *v)
            })
            .collect();
        assert!(
            !selected.is_empty(),
            "Service {name} selects no rendered pod"
        );
        let mut ports = BTreeMap::new();
        for port in service["spec"]["ports"].as_array().expect("ports") {
            let target = &port["targetPort"];
            let served: Vec<Served> = selected
                .iter()
                .map(|deployment| {
                    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
                    let number = container["ports"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|p| p["name"] == *target || p["containerPort"] == *target)
                        .and_then(|p| p["containerPort"].as_u64())
                        .unwrap_or_else(|| panic!("Service {name}: no container port {target}"));
                    served_on(number, &args_of(deployment), &all_args, ns)
                })
                .collect();
            assert!(
                served.windows(2).all(|w| w[0].scheme == w[1].scheme),
                "Service {name}: the pods behind it serve {served:?}"
            );
            ports.insert(port["port"].as_u64().expect("port"), served[0].clone());
        }
        out.insert(format!("{name}.{ns}"), ports);
    }
    out
}

/// An in-cluster address in a doc: `[scheme://]name.namespace.svc[.cluster.local][:port]`, or a
/// URL whose host is a bare name (a Service of the caller's namespace, whichever that is).
#[derive(Debug)]
struct Address {
    at: String,
    text: String,
    scheme: Option<String>,
    /// `name.namespace`, or the bare name.
    service: String,
    /// `name.namespace.svc[.cluster.local]`; `None` for a bare name.
    host: Option<String>,
    port: Option<u64>,
}

fn addresses(file: &str, text: &str) -> Vec<Address> {
    let svc = Regex::new(
        r"(?:\b(https?)://)?\b(([a-z0-9](?:[-a-z0-9]*[a-z0-9])?)\.([a-z0-9](?:[-a-z0-9]*[a-z0-9])?)\.svc(?:\.cluster\.local)?)\b(?::([0-9]+))?",
    )
    .expect("regex");
    let bare = Regex::new(r"\b(https?)://([a-z0-9][-a-z0-9_]*)(?::([0-9]+))?(?:[/\x22'\s;`)]|$)")
        .expect("regex");
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = format!("{file}:{}", n + 1);
        for c in svc.captures_iter(line) {
            out.push(Address {
                at: at.clone(),
                text: c[0].to_owned(),
                scheme: c.get(1).map(|m| m.as_str().to_owned()),
                service: format!("{}.{}", &c[3], &c[4]),
                host: Some(c[2].to_owned()),
                port: c.get(5).map(|m| m.as_str().parse().expect("port")),
            });
        }
        for c in bare.captures_iter(line) {
            if &c[2] == "localhost" {
                continue;
            }
            out.push(Address {
                at: at.clone(),
                text: c[0]
                    .trim_end_matches(|ch: char| !ch.is_ascii_alphanumeric())
                    .to_owned(),
                scheme: Some(c[1].to_owned()),
                service: c[2].to_owned(),
                host: None,
                port: c.get(3).map(|m| m.as_str().parse().expect("port")),
            });
        }
    }
    out
}

/// What is wrong with `address` against the chart installed as `install`, if anything. A wrong
/// namespace is reported and the rest checked against the Service of that name in the right one.
fn check(address: &Address, install: &Install, services: &Services) -> Vec<String> {
    let Some(host) = &address.host else {
        return vec![
            "a bare name: name the Service with its namespace (`<name>.<namespace>.svc`)".into(),
        ];
    };
    let mut wrong = Vec::new();
    let (name, namespace) = address.service.split_once('.').expect("name.namespace");
    let mut host = host.clone();
    if namespace != install.namespace {
        wrong.push(format!(
            "namespace {namespace}; README.md installs into {}",
            install.namespace
        ));
        host = host.replacen(
            &format!(".{namespace}."),
            &format!(".{}.", install.namespace),
            1,
        );
    }
    let Some(ports) = services.get(&format!("{name}.{}", install.namespace)) else {
        wrong.push(format!(
            "the chart as README.md installs it makes no Service {name}; it makes {:?}",
            services.keys().collect::<Vec<_>>()
        ));
        return wrong;
    };
    let default_port = match address.scheme.as_deref() {
        Some("https") => Some(443),
        Some(_) => Some(80),
        None if ports.len() == 1 => ports.keys().next().copied(),
        None => None,
    };
    let Some(port) = address.port.or(default_port) else {
        return wrong;
    };
    let Some(served) = ports.get(&port) else {
        wrong.push(format!(
            "port {port}; the Service has {:?}",
            ports.keys().collect::<Vec<_>>()
        ));
        return wrong;
    };
    if let Some(scheme) = &address.scheme
        && scheme != served.scheme
    {
        wrong.push(format!(
            "{scheme}; port {port} of the Service serves {}",
            served.scheme
        ));
    }
    if let Some(names) = &served.cert_names
        && !names.contains(&host)
    {
        wrong.push(format!(
            "the operator's certificate for port {port} is for {names:?}, not {host}"
        ));
    }
    wrong
}

/// Every problem of the docs' addresses, one line each.
fn problems(docs: &[(String, String)], install: &Install, services: &Services) -> Vec<String> {
    docs.iter()
        .flat_map(|(file, text)| addresses(file, text))
        .filter(|a| !NOT_THE_CHARTS.contains(&a.service.as_str()))
        .filter_map(|a| {
            let wrong = check(&a, install, services);
            (!wrong.is_empty()).then(|| format!("{}: `{}`: {}", a.at, a.text, wrong.join("; ")))
        })
        .collect()
}

fn readme() -> String {
    read(&PathBuf::from(ROOT).join("README.md"))
}

#[test]
fn the_docs_address_the_services_the_readme_installs() {
    let helm = require_helm!();
    let install = readme_install(&readme());
    let services = services(&render(&helm, &install), &install.namespace);
    let docs = docs();
    let found: usize = docs.iter().map(|(f, t)| addresses(f, t).len()).sum();
    assert!(
        found > 0,
        "no in-cluster address in the docs: the pattern finds nothing"
    );
    let problems = problems(&docs, &install, &services);
    assert!(
        problems.is_empty(),
        "in-cluster addresses that are not the chart's as README.md installs it ({} {} --set {:?}):\n{}",
        install.release,
        install.namespace,
        install.sets,
        problems.join("\n")
    );
}

/// The check finds what it looks for: the verifier's address as the chart serves it passes, and
/// any one part changed fails.
#[test]
fn the_address_check_refuses_another_namespace_service_port_or_scheme() {
    let helm = require_helm!();
    let install = readme_install(&readme());
    let services = services(&render(&helm, &install), &install.namespace);
    let (service, ports) = services
        .iter()
        .find(|(_, ports)| ports.values().any(|s| s.cert_names.is_some()))
        .expect("a Service served over the operator's certificate");
    let (port, served) = ports.iter().next().expect("a port");
    let (name, ns) = service.split_once('.').expect("name.namespace");
    let other = if served.scheme == "https" {
        "http"
    } else {
        "https"
    };
    let url = |scheme: &str, name: &str, ns: &str, suffix: &str, port: u64| {
        format!("`{scheme}://{name}.{ns}.svc{suffix}:{port}/x`\n")
    };
    let scheme = served.scheme;
    let good = [
        url(scheme, name, ns, "", *port),
        url(scheme, name, ns, ".cluster.local", *port),
    ];
    let bad = [
        url(other, name, ns, "", *port),
        url(scheme, name, "elsewhere", "", *port),
        url(scheme, &format!("{name}-x"), ns, "", *port),
        url(scheme, name, ns, "", port + 1),
        format!("`{scheme}://{name}:{port}/x`\n"),
    ];
    for text in good {
        let docs = [("good.md".to_owned(), text.clone())];
        assert_eq!(
            problems(&docs, &install, &services),
            Vec::<String>::new(),
            "{text}"
        );
    }
    for text in bad {
        let docs = [("bad.md".to_owned(), text.clone())];
        assert_eq!(problems(&docs, &install, &services).len(), 1, "{text}");
    }
}

/// README.md, docs/*.md and the chart's own texts give one command to apply the CRDs, the one
/// of README.md's "Install with Helm", and it applies them server-side.
#[test]
fn one_instruction_applies_the_crds() {
    let readme = readme();
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Install with Helm"))
        .expect("README.md has an \"Install with Helm\" section");
    let spans = Regex::new(r"`([^`\n]*kubectl apply[^`\n]*)`").expect("regex");
    let canonical: Vec<&str> = spans
        .captures_iter(section)
        .map(|c| c.get(1).expect("span").as_str())
        .filter(|c| c.contains("crds"))
        .collect();
    let [canonical] = canonical.as_slice() else {
        panic!(
            "README.md's \"Install with Helm\": one `… kubectl apply …` of the CRDs, found {canonical:?}"
        );
    };
    assert!(
        canonical.contains("--server-side"),
        "README.md: {canonical}"
    );

    let mut files = docs();
    for chart_file in ["Chart.yaml", "values.yaml", "templates/NOTES.txt"] {
        let path = PathBuf::from(CHART).join(chart_file);
        files.push((format!("charts/apikey-operator/{chart_file}"), read(&path)));
    }
    // A line that applies the CRDs with kubectl, or says to apply the CRD file.
    let applies = Regex::new(r"(?i)kubectl apply[^\n]*crd|crds[^\n]*kubectl apply|apply\s+`?crds/")
        .expect("regex");
    let mut found = 0;
    let mut others = Vec::new();
    for (file, text) in &files {
        for m in applies.find_iter(text) {
            found += 1;
            let line_no = text[..m.start()].matches('\n').count() + 1;
            let line = text.lines().nth(line_no - 1).unwrap_or("");
            if !line.contains(canonical) {
                others.push(format!("{file}:{line_no}: {}", line.trim()));
            }
        }
    }
    assert!(
        found > 1,
        "the pattern found only README.md's own instruction"
    );
    assert!(
        others.is_empty(),
        "instructions to apply the CRDs other than README.md's `{canonical}`:\n{}",
        others.join("\n")
    );
}
