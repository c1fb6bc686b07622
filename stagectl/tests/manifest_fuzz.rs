//! A generator of bad manifests (issue 12): valid manifests mutated at random (lines deleted,
//! duplicated, swapped or garbled, random keys, huge / negative / fractional numbers, odd
//! durations and sizes, wrong types, unicode, NUL bytes, invalid UTF-8, very long strings, deep
//! nesting, huge arrays), each run through `manifest::decode` + `manifest::parse`.
//!
//! Asserted for every case:
//! - nothing panics (parse, rendering, and for accepted manifests the pure code that runs on
//!   them downstream: `Instant + timeout`, the plan, container specs);
//! - a rejected input has at least one diagnostic, every diagnostic renders as
//!   `stack.toml:LINE:COL: ...` with a line and column inside the file, and the whole rendering
//!   stays small (it is capped);
//! - an accepted manifest holds only values inside the documented ranges.
//!
//! Deterministic: a fixed seed, a hand-rolled SplitMix64 (no dependency). For exploration,
//! `STAGECTL_FUZZ_SEED=N STAGECTL_FUZZ_CASES=N cargo test -p stagectl --test manifest_fuzz -- --nocapture`.
//! The figures (cases, accepted, rejected, panics, time) are printed; see them with `--nocapture`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use stagectl::manifest::{
    self, CheckKind, Manifest, ManifestErrors, Probe, VarSource, MAX_IDLE_TTL, MAX_RENDERED_DIAGNOSTICS, MAX_SNAPSHOT_BUDGET, MAX_TIMEOUT,
    MIN_DURATION,
};
use stagectl::plan;

const SEED: u64 = 0x5EED_0012;
const CASES: usize = 2000;
const FILE: &str = "stack.toml";

/// Valid manifests to mutate: every section and field, the corpus's full and minimal ones.
const BASES: &[&str] = &[
    include_str!("corpus/ok-every-section/stack.toml"),
    include_str!("corpus/ok-full/stack.toml"),
    include_str!("corpus/ok-minimal/stack.toml"),
];

/// SplitMix64: small, fast, and the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// 0..n (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "65535",
    "65536",
    "100000",
    "100001",
    "99999999999999999999",
    "-99999999999999999999",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551616",
    "0x7FFFFFFFFFFFFFFF",
    "0xFFFFFFFFFFFFFFFFFF",
    "0o777",
    "0b101",
    "1_000",
    "+80",
    "1.5",
    "-0.0",
    "1e308",
    "1e400",
    "5e-324",
    "nan",
    "+inf",
    "-inf",
    "true",
    "\"80\"",
    "[]",
];

const DURATIONS: &[&str] = &[
    "2777777777777777h",
    "99999999999999999999s",
    "4000000000000000h4000000000000000h",
    "0s",
    "0.5ms",
    "1ms",
    "-5s",
    "-",
    "24h",
    "24h1ms",
    "8760h",
    "8761h",
    "1.5.5s",
    "nan",
    "inf",
    "infs",
    "NaNs",
    "1e3s",
    "",
    " 5s ",
    "5 s",
    "1h-1s",
    "999999999999999999999999999999999999999999999999999999999999999ms",
];

const SIZES: &[&str] = &["0", "0.5B", "100TB", "101TB", "99999999999999999999TB", "1e9GB", "-5GB", "1.2.3GB", "5 parsecs", "NaNGB"];

const WEIRD_STRINGS: &[&str] = &[
    "",
    " ",
    "${",
    "${}",
    "${secret:",
    "${secret:api_key}",
    "${NOPE}",
    "${A:-${B}}",
    "$$",
    "$${X}",
    "\\u0000",
    "\\uD800",
    "\\U0010FFFF",
    "\\x",
    "é",
    "日本語",
    "🦀🔥",
    "\u{202E}rtl",
    "a\u{0301}",
    "\u{200B}",
    "\u{FEFF}",
    "*/0 * * * *",
    "61 25 32 13 8",
    "0 0 0 0 0 0 0",
    "(",
    "[a-",
    "a{99999}{99999}",
    "/",
    "//",
    "../../etc/passwd:/x",
    "80:80:80:80",
    "[::1]:1:1/udp",
    "1-2:3",
    "table.column",
    "fixed:",
    "UPPER:Case",
];

