//! `PodTemplateSpec` of the apps kinds, converted in part. What kubectl's generators fill
//! (`create deployment`: containers with name, image, command, ports) and the plain scalar
//! and reference fields around it are converted; the nested unions and structs listed as
//! not converted are not, and a body that sets one of them is refused (415 naming the
//! field) rather than stored without it. Each message is destructured in full, so a field
//! a newer k8s-pb adds fails to compile until it is placed in one list or the other.
//!
//! PodSpec, converted: containers, initContainers, restartPolicy,
//! terminationGracePeriodSeconds, activeDeadlineSeconds, dnsPolicy, nodeSelector,
//! serviceAccountName, serviceAccount, automountServiceAccountToken, nodeName, hostNetwork,
//! hostPID, hostIPC, shareProcessNamespace, imagePullSecrets, hostname, subdomain,
//! schedulerName, tolerations, priorityClassName, priority, runtimeClassName,
//! enableServiceLinks, preemptionPolicy, setHostnameAsFQDN, hostUsers, hostnameOverride.
//! Not converted: volumes, ephemeralContainers, securityContext, affinity, hostAliases,
//! dnsConfig, readinessGates, overhead, topologySpreadConstraints, os, schedulingGates,
//! resourceClaims, resources, workloadRef.
//!
//! Container, converted: name, image, command, args, workingDir, ports, envFrom, env
//! (value, valueFrom fieldRef/resourceFieldRef/configMapKeyRef/secretKeyRef), resources
//! (limits, requests), restartPolicy, terminationMessagePath, terminationMessagePolicy,
//! imagePullPolicy, stdin, stdinOnce, tty. Not converted: resources.claims, resizePolicy,
//! restartPolicyRules, volumeMounts, volumeDevices, liveness/readiness/startupProbe,
//! lifecycle, securityContext, env[].valueFrom.fileKeyRef.

use k8s_pb::api::core::v1::{
    ConfigMapEnvSource, ConfigMapKeySelector, Container, ContainerPort, EnvFromSource, EnvVar,
    EnvVarSource, ObjectFieldSelector, PodSpec, PodTemplateSpec, ResourceFieldSelector,
    ResourceRequirements, SecretEnvSource, SecretKeySelector, Toleration,
};
use serde_json::Value;

use super::core_v1::local_object_reference;
use super::go_json::{
    GoJson, Unconverted, join, or_zero, quantity, quantity_map, refuse_unconverted, string_map,
    strings,
};
use super::meta::object_meta;

/// `template` (a non-pointer struct: always written).
pub(super) fn pod_template_spec(
    t: Option<PodTemplateSpec>,
    path: &str,
) -> Result<Value, Unconverted> {
    let PodTemplateSpec { metadata, spec } = t.unwrap_or_default();
    Ok(GoJson::new()
        .always("metadata", object_meta(metadata))
        .always(
            "spec",
            pod_spec(spec.unwrap_or_default(), &join(path, "spec"))?,
        )
        .end())
}

