//! `/metrics`: the daemon's state in the Prometheus text exposition format 0.0.4.
//!
//! Everything is a gauge: the values are read from the run history and the last status
//! snapshot, not counted by this process, so they can go down (history pruned, checks rerun).

use std::fmt::Write as _;

use super::host::HostMetrics;

/// What the daemon knows at scrape time. Every sample carries a `stack` label.
#[derive(Clone, Debug, Default)]
pub struct MetricsInput {
    pub stack: String,
    /// Finished deployment runs in the history, and how many of them succeeded.
    pub deploy_runs_total: u64,
    pub deploy_runs_succeeded: u64,
    pub last_rebuild_seconds: Option<f64>,
    pub last_refresh_seconds: Option<f64>,
    pub checks: Vec<CheckMetric>,
    pub services: Vec<ServiceMetric>,
    /// Number of runs per status (`queued`, `running`, `succeeded`, ...).
    pub runs_by_status: Vec<(String, u64)>,
    pub host: Option<HostMetrics>,
    /// Whether the daemon could reach Docker.
    pub up: bool,
    /// Services whose container differs from the manifest (`stagectl diff`), when known.
    pub drifted_services: Option<u64>,
}

#[derive(Clone, Debug, Default)]
pub struct CheckMetric {
    pub name: String,
    pub passed: bool,
    pub seconds: f64,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Fraction of failed requests, 0.0-1.0.
    pub error_rate: Option<f64>,
}

#[derive(Clone, Debug, Default)]
pub struct ServiceMetric {
    pub name: String,
    pub ready: bool,
    pub ready_seconds: Option<f64>,
    /// Docker's restart count of the service's current container (its `restart` policy at work).
    pub restarts: u64,
}

