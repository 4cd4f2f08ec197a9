//! `apps/v1` Deployment and DaemonSet: every field but the pod template's unconverted ones
//! (see `pod`). StatefulSet is not decoded (its volumeClaimTemplates are PersistentVolumeClaims).

use k8s_pb::api::apps::v1::{
    DaemonSet, DaemonSetCondition, DaemonSetSpec, DaemonSetStatus, DaemonSetUpdateStrategy,
    Deployment, DeploymentCondition, DeploymentSpec, DeploymentStatus, DeploymentStrategy,
    RollingUpdateDaemonSet, RollingUpdateDeployment,
};
use serde_json::Value;

use super::go_json::{GoJson, Unconverted, int_or_string, time_or_null};
use super::meta::{label_selector, object_meta};
use super::pod::pod_template_spec;

pub(super) fn deployment(d: Deployment) -> Result<Value, Unconverted> {
    let Deployment {
        metadata,
        spec,
        status,
    } = d;
    let DeploymentSpec {
        replicas,
        selector,
        template,
        strategy,
        min_ready_seconds,
        revision_history_limit,
        paused,
        progress_deadline_seconds,
    } = spec.unwrap_or_default();
    let DeploymentStrategy {
        r#type,
        rolling_update,
    } = strategy.unwrap_or_default();
    let rolling_update = rolling_update.map(|r| {
        let RollingUpdateDeployment {
            max_unavailable,
            max_surge,
        } = r;
        GoJson::new()
            .ptr("maxUnavailable", max_unavailable.map(int_or_string))
            .ptr("maxSurge", max_surge.map(int_or_string))
            .end()
    });
    let spec = GoJson::new()
        .ptr("replicas", replicas)
        // `selector` is a pointer without omitempty: nil is written as null.
        .always("selector", selector.map(label_selector))
        .always("template", pod_template_spec(template, "spec.template")?)
        .always(
            "strategy",
            GoJson::new()
                .omitempty("type", r#type)
                .ptr("rollingUpdate", rolling_update)
                .end(),
        )
        .omitempty("minReadySeconds", min_ready_seconds)
        .ptr("revisionHistoryLimit", revision_history_limit)
        .omitempty("paused", paused)
        .ptr("progressDeadlineSeconds", progress_deadline_seconds)
        .end();
    Ok(GoJson::new()
        .always("metadata", object_meta(metadata))
        .always("spec", spec)
        .always("status", deployment_status(status.unwrap_or_default()))
        .end())
}

fn deployment_status(s: DeploymentStatus) -> Value {
    let DeploymentStatus {
        observed_generation,
        replicas,
        updated_replicas,
        ready_replicas,
        available_replicas,
        unavailable_replicas,
        terminating_replicas,
        conditions,
        collision_count,
    } = s;
    let conditions: Value = conditions
        .into_iter()
        .map(|c| {
            let DeploymentCondition {
                r#type,
                status,
                last_update_time,
                last_transition_time,
                reason,
                message,
            } = c;
            GoJson::new()
                .always("type", r#type.unwrap_or_default())
                .always("status", status.unwrap_or_default())
                .always("lastUpdateTime", time_or_null(last_update_time))
                .always("lastTransitionTime", time_or_null(last_transition_time))
                .omitempty("reason", reason)
                .omitempty("message", message)
                .end()
        })
        .collect();
    GoJson::new()
        .omitempty("observedGeneration", observed_generation)
        .omitempty("replicas", replicas)
        .omitempty("updatedReplicas", updated_replicas)
        .omitempty("readyReplicas", ready_replicas)
        .omitempty("availableReplicas", available_replicas)
        .omitempty("unavailableReplicas", unavailable_replicas)
        .ptr("terminatingReplicas", terminating_replicas)
        .nonempty("conditions", conditions)
        .ptr("collisionCount", collision_count)
        .end()
}

pub(super) fn daemon_set(d: DaemonSet) -> Result<Value, Unconverted> {
    let DaemonSet {
        metadata,
        spec,
        status,
    } = d;
    let DaemonSetSpec {
        selector,
        template,
        update_strategy,
        min_ready_seconds,
        revision_history_limit,
    } = spec.unwrap_or_default();
    let DaemonSetUpdateStrategy {
        r#type,
        rolling_update,
    } = update_strategy.unwrap_or_default();
    let rolling_update = rolling_update.map(|r| {
        let RollingUpdateDaemonSet {
            max_unavailable,
            max_surge,
        } = r;
        GoJson::new()
            .ptr("maxUnavailable", max_unavailable.map(int_or_string))
            .ptr("maxSurge", max_surge.map(int_or_string))
            .end()
    });
    let spec = GoJson::new()
        .always("selector", selector.map(label_selector))
        .always("template", pod_template_spec(template, "spec.template")?)
        .always(
            "updateStrategy",
            GoJson::new()
                .omitempty("type", r#type)
                .ptr("rollingUpdate", rolling_update)
                .end(),
        )
        .omitempty("minReadySeconds", min_ready_seconds)
        .ptr("revisionHistoryLimit", revision_history_limit)
        .end();
    Ok(GoJson::new()
        .always("metadata", object_meta(metadata))
        .always("spec", spec)
        .always("status", daemon_set_status(status.unwrap_or_default()))
        .end())
}

fn daemon_set_status(s: DaemonSetStatus) -> Value {
    let DaemonSetStatus {
        current_number_scheduled,
        number_misscheduled,
        desired_number_scheduled,
        number_ready,
        observed_generation,
        updated_number_scheduled,
        number_available,
        number_unavailable,
        collision_count,
        conditions,
    } = s;
    let conditions: Value = conditions
        .into_iter()
        .map(|c| {
            let DaemonSetCondition {
                r#type,
                status,
                last_transition_time,
                reason,
                message,
            } = c;
            GoJson::new()
                .always("type", r#type.unwrap_or_default())
                .always("status", status.unwrap_or_default())
                .always("lastTransitionTime", time_or_null(last_transition_time))
                .omitempty("reason", reason)
                .omitempty("message", message)
                .end()
        })
        .collect();
    // The four counts without omitempty are always written, 0 included.
    GoJson::new()
        .always(
            "currentNumberScheduled",
            current_number_scheduled.unwrap_or(0),
        )
        .always("numberMisscheduled", number_misscheduled.unwrap_or(0))
        .always(
            "desiredNumberScheduled",
            desired_number_scheduled.unwrap_or(0),
        )
        .always("numberReady", number_ready.unwrap_or(0))
        .omitempty("observedGeneration", observed_generation)
        .omitempty("updatedNumberScheduled", updated_number_scheduled)
        .omitempty("numberAvailable", number_available)
        .omitempty("numberUnavailable", number_unavailable)
        .ptr("collisionCount", collision_count)
        .nonempty("conditions", conditions)
        .end()
}
