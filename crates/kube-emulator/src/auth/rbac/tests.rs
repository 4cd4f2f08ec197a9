//! The rule matcher and the escalation comparison as tables, with results as kube-apiserver
//! gives them.

use super::*;
use crate::auth::attributes::Attributes;

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> Rule {
    let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
    Rule {
        verbs: v(verbs),
        api_groups: v(groups),
        resources: v(resources),
        resource_names: v(names),
        non_resource_urls: Vec::new(),
    }
}

fn urls(verbs: &[&str], urls: &[&str]) -> Rule {
    let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
    Rule {
        verbs: v(verbs),
        non_resource_urls: v(urls),
        ..Rule::default()
    }
}

#[test]
fn resource_rules_match_as_rbac_does() {
    let get = |res: &str, name: &str| Attributes::resource("get", "", res, "ns", name);
    let cases: Vec<(Rule, Attributes, bool, &str)> = vec![
        (
            rule(&["get"], &[""], &["secrets"], &[]),
            get("secrets", "s"),
            true,
            "plain",
        ),
        (
            rule(&["list"], &[""], &["secrets"], &[]),
            get("secrets", "s"),
            false,
            "other verb",
        ),
        (
            rule(&["*"], &[""], &["secrets"], &[]),
            get("secrets", "s"),
            true,
            "verb *",
        ),
        (
            rule(&["get"], &["apps"], &["secrets"], &[]),
            get("secrets", "s"),
            false,
            "other group",
        ),
        (
            rule(&["get"], &["*"], &["secrets"], &[]),
            get("secrets", "s"),
            true,
            "group *",
        ),
        (
            rule(&["get"], &[""], &["*"], &[]),
            get("secrets", "s"),
            true,
            "resource *",
        ),
        (
            rule(&["get"], &[""], &["*"], &[]),
            get("serviceaccounts/token", "s"),
            true,
            "* covers subresources",
        ),
        (
            rule(&["get"], &[""], &["serviceaccounts"], &[]),
            get("serviceaccounts/token", "s"),
            false,
            "resource is not its subresource",
        ),
        (
            rule(&["get"], &[""], &["serviceaccounts/token"], &[]),
            get("serviceaccounts/token", "s"),
            true,
            "exact subresource",
        ),
        (
            rule(&["get"], &[""], &["*/token"], &[]),
            get("serviceaccounts/token", "s"),
            true,
            "*/sub",
        ),
        (
            rule(&["get"], &[""], &["*/status"], &[]),
            get("serviceaccounts/token", "s"),
            false,
            "*/other",
        ),
        (
            rule(&["get"], &[""], &["serviceaccounts/*"], &[]),
            get("serviceaccounts/token", "s"),
            false,
            "res/* is literal",
        ),
        (
            rule(&["get"], &[""], &["serviceaccounts/token"], &[]),
            get("serviceaccounts", "s"),
            false,
            "subresource rule on resource",
        ),
        (
            rule(&["get"], &[""], &["secrets"], &["s"]),
            get("secrets", "s"),
            true,
            "named",
        ),
        (
            rule(&["get"], &[""], &["secrets"], &["t"]),
            get("secrets", "s"),
            false,
            "other name",
        ),
        (
            rule(&["list"], &[""], &["secrets"], &["s"]),
            Attributes::resource("list", "", "secrets", "ns", ""),
            false,
            "named rule, unnamed list",
        ),
        (
            rule(&["create"], &[""], &["secrets"], &["s"]),
            Attributes::resource("create", "", "secrets", "ns", ""),
            false,
            "named rule, create",
        ),
        (
            rule(&["impersonate"], &[""], &["users"], &["bob"]),
            Attributes::resource("impersonate", "", "users", "", "bob"),
            true,
            "custom verb",
        ),
        (
            rule(&["get"], &["*"], &["*"], &[]),
            Attributes::non_resource("get", "/version"),
            false,
            "resource rule, path request",
        ),
    ];
    for (r, a, want, why) in cases {
        assert_eq!(rule_allows(&r, &a), want, "{why}");
    }
}

#[test]
fn non_resource_rules_match_paths_and_prefixes() {
    let cases = [
        (urls(&["get"], &["/version"]), "/version", true),
        (urls(&["get"], &["/version"]), "/version/", false),
        (urls(&["get"], &["/apis/*"]), "/apis/apps/v1", true),
        (urls(&["get"], &["/apis/*"]), "/apis", false),
        (urls(&["get"], &["*"]), "/anything", true),
        (urls(&["post"], &["*"]), "/anything", false),
    ];
    for (r, path, want) in cases {
        assert_eq!(
            rule_allows(&r, &Attributes::non_resource("get", path)),
            want,
            "{path}"
        );
    }
    let resource_rule = rule(&["*"], &["*"], &["*"], &[]);
    assert!(!rule_allows(
        &resource_rule,
        &Attributes::non_resource("get", "/api")
    ));
}

#[test]
fn covers_breaks_rules_down_as_upstream() {
    let owner = vec![
        rule(&["get", "list"], &[""], &["secrets"], &[]),
        rule(&["*"], &["apps"], &["*/status"], &[]),
        rule(&["get"], &[""], &["configmaps"], &["a"]),
        urls(&["get"], &["/healthz*"]),
    ];
    let cases: Vec<(Rule, usize)> = vec![
        (rule(&["get"], &[""], &["secrets"], &[]), 0),
        (rule(&["get", "delete"], &[""], &["secrets"], &[]), 1),
        (rule(&["patch"], &["apps"], &["deployments/status"], &[]), 0),
        (rule(&["patch"], &["apps"], &["deployments"], &[]), 1),
        (rule(&["get"], &[""], &["configmaps"], &["a"]), 0),
        (rule(&["get"], &[""], &["configmaps"], &["a", "b"]), 1),
        (rule(&["get"], &[""], &["configmaps"], &[]), 1),
        (urls(&["get"], &["/healthz/ping"]), 0),
        (urls(&["get", "post"], &["/healthz"]), 1),
    ];
    for (servant, missing) in cases {
        assert_eq!(
            uncovered(&owner, std::slice::from_ref(&servant)).len(),
            missing,
            "{servant:?}"
        );
    }
    assert!(uncovered(&full_authority(), &owner).is_empty());
}

#[test]
fn missing_rules_print_compact_as_go() {
    let missing = uncovered(
        &[],
        &[rule(&["delete", "get"], &["apps"], &["deployments"], &[])],
    );
    assert_eq!(
        compact_missing(&missing),
        ["{APIGroups:[\"apps\"], Resources:[\"deployments\"], Verbs:[\"delete\" \"get\"]}"]
    );
}
