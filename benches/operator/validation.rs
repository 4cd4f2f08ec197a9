//! Part of the scale section: what the CRDs' CEL rules (`x-kubernetes-validations`, among them
//! the ones that answer a mistyped duration or expiration in words) cost the API server on
//! every create. The same ApiTokens are created, with no operator running, on two emulators:
//! one serving the CRDs as generated, one serving them with every rule removed. Rounds
//! alternate between the two; the median ratio of the create times is the figure.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

use super::*;

pub(crate) async fn validation_cost(n: usize, rounds: usize) -> Vec<Figure> {
    let with_rules = stack().await;
    let without_rules = stack().await;
    strip_rules(&without_rules.client).await;
    let namespaces = (n / 100).clamp(1, 100);
    for s in [&with_rules, &without_rules] {
        create_namespaces(&s.client, (0..namespaces).map(|i| format!("bench-{i}"))).await;
    }
    let here = std::process::id();
    let (mut times, mut cpus) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    for round in 0..rounds {
        for (side, s) in [&with_rules, &without_rules].into_iter().enumerate() {
            let cpu = cpu_time(here);
            times[side].push(create_round(&s.client, round, n, namespaces).await);
            cpus[side].push(cpu_time(here).saturating_sub(cpu));
        }
    }
    let median = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort();
        v[v.len() / 2]
    };
    let ratios = |v: &[Vec<Duration>; 2]| {
        let mut r: Vec<f64> = (v[0].iter().zip(&v[1]))
            .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
            .collect();
        r.sort_by(f64::total_cmp);
        percentile(&r, 0.5)
    };
    let label = |what: &str| format!("{what} ({n} ApiTokens, median of {rounds} rounds)");
    vec![
        figure(
            "scale",
            label("creates with the CRDs' CEL rules"),
            ms(median(&times[0])),
            format!("{} (the same CRDs without rules)", ms(median(&times[1]))),
            format!("{:.2}", ratios(&times)),
            "-",
        ),
        figure(
            "scale",
            label("CPU of those creates (API server and client)"),
            ms(median(&cpus[0])),
            format!("{} (without rules)", ms(median(&cpus[1]))),
            format!("{:.2}", ratios(&cpus)),
            "-",
        ),
    ]
}

/// Creates the tokens `r<round>-<i>` as the scale section does (a lifetime and a rotation
/// period, so the duration and expiration rules run), `CONCURRENCY` in flight.
async fn create_round(client: &Client, round: usize, n: usize, namespaces: usize) -> Duration {
    concurrently(n, |i| {
        let api: Api<ApiToken> =
            Api::namespaced(client.clone(), &format!("bench-{}", i % namespaces));
        async move {
            let t: ApiToken = serde_json::from_value(json!({
                "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiToken",
                "metadata": {"name": format!("r{round}-{i}")},
                "spec": {"apiKeyRef": {"name": "key"}, "expiration": {"lifetime": "90d"},
                         "rotation": {"every": "30d", "gracePeriod": "1h"}}
            }))
            .expect("token");
            api.create(&PostParams::default(), &t)
                .await
                .expect("token create");
        }
    })
    .await
}

/// Replaces both CRDs with copies that have no `x-kubernetes-validations`.
async fn strip_rules(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in apikey_operator::api::crds() {
        let name = crd.name_any();
        let mut stored = serde_json::to_value(api.get(&name).await.expect("CRD")).expect("json");
        remove_rules(&mut stored);
        let stripped: CustomResourceDefinition = serde_json::from_value(stored).expect("CRD");
        api.replace(&name, &PostParams::default(), &stripped)
            .await
            .expect("replace CRD");
    }
}

fn remove_rules(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("x-kubernetes-validations");
            map.values_mut().for_each(remove_rules);
        }
        Value::Array(items) => items.iter_mut().for_each(remove_rules),
        _ => {}
    }
}
