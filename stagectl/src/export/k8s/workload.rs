//! One service → its workload (Deployment, StatefulSet or Job) and its Services.

use serde_json::{json, Map, Value};

use super::{dns_label, probe, Context, Document, Export, Published};
use crate::manifest::{Condition, Protocol, Service, VolumeSource};

/// Where the fixture files of a data service are mounted (for loading them by hand).
pub const FIXTURES_MOUNT: &str = "/stagectl/fixtures";

pub fn service(cx: &mut Context<'_>, service: &Service, export: &mut Export) {
    let name = service.name.as_str();
    let warnings = &mut export.warnings;
    let mut annotations = Map::new();
    let mut container = Map::new();
    container.insert("name".into(), json!(name));
    container.insert("image".into(), json!(super::image_of(&cx.manifest.stack, service)));
    if let Some(entrypoint) = &service.entrypoint {
        container.insert("command".into(), json!(entrypoint));
    }
    if let Some(command) = &service.command {
        container.insert("args".into(), json!(command));
    }
    if let Some(dir) = &service.working_dir {
        container.insert("workingDir".into(), json!(dir));
    }
    let env = env(cx, service);
    if !env.is_empty() {
        container.insert("env".into(), Value::Array(env));
    }
    let ports: Vec<Value> = cx
        .ports
        .get(name)
        .into_iter()
        .flatten()
        .map(|(port, proto)| json!({ "name": port_name(*port, *proto), "containerPort": port, "protocol": protocol(*proto) }))
        .collect();
    if !ports.is_empty() && !service.job {
        container.insert("ports".into(), Value::Array(ports));
    }
    if let Some(ready) = &service.ready {
        annotations.insert("org.stagectl.ready".into(), json!(probe::describe(ready)));
        if let Some((readiness, startup)) = probe::probes(name, ready, warnings) {
            container.insert("readinessProbe".into(), readiness);
            container.insert("startupProbe".into(), startup);
        }
    }
    if let Some(security) = security_context(service, warnings) {
        container.insert("securityContext".into(), security);
    }

    let (mounts, volumes, claim_templates) = volumes(cx, service);
    if !mounts.is_empty() {
        container.insert("volumeMounts".into(), Value::Array(mounts));
    }

    let mut pod = Map::new();
    let (init, waits_for_jobs) = init_containers(cx, service, warnings);
    if !init.is_empty() {
        pod.insert("initContainers".into(), Value::Array(init));
    }
    pod.insert("containers".into(), json!([Value::Object(container)]));
    if !volumes.is_empty() {
        pod.insert("volumes".into(), Value::Array(volumes));
    }
    if waits_for_jobs {
        pod.insert("serviceAccountName".into(), json!(cx.waiter_account()));
    }
    if service.init {
        // The pause container becomes PID 1 and reaps zombies, as Docker's --init does.
        pod.insert("shareProcessNamespace".into(), json!(true));
    }
    if let Some(grace) = service.stop_grace_period {
        pod.insert("terminationGracePeriodSeconds".into(), json!(grace.as_secs()));
    }
    let aliases = host_aliases(service, warnings);
    if !aliases.is_empty() {
        pod.insert("hostAliases".into(), Value::Array(aliases));
    }
    for (key, value) in &service.labels {
        annotations.insert(key.clone(), json!(value));
    }
    let conditions: Vec<String> = service.depends_on.iter().map(|d| format!("{d} ({})", service.condition(d).as_str())).collect();
    if !conditions.is_empty() {
        annotations.insert("org.stagectl.depends-on".into(), json!(conditions.join(", ")));
    }

    let mut pod_metadata = json!({ "labels": cx.labels(Some(name)) });
    if !annotations.is_empty() {
        pod_metadata["annotations"] = Value::Object(annotations);
    }
    if service.job {
        pod.insert("restartPolicy".into(), json!("Never"));
        let job = json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": cx.metadata(name, Some(name)),
            // A job runs once, as on Docker: a failure is the result, not a reason to retry.
            "spec": { "backoffLimit": 0, "template": { "metadata": pod_metadata, "spec": Value::Object(pod) } },
        });
        export.documents.push(Document { kind: "Job", name: name.to_string(), value: job });
        return;
    }
    let template = json!({ "metadata": pod_metadata, "spec": Value::Object(pod) });
    let workload = if claim_templates.is_empty() {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": cx.metadata(name, Some(name)),
            // One replica and no overlap: a staging service, like its one container on Docker.
            "spec": { "replicas": 1, "strategy": { "type": "Recreate" }, "selector": { "matchLabels": cx.selector(name) }, "template": template },
        })
    } else {
        json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": cx.metadata(name, Some(name)),
            "spec": {
                "replicas": 1,
                "serviceName": name,
                "selector": { "matchLabels": cx.selector(name) },
                "template": template,
                "volumeClaimTemplates": claim_templates,
            },
        })
    };
    let kind = if claim_templates.is_empty() { "Deployment" } else { "StatefulSet" };
    export.documents.push(Document { kind, name: name.to_string(), value: workload });
    services(cx, service, export);
}

