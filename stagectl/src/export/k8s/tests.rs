use serde_json::json;

use super::*;
use crate::manifest::tests::parse_ok;

fn export(src: &str) -> Export {
    convert(&parse_ok(src), &Inputs::default(), &Options::default())
}

fn doc<'a>(export: &'a Export, kind: &str, name: &str) -> &'a Value {
    &export.documents.iter().find(|d| d.kind == kind && d.name == name).unwrap_or_else(|| panic!("no {kind} {name}")).value
}

fn container(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]["containers"][0]
}

fn warned(export: &Export, needle: &str) -> usize {
    export.warnings.iter().filter(|w| w.contains(needle)).count()
}

const SHOP: &str = r#"
[stack]
name = "shop"

[services.db]
image = "stagectl/postgres:15"
ready = { postgres = 5432, timeout = "30s" }

[services.migrate]
image = "shop-migrate:1"
job = true
depends_on = ["db"]

[services.app]
image = "shop:1"
ports = ["8080:80"]
depends_on = ["db", "migrate"]
env = { API_KEY = "${secret:api_key}", MODE = "staging" }
entrypoint = ["/bin/app"]
command = ["--port", "80"]
working_dir = "/srv"
user = "1000:1000"
ready = { http = "/healthz", port = 80, interval = "2s", retries = 5, timeout = "20s" }
"#;

#[test]
fn a_long_running_service_is_a_deployment_with_its_service_and_probes() {
    let e = export(SHOP);
    let app = doc(&e, "Deployment", "app");
    let c = container(app);
    assert_eq!(c["image"], "shop:1");
    assert_eq!(c["command"], json!(["/bin/app"]));
    assert_eq!(c["args"], json!(["--port", "80"]));
    assert_eq!(c["workingDir"], "/srv");
    assert_eq!(c["securityContext"], json!({ "runAsUser": 1000, "runAsGroup": 1000 }));
    assert_eq!(c["readinessProbe"]["httpGet"], json!({ "path": "/healthz", "port": 80 }));
    assert_eq!(c["readinessProbe"]["periodSeconds"], 2);
    assert_eq!(c["readinessProbe"]["failureThreshold"], 5);
    assert_eq!(c["startupProbe"]["failureThreshold"], 10, "20 s of 2 s periods");
    assert_eq!(app["metadata"]["labels"]["app.kubernetes.io/part-of"], "shop");
    assert_eq!(app["spec"]["selector"]["matchLabels"], json!({ STACK_LABEL: "shop", SERVICE_LABEL: "app" }));
    let service = doc(&e, "Service", "app");
    assert_eq!(service["spec"]["type"], "ClusterIP");
    assert_eq!(service["spec"]["ports"][0]["port"], 80);
    let published = doc(&e, "Service", "app-published");
    assert_eq!(published["spec"]["type"], "NodePort");
    assert_eq!(published["spec"]["ports"][0], json!({ "name": "tcp-8080", "port": 8080, "targetPort": 80, "protocol": "TCP" }));
    let db = container(doc(&e, "Deployment", "db"));
    assert_eq!(db["readinessProbe"]["exec"]["command"][0], "pg_isready");
}

#[test]
fn published_ports_can_be_a_load_balancer() {
    let options = Options { published: Published::LoadBalancer, ..Options::default() };
    let e = convert(&parse_ok(SHOP), &Inputs::default(), &options);
    assert_eq!(doc(&e, "Service", "app-published")["spec"]["type"], "LoadBalancer");
}

#[test]
fn secrets_are_placeholders_unless_asked_for() {
    let e = export(SHOP);
    let yaml = e.to_yaml();
    assert!(!yaml.contains("hunter2"), "{yaml}");
    assert_eq!(doc(&e, "Secret", "shop-secrets")["stringData"]["app.API_KEY"], SECRET_PLACEHOLDER);
    let env = &container(doc(&e, "Deployment", "app"))["env"];
    assert_eq!(env[0], json!({ "name": "API_KEY", "valueFrom": { "secretKeyRef": { "name": "shop-secrets", "key": "app.API_KEY" } } }));
    assert_eq!(env[1], json!({ "name": "MODE", "value": "staging" }));
    let options = Options { include_secret_values: true, ..Options::default() };
    let with = convert(&parse_ok(SHOP), &Inputs::default(), &options);
    assert!(with.to_yaml().contains("hunter2"));
}

