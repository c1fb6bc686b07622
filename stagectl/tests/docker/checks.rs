//! Smoke checks and their reports, against the real demo app and a pre-fork server.

use crate::harness::*;

/// A pre-fork HTTP/1.1 server with keep-alive (like Apache prefork, or any server with a fixed
/// pool of threads each serving one connection until the client closes it): `WORKERS`
/// processes, so a connection beyond them waits in the listen queue until one is closed.
/// `/slow` answers after 300 ms; `/every-fifth-fails` answers 503 to each worker's every
/// fifth request.
const PREFORK_SERVER: &str = r#"
use strict;
use warnings;
use IO::Socket::INET;
$| = 1;
my $workers = $ENV{WORKERS} || 2;
my $server = IO::Socket::INET->new(LocalPort => 8080, Listen => 128, ReuseAddr => 1, Proto => 'tcp') or die "listen: $!";
my @children;
for (1 .. $workers) {
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        my $served = 0;
        while (my $conn = $server->accept()) {
            local $/ = "\r\n\r\n";
            while (defined(my $head = <$conn>)) {
                my ($method, $path) = $head =~ m{^(\w+) (\S+)};
                $served++;
                my ($status, $body) = ("200 OK", '{"ok":true}');
                select(undef, undef, undef, 0.3) if $path eq '/slow';
                ($status, $body) = ("503 Service Unavailable", '{"ok":false}') if $path eq '/every-fifth-fails' && $served % 5 == 0;
                print $conn "HTTP/1.1 $status\r\nContent-Type: application/json\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
                print "worker $$: $method $path $status\n";
            }
            close $conn;
        }
        exit 0;
    }
    push @children, $pid;
}
$SIG{TERM} = sub { kill 'KILL', @children; exit 0 };
print "listening on 8080 with $workers workers\n";
waitpid($_, 0) for @children;
"#;

const PREFORK_STACK: &str = r#"
[stack]
name = "{stack}"

[services.pool]
image = "stagectl/debian:bookworm"
command = ["perl", "/srv/prefork.pl"]
env = { WORKERS = "2" }
volumes = ["./prefork.pl:/srv/prefork.pl:ro"]
ready = { tcp = 8080, timeout = "20s" }

[[checks.smoke]]
name = "more users than workers"
http = { service = "pool", port = 8080, path = "/" }
latency = { requests = 30, concurrency = 3, p95 = "2s", error_rate = 0.0 }

[[checks.smoke]]
name = "slow answers"
http = { service = "pool", port = 8080, path = "/slow" }
latency = { requests = 6, concurrency = 3, p95 = "100ms" }

[[checks.smoke]]
name = "some answers fail"
http = { service = "pool", port = 8080, path = "/every-fifth-fails" }
latency = { requests = 12, concurrency = 2, p95 = "2s" }
"#;

/// Issue 12: a burst with more users than the app has workers. Each simulated user closes
/// its connection when it has no request left, so the user queued behind the workers is
/// served then; with one shared client the burst's idle keep-alive connections held both
/// workers and that user's request failed after the client's 10 s timeout, every time.
/// Slowness and failed answers are still reported, each failure with its reason.
#[test]
fn a_burst_wider_than_a_fixed_worker_pool_passes_and_slowness_still_fails() {
    require_docker!();
    let stack = Stack::new("prefork", PREFORK_STACK);
    std::fs::write(stack.path("prefork.pl"), PREFORK_SERVER).unwrap();
    stack.up_ok();
    let out = stack.run(&["--json", "check", "smoke"]);
    assert_eq!(out.status.code(), Some(1), "the slow and the failing check fail");
    let report = last_json(&out);
    let by_name = |n: &str| report["checks"].as_array().unwrap().iter().find(|c| c["name"] == n).unwrap().clone();

    let wide = by_name("more users than workers");
    assert_eq!(wide["outcome"], "passed", "{wide}");
    assert_eq!(wide["latency"]["failed"], 0, "{wide}");
    assert!(wide["latency"]["p99_ms"].as_f64().unwrap() < 2000.0, "the queued user waited for the others only: {wide}");

    let slow = by_name("slow answers");
    assert_eq!(slow["outcome"], "failed", "{slow}");
    assert!(slow["message"].as_str().unwrap().starts_with("p95 "), "{slow}");
    assert!(slow["latency"]["p95_ms"].as_f64().unwrap() >= 300.0, "{slow}");
    assert_eq!(slow["latency"]["failed"], 0, "slow, but every request was answered: {slow}");

    let failing = by_name("some answers fail");
    assert_eq!(failing["outcome"], "failed", "{failing}");
    let message = failing["message"].as_str().unwrap();
    assert!(message.starts_with("error rate "), "{message}");
    assert!(message.contains(" of 12 failed; first: status 503 (expected 200) after "), "{message}");
    assert!(message.ends_with(" on GET /every-fifth-fails)"), "{message}");
    let failures = &failing["latency"]["failures"];
    assert_eq!((failures[0]["reason"].as_str(), failures[0]["status"].as_u64()), (Some("status"), Some(503)), "{failing}");
    assert_eq!(failures[0]["count"], failing["latency"]["failed"], "{failing}");
    assert_eq!(failing["latency"]["first_failure"]["request"], "GET /every-fifth-fails", "{failing}");
}

/// The demo stack (shared with the other tests) plus checks that pass and fail for real.
const CHECKS: &str = r#"
[[checks.smoke]]
name = "home page"
http = { service = "app", port = 8080, path = "/", expect_json = { "/service" = "shop" } }
latency = { requests = 20, concurrency = 4, p95 = "500ms" }

[[checks.smoke]]
name = "wrong status"
http = { service = "app", port = 8080, path = "/", expect_status = 404 }
timeout = "500ms"