fn pod_spec(s: PodSpec, path: &str) -> Result<Value, Unconverted> {
    let PodSpec {
        volumes,
        init_containers,
        containers,
        ephemeral_containers,
        restart_policy,
        termination_grace_period_seconds,
        active_deadline_seconds,
        dns_policy,
        node_selector,
        service_account_name,
        service_account,
        automount_service_account_token,
        node_name,
        host_network,
        host_pid,
        host_ipc,
        share_process_namespace,
        security_context,
        image_pull_secrets,
        hostname,
        subdomain,
        affinity,
        scheduler_name,
        tolerations,
        host_aliases,
        priority_class_name,
        priority,
        dns_config,
        readiness_gates,
        runtime_class_name,
        enable_service_links,
        preemption_policy,
        overhead,
        topology_spread_constraints,
        set_hostname_as_fqdn,
        os,
        host_users,
        scheduling_gates,
        resource_claims,
        resources,
        hostname_override,
        workload_ref,
    } = s;
    refuse_unconverted(
        path,
        &[
            ("volumes", !volumes.is_empty()),
            ("ephemeralContainers", !ephemeral_containers.is_empty()),
            ("securityContext", security_context.is_some()),
            ("affinity", affinity.is_some()),
            ("hostAliases", !host_aliases.is_empty()),
            ("dnsConfig", dns_config.is_some()),
            ("readinessGates", !readiness_gates.is_empty()),
            ("overhead", !overhead.is_empty()),
            (
                "topologySpreadConstraints",
                !topology_spread_constraints.is_empty(),
            ),
            ("os", os.is_some()),
            ("schedulingGates", !scheduling_gates.is_empty()),
            ("resourceClaims", !resource_claims.is_empty()),
            ("resources", resources.is_some()),
            ("workloadRef", workload_ref.is_some()),
        ],
    )?;
    let containers_at = |list: Vec<Container>, name: &str| -> Result<Value, Unconverted> {
        list.into_iter()
            .enumerate()
            .map(|(i, c)| container(c, &format!("{}[{i}]", join(path, name))))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::from)
    };
    Ok(GoJson::new()
        .nonempty(
            "initContainers",
            containers_at(init_containers, "initContainers")?,
        )
        .always_list("containers", containers_at(containers, "containers")?)
        .omitempty("restartPolicy", restart_policy)
        .ptr(
            "terminationGracePeriodSeconds",
            termination_grace_period_seconds,
        )
        .ptr("activeDeadlineSeconds", active_deadline_seconds)
        .omitempty("dnsPolicy", dns_policy)
        .nonempty("nodeSelector", string_map(node_selector))
        .omitempty("serviceAccountName", service_account_name)
        .omitempty("serviceAccount", service_account)
        .ptr(
            "automountServiceAccountToken",
            automount_service_account_token,
        )
        .omitempty("nodeName", node_name)
        .omitempty("hostNetwork", host_network)
        .omitempty("hostPID", host_pid)
        .omitempty("hostIPC", host_ipc)
        .ptr("shareProcessNamespace", share_process_namespace)
        .nonempty(
            "imagePullSecrets",
            image_pull_secrets
                .into_iter()
                .map(local_object_reference)
                .collect(),
        )
        .omitempty("hostname", hostname)
        .omitempty("subdomain", subdomain)
        .omitempty("schedulerName", scheduler_name)
        .nonempty(
            "tolerations",
            tolerations.into_iter().map(toleration).collect(),
        )
        .omitempty("priorityClassName", priority_class_name)
        .ptr("priority", priority)
        .ptr("runtimeClassName", runtime_class_name)
        .ptr("enableServiceLinks", enable_service_links)
        .ptr("preemptionPolicy", preemption_policy)
        .ptr("setHostnameAsFQDN", set_hostname_as_fqdn)
        .ptr("hostUsers", host_users)
        .ptr("hostnameOverride", hostname_override)
        .end())
}