#[test]
fn jobs_run_once_and_dependents_wait_for_them_and_for_services() {
    let e = export(SHOP);
    let job = doc(&e, "Job", "migrate");
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
    assert!(job["spec"]["template"]["spec"]["initContainers"][0]["command"][2].as_str().unwrap().contains("nc -z -w 2 db 5432"));
    let app = &doc(&e, "Deployment", "app")["spec"]["template"]["spec"];
    let init = app["initContainers"].as_array().unwrap();
    assert_eq!(init.len(), 2);
    assert_eq!(init[1]["args"], json!(["wait", "--for=condition=complete", "job/migrate", "--timeout=30m"]));
    assert_eq!(app["serviceAccountName"], "shop-job-waiter");
    let role = doc(&e, "Role", "shop-job-waiter");
    assert_eq!(role["rules"][0]["verbs"], json!(["get", "list", "watch"]));
    doc(&e, "RoleBinding", "shop-job-waiter");
    // What pods refer to comes first in the stream.
    let kinds: Vec<&str> = e.documents.iter().map(|d| d.kind).collect();
    let first_workload = kinds.iter().position(|k| *k == "Deployment" || *k == "Job").unwrap();
    assert!(kinds[..first_workload].contains(&"ServiceAccount"), "{kinds:?}");
}

#[test]
fn own_named_volumes_make_a_stateful_set_and_shared_ones_a_claim() {
    let e = export(
        r#"
[stack]
name = "vols"
[services.db]
image = "postgres:15"
volumes = ["pgdata:/var/lib/postgresql/data", "shared:/shared"]
ready = { tcp = 5432 }
[services.worker]
image = "worker:1"
volumes = ["shared:/data:ro"]
tmpfs = ["/run:size=64m"]
shm_size = "256m"
"#,
    );
    let db = doc(&e, "StatefulSet", "db");
    assert_eq!(db["spec"]["serviceName"], "db");
    assert_eq!(db["spec"]["volumeClaimTemplates"][0]["metadata"]["name"], "pgdata");
    assert_eq!(db["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"], "1Gi");
    let claim = doc(&e, "PersistentVolumeClaim", "vols-shared");
    assert_eq!(claim["spec"]["accessModes"], json!(["ReadWriteOnce"]));
    assert_eq!(warned(&e, "volume shared: shared by db, worker"), 1);
    let worker = &doc(&e, "Deployment", "worker")["spec"]["template"]["spec"];
    let volumes = worker["volumes"].as_array().unwrap();
    assert!(volumes.contains(&json!({ "name": "shared", "persistentVolumeClaim": { "claimName": "vols-shared" } })));
    assert!(volumes.contains(&json!({ "name": "tmpfs-0", "emptyDir": { "medium": "Memory", "sizeLimit": "64Mi" } })));
    assert!(volumes.contains(&json!({ "name": "dshm", "emptyDir": { "medium": "Memory", "sizeLimit": "268435456" } })));
    assert_eq!(worker["containers"][0]["volumeMounts"][0], json!({ "name": "shared", "mountPath": "/data", "readOnly": true }));
}

#[test]
fn readiness_kinds_map_and_a_log_pattern_is_reported() {
    let e = export(
        r#"
[stack]
name = "probes"
[services.maria]
image = "mariadb:10.11"
ready = { mysql = 3306 }
[services.tool]
image = "tool:1"
ready = { exec = ["test", "-f", "/ready"] }
[services.logger]
image = "logger:1"
ready = { log = "started" }
"#,
    );
    assert_eq!(container(doc(&e, "Deployment", "maria"))["readinessProbe"]["tcpSocket"]["port"], 3306);
    assert_eq!(container(doc(&e, "Deployment", "tool"))["readinessProbe"]["exec"]["command"], json!(["test", "-f", "/ready"]));
    let logger = doc(&e, "Deployment", "logger");
    assert!(container(logger).get("readinessProbe").is_none());
    assert_eq!(logger["spec"]["template"]["metadata"]["annotations"]["org.stagectl.ready"], "log /started/ (timeout 1m)");
    assert_eq!(warned(&e, "service logger: ready.log /started/ not carried over"), 1);
}

#[test]
fn fields_without_an_equivalent_are_reported_once_per_service() {
    let e = export(
        r#"
[stack]
name = "odd"
[services.a]
image = "a:1"
user = "postgres"
ulimits = { nofile = 1024, nproc = 64 }
volumes = ["./conf:/etc/a:ro"]
extra_hosts = ["gw:host-gateway", "db.local:10.0.0.5"]
restart = "on-failure:3"
init = true
stop_grace_period = "30s"
cap_add = ["NET_ADMIN"]
labels = { "com.example.team" = "core" }
"#,
    );
    for needle in [
        "service a: user `postgres`",
        "service a: ulimits",
        "service a: volumes not carried over: bind mount",
        "service a: extra_hosts `gw:host-gateway`",
        "service a: restart",
    ] {
        assert_eq!(warned(&e, needle), 1, "{needle}: {:#?}", e.warnings);
    }
    let pod = &doc(&e, "Deployment", "a")["spec"]["template"];
    assert_eq!(pod["spec"]["hostAliases"], json!([{ "ip": "10.0.0.5", "hostnames": ["db.local"] }]));
    assert_eq!(pod["spec"]["shareProcessNamespace"], true);
    assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 30);
    assert_eq!(pod["spec"]["containers"][0]["securityContext"]["capabilities"]["add"], json!(["NET_ADMIN"]));
    assert_eq!(pod["metadata"]["annotations"]["com.example.team"], "core");
}