const KEYS: &[&str] = &[
    "image",
    "build",
    "command",
    "entrypoint",
    "env",
    "ports",
    "volumes",
    "depends_on",
    "job",
    "ready",
    "working_dir",
    "user",
    "tcp",
    "postgres",
    "http",
    "exec",
    "log",
    "healthcheck",
    "port",
    "status",
    "timeout",
    "interval",
    "name",
    "snapshot_budget",
    "idle_ttl",
    "rebuild",
    "files",
    "mask",
    "sensitive",
    "loader",
    "after",
    "seed",
    "snapshot",
    "latency",
    "p95",
    "requests",
    "concurrency",
    "error_rate",
    "expect_json",
    "expect_status",
    "lock_budget",
    "round_trip",
    "dir",
    "allow",
    "services",
    "stack",
    "checks",
    "smoke",
    "a.b.c",
    "\"a.b\"",
    "\"\"",
    "\"ключ\"",
    "\"🔥\"",
    "'x y'",
    "imgae",
    "zzz",
];

const VALUES: &[&str] = &[
    "true",
    "false",
    "42",
    "-7",
    "3.14",
    "nan",
    "inf",
    "\"str\"",
    "\"\"",
    "[]",
    "[1, \"a\", true]",
    "[[1], [2]]",
    "{}",
    "{ a = 1 }",
    "{ a = { b = { c = 1 } } }",
    "1979-05-27T07:32:00Z",
    "07:32:00",
    "1979-05-27",
    "'''multi\nline'''",
    "\"\"\"x\ny\"\"\"",
    "'literal \\d'",
    "\"5s\"",
    "\"8080:80\"",
    "[\"8080:80\", \"8080:80\"]",
    "[\"db\", \"db\"]",
    "{ tcp = 1, http = \"/\" }",
    "{ http = \"x\" }",
];

/// Lines, each with its newline (the last one may lack it).
fn lines(text: &str) -> Vec<String> {
    text.split_inclusive('\n').map(str::to_string).collect()
}

/// Byte offsets of char boundaries in `s` (including its end).
fn boundaries(s: &str) -> Vec<usize> {
    s.char_indices().map(|(i, _)| i).chain(std::iter::once(s.len())).collect()
}

/// Byte ranges of the contents of `"..."` strings in `text` (escapes ignored: good enough).
fn string_contents(text: &str) -> Vec<(usize, usize)> {
    let quotes: Vec<usize> = text.match_indices('"').map(|(i, _)| i).collect();
    quotes.chunks_exact(2).map(|p| (p[0] + 1, p[1])).collect()
}

/// Byte ranges of runs of ASCII digits in `text`.
fn digit_runs(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut runs = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            runs.push((start, i));
        }
        i += 1;
    }
    runs
}

fn nested(rng: &mut Rng) -> String {
    let depth = *rng.pick(&[1, 10, 100, 127, 128, 129, 200, 1000, 5000]);
    if rng.chance(50) {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    } else {
        format!("{}1{}", "{ a = ".repeat(depth), " }".repeat(depth))
    }
}

fn long_string(rng: &mut Rng) -> String {
    let n = *rng.pick(&[200, 1000, 20_000, 100_000]);
    match rng.below(3) {
        0 => "x".repeat(n),
        1 => "é日🦀".repeat(n / 3),
        _ => "Ab-".repeat(n / 3),
    }
}

