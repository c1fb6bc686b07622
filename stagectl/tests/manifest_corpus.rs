//! The manifest corpus: `tests/corpus/NAME/stack.toml` is run through `stagectl -f stack.toml
//! validate` (current directory = the case directory, so messages say `stack.toml:LINE:COL`) and
//! the output is compared word for word with the expectation beside it:
//!
//! - `NAME/expected.stderr` — a bad manifest: stderr must match, stdout be empty, exit code 2;
//! - `NAME/expected.stdout` — a valid manifest (`ok-*` cases): stdout must match, stderr be
//!   empty, exit code 0.
//!
//! The process runs with a cleared environment plus `PATH`, and the variables of the optional
//! `NAME/env` file (`KEY=VALUE` lines; blank lines and `#` comments are skipped), so host
//! variables never leak into results. It runs in a temporary copy of the case directory, where
//! the optional `NAME/dotenv` becomes `.env` (a `.env` is git-ignored, so it cannot be kept in
//! the corpus under its own name); a local `.env` or `secrets.env` in the case directory is
//! left out of the copy, so only committed files decide the result.
//!
//! `UPDATE_EXPECT=1 cargo test -p stagectl --test manifest_corpus` (re)writes the expected files;
//! read every changed one before committing it.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BAD_EXIT: i32 = 2;

struct Case {
    name: String,
    dir: PathBuf,
    /// `ok-*` cases are valid manifests.
    valid: bool,
}

fn cases() -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut cases: Vec<Case> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", root.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|dir| dir.join("stack.toml").is_file())
        .map(|dir| {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            Case { valid: name.starts_with("ok-"), name, dir }
        })
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    cases
}

/// `KEY=VALUE` lines of `NAME/env`.
fn env_file(case: &Case) -> Vec<(String, String)> {
    let path = case.dir.join("env");
    let Ok(text) = fs::read_to_string(&path) else { return Vec::new() };
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| match line.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), v.to_string()),
            None => panic!("{}: expected KEY=VALUE, got `{line}`", path.display()),
        })
        .collect()
}

/// Copies the case into `to`: everything but the expectations, `env`, and git-ignored files;
/// `dotenv` becomes `.env`.
fn copy_case(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).expect("case directory") {
        let entry = entry.expect("case entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        let src = entry.path();
        if entry.file_type().expect("file type").is_dir() {
            fs::create_dir(to.join(&name)).expect("create directory");
            copy_case(&src, &to.join(&name));
            continue;
        }
        let dest = match name.as_str() {
            "expected.stderr" | "expected.stdout" | "env" | ".env" | "secrets.env" => continue,
            "dotenv" => ".env",
            other => other,
        };
        fs::copy(&src, to.join(dest)).unwrap_or_else(|e| panic!("cannot copy {}: {e}", src.display()));
    }
}

fn run(case: &Case) -> Output {
    let work = tempfile::tempdir().expect("temporary directory");
    copy_case(&case.dir, work.path());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stagectl"));
    cmd.current_dir(work.path()).args(["-f", "stack.toml", "validate"]).env_clear().stdin(Stdio::null());
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.envs(env_file(case));
    cmd.output().unwrap_or_else(|e| panic!("cannot run stagectl for {}: {e}", case.name))
}

