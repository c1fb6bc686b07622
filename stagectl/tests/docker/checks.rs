//! Smoke checks and their reports, against the real demo app.

use crate::harness::*;

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
    assert!(slow["message"].as_str().unwrap().starts_with("p95 1"), "{slow}");
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