/// One text mutation; returns its name (for the failure report).
fn mutate(text: &mut String, rng: &mut Rng) -> &'static str {
    let mut ls = lines(text);
    let n = ls.len().max(1);
    let name = match rng.below(16) {
        0 if !ls.is_empty() => {
            ls.remove(rng.below(ls.len()));
            "delete a line"
        }
        1 if !ls.is_empty() => {
            let i = rng.below(ls.len());
            let line = ls[i].clone();
            ls.insert(rng.below(n + 1).min(ls.len()), line);
            "duplicate a line"
        }
        2 if ls.len() > 1 => {
            let (a, b) = (rng.below(ls.len()), rng.below(ls.len()));
            ls.swap(a, b);
            "swap two lines"
        }
        3 if !ls.is_empty() => {
            let i = rng.below(ls.len());
            for _ in 0..1 + rng.below(5) {
                let at = *rng.pick(&boundaries(&ls[i]));
                let c = *rng.pick(&['[', ']', '{', '}', '"', '\'', '=', ',', '.', '#', '\\', ' ', '\t', '\n', 'x', '0', '$', '\u{0}', 'é']);
                ls[i].insert(at, c);
            }
            "garble a line"
        }
        4 => {
            let bounds = boundaries(text);
            let at = *rng.pick(&bounds);
            text.truncate(at);
            return "truncate the file";
        }
        5 => {
            let line = format!("{} = {}\n", rng.pick(KEYS), rng.pick(VALUES));
            ls.insert(rng.below(n + 1).min(ls.len()), line);
            "insert a random key"
        }
        6 => return replace_in(text, rng, digit_runs, |rng| rng.pick(NUMBERS).to_string(), "replace a number"),
        7 => return replace_in(text, rng, string_contents, |rng| rng.pick(DURATIONS).to_string(), "a strange duration"),
        8 => return replace_in(text, rng, string_contents, |rng| rng.pick(SIZES).to_string(), "a strange size"),
        9 => return replace_in(text, rng, string_contents, |rng| rng.pick(WEIRD_STRINGS).to_string(), "a strange string"),
        10 => return replace_in(text, rng, string_contents, long_string, "a very long string"),
        11 if !ls.is_empty() => {
            let i = rng.below(ls.len());
            if let Some(eq) = ls[i].find(" = ") {
                let value = if rng.chance(20) { nested(rng) } else { rng.pick(VALUES).to_string() };
                ls[i] = format!("{} = {value}\n", &ls[i][..eq]);
            }
            "a value of the wrong type"
        }
        12 => {
            let bounds = boundaries(text);
            let at = *rng.pick(&bounds);
            let s = *rng.pick(&["\u{0}", "\u{7}", "\u{7F}", "\u{FEFF}", "\u{202E}", "🦀", "\r", "\r\n", "\u{2028}", "\u{FFFD}", "\\"]);
            text.insert_str(at, s);
            return "insert a control or unicode character";
        }
        13 => {
            let deps: Vec<String> = (0..*rng.pick(&[100, 2000, 10_000])).map(|i| format!("\"d{}\"", i % 500)).collect();
            let key = *rng.pick(&["depends_on", "ports", "volumes", "command", "files", "sensitive"]);
            ls.insert(rng.below(n + 1).min(ls.len()), format!("{key} = [{}]\n", deps.join(", ")));
            "a huge array"
        }
        14 if !ls.is_empty() => {
            let i = rng.below(ls.len());
            let header = *rng.pick(&[
                "[[services]]",
                "[services.x.ready]",
                "[stack.name]",
                "[a.b.c.d]",
                "[services.\"UPPER\"]",
                "[services.\"\"]",
                "[[checks.smoke]]",
                "[fixtures.nope]",
                "[migrations.db]",
                "[schedule]",
                "[services.db]",
                "[",
            ]);
            ls.insert(i, format!("{header}\n"));
            "a table header"
        }
        _ => {
            *text = text.replace('\n', "\r\n");
            return "CRLF line endings";
        }
    };
    *text = ls.concat();
    name
}

/// Replaces one of the byte ranges `find` returns with what `make` builds.
fn replace_in(
    text: &mut String,
    rng: &mut Rng,
    find: fn(&str) -> Vec<(usize, usize)>,
    make: impl Fn(&mut Rng) -> String,
    name: &'static str,
) -> &'static str {
    let ranges = find(text);
    if ranges.is_empty() {
        return "no-op";
    }
    let (a, b) = *rng.pick(&ranges);
    let with = make(rng);
    text.replace_range(a..b, &with);
    name
}

/// Bytes that are not UTF-8, at a random place.
fn break_utf8(bytes: &mut Vec<u8>, rng: &mut Rng) {
    let bad: &[&[u8]] = &[b"\x80", b"\xBF", b"\xC0\xAF", b"\xC3", b"\xE2\x82", b"\xED\xA0\x80", b"\xF0\x9F", b"\xF5", b"\xFE", b"\xFF\xFF"];
    let at = rng.below(bytes.len() + 1);
    let ins = rng.pick(bad);
    bytes.splice(at..at, ins.iter().copied());
}