/// Renders the whole exposition. Families without samples are left out.
pub fn render(input: &MetricsInput) -> String {
    let stack = input.stack.as_str();
    let only_stack = || vec![("stack", stack.to_string())];
    let mut out = Exposition::default();

    out.gauge("stagectl_docker_up", "Whether the daemon can reach Docker (1) or not (0).", vec![(only_stack(), bool_value(input.up))]);

    out.gauge(
        "stagectl_deploy_runs_total",
        "Finished deployment runs in the history.",
        vec![(only_stack(), input.deploy_runs_total.to_string())],
    );
    out.gauge(
        "stagectl_deploy_runs_succeeded_total",
        "Finished deployment runs in the history that succeeded.",
        vec![(only_stack(), input.deploy_runs_succeeded.to_string())],
    );
    // No ratio without runs: 0/0 is not "0 % successful".
    let ratio = (input.deploy_runs_total > 0).then(|| input.deploy_runs_succeeded as f64 / input.deploy_runs_total as f64);
    out.gauge(
        "stagectl_deploy_success_ratio",
        "Succeeded / finished deployment runs in the history (0-1).",
        ratio.map(|r| (only_stack(), float(r))).into_iter().collect(),
    );

    out.gauge(
        "stagectl_rebuild_duration_seconds",
        "Duration of the last finished rebuild.",
        input.last_rebuild_seconds.map(|s| (only_stack(), float(s))).into_iter().collect(),
    );
    out.gauge(
        "stagectl_data_refresh_seconds",
        "Duration of the last data refresh.",
        input.last_refresh_seconds.map(|s| (only_stack(), float(s))).into_iter().collect(),
    );

    let check_labels = |c: &CheckMetric| vec![("stack", stack.to_string()), ("check", c.name.clone())];
    out.gauge(
        "stagectl_check_passed",
        "Whether the check passed (1) or failed (0) in the last run.",
        input.checks.iter().map(|c| (check_labels(c), bool_value(c.passed))).collect(),
    );
    out.gauge(
        "stagectl_check_duration_seconds",
        "How long the check took in the last run.",
        input.checks.iter().map(|c| (check_labels(c), float(c.seconds))).collect(),
    );
    // Quantiles as a plain gauge family: a `summary` would also need _sum and _count.
    let mut latency = Vec::new();
    for c in &input.checks {
        for (quantile, ms) in [("0.95", c.p95_ms), ("0.99", c.p99_ms)] {
            if let Some(ms) = ms {
                let mut labels = check_labels(c);
                labels.push(("quantile", quantile.to_string()));
                latency.push((labels, float(ms / 1000.0)));
            }
        }
    }
    out.gauge("stagectl_check_latency_seconds", "Request latency quantiles measured by the check's latency burst.", latency);
    out.gauge(
        "stagectl_check_error_ratio",
        "Fraction of failed requests in the check's latency burst (0-1).",
        input.checks.iter().filter_map(|c| c.error_rate.map(|r| (check_labels(c), float(r)))).collect(),
    );

    let service_labels = |s: &ServiceMetric| vec![("stack", stack.to_string()), ("service", s.name.clone())];
    out.gauge(
        "stagectl_service_ready",
        "Whether the service was probed ready (1) or not (0).",
        input.services.iter().map(|s| (service_labels(s), bool_value(s.ready))).collect(),
    );
    out.gauge(
        "stagectl_service_ready_seconds",
        "Time from start until the service was probed ready.",
        input.services.iter().filter_map(|s| s.ready_seconds.map(|t| (service_labels(s), float(t)))).collect(),
    );
    out.gauge(
        "stagectl_service_restarts",
        "Times Docker restarted the service's current container (its `restart` policy); reset when the container is recreated.",
        input.services.iter().map(|s| (service_labels(s), s.restarts.to_string())).collect(),
    );

    out.gauge(
        "stagectl_drifted_services",
        "Services whose running container differs from the manifest (what `stagectl diff` reports; computed at most every 30 s).",
        input.drifted_services.map(|n| (only_stack(), n.to_string())).into_iter().collect(),
    );

    out.gauge(
        "stagectl_runs",
        "Runs in the history by status.",
        input
            .runs_by_status
            .iter()
            .map(|(status, n)| (vec![("stack", stack.to_string()), ("status", status.clone())], n.to_string()))
            .collect(),
    );

    if let Some(h) = &input.host {
        let disk_labels = || vec![("stack", stack.to_string()), ("path", h.disk_path.clone())];
        out.gauge(
            "stagectl_host_cpu_percent",
            "Host CPU usage, 0-100, over the last sampling interval.",
            vec![(only_stack(), float(f64::from(h.cpu_percent)))],
        );
        out.gauge("stagectl_host_memory_used_bytes", "Host memory in use.", vec![(only_stack(), h.memory_used_bytes.to_string())]);
        out.gauge("stagectl_host_memory_total_bytes", "Host memory in total.", vec![(only_stack(), h.memory_total_bytes.to_string())]);
        out.gauge(
            "stagectl_host_disk_used_bytes",
            "Used space on the disk holding Docker's data (total minus available).",
            vec![(disk_labels(), h.disk_used_bytes.to_string())],
        );
        out.gauge(
            "stagectl_host_disk_total_bytes",
            "Size of the disk holding Docker's data.",
            vec![(disk_labels(), h.disk_total_bytes.to_string())],
        );
    }

    out.text
}

type Sample = (Vec<(&'static str, String)>, String);

#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    /// One family: HELP, TYPE, then all its samples, so each family appears exactly once.
    fn gauge(&mut self, name: &str, help: &str, samples: Vec<Sample>) {
        if samples.is_empty() {
            return;
        }
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} gauge");
        for (labels, value) in samples {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
            let _ = writeln!(self.text, "{name}{{{}}} {value}", labels.join(","));
        }
    }
}

/// Label values escape exactly backslash, double quote and line feed (format 0.0.4).
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn bool_value(b: bool) -> String {
    if b { "1" } else { "0" }.to_string()
}