fn env(cx: &Context<'_>, service: &Service) -> Vec<Value> {
    service
        .env
        .iter()
        .map(|(var, value)| {
            if value.secret {
                let key = Context::secret_key(&service.name, var);
                json!({ "name": var, "valueFrom": { "secretKeyRef": { "name": cx.secret_name(), "key": key } } })
            } else {
                json!({ "name": var, "value": value.value })
            }
        })
        .collect()
}

pub fn port_name(port: u16, proto: Protocol) -> String {
    format!("{}-{port}", proto.as_str())
}

pub fn protocol(proto: Protocol) -> &'static str {
    match proto {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    }
}

/// `user`, `cap_add`, `cap_drop` → the container's securityContext.
fn security_context(service: &Service, warnings: &mut Vec<String>) -> Option<Value> {
    let mut security = Map::new();
    if let Some(user) = &service.user {
        let (uid, gid) = user.split_once(':').map_or((user.as_str(), None), |(u, g)| (u, Some(g)));
        let numeric = |s: &str| if s == "root" { Some(0) } else { s.parse::<i64>().ok() };
        match (numeric(uid), gid.map(numeric)) {
            (Some(uid), None) => {
                security.insert("runAsUser".into(), json!(uid));
            }
            (Some(uid), Some(Some(gid))) => {
                security.insert("runAsUser".into(), json!(uid));
                security.insert("runAsGroup".into(), json!(gid));
            }
            _ => warnings.push(format!(
                "service {}: user `{user}` not carried over: Kubernetes needs numeric ids (runAsUser); write `user = \"UID[:GID]\"`",
                service.name
            )),
        }
    }
    if !service.cap_add.is_empty() || !service.cap_drop.is_empty() {
        let mut caps = Map::new();
        if !service.cap_add.is_empty() {
            caps.insert("add".into(), json!(service.cap_add));
        }
        if !service.cap_drop.is_empty() {
            caps.insert("drop".into(), json!(service.cap_drop));
        }
        security.insert("capabilities".into(), Value::Object(caps));
    }
    (!security.is_empty()).then_some(Value::Object(security))
}

/// `extra_hosts` → hostAliases (grouped by address; `host-gateway` has no equivalent).
fn host_aliases(service: &Service, warnings: &mut Vec<String>) -> Vec<Value> {
    let mut by_ip: std::collections::BTreeMap<&str, Vec<&str>> = std::collections::BTreeMap::new();
    for (host, ip) in &service.extra_hosts {
        if ip.parse::<std::net::IpAddr>().is_ok() {
            by_ip.entry(ip.as_str()).or_default().push(host.as_str());
        } else {
            warnings.push(format!(
                "service {}: extra_hosts `{host}:{ip}` not carried over: a pod has no host gateway; give an IP address",
                service.name
            ));
        }
    }
    by_ip.into_iter().map(|(ip, hosts)| json!({ "ip": ip, "hostnames": hosts })).collect()
}

/// `(volumeMounts, volumes, volumeClaimTemplates)`: named volumes of this service alone become
/// claim templates of a StatefulSet (a long-running service) or claims (a job); shared ones the
/// stack's claims; tmpfs and shm_size memory-backed emptyDirs; bind mounts do not carry over.
fn volumes(cx: &Context<'_>, service: &Service) -> (Vec<Value>, Vec<Value>, Vec<Value>) {
    let (mut mounts, mut volumes, mut templates) = (Vec::new(), Vec::new(), Vec::new());
    for v in &service.volumes {
        let VolumeSource::Named(volume) = &v.source else { continue };
        let name = dns_label(volume);
        let mut mount = json!({ "name": name, "mountPath": v.target });
        if v.read_only {
            mount["readOnly"] = json!(true);
        }
        mounts.push(mount);
        if cx.own_volume(service, volume) {
            if !templates.iter().any(|t: &Value| t["metadata"]["name"] == json!(name)) {
                templates.push(json!({
                    "metadata": { "name": name, "labels": cx.labels(Some(&service.name)) },
                    "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": cx.options.volume_size } } },
                }));
            }
        } else if !volumes.iter().any(|x: &Value| x["name"] == json!(name)) {
            volumes.push(json!({ "name": name, "persistentVolumeClaim": { "claimName": cx.claim_name(volume) } }));
        }
    }
    for (i, (target, options)) in service.tmpfs.iter().enumerate() {
        let name = format!("tmpfs-{i}");
        let mut empty = json!({ "medium": "Memory" });
        if let Some(size) = options.split(',').find_map(|o| o.strip_prefix("size=")) {
            empty["sizeLimit"] = json!(quantity(size));
        }
        mounts.push(json!({ "name": name, "mountPath": target }));
        volumes.push(json!({ "name": name, "emptyDir": empty }));
    }
    if let Some(bytes) = service.shm_size {
        mounts.push(json!({ "name": "dshm", "mountPath": "/dev/shm" }));
        volumes.push(json!({ "name": "dshm", "emptyDir": { "medium": "Memory", "sizeLimit": bytes.to_string() } }));
    }
    if let Some(map) = cx.fixture_maps.get(&service.name) {
        mounts.push(json!({ "name": "stagectl-fixtures", "mountPath": FIXTURES_MOUNT, "readOnly": true }));
        volumes.push(json!({ "name": "stagectl-fixtures", "configMap": { "name": map } }));
    }
    (mounts, volumes, templates)
}