fn vars() -> VarSource {
    let mut v = VarSource::default();
    v.vars.insert("TAG".into(), "15".into());
    v.secrets.insert("db_pass".into(), "pw".into());
    v.secrets.insert("api_key".into(), "hunter2".into());
    v.secrets_file_hint = "secrets.env".into();
    v
}

/// What went wrong with one case, if anything.
fn check_case(bytes: &[u8]) -> Result<bool, String> {
    let vars = vars();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let text = manifest::decode(bytes, FILE)?;
        // Every env file the base manifests name reads as one plain variable.
        manifest::parse_with_files(text, FILE, Path::new("/proj"), &vars, &|_| true, &|_| Ok("MODE=dev\n".to_string()))
    }));
    match outcome {
        Err(panic) => Err(format!("parse panicked: {}", panic_text(&panic))),
        Ok(Ok(m)) => match catch_unwind(AssertUnwindSafe(|| accepted_invariants(&m))) {
            Ok(Ok(())) => Ok(true),
            Ok(Err(why)) => Err(format!("accepted, but {why}")),
            Err(panic) => Err(format!("accepted, then panicked downstream: {}", panic_text(&panic))),
        },
        Ok(Err(errors)) => match catch_unwind(AssertUnwindSafe(|| rejected_invariants(&errors))) {
            Ok(Ok(())) => Ok(false),
            Ok(Err(why)) => Err(format!("rejected, but {why}")),
            Err(panic) => Err(format!("rejected, then rendering panicked: {}", panic_text(&panic))),
        },
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
}

/// Every diagnostic renders as `stack.toml:LINE:COL: ` inside the file; the whole stays small.
fn rejected_invariants(errors: &ManifestErrors) -> Result<(), String> {
    if errors.diagnostics.is_empty() {
        return Err("without a diagnostic".into());
    }
    let line_count = errors.source.split('\n').count();
    // Rendering is linear in the position; the rendered ones are checked in full, the others
    // (thousands, in the huge-array cases) for a position rendering can use.
    for d in &errors.diagnostics[MAX_RENDERED_DIAGNOSTICS.min(errors.diagnostics.len())..] {
        if d.span.start > errors.source.len() {
            return Err(format!("a diagnostic starts past the end: {d:?}"));
        }
    }
    for d in errors.diagnostics.iter().take(MAX_RENDERED_DIAGNOSTICS) {
        let rendered = d.render(FILE, &errors.source);
        let first = rendered.lines().next().unwrap_or("");
        let mut parts = first.splitn(4, ':');
        let (file, line, col) =
            (parts.next(), parts.next().and_then(|l| l.parse::<usize>().ok()), parts.next().and_then(|c| c.parse::<usize>().ok()));
        let ok = file == Some(FILE) && line.is_some_and(|l| (1..=line_count).contains(&l)) && col.is_some_and(|c| c >= 1);
        if !ok || !parts.next().is_some_and(|rest| rest.starts_with(' ')) {
            return Err(format!("a diagnostic renders without {FILE}:LINE:COL: {first:?}"));
        }
        if rendered.len() > 4096 {
            return Err(format!("one diagnostic renders as {} bytes", rendered.len()));
        }
    }
    let all = errors.render();
    let limit = (MAX_RENDERED_DIAGNOSTICS + 2) * 4096;
    if all.len() > limit {
        return Err(format!("the rendering is {} bytes (limit {limit})", all.len()));
    }
    Ok(())
}

