//! kubectl 1.32's typed `create` commands, which send protobuf: each object must read back
//! as the JSON `kubectl apply` of the same object stores.

use super::*;

/// The stored object without what the server sets or what only one path adds (the
/// last-applied annotation, managedFields), and without nulls: Go decodes a JSON null into
/// the zero value and writes it back omitted (`creationTimestamp: null` in kubectl's JSON).
fn comparable(mut obj: Value) -> Value {
    fn strip_nulls(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.retain(|_, v| !v.is_null());
                m.values_mut().for_each(strip_nulls);
            }
            Value::Array(a) => a.iter_mut().for_each(strip_nulls),
            _ => {}
        }
    }
    if let Some(meta) = obj["metadata"].as_object_mut() {
        for server_set in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "generation",
            "managedFields",
            "namespace",
            "name",
        ] {
            meta.remove(server_set);
        }
        if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
            if annotations.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    strip_nulls(&mut obj);
    obj
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_typed_creates_store_what_apply_of_the_same_object_stores() {
    let (emu, _client) = start().await;
    let k = Kubectl::new(&emu);
    // (what to create, how to read it back), in namespace "pb" by protobuf and in "js" by
    // `kubectl apply` of the JSON kubectl itself prints for the same command.
    let commands: Vec<(Vec<&str>, &str)> = vec![
        (vec!["serviceaccount", "robot"], "serviceaccount/robot"),
        (
            vec![
                "secret",
                "generic",
                "s1",
                "--from-literal=user=admin",
                "--type=example.com/creds",
            ],
            "secret/s1",
        ),
        (
            vec![
                "secret",
                "docker-registry",
                "pull",
                "--docker-server=registry.example.com",
                "--docker-username=u",
                "--docker-password=p",
            ],
            "secret/pull",
        ),
        (
            vec![
                "configmap",
                "c1",
                "--from-literal=mode=fast",
                "--from-literal=level=3",
            ],
            "configmap/c1",
        ),
        (
            vec![
                "deployment",
                "web",
                "--image=nginx",
                "--port=80",
                "--replicas=2",
                "--",
                "nginx",
                "-g",
                "daemon off;",
            ],
            "deployment/web",
        ),
    ];
    // `kubectl create namespace` is itself one of the typed creates under test.
    for ns in ["pb", "js"] {
        let out = k.ok(&["create", "namespace", ns]).await;
        assert!(out.contains(&format!("namespace/{ns} created")), "{out}");
    }
    k.ok(&["create", "namespace", "team-a"]).await;
    let team_a: Value =
        serde_json::from_str(&k.ok(&["get", "namespace", "team-a", "-o", "json"]).await)
            .expect("namespace JSON");
    assert_eq!(team_a["status"]["phase"], "Active");

    for (args, object) in commands {
        // Flags go before `--`: what follows it is the container's command.
        let split = args.iter().position(|a| *a == "--").unwrap_or(args.len());
        let (generator, command) = args.split_at(split);
        let create = |flags: &[&'static str]| -> Vec<&str> {
            [&["create"][..], generator, flags, command].concat()
        };
        let out = k.ok(&create(&["-n", "pb"])).await;
        assert!(out.contains("created"), "kubectl {args:?}: {out}");

        let dry = k
            .ok(&create(&["-n", "js", "--dry-run=client", "-o", "json"]))
            .await;
        let manifest = k.write(&format!("{}.json", object.replace('/', "-")), &dry);
        k.ok(&["apply", "-n", "js", "-f", &manifest]).await;

        let read = |ns: &'static str| {
            let k = &k;
            async move {
                let got = k.ok(&["get", object, "-n", ns, "-o", "json"]).await;
                comparable(serde_json::from_str(&got).expect("object JSON"))
            }
        };
        let (by_protobuf, by_apply) = (read("pb").await, read("js").await);
        assert_eq!(by_protobuf, by_apply, "{object}");
    }

    // The fields kubectl filled arrived, not just equal empties on both sides.
    let web: Value = serde_json::from_str(
        &k.ok(&["get", "deployment", "web", "-n", "pb", "-o", "json"])
            .await,
    )
    .expect("deployment JSON");
    assert_eq!(web["spec"]["replicas"], 2);
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["command"],
        json!(["nginx", "-g", "daemon off;"])
    );
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["ports"],
        json!([{"containerPort": 80}])
    );
    let s1 = k
        .ok(&[
            "get",
            "secret",
            "s1",
            "-n",
            "pb",
            "-o",
            "jsonpath={.type} {.data.user}",
        ])
        .await;
    assert_eq!(s1, "example.com/creds YWRtaW4=");
}
