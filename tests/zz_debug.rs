mod harness;
use harness::*;
use apikey_operator::api::ApiToken;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

#[tokio::test]
async fn debug_status_apply() {
    let cluster = Cluster::start("team").await;
    let token: ApiToken = apply_yaml("apiVersion: apikeys.dev/v1alpha1\nkind: ApiToken\nmetadata: {name: t}\nspec:\n  apiKeyRef: {name: k}\n");
    let api = cluster.api::<ApiToken>("team");
    api.create(&PostParams::default(), &token).await.unwrap();
    let body = json!({"apiVersion":"apikeys.dev/v1alpha1","kind":"ApiToken","metadata":{"name":"t"},
      "status":{"tokenId":"abc","pending":{"hash":"sha256:00","reason":"Issue","startedAt":"2026-01-01T00:00:00Z"}}});
    let r = api.patch_status("t", &PatchParams::apply("x").force(), &Patch::Apply(&body)).await;
    println!("{r:#?}");
    let body = json!({"apiVersion":"apikeys.dev/v1alpha1","kind":"ApiToken","metadata":{"name":"t"},
      "status":{"tokenId":"abc","conditions":[{"type":"Ready","status":"False","reason":"X","message":"m","lastTransitionTime":"2026-01-01T00:00:00Z"}]}});
    let r = api.patch_status("t", &PatchParams::apply("x").force(), &Patch::Apply(&body)).await;
    println!("{r:#?}");
}