fn container(c: Container, path: &str) -> Result<Value, Unconverted> {
    let Container {
        name,
        image,
        command,
        args,
        working_dir,
        ports,
        env_from,
        env,
        resources,
        resize_policy,
        restart_policy,
        restart_policy_rules,
        volume_mounts,
        volume_devices,
        liveness_probe,
        readiness_probe,
        startup_probe,
        lifecycle,
        termination_message_path,
        termination_message_policy,
        image_pull_policy,
        security_context,
        stdin,
        stdin_once,
        tty,
    } = c;
    refuse_unconverted(
        path,
        &[
            ("resizePolicy", !resize_policy.is_empty()),
            ("restartPolicyRules", !restart_policy_rules.is_empty()),
            ("volumeMounts", !volume_mounts.is_empty()),
            ("volumeDevices", !volume_devices.is_empty()),
            ("livenessProbe", liveness_probe.is_some()),
            ("readinessProbe", readiness_probe.is_some()),
            ("startupProbe", startup_probe.is_some()),
            ("lifecycle", lifecycle.is_some()),
            ("securityContext", security_context.is_some()),
        ],
    )?;
    let env = env
        .into_iter()
        .enumerate()
        .map(|(i, e)| env_var(e, &format!("{path}.env[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(GoJson::new()
        .always("name", or_zero(name))
        .omitempty("image", image)
        .nonempty("command", strings(command))
        .nonempty("args", strings(args))
        .omitempty("workingDir", working_dir)
        .nonempty("ports", ports.into_iter().map(container_port).collect())
        .nonempty(
            "envFrom",
            env_from.into_iter().map(env_from_source).collect(),
        )
        .nonempty("env", Value::from(env))
        .always(
            "resources",
            resource_requirements(resources.unwrap_or_default(), &join(path, "resources"))?,
        )
        .ptr("restartPolicy", restart_policy)
        .omitempty("terminationMessagePath", termination_message_path)
        .omitempty("terminationMessagePolicy", termination_message_policy)
        .omitempty("imagePullPolicy", image_pull_policy)
        .omitempty("stdin", stdin)
        .omitempty("stdinOnce", stdin_once)
        .omitempty("tty", tty)
        .end())
}

fn container_port(p: ContainerPort) -> Value {
    let ContainerPort {
        name,
        host_port,
        container_port,
        protocol,
        host_ip,
    } = p;
    GoJson::new()
        .omitempty("name", name)
        .omitempty("hostPort", host_port)
        .always("containerPort", or_zero(container_port))
        .omitempty("protocol", protocol)
        .omitempty("hostIP", host_ip)
        .end()
}

fn resource_requirements(r: ResourceRequirements, path: &str) -> Result<Value, Unconverted> {
    let ResourceRequirements {
        limits,
        requests,
        claims,
    } = r;
    refuse_unconverted(path, &[("claims", !claims.is_empty())])?;
    Ok(GoJson::new()
        .nonempty("limits", quantity_map(limits))
        .nonempty("requests", quantity_map(requests))
        .end())
}

fn env_var(e: EnvVar, path: &str) -> Result<Value, Unconverted> {
    let EnvVar {
        name,
        value,
        value_from,
    } = e;
    let value_from = match value_from {
        Some(source) => Some(env_var_source(source, &join(path, "valueFrom"))?),
        None => None,
    };
    Ok(GoJson::new()
        .always("name", or_zero(name))
        .omitempty("value", value)
        .ptr("valueFrom", value_from)
        .end())
}

fn env_var_source(s: EnvVarSource, path: &str) -> Result<Value, Unconverted> {
    let EnvVarSource {
        field_ref,
        resource_field_ref,
        config_map_key_ref,
        secret_key_ref,
        file_key_ref,
    } = s;
    refuse_unconverted(path, &[("fileKeyRef", file_key_ref.is_some())])?;
    let field_ref = field_ref.map(|f| {
        let ObjectFieldSelector {
            api_version,
            field_path,
        } = f;
        GoJson::new()
            .omitempty("apiVersion", api_version)
            .always("fieldPath", or_zero(field_path))
            .end()
    });
    let resource_field_ref = resource_field_ref.map(|r| {
        let ResourceFieldSelector {
            container_name,
            resource,
            divisor,
        } = r;
        GoJson::new()
            .omitempty("containerName", container_name)
            .always("resource", or_zero(resource))
            // A non-pointer Quantity: Go writes its zero as "0".
            .always(
                "divisor",
                divisor.map_or_else(|| Value::from("0"), quantity),
            )
            .end()
    });
    let config_map_key_ref = config_map_key_ref.map(|r| {
        let ConfigMapKeySelector {
            local_object_reference: reference,
            key,
            optional,
        } = r;
        key_selector(reference.and_then(|r| r.name), key, optional)
    });
    let secret_key_ref = secret_key_ref.map(|r| {
        let SecretKeySelector {
            local_object_reference: reference,
            key,
            optional,
        } = r;
        key_selector(reference.and_then(|r| r.name), key, optional)
    });
    Ok(GoJson::new()
        .ptr("fieldRef", field_ref)
        .ptr("resourceFieldRef", resource_field_ref)
        .ptr("configMapKeyRef", config_map_key_ref)
        .ptr("secretKeyRef", secret_key_ref)
        .end())
}

/// `{ConfigMap,Secret}KeySelector`: the inlined LocalObjectReference, key, optional.
fn key_selector(name: Option<String>, key: Option<String>, optional: Option<bool>) -> Value {
    GoJson::new()
        .omitempty("name", name)
        .always("key", or_zero(key))
        .ptr("optional", optional)
        .end()
}

fn env_from_source(e: EnvFromSource) -> Value {
    let EnvFromSource {
        prefix,
        config_map_ref,
        secret_ref,
    } = e;
    let config_map_ref = config_map_ref.map(|r| {
        let ConfigMapEnvSource {
            local_object_reference: reference,
            optional,
        } = r;
        env_source(reference.and_then(|r| r.name), optional)
    });
    let secret_ref = secret_ref.map(|r| {
        let SecretEnvSource {
            local_object_reference: reference,
            optional,
        } = r;
        env_source(reference.and_then(|r| r.name), optional)
    });
    GoJson::new()
        .omitempty("prefix", prefix)
        .ptr("configMapRef", config_map_ref)
        .ptr("secretRef", secret_ref)
        .end()
}

fn env_source(name: Option<String>, optional: Option<bool>) -> Value {
    GoJson::new()
        .omitempty("name", name)
        .ptr("optional", optional)
        .end()
}

fn toleration(t: Toleration) -> Value {
    let Toleration {
        key,
        operator,
        value,
        effect,
        toleration_seconds,
    } = t;
    GoJson::new()
        .omitempty("key", key)
        .omitempty("operator", operator)
        .omitempty("value", value)
        .omitempty("effect", effect)
        .ptr("tolerationSeconds", toleration_seconds)
        .end()
}
