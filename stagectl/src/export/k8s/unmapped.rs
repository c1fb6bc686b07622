//! The manifest fields that do not carry over to Kubernetes, one warning line each, naming the
//! service or section. `Service` is destructured whole: a new field does not compile until
//! someone decides whether it maps.

use crate::manifest::{format_duration, Manifest, Restart, Service, VolumeSource, DEFAULT_PORT_RANGE, DEFAULT_SNAPSHOT_BUDGET};

pub fn service_level(stack: &str, service: &Service, warnings: &mut Vec<String>) {
    let Service {
        name,
        image: _,
        build,
        // Mapped in `workload`: command/args, env (Secret refs), container ports and Services,
        // init containers, Job, probes, workingDir, securityContext, annotations, emptyDirs,
        // hostAliases, shareProcessNamespace, terminationGracePeriodSeconds.
        command: _,
        entrypoint: _,
        env: _,
        ports,
        volumes,
        depends_on: _,
        job,
        // `probe` maps it (log and healthcheck probes warn there): interval → periodSeconds,
        // attempt_timeout → timeoutSeconds, retries → failureThreshold, timeout → a startupProbe
        // (which also covers start_period: failures before the first success do not count).
        ready: _,
        working_dir: _,
        user: _,
        // Merged into `env` by the parser.
        env_files: _,
        labels: _,
        tmpfs: _,
        ulimits,
        shm_size: _,
        cap_add: _,
        cap_drop: _,
        extra_hosts: _,
        init: _,
        stop_grace_period: _,
        // Services outside the selected profiles are not in the manifest.
        profiles: _,
        // Init containers wait for every dependency; `started` waits for it to be ready.
        conditions: _,
        restart,
    } = service;
    let mut warn = |field: &str, why: String| warnings.push(format!("service {name}: {field} not carried over: {why}"));
    if let Some(build) = build {
        let tag = super::image_of(stack, service);
        let context = build.context.file_name().map(|c| c.to_string_lossy().to_string()).unwrap_or_default();
        let how = if service.image.is_some() { "tag it" } else { "set `image` in the manifest" };
        warn("build", format!("Kubernetes builds no images: build `{context}`, push it to a registry the cluster pulls from and {how} (exported as {tag})"));
    }
    for p in ports {
        if let Some(ip) = &p.host_ip {
            warn(
                "ports",
                format!("the bind address {ip} of port {}: the published Service listens on every node address", p.container_port),
            );
        }
    }
    for v in volumes {
        if let VolumeSource::Bind(path) = &v.source {
            warn(
                "volumes",
                format!(
                    "bind mount {} → {}: host paths do not exist on cluster nodes; bake the files into the image or use a ConfigMap",
                    path.display(),
                    v.target
                ),
            );
        }
    }
    if !ulimits.is_empty() {
        let names: Vec<&str> = ulimits.keys().map(String::as_str).collect();
        warn("ulimits", format!("Kubernetes sets no per-container ulimits ({}); the node's limits apply", names.join(", ")));
    }
    if let (Restart::OnFailure(_), false) = (restart, *job) {
        warn(
            "restart",
            format!(
                "`{}`: Deployments and StatefulSets restart their containers whatever the exit (restartPolicy Always)",
                restart.describe()
            ),
        );
    }
}

pub fn manifest_level(manifest: &Manifest, warnings: &mut Vec<String>) {
    for name in &manifest.inactive {
        warnings.push(format!("service {name}: not exported: none of its profiles is selected (--profile)"));
    }
    for check in &manifest.smoke {
        warnings.push(format!(
            "checks.smoke `{}`: not carried over: smoke checks run from stagectl against one host (`stagectl check`); run them as your cluster's tests",
            check.name
        ));
    }
    if manifest.schedule.rebuild.is_some() {
        warnings.push("schedule.rebuild: not carried over: the daemon's scheduled rebuilds need stagectl's host".to_string());
    }
    if let Some(ttl) = manifest.schedule.idle_ttl {
        warnings.push(format!(
            "schedule.idle_ttl: not carried over ({}): the daemon's idle teardown needs stagectl's host",
            format_duration(ttl)
        ));
    }
    if manifest.port_range != DEFAULT_PORT_RANGE {
        warnings
            .push("stack.port_range: not carried over: `auto` host ports are published through the Service of each service".to_string());
    }
    if manifest.snapshot_budget != DEFAULT_SNAPSHOT_BUDGET {
        warnings.push("stack.snapshot_budget: not carried over: there are no fixture snapshots in Kubernetes".to_string());
    }
    for f in &manifest.fixtures {
        let s = &f.service;
        if f.snapshot {
            warnings.push(format!("fixtures.{s}: snapshot not carried over: snapshots are images committed on one Docker host"));
        }
        if !f.sensitive.is_empty() {
            warnings
                .push(format!("fixtures.{s}: sensitive not carried over: `stagectl fixtures scan` checks a running container on the host"));
        }
        if !f.after.is_empty() {
            warnings.push(format!("fixtures.{s}: after not carried over: fixtures are not loaded in Kubernetes"));
        }
    }
    for m in &manifest.migrations {
        warnings.push(format!(
            "migrations.{}: the lint, the lock probe (lock_budget {}) and the round trip of `stagectl check migrations` not carried over: they are checks run before deploying, not part of it",
            m.service,
            format_duration(m.lock_budget)
        ));
    }
}