fn file(name: &str, bytes: Vec<u8>) -> InputFile {
    InputFile { shown: format!("fixtures/{name}"), name: name.to_string(), size: bytes.len() as u64, bytes }
}

#[test]
fn fixture_files_go_into_a_config_map_except_masked_and_oversized_ones() {
    let manifest = parse_ok(
        r#"
[stack]
name = "fx"
[services.db]
image = "postgres:15"
ready = { postgres = 5432 }
[fixtures.db]
files = ["fixtures/*"]
mask = { "users.email" = "email" }
"#,
    );
    let mut inputs = Inputs::default();
    inputs.fixtures.insert(
        "db".into(),
        vec![
            file("01_products.csv", b"sku\nA\n".to_vec()),
            file("02_users.csv", b"email\nreal@person.example\n".to_vec()),
            file("03_big.sql", vec![b'-'; CONFIGMAP_DATA_LIMIT + 1]),
            file("04 spaced name.sql", b"SELECT 1;".to_vec()),
        ],
    );
    let e = convert(&manifest, &inputs, &Options::default());
    let map = doc(&e, "ConfigMap", "db-fixtures");
    assert_eq!(map["data"], json!({ "01_products.csv": "sku\nA\n" }));
    assert!(!e.to_yaml().contains("real@person.example"));
    assert_eq!(warned(&e, "fixtures/02_users.csv left out of the ConfigMap: table `users` is masked"), 1);
    assert_eq!(warned(&e, "fixtures/03_big.sql left out of the ConfigMap"), 1);
    assert_eq!(warned(&e, "fixtures/04 spaced name.sql left out of the ConfigMap: a ConfigMap key"), 1);
    let db = &doc(&e, "Deployment", "db")["spec"]["template"]["spec"];
    assert_eq!(db["volumes"][0]["configMap"]["name"], "db-fixtures");
}

#[test]
fn native_migrations_become_a_job_that_dependents_wait_for() {
    let manifest = parse_ok(
        r#"
[stack]
name = "mig"
[services.db]
image = "postgres:15"
env = { POSTGRES_PASSWORD = "${secret:api_key}" }
ready = { postgres = 5432 }
[services.app]
image = "app:1"
depends_on = ["db"]
[migrations.db]
dir = "migrations"
"#,
    );
    let mut inputs = Inputs::default();
    inputs.migrations.insert("db".into(), vec![file("001_init.up.sql", b"CREATE TABLE t (id int);".to_vec())]);
    let e = convert(&manifest, &inputs, &Options::default());
    assert_eq!(doc(&e, "ConfigMap", "db-migrations")["data"]["001_init.up.sql"], "CREATE TABLE t (id int);");
    let job = &doc(&e, "Job", "db-migrations")["spec"]["template"]["spec"]["containers"][0];
    assert!(job["env"].as_array().unwrap().contains(
        &json!({ "name": "PGPASSWORD", "valueFrom": { "secretKeyRef": { "name": "mig-secrets", "key": "db.POSTGRES_PASSWORD" } } })
    ));
    let init = &doc(&e, "Deployment", "app")["spec"]["template"]["spec"]["initContainers"];
    assert_eq!(init[1]["args"][2], "job/db-migrations");
    assert!(!e.to_yaml().contains("hunter2"));
}

#[test]
fn every_document_is_valid_yaml_with_a_separator() {
    let text = export(SHOP).to_yaml();
    use saphyr::LoadableYamlNode;
    let docs = saphyr::Yaml::load_from_str(&text).expect("valid YAML stream");
    assert_eq!(docs.len(), export(SHOP).documents.len());
    for (name, body) in export(SHOP).files() {
        assert!(name.ends_with(".yaml") && body.starts_with("# Generated"), "{name}");
    }
}

#[test]
fn a_service_named_like_a_generated_object_is_reported() {
    let e = export(
        r#"
[stack]
name = "clash"
[services.web]
image = "web:1"
ports = ["80:80"]
[services.web-published]
image = "other:1"
ready = { tcp = 80 }
"#,
    );
    assert_eq!(warned(&e, "Service web-published: two documents have this name"), 1, "{:#?}", e.warnings);
}
