//! Latency bursts: `requests` requests from `concurrency` simulated users, percentiles, why
//! each failed request failed, and the verdict against the budget.
//!
//! Each simulated user has its own client, so its own keep-alive connection, and closes it as
//! soon as no request is left for it. Servers that serve a fixed number of connections at a
//! time (a pre-fork or thread-per-connection pool with keep-alive) then take the next
//! connection when a user leaves. With one client shared by the whole burst, the burst's own
//! idle connections stayed open until the slowest request ended, so a request queued behind
//! them waited for the client's 10 s timeout and failed the check although the app was idle
//! (RELIABILITY.md, "Flaky latency check"). A request the app is slow to answer is still
//! measured from the moment it is sent until its body has arrived.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::manifest::{CheckKind, LatencyBudget};

/// Latency figures of a burst (seed metrics M3 and M4) and what went wrong in it.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyStats {
    pub requests: u32,
    pub concurrency: u32,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub error_rate: f64,
    /// Requests that failed (any reason).
    pub failed: u32,
    /// Failed requests by reason, most frequent first; empty when none failed.
    pub failures: Vec<FailureCount>,
    /// The first request (in the order they were sent) that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<FirstFailure>,
}

/// Why one request of a burst failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum FailureReason {
    /// The app answered with another status than the check expects.
    Status { status: u16, expected: u16 },
    /// No complete answer within the client's timeout.
    Timeout,
    /// No connection to the app: refused, unreachable, or not established within the connect timeout.
    Connect,
    /// Anything else, e.g. the connection closed before the answer was complete.
    Other,
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureReason::Status { status, .. } => write!(f, "status {status}"),
            FailureReason::Timeout => f.write_str("timeout"),
            FailureReason::Connect => f.write_str("connect error"),
            FailureReason::Other => f.write_str("other error"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailureCount {
    #[serde(flatten)]
    pub reason: FailureReason,
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FirstFailure {
    #[serde(flatten)]
    pub reason: FailureReason,
    /// `METHOD path` of the check.
    pub request: String,
    /// From sending the request to the failure.
    pub after_ms: f64,
    /// The HTTP client's error, for connect and other errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl fmt::Display for FirstFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let after = duration(self.after_ms);
        match self.reason {
            FailureReason::Status { status, expected } => write!(f, "status {status} (expected {expected})")?,
            FailureReason::Timeout => f.write_str("timeout")?,
            FailureReason::Connect => f.write_str("connect error")?,
            FailureReason::Other => f.write_str("error")?,
        }
        write!(f, " after {after} on {}", self.request)?;
        if let Some(e) = &self.error {
            write!(f, ": {e}")?;
        }
        Ok(())
    }
}

/// `3.2 ms` below a second, `10.0 s` from there.
fn duration(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.1} ms")
    }
}

/// One request of a burst: its position in the sending order, how long it took, and why it
/// failed (reason, client error).
struct Sample {
    n: u32,
    ms: f64,
    failure: Option<(FailureReason, Option<String>)>,
}

/// Runs the burst against `base` (`ip:port`).
pub(super) async fn burst(kind: &CheckKind, base: &str, budget: &LatencyBudget) -> LatencyStats {
    let CheckKind::Http { method, path, expect_status, .. } = kind else { unreachable!("latency budgets are http only") };
    let next = AtomicU32::new(0);
    let users = (0..budget.concurrency.min(budget.requests)).map(|_| async {
        // This user's own connection (see the module docs), closed when the user is done.
        let client = super::client();
        let mut samples = Vec::new();
        loop {
            let n = next.fetch_add(1, Ordering::SeqCst);
            if n >= budget.requests {
                break;
            }
            let started = Instant::now();
            let failure = one_request(&client, kind, base, *expect_status).await.err();
            samples.push(Sample { n, ms: started.elapsed().as_secs_f64() * 1000.0, failure });
        }
        drop(client);
        samples
    });
    let samples: Vec<Sample> = futures_util::future::join_all(users).await.into_iter().flatten().collect();
    stats(samples, budget.concurrency, &format!("{method} {path}"))
}

/// One request, answered with the expected status and its whole body.
async fn one_request(client: &reqwest::Client, kind: &CheckKind, base: &str, expected: u16) -> Result<(), (FailureReason, Option<String>)> {
    let req = super::request(client, kind, base).expect("http check");
    let resp = req.send().await.map_err(classify)?;
    let status = resp.status().as_u16();
    resp.bytes().await.map_err(classify)?;
    if status != expected {
        return Err((FailureReason::Status { status, expected }, None));
    }
    Ok(())
}

fn classify(e: reqwest::Error) -> (FailureReason, Option<String>) {
    // A connect timeout is a connect error: the app was never reached.
    let reason = if e.is_connect() {
        FailureReason::Connect
    } else if e.is_timeout() {
        FailureReason::Timeout
    } else {
        FailureReason::Other
    };
    let error = match reason {
        FailureReason::Timeout => None,
        _ => Some(error_chain(&e.without_url())),
    };
    (reason, error)
}

/// An error and its causes, `a: b: c`, without repeating a cause that says the same.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

