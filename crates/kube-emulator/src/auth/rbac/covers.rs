//! The escalation comparison (`validation.Covers`): which pieces of a rule set another does not
//! cover, and how escalation errors print them.

use std::collections::BTreeSet;

use super::Rule;
use super::rule::has;

/// One group × resource × verb (× name) or URL × verb piece of a rule (`BreakdownRule`).
fn breakdown(rule: &Rule) -> Vec<Rule> {
    let mut out = Vec::new();
    for g in &rule.api_groups {
        for r in &rule.resources {
            for v in &rule.verbs {
                let one = |names: Vec<String>| Rule {
                    verbs: vec![v.clone()],
                    api_groups: vec![g.clone()],
                    resources: vec![r.clone()],
                    resource_names: names,
                    non_resource_urls: Vec::new(),
                };
                if rule.resource_names.is_empty() {
                    out.push(one(Vec::new()));
                } else {
                    out.extend(rule.resource_names.iter().map(|n| one(vec![n.clone()])));
                }
            }
        }
    }
    for u in &rule.non_resource_urls {
        for v in &rule.verbs {
            out.push(Rule {
                verbs: vec![v.clone()],
                non_resource_urls: vec![u.clone()],
                ..Rule::default()
            });
        }
    }
    out
}

fn has_all(set: &[String], items: &[String]) -> bool {
    items.iter().all(|i| has(set, i))
}

fn rule_covers(owner: &Rule, sub: &Rule) -> bool {
    let verbs = has(&owner.verbs, "*") || has_all(&owner.verbs, &sub.verbs);
    let groups = has(&owner.api_groups, "*") || has_all(&owner.api_groups, &sub.api_groups);
    let resources = has(&owner.resources, "*")
        || sub.resources.iter().all(|r| {
            has(&owner.resources, r)
                || r.split_once('/')
                    .is_some_and(|(_, s)| has(&owner.resources, &format!("*/{s}")))
        });
    let urls = sub.non_resource_urls.iter().all(|p| {
        owner.non_resource_urls.iter().any(|o| {
            o == p
                || o.strip_suffix('*')
                    .is_some_and(|pre| p.starts_with(pre.trim_end_matches('*')))
        })
    });
    let names = owner.resource_names.is_empty()
        || (!sub.resource_names.is_empty() && has_all(&owner.resource_names, &sub.resource_names));
    verbs && groups && resources && names && urls
}

/// The pieces of `servant` that `owner` does not cover (`validation.Covers`); empty when
/// holding `owner` is enough to grant `servant`.
pub fn uncovered(owner: &[Rule], servant: &[Rule]) -> Vec<Rule> {
    servant
        .iter()
        .flat_map(breakdown)
        .filter(|sub| !owner.iter().any(|o| rule_covers(o, sub)))
        .collect()
}

/// Missing rules merged per group/resource/name with their verbs (`CompactRules`), printed
/// and sorted as escalation errors list them.
pub fn compact_missing(missing: &[Rule]) -> Vec<String> {
    let mut merged: Vec<Rule> = Vec::new();
    for m in missing {
        let simple = m.non_resource_urls.is_empty()
            && m.api_groups.len() == 1
            && m.resources.len() == 1
            && m.resource_names.len() <= 1;
        if let Some(existing) = merged.iter_mut().find(|e| {
            simple
                && e.non_resource_urls.is_empty()
                && e.api_groups == m.api_groups
                && e.resources == m.resources
                && e.resource_names == m.resource_names
        }) {
            for v in &m.verbs {
                if !has(&existing.verbs, v) {
                    existing.verbs.push(v.clone());
                }
            }
        } else {
            merged.push(m.clone());
        }
    }
    let set: BTreeSet<String> = merged.iter().map(Rule::compact_string).collect();
    set.into_iter().collect()
}

/// Rules that grant everything (`cluster-admin`): what using an aggregationRule needs.
pub fn full_authority() -> Vec<Rule> {
    let all = || vec!["*".to_owned()];
    vec![
        Rule {
            verbs: all(),
            api_groups: all(),
            resources: all(),
            ..Rule::default()
        },
        Rule {
            verbs: all(),
            non_resource_urls: all(),
            ..Rule::default()
        },
    ]
}