/// A Docker size (`64m`, `1g`, `1024`) as a Kubernetes quantity (`64Mi`, `1Gi`, `1024`).
fn quantity(size: &str) -> String {
    let lower = size.to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    match lower[digits.len()..].trim_end_matches('b') {
        "k" => format!("{digits}Ki"),
        "m" => format!("{digits}Mi"),
        "g" => format!("{digits}Gi"),
        _ => digits.to_string(),
    }
}

impl Context<'_> {
    /// Whether `volume` is mounted by `service` alone, a long-running service (a claim template).
    pub fn own_volume(&self, service: &Service, volume: &str) -> bool {
        !service.job && self.volume_users.get(volume).is_some_and(|users| users.len() == 1)
    }

    /// The PersistentVolumeClaim of a volume shared by several services (or mounted by a job),
    /// named as the Docker volume is.
    pub fn claim_name(&self, volume: &str) -> String {
        dns_label(&format!("{}-{volume}", self.manifest.stack))
    }
}

/// Init containers that hold the pod until its dependencies are there: a dependency's Service
/// accepting TCP connections (it routes only to ready pods), a job's completion, and the Job
/// applying a dependency's migrations.
/// Also says whether one of them waits for a Job (the pod then runs as the waiter account).
fn init_containers(cx: &mut Context<'_>, service: &Service, warnings: &mut Vec<String>) -> (Vec<Value>, bool) {
    let mut init = Vec::new();
    let mut waits_for_jobs = false;
    for dependency in &service.depends_on {
        let Some(dep) = cx.manifest.service(dependency) else { continue };
        if dep.job {
            init.push(wait_for_job(cx, dependency));
            waits_for_jobs = true;
            continue;
        }
        match cx.tcp_port(dependency).filter(|_| cx.reachable(dep)) {
            Some(port) => init.push(json!({
                "name": format!("wait-for-{dependency}"),
                "image": cx.options.wait_image,
                "command": ["sh", "-c", format!("until nc -z -w 2 {dependency} {port}; do echo waiting for {dependency}:{port}; sleep 2; done")],
            })),
            None => warnings.push(format!(
                "service {}: depends_on `{dependency}` not carried over: {dependency} exposes no TCP port to wait on, so {} may start first",
                service.name, service.name
            )),
        }
        if service.condition(dependency) != Condition::Started {
            if let Some(job) = cx.migration_jobs.get(dependency).cloned() {
                init.push(wait_for_job(cx, &job));
                waits_for_jobs = true;
            }
        }
    }
    (init, waits_for_jobs)
}

fn wait_for_job(cx: &mut Context<'_>, job: &str) -> Value {
    cx.awaited_jobs.insert(job.to_string());
    json!({
        "name": format!("wait-for-{job}"),
        "image": cx.options.kubectl_image,
        "args": ["wait", "--for=condition=complete", format!("job/{job}"), "--timeout=30m"],
    })
}

/// The ClusterIP Service named like the service (the Docker network's host name), and for
/// published host ports a `<name>-published` Service of the chosen type.
fn services(cx: &Context<'_>, service: &Service, export: &mut Export) {
    let name = service.name.as_str();
    if !cx.reachable(service) {
        return;
    }
    let ports: Vec<Value> = cx.ports[name]
        .iter()
        .map(|(port, proto)| json!({ "name": port_name(*port, *proto), "port": port, "targetPort": port, "protocol": protocol(*proto) }))
        .collect();
    export.documents.push(Document {
        kind: "Service",
        name: name.to_string(),
        value: json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": cx.metadata(name, Some(name)),
            "spec": { "type": "ClusterIP", "selector": cx.selector(name), "ports": ports },
        }),
    });
    if service.ports.is_empty() {
        return;
    }
    let mut published = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for p in &service.ports {
        // The Service listens on the host port, so a load balancer keeps the address's port.
        let port = p.host_port.unwrap_or(p.container_port);
        if !seen.insert((port, p.protocol)) {
            continue;
        }
        published.push(
            json!({ "name": port_name(port, p.protocol), "port": port, "targetPort": p.container_port, "protocol": protocol(p.protocol) }),
        );
    }
    let kind = match cx.options.published {
        Published::NodePort => "NodePort",
        Published::LoadBalancer => "LoadBalancer",
    };
    let public = format!("{name}-published");
    export.documents.push(Document {
        kind: "Service",
        name: public.clone(),
        value: json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": cx.metadata(&public, Some(name)),
            "spec": { "type": kind, "selector": cx.selector(name), "ports": published },
        }),
    });
}