/// Rust prints `inf`/`NaN`; Prometheus wants `+Inf`/`-Inf`/`NaN`. Finite values use Rust's
/// shortest round-trip form, which Prometheus parses.
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use regex::Regex;

    use super::*;

    /// One parsed sample: name, label pairs (unescaped), value.
    #[derive(Debug)]
    struct Parsed {
        name: String,
        labels: Vec<(String, String)>,
        value: f64,
    }

    /// A strict parser for what `render` may emit: checks the line grammar, one HELP and one TYPE
    /// per family before its samples, samples of a family contiguous, no duplicate label sets.
    fn parse(text: &str) -> Vec<Parsed> {
        let name_re = r"[a-zA-Z_:][a-zA-Z0-9_:]*";
        let help_re = Regex::new(&format!(r"^# HELP ({name_re}) (.*)$")).unwrap();
        let type_re = Regex::new(&format!(r"^# TYPE ({name_re}) (counter|gauge|histogram|summary|untyped)$")).unwrap();
        let sample_re = Regex::new(&format!(r"^({name_re})\{{(.*)\}} (\S+)$")).unwrap();
        let label_re = Regex::new(r#"^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\\\|\\"|\\n)*)"(,|$)"#).unwrap();

        assert!(text.ends_with('\n'), "exposition must end with a line feed");
        let mut helped = HashSet::new();
        let mut typed: HashMap<String, String> = HashMap::new();
        let mut finished: HashSet<String> = HashSet::new();
        let mut current: Option<String> = None;
        let mut seen_series = HashSet::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(c) = help_re.captures(line) {
                let name = c[1].to_string();
                assert!(helped.insert(name.clone()), "second HELP for {name}");
                assert!(!typed.contains_key(&name), "HELP after TYPE for {name}");
                if let Some(prev) = current.replace(name) {
                    finished.insert(prev);
                }
            } else if let Some(c) = type_re.captures(line) {
                let name = c[1].to_string();
                assert_eq!(current.as_deref(), Some(name.as_str()), "TYPE {name} not right after its HELP");
                assert!(typed.insert(name.clone(), c[2].to_string()).is_none(), "second TYPE for {name}");
            } else if let Some(c) = sample_re.captures(line) {
                let name = c[1].to_string();
                assert!(name.starts_with("stagectl_"), "{name}");
                assert!(typed.contains_key(&name), "sample before TYPE: {line}");
                assert_eq!(current.as_deref(), Some(name.as_str()), "samples of {name} not contiguous: {line}");
                assert!(!finished.contains(&name));
                let mut rest = &c[2];
                let mut labels = Vec::new();
                while !rest.is_empty() {
                    let l = label_re.captures(rest).unwrap_or_else(|| panic!("bad labels in {line:?}"));
                    labels.push((l[1].to_string(), unescape(&l[2])));
                    rest = &rest[l[0].len()..];
                }
                let value: f64 = c[3].parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
                assert!(seen_series.insert(line[..line.rfind(' ').unwrap()].to_string()), "duplicate series: {line}");
                samples.push(Parsed { name, labels, value });
            } else {
                panic!("line matches no rule: {line:?}");
            }
        }
        assert_eq!(helped.len(), typed.len(), "every HELP has a TYPE");
        samples
    }

    /// Left to right, so `\\n` is a backslash then `n`, not a backslash then a line feed.
    fn unescape(v: &str) -> String {
        let mut out = String::new();
        let mut chars = v.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(c @ ('\\' | '"')) => out.push(c),
                other => panic!("bad escape \\{other:?} in {v:?}"),
            }
        }
        out
    }

    fn get<'a>(samples: &'a [Parsed], name: &str, label: (&str, &str)) -> Vec<&'a Parsed> {
        samples.iter().filter(|s| s.name == name && s.labels.iter().any(|(k, v)| k == label.0 && v == label.1)).collect()
    }

    fn full_input() -> MetricsInput {
        MetricsInput {
            stack: "shop".into(),
            deploy_runs_total: 8,
            deploy_runs_succeeded: 6,
            last_rebuild_seconds: Some(12.5),
            last_refresh_seconds: Some(0.4),
            checks: vec![
                CheckMetric {
                    name: "home page".into(),
                    passed: true,
                    seconds: 0.01,
                    p95_ms: Some(2.5),
                    p99_ms: Some(40.0),
                    error_rate: Some(0.02),
                },
                CheckMetric {
                    name: "say \"hi\"\\\nthere".into(),
                    passed: false,
                    seconds: 1.0,
                    p95_ms: None,
                    p99_ms: None,
                    error_rate: None,
                },
            ],
            services: vec![
                ServiceMetric { name: "db".into(), ready: true, ready_seconds: Some(3.25), restarts: 0 },
                ServiceMetric { name: "web".into(), ready: false, ready_seconds: None, restarts: 2 },
            ],
            runs_by_status: vec![("succeeded".into(), 6), ("failed".into(), 2), ("queued".into(), 1)],
            host: Some(HostMetrics {
                cpu_percent: 3.5,
                cpus: 2,
                memory_used_bytes: 1 << 30,
                memory_total_bytes: 4 << 30,
                disk_path: "/var/lib/docker".into(),
                disk_used_bytes: 10_000_000_000,
                disk_total_bytes: 250_000_000_000,
                load_average_1m: 0.1,
            }),
            up: true,
            drifted_services: Some(2),
        }
    }

    #[test]
    fn full_exposition_is_well_formed() {
        let text = render(&full_input());
        let samples = parse(&text);
        // Every sample is labelled with the stack.
        assert!(samples.iter().all(|s| s.labels.first() == Some(&("stack".to_string(), "shop".to_string()))), "{text}");
        let names: HashSet<&str> = samples.iter().map(|s| s.name.as_str()).collect();
        for name in [
            "stagectl_docker_up",
            "stagectl_deploy_runs_total",
            "stagectl_deploy_runs_succeeded_total",
            "stagectl_deploy_success_ratio",
            "stagectl_rebuild_duration_seconds",
            "stagectl_data_refresh_seconds",
            "stagectl_check_passed",
            "stagectl_check_latency_seconds",
            "stagectl_check_error_ratio",
            "stagectl_service_ready",
            "stagectl_service_ready_seconds",
            "stagectl_service_restarts",
            "stagectl_runs",
            "stagectl_host_cpu_percent",
            "stagectl_host_memory_used_bytes",
            "stagectl_host_memory_total_bytes",
            "stagectl_host_disk_used_bytes",
            "stagectl_host_disk_total_bytes",
            "stagectl_drifted_services",
        ] {
            assert!(names.contains(name), "{name} missing in\n{text}");
        }
        assert!(!text.contains("# TYPE stagectl_check_latency_seconds summary"));

        let ratio = get(&samples, "stagectl_deploy_success_ratio", ("stack", "shop"));
        assert_eq!(ratio.len(), 1);
        assert!((ratio[0].value - 0.75).abs() < 1e-12);

        let latency = get(&samples, "stagectl_check_latency_seconds", ("check", "home page"));
        let q = |q: &str| latency.iter().find(|s| s.labels.contains(&("quantile".into(), q.into()))).unwrap().value;
        assert!((q("0.95") - 0.0025).abs() < 1e-12);
        assert!((q("0.99") - 0.04).abs() < 1e-12);

        assert_eq!(get(&samples, "stagectl_service_ready", ("service", "web"))[0].value, 0.0);
        assert_eq!(get(&samples, "stagectl_service_ready", ("service", "db"))[0].value, 1.0);
        assert!(get(&samples, "stagectl_service_ready_seconds", ("service", "web")).is_empty());
        assert_eq!(get(&samples, "stagectl_service_restarts", ("service", "web"))[0].value, 2.0);
        assert_eq!(get(&samples, "stagectl_runs", ("status", "failed"))[0].value, 2.0);
        assert_eq!(get(&samples, "stagectl_host_disk_total_bytes", ("path", "/var/lib/docker"))[0].value, 250e9);
    }

    #[test]
    fn label_values_are_escaped() {
        let text = render(&full_input());
        assert!(text.contains(r#"stagectl_check_passed{stack="shop",check="say \"hi\"\\\nthere"} 0"#), "{text}");
        // The parser unescapes back to the original name, and the newline did not split the line.
        let samples = parse(&text);
        assert_eq!(get(&samples, "stagectl_check_passed", ("check", "say \"hi\"\\\nthere")).len(), 1);
        // The failing check has no latency, so it has no latency or error-ratio samples.
        assert!(get(&samples, "stagectl_check_error_ratio", ("check", "say \"hi\"\\\nthere")).is_empty());
    }

    #[test]
    fn empty_input_omits_ratio_and_optional_families() {
        let text = render(&MetricsInput::default());
        let samples = parse(&text);
        let names: HashSet<&str> = samples.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, HashSet::from(["stagectl_docker_up", "stagectl_deploy_runs_total", "stagectl_deploy_runs_succeeded_total"]));
        assert!(!text.contains("stagectl_deploy_success_ratio"));
        assert_eq!(get(&samples, "stagectl_docker_up", ("stack", ""))[0].value, 0.0);
    }

    #[test]
    fn floats_use_prometheus_spellings() {
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(float(f64::NAN), "NaN");
        assert_eq!(float(0.5), "0.5");
        assert_eq!(float(3.0), "3");
    }
}
