//! Check reports: JSON (machines), JUnit XML (CI servers), Markdown (pull-request comments).
//! Built from results whose messages are already secret-masked.

use serde::Serialize;

use super::{CheckOutcome, CheckResult};

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub stack: String,
    pub ok: bool,
    pub seconds: f64,
    pub passed: usize,
    pub failed: usize,
    pub checks: Vec<CheckResult>,
}

impl CheckReport {
    pub fn new(stack: &str, checks: Vec<CheckResult>, seconds: f64) -> Self {
        let failed = checks.iter().filter(|c| c.outcome == CheckOutcome::Failed).count();
        CheckReport { stack: stack.to_string(), ok: failed == 0, seconds, passed: checks.len() - failed, failed, checks }
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports serialise")
    }

    pub fn junit(&self) -> String {
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        x.push_str(&format!(
            "<testsuites name=\"stagectl\" tests=\"{}\" failures=\"{}\" time=\"{:.3}\">\n",
            self.checks.len(),
            self.failed,
            self.seconds
        ));
        x.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"0\" time=\"{:.3}\">\n",
            xml(&format!("smoke checks of {}", self.stack)),
            self.checks.len(),
            self.failed,
            self.seconds
        ));
        for c in &self.checks {
            x.push_str(&format!(
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">\n",
                xml(&format!("{}.{}", self.stack, c.kind)),
                xml(&c.name),
                c.seconds
            ));
            if c.outcome == CheckOutcome::Failed {
                x.push_str(&format!("      <failure message=\"{}\" type=\"{}\"/>\n", xml(&c.message), c.kind));
            }
            let mut out = c.message.clone();
            if let Some(l) = &c.latency {
                out.push_str(&format!(
                    "\nlatency: {} requests at concurrency {}: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, errors {:.1} %",
                    l.requests,
                    l.concurrency,
                    l.p50_ms,
                    l.p95_ms,
                    l.p99_ms,
                    l.error_rate * 100.0
                ));
            }
            x.push_str(&format!("      <system-out>{}</system-out>\n", xml(&out)));
            x.push_str("    </testcase>\n");
        }
        x.push_str("  </testsuite>\n</testsuites>\n");
        x
    }

    pub fn markdown(&self) -> String {
        let mut m = format!(
            "### stagectl checks: {} — {}\n\n{} passed, {} failed in {:.1} s\n\n| | check | kind | time | p95 | p99 | errors | detail |\n|---|---|---|---|---|---|---|---|\n",
            self.stack,
            if self.ok { "passed" } else { "**FAILED**" },
            self.passed,
            self.failed,
            self.seconds
        );
        for c in &self.checks {
            let mark = if c.outcome == CheckOutcome::Passed { "✅" } else { "❌" };
            let (p95, p99, err) = match &c.latency {
                Some(l) => (format!("{:.1} ms", l.p95_ms), format!("{:.1} ms", l.p99_ms), format!("{:.1} %", l.error_rate * 100.0)),
                None => ("–".into(), "–".into(), "–".into()),
            };
            m.push_str(&format!(
                "| {mark} | {} | {} | {:.2} s | {p95} | {p99} | {err} | {} |\n",
                md(&c.name),
                c.kind,
                c.seconds,
                md(&c.message)
            ));
        }
        m
    }
}

fn xml(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&apos;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, outcome: CheckOutcome, message: &str) -> CheckResult {
        CheckResult { name: name.into(), kind: "http", outcome, seconds: 0.5, attempts: 1, message: message.into(), latency: None }
    }

    #[test]
    fn junit_counts_and_escapes() {
        let r = CheckReport::new(
            "s",
            vec![result("a <b>", CheckOutcome::Passed, "ok"), result("c", CheckOutcome::Failed, "status 500 & \"boom\"")],
            1.0,
        );
        let x = r.junit();
        assert!(x.contains("<testsuites name=\"stagectl\" tests=\"2\" failures=\"1\""));
        assert!(x.contains("name=\"a &lt;b&gt;\""));
        assert!(x.contains("<failure message=\"status 500 &amp; &quot;boom&quot;\" type=\"http\"/>"));
        assert_eq!(x.matches("<testcase ").count(), 2);
    }

    #[test]
    fn markdown_escapes_pipes_and_marks_failures() {
        let r = CheckReport::new("s", vec![result("x", CheckOutcome::Failed, "a | b")], 1.0);
        let m = r.markdown();
        assert!(m.contains("**FAILED**"));
        assert!(m.contains("| ❌ | x | http | 0.50 s | – | – | – | a \\| b |"));
    }
}