/// A line-by-line comparison: `-` expected, `+` actual, two lines of context around changes.
fn diff(expected: &str, actual: &str) -> String {
    let e: Vec<&str> = expected.lines().collect();
    let a: Vec<&str> = actual.lines().collect();
    // Longest common subsequence table, from the end.
    let mut lcs = vec![vec![0usize; a.len() + 1]; e.len() + 1];
    for i in (0..e.len()).rev() {
        for j in (0..a.len()).rev() {
            lcs[i][j] = if e[i] == a[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < e.len() || j < a.len() {
        if i < e.len() && j < a.len() && e[i] == a[j] {
            ops.push((' ', e[i]));
            i += 1;
            j += 1;
        } else if i < e.len() && (j == a.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', e[i]));
            i += 1;
        } else {
            ops.push(('+', a[j]));
            j += 1;
        }
    }
    let near_change = |k: usize| ops[k.saturating_sub(2)..(k + 3).min(ops.len())].iter().any(|(op, _)| *op != ' ');
    let mut out = String::new();
    let mut skipped = false;
    for (k, (op, line)) in ops.iter().enumerate() {
        if near_change(k) {
            if skipped {
                out.push_str("    ...\n");
                skipped = false;
            }
            let _ = writeln!(out, "  {op} {line}");
        } else {
            skipped = true;
        }
    }
    if expected.ends_with('\n') != actual.ends_with('\n') {
        let _ = writeln!(out, "  (final newline: expected {}, actual {})", expected.ends_with('\n'), actual.ends_with('\n'));
    }
    out
}

#[test]
fn every_corpus_manifest_gives_exactly_the_expected_output() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1");
    let cases = cases();
    assert!(cases.iter().filter(|c| !c.valid).count() >= 36, "the corpus has fewer bad manifests than expected");
    assert!(cases.iter().filter(|c| c.valid).count() >= 3, "the corpus has fewer valid manifests than expected");

    let mut failures: Vec<String> = Vec::new();
    for case in &cases {
        let output = run(case);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let code = output.status.code();
        let (want_code, checked_name, checked, other_name, other) = if case.valid {
            (0, "expected.stdout", &stdout, "stderr", &stderr)
        } else {
            (BAD_EXIT, "expected.stderr", &stderr, "stdout", &stdout)
        };
        let mut problems = String::new();
        if code != Some(want_code) {
            let _ = writeln!(problems, "  exit code: expected {want_code}, got {code:?}");
        }
        if !other.is_empty() {
            let _ = writeln!(problems, "  {other_name} should be empty, got:\n{}", indent(other));
        }
        let path = case.dir.join(checked_name);
        let stale = if case.valid { "expected.stderr" } else { "expected.stdout" };
        if case.dir.join(stale).exists() {
            let _ = writeln!(problems, "  stray {stale} (this case checks {checked_name})");
        }
        if update {
            if fs::read_to_string(&path).ok().as_deref() != Some(checked.as_str()) {
                fs::write(&path, checked).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
                eprintln!("updated {}/{checked_name}", case.name);
            }
        } else {
            match fs::read_to_string(&path) {
                Ok(expected) if expected == *checked => {}
                Ok(expected) => {
                    let _ = writeln!(problems, "  {checked_name} differs (- expected, + actual):\n{}", diff(&expected, checked));
                }
                Err(e) => {
                    let _ = writeln!(
                        problems,
                        "  cannot read {checked_name} ({e}); run with UPDATE_EXPECT=1 to create it. Actual output:\n{}",
                        indent(checked)
                    );
                }
            }
        }
        if !problems.is_empty() {
            failures.push(format!("{}:\n{problems}", case.name));
        }
    }
    assert!(failures.is_empty(), "{} of {} corpus cases failed:\n\n{}", failures.len(), cases.len(), failures.join("\n"));
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    | {l}\n")).collect()
}

/// `stagectl schema` accepts every valid manifest of the corpus, the demo and the examples, and
/// rejects what the parser rejects for its shape (an unknown key, a wrong type).
#[test]
fn the_json_schema_accepts_the_valid_manifests_and_rejects_bad_shapes() {
    let out = Command::new(env!("CARGO_BIN_EXE_stagectl")).arg("schema").output().expect("run stagectl schema");
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let as_json = |text: &str| -> serde_json::Value { serde_json::to_value(toml::from_str::<toml::Value>(text).expect("TOML")).unwrap() };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let mut manifests: Vec<PathBuf> = cases().into_iter().filter(|c| c.valid).map(|c| c.dir.join("stack.toml")).collect();
    manifests.push(root.join("stack.toml"));
    for entry in fs::read_dir(root.join("examples")).unwrap() {
        let path = entry.unwrap().path().join("stack.toml");
        if path.is_file() {
            manifests.push(path);
        }
    }
    assert!(manifests.len() >= 4, "{manifests:?}");
    for path in &manifests {
        let doc = as_json(&fs::read_to_string(path).unwrap());
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
    }
    for bad in [
        "[stack]\nname = \"s\"\n[services.a]\nimage = \"x\"\nimagee = \"y\"\n",
        "[stack]\nname = \"s\"\n[services.a]\nimage = \"x\"\ncommand = \"sh -c true\"\n",
        "[stack]\nname = \"Bad_Name\"\n",
        "[services.a]\nimage = \"x\"\n",
    ] {
        assert!(!validator.is_valid(&as_json(bad)), "the schema accepted:\n{bad}");
    }
}