fn stats(samples: Vec<Sample>, concurrency: u32, request: &str) -> LatencyStats {
    let mut ms: Vec<f64> = samples.iter().map(|s| s.ms).collect();
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let mut failures: Vec<FailureCount> = Vec::new();
    for (reason, _) in samples.iter().filter_map(|s| s.failure.as_ref()) {
        match failures.iter_mut().find(|f| f.reason == *reason) {
            Some(f) => f.count += 1,
            None => failures.push(FailureCount { reason: *reason, count: 1 }),
        }
    }
    failures.sort_by(|a, b| b.count.cmp(&a.count).then(a.reason.cmp(&b.reason)));
    let first_failure = samples.iter().filter(|s| s.failure.is_some()).min_by_key(|s| s.n).map(|s| {
        let (reason, error) = s.failure.clone().expect("filtered on failures");
        FirstFailure { reason, request: request.to_string(), after_ms: s.ms, error }
    });
    let failed = failures.iter().map(|f| f.count).sum::<u32>();
    LatencyStats {
        requests: samples.len() as u32,
        concurrency,
        p50_ms: percentile(&ms, 50.0),
        p95_ms: percentile(&ms, 95.0),
        p99_ms: percentile(&ms, 99.0),
        error_rate: if samples.is_empty() { 1.0 } else { f64::from(failed) / samples.len() as f64 },
        failed,
        failures,
        first_failure,
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `1 of 50 failed; first: timeout after 10.0 s on GET /products`, with the counts by reason
/// when there is more than one reason; `None` when no request failed.
pub fn failure_summary(stats: &LatencyStats) -> Option<String> {
    let first = stats.first_failure.as_ref()?;
    let mut s = format!("{} of {} failed", stats.failed, stats.requests);
    if stats.failures.len() > 1 {
        let by_reason: Vec<String> = stats.failures.iter().map(|f| format!("{} {}", f.count, f.reason)).collect();
        s.push_str(&format!(": {}", by_reason.join(", ")));
    }
    s.push_str(&format!("; first: {first}"));
    Some(s)
}

/// The check's message: `Ok` within the budget, `Err` with the first budget exceeded. Either
/// names the failed requests, if any.
pub fn verdict(stats: &LatencyStats, budget: &LatencyBudget) -> Result<String, String> {
    let failures = failure_summary(stats);
    let p95_budget = budget.p95.as_secs_f64() * 1000.0;
    if stats.p95_ms > p95_budget {
        let mut why = format!(
            "p95 {:.1} ms > budget {} ms ({} requests at concurrency {}",
            stats.p95_ms,
            budget.p95.as_millis(),
            stats.requests,
            stats.concurrency
        );
        if let Some(f) = &failures {
            why.push_str(&format!("; {f}"));
        }
        why.push(')');
        return Err(why);
    }
    let with_failures = |s: String| match &failures {
        Some(f) => format!("{s} ({f})"),
        None => s,
    };
    if let Some(p99) = budget.p99 {
        if stats.p99_ms > p99.as_secs_f64() * 1000.0 {
            return Err(with_failures(format!("p99 {:.1} ms > budget {} ms", stats.p99_ms, p99.as_millis())));
        }
    }
    if stats.error_rate > budget.max_error_rate {
        return Err(with_failures(format!("error rate {:.1} % > budget {:.1} %", stats.error_rate * 100.0, budget.max_error_rate * 100.0)));
    }
    Ok(with_failures(format!("p95 {:.1} ms ≤ {} ms, errors {:.1} %", stats.p95_ms, budget.p95.as_millis(), stats.error_rate * 100.0)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const GET: &str = "GET /products";

    fn sample(n: u32, ms: f64, failure: Option<FailureReason>) -> Sample {
        let error = match failure {
            Some(FailureReason::Connect) => Some("tcp connect error: Connection refused (os error 111)".to_string()),
            Some(FailureReason::Other) => Some("connection closed before message completed".to_string()),
            _ => None,
        };
        Sample { n, ms, failure: failure.map(|r| (r, error)) }
    }

    fn budget(max_error_rate: f64) -> LatencyBudget {
        LatencyBudget { requests: 50, concurrency: 5, p95: Duration::from_millis(150), p99: None, max_error_rate }
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 95.0), 95.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 95.0), 0.0);
    }

    #[test]
    fn one_timeout_in_fifty_names_its_reason_in_the_message() {
        // The case: 49 fast answers, one request stalled until the client's timeout.
        let mut samples: Vec<Sample> = (0..50).filter(|n| *n != 4).map(|n| sample(n, 2.0, None)).collect();
        samples.push(sample(4, 10_004.2, Some(FailureReason::Timeout)));
        let stats = stats(samples, 5, GET);
        assert_eq!((stats.requests, stats.failed, stats.error_rate), (50, 1, 0.02));
        assert_eq!(stats.failures, [FailureCount { reason: FailureReason::Timeout, count: 1 }]);
        assert_eq!(
            verdict(&stats, &budget(0.0)).unwrap_err(),
            "error rate 2.0 % > budget 0.0 % (1 of 50 failed; first: timeout after 10.0 s on GET /products)"
        );
        // Within an error budget the check passes, and still says what failed.
        assert_eq!(
            verdict(&stats, &budget(0.05)).unwrap(),
            "p95 2.0 ms ≤ 150 ms, errors 2.0 % (1 of 50 failed; first: timeout after 10.0 s on GET /products)"
        );
    }

    #[test]
    fn failures_are_counted_by_reason_and_the_first_is_the_first_sent() {
        let samples = vec![
            sample(0, 1.0, None),
            sample(7, 3.2, Some(FailureReason::Status { status: 503, expected: 200 })),
            sample(3, 10_000.0, Some(FailureReason::Timeout)),
            sample(5, 4.0, Some(FailureReason::Status { status: 503, expected: 200 })),
            sample(9, 5_000.4, Some(FailureReason::Connect)),
            sample(8, 0.4, Some(FailureReason::Other)),
            sample(6, 1.0, Some(FailureReason::Status { status: 500, expected: 200 })),
            sample(1, 1.0, None),
        ];
        let stats = stats(samples, 2, GET);
        assert_eq!(stats.failed, 6);
        let counts: Vec<(String, u32)> = stats.failures.iter().map(|f| (f.reason.to_string(), f.count)).collect();
        let expected = [("status 503", 2), ("status 500", 1), ("timeout", 1), ("connect error", 1), ("other error", 1)];
        assert_eq!(counts, expected.map(|(r, c)| (r.to_string(), c)));
        assert_eq!(stats.first_failure.as_ref().unwrap().reason, FailureReason::Timeout, "request #3 was sent first");
        assert_eq!(
            failure_summary(&stats).unwrap(),
            "6 of 8 failed: 2 status 503, 1 status 500, 1 timeout, 1 connect error, 1 other error; \
             first: timeout after 10.0 s on GET /products"
        );
        // In the JSON report.
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["failed"], 6);
        assert_eq!(json["failures"][0], serde_json::json!({"reason": "status", "status": 503, "expected": 200, "count": 2}));
        assert_eq!(json["failures"][2], serde_json::json!({"reason": "timeout", "count": 1}));
        assert_eq!(json["first_failure"], serde_json::json!({"reason": "timeout", "request": "GET /products", "after_ms": 10000.0}));
    }

    #[test]
    fn each_reason_reads_as_what_happened_to_the_request() {
        let first = |reason, after_ms, error: Option<&str>| {
            FirstFailure { reason, request: GET.into(), after_ms, error: error.map(str::to_string) }.to_string()
        };
        assert_eq!(first(FailureReason::Timeout, 10_000.0, None), "timeout after 10.0 s on GET /products");
        assert_eq!(
            first(FailureReason::Status { status: 503, expected: 200 }, 3.21, None),
            "status 503 (expected 200) after 3.2 ms on GET /products"
        );
        assert_eq!(
            first(FailureReason::Connect, 0.3, Some("tcp connect error: Connection refused (os error 111)")),
            "connect error after 0.3 ms on GET /products: tcp connect error: Connection refused (os error 111)"
        );
        assert_eq!(
            first(FailureReason::Other, 12.0, Some("connection closed before message completed")),
            "error after 12.0 ms on GET /products: connection closed before message completed"
        );
    }

    #[test]
    fn budgets_fail_on_p95_p99_and_error_rate() {
        let budget = LatencyBudget {
            requests: 10,
            concurrency: 2,
            p95: Duration::from_millis(100),
            p99: Some(Duration::from_millis(200)),
            max_error_rate: 0.1,
        };
        let stats = |p95, p99, err| LatencyStats {
            requests: 10,
            concurrency: 2,
            p50_ms: 1.0,
            p95_ms: p95,
            p99_ms: p99,
            error_rate: err,
            failed: 0,
            failures: Vec::new(),
            first_failure: None,
        };
        assert_eq!(verdict(&stats(50.0, 60.0, 0.0), &budget).unwrap(), "p95 50.0 ms ≤ 100 ms, errors 0.0 %");
        assert_eq!(verdict(&stats(150.0, 160.0, 0.0), &budget).unwrap_err(), "p95 150.0 ms > budget 100 ms (10 requests at concurrency 2)");
        assert!(verdict(&stats(90.0, 250.0, 0.0), &budget).unwrap_err().starts_with("p99 250.0 ms"));
        assert!(verdict(&stats(90.0, 95.0, 0.2), &budget).unwrap_err().starts_with("error rate 20.0 %"));
    }

    #[test]
    fn a_slow_burst_with_failures_names_both() {
        let samples: Vec<Sample> =
            (0..10).map(|n| sample(n, 400.0, (n == 2).then_some(FailureReason::Status { status: 500, expected: 200 }))).collect();
        let stats = stats(samples, 2, GET);
        assert_eq!(
            verdict(&stats, &budget(0.0)).unwrap_err(),
            "p95 400.0 ms > budget 150 ms (10 requests at concurrency 2; 1 of 10 failed; \
             first: status 500 (expected 200) after 400.0 ms on GET /products)"
        );
    }
}