[[checks.smoke]]
name = "too slow"
http = { service = "app", port = 8080, path = "/slow?ms=120" }
latency = { requests = 10, concurrency = 5, p95 = "50ms" }

[[checks.smoke]]
name = "authorised order"
http = { service = "app", port = 8080, method = "POST", path = "/orders", headers = { Authorization = "Bearer ${secret:api_key}", "Content-Type" = "application/json" }, body = '{"product_id": 999, "quantity": 1}', expect_status = 400 }

[[checks.smoke]]
name = "tables exist"
sql = { service = "db", database = "shop", query = "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('products', 'orders')", expect = "2" }

[[checks.smoke]]
name = "cache answers"
tcp = { service = "cache", port = 6379 }
"#;

#[test]
fn smoke_checks_pass_and_fail_for_real_and_the_junit_report_counts_match() {
    require_docker!();
    let stack = Stack::new("checks", &format!("{}{CHECKS}", crate::SHOP));
    std::fs::write(stack.path("secrets.env"), "api_key=check-secret-123\n").unwrap();
    stack.up_ok();
    let junit = stack.path("checks.xml");
    let markdown = stack.path("checks.md");
    let out = stack.run(&[
        "--json",
        "check",
        "--report",
        &format!("junit:{}", junit.display()),
        "--report",
        &format!("markdown:{}", markdown.display()),
    ]);
    assert_eq!(out.status.code(), Some(1), "two checks fail");
    let report = last_json(&out);
    let by_name = |n: &str| report["checks"].as_array().unwrap().iter().find(|c| c["name"] == n).unwrap().clone();
    assert_eq!(by_name("home page")["outcome"], "passed");
    let home_latency = by_name("home page")["latency"].clone();
    assert_eq!(home_latency["requests"], 20);
    assert!(home_latency["p95_ms"].as_f64().unwrap() > 0.0);
    let wrong = by_name("wrong status");
    assert_eq!(wrong["outcome"], "failed");
    assert!(wrong["message"].as_str().unwrap().starts_with("GET /: status 200, expected 404"), "{wrong}");
    let slow = by_name("too slow");
    assert_eq!(slow["outcome"], "failed");
    // How far over the budget depends on the machine's load (120 ms per request at best).
    assert!(
        slow["message"].as_str().unwrap().starts_with("p95 ") && slow["message"].as_str().unwrap().contains("> budget 50 ms"),
        "{slow}"
    );
    assert!(slow["latency"]["p95_ms"].as_f64().unwrap() >= 120.0);
    assert_eq!(by_name("authorised order")["outcome"], "passed", "the secret header was sent");
    assert_eq!(by_name("tables exist")["outcome"], "passed");
    assert_eq!(by_name("cache answers")["outcome"], "passed");

    // The JUnit file is real XML and its counts match the results.
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("valid JUnit XML");
    let suite = doc.descendants().find(|n| n.has_tag_name("testsuite")).unwrap();
    assert_eq!(suite.attribute("tests"), Some("6"));
    assert_eq!(suite.attribute("failures"), Some("2"));
    let cases: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("testcase")).collect();
    assert_eq!(cases.len(), 6);
    let failed: Vec<&str> =
        cases.iter().filter(|c| c.children().any(|k| k.has_tag_name("failure"))).map(|c| c.attribute("name").unwrap()).collect();
    assert_eq!(failed, ["wrong status", "too slow"]);
    let md = std::fs::read_to_string(&markdown).unwrap();
    assert!(md.contains("**FAILED**") && md.contains("| ❌ | too slow | http |"), "{md}");
    for text in [&xml, &md, &stdout(&out), &stderr(&out)] {
        assert!(!text.contains("check-secret-123"), "a secret reached a report");
    }

    // verify = rebuild + check: fresh containers, the same verdict, non-zero for pipelines.
    let before = stack.container_ids();
    let json_report = stack.path("verify.json");
    let out = stack.run(&["verify", "--report", &format!("json:{}", json_report.display())]);
    assert_eq!(out.status.code(), Some(1));
    let after = stack.container_ids();
    assert_ne!(before["app"], after["app"], "verify rebuilt the stack");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json_report).unwrap()).unwrap();
    assert_eq!((report["ok"].as_bool(), report["passed"].as_u64(), report["failed"].as_u64()), (Some(false), Some(4), Some(2)));
}

#[test]
fn a_failed_verify_always_writes_its_reports_so_no_stale_pass_is_read() {
    require_docker!();
    let stack = Stack::new(
        "vfail",
        r#"
[stack]
name = "{stack}"
[services.migrate]
image = "stagectl/debian:bookworm"
job = true
command = ["sh", "-c", "echo 'ERROR: relation missing' >&2; exit 3"]
"#,
    );
    let (junit, json) = (stack.path("checks.xml"), stack.path("checks.json"));
    let stale = r#"<testsuites name="stagectl" tests="1" failures="0"></testsuites>"#;
    std::fs::write(&junit, stale).unwrap();
    std::fs::write(&json, r#"{"ok": true}"#).unwrap();
    let args = ["verify", "--report", &format!("junit:{}", junit.display()), "--report", &format!("json:{}", json.display())];
    let out = stack.run(&args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("valid JUnit XML");
    let suites = doc.root_element();
    assert_eq!(suites.attribute("failures"), Some("1"), "{xml}");
    assert!(xml.contains("stack up") && xml.contains("migrate: "), "{xml}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["ok"], false, "{report}");

    // Docker unreachable: exit 3, and the reports say so too.
    std::fs::write(&junit, stale).unwrap();
    let out = stack.run_env(&args, &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains(r#"failures="1""#) && xml.contains("cannot reach the Docker engine"), "{xml}");
}