/// Values inside their ranges, and the pure code that runs on a manifest does not panic.
fn accepted_invariants(m: &Manifest) -> Result<(), String> {
    let mut durations: Vec<(String, Duration, Duration)> = Vec::new();
    for s in &m.services {
        if let Some(r) = &s.ready {
            durations.push((format!("{} ready timeout", s.name), r.timeout, MAX_TIMEOUT));
            durations.push((format!("{} ready interval", s.name), r.interval, MAX_TIMEOUT));
            if let Probe::Http { status, .. } = r.probe {
                if !(100..=599).contains(&status) {
                    return Err(format!("probe status {status}"));
                }
            }
        }
    }
    for c in &m.smoke {
        durations.push((format!("check {} timeout", c.name), c.timeout, MAX_TIMEOUT));
        if let Some(l) = &c.latency {
            durations.push(("p95".into(), l.p95, MAX_TIMEOUT));
            durations.extend(l.p99.map(|p| ("p99".into(), p, MAX_TIMEOUT)));
            if !(1..=100_000).contains(&l.requests) || !(1..=100_000).contains(&l.concurrency) || !(0.0..=1.0).contains(&l.max_error_rate) {
                return Err(format!("latency budget {l:?}"));
            }
        }
        if let CheckKind::Http { expect_status, .. } = c.kind {
            if !(100..=599).contains(&expect_status) {
                return Err(format!("expect_status {expect_status}"));
            }
        }
    }
    for mg in &m.migrations {
        durations.push(("lock_budget".into(), mg.lock_budget, MAX_TIMEOUT));
    }
    durations.extend(m.schedule.idle_ttl.map(|t| ("idle_ttl".to_string(), t, MAX_IDLE_TTL)));
    let now = Instant::now();
    for (what, d, max) in durations {
        if d < MIN_DURATION || d > max {
            return Err(format!("{what} = {d:?} is outside {MIN_DURATION:?}..={max:?}"));
        }
        // What `up` and `check` do with them.
        let _ = now + d;
    }
    if m.snapshot_budget > MAX_SNAPSHOT_BUDGET {
        return Err(format!("snapshot_budget {}", m.snapshot_budget));
    }
    if m.services.iter().flat_map(|s| &s.ports).any(|p| p.container_port == 0 || p.host_port == Some(0)) {
        return Err("a port 0".into());
    }
    // The pure planning code every operation runs on a valid manifest.
    let order = plan::topological_order(m);
    let mut hashes = BTreeMap::new();
    for s in &order {
        let hash = plan::spec_hash(&m.stack, s, "sha256:0");
        let _ = plan::container_spec(m, s, "img", "img", &hash);
        hashes.insert(s.name.clone(), hash);
    }
    let _ = plan::diff(m, &hashes, &[]);
    let _ = plan::named_volumes(m);
    Ok(())
}

fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let cut: String = text.chars().take(1500).collect();
    if cut.len() < text.len() {
        format!("{cut:?}… ({} bytes)", bytes.len())
    } else {
        format!("{cut:?}")
    }
}

#[test]
fn generated_bad_manifests_never_panic_and_are_always_located() {
    let seed = std::env::var("STAGECTL_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(SEED);
    let cases = std::env::var("STAGECTL_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(CASES);
    for (i, base) in BASES.iter().enumerate() {
        assert_eq!(check_case(base.as_bytes()), Ok(true), "base manifest {i} must be valid");
    }
    let started = Instant::now();
    // A panic is caught and counted; keep the default hook from printing each one.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut rng = Rng(seed);
    let (mut accepted, mut rejected, mut panics) = (0usize, 0usize, 0usize);
    let mut failures: Vec<String> = Vec::new();
    for case in 0..cases {
        let mut text = rng.pick(BASES).to_string();
        let mut applied: Vec<&str> = (0..1 + rng.below(3)).map(|_| mutate(&mut text, &mut rng)).collect();
        let mut bytes = text.into_bytes();
        if rng.chance(8) {
            break_utf8(&mut bytes, &mut rng);
            applied.push("invalid UTF-8");
        }
        match check_case(&bytes) {
            Ok(true) => accepted += 1,
            Ok(false) => rejected += 1,
            Err(why) => {
                panics += usize::from(why.contains("panicked"));
                if failures.len() < 10 {
                    failures.push(format!("case {case} ({}): {why}\n  input: {}", applied.join(", "), shown(&bytes)));
                }
            }
        }
    }
    std::panic::set_hook(hook);
    let elapsed = started.elapsed();
    let mut report = String::new();
    let _ = write!(
        report,
        "manifest generator: seed {seed:#x}, {cases} cases, {accepted} accepted, {rejected} rejected, {panics} panics, {} failures, {:.2} s",
        failures.len(),
        elapsed.as_secs_f64()
    );
    println!("{report}");
    assert!(failures.is_empty(), "{report}\n\n{}", failures.join("\n\n"));
    assert_eq!(accepted + rejected, cases);
    // The generator must exercise both outcomes to mean anything.
    assert!(rejected >= cases / 2 && accepted >= cases / 20, "{report}");
}
