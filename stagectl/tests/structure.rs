//! The architecture's rules, checked on the source text (ARCHITECTURE.md, "Invariants"): the
//! top-level modules form no cycle, the adapters' crates stay in their adapters, the pure core
//! does no I/O, and no source file grows past what one person reads in a sitting.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 900;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/` with its top-level module (`manifest/parse.rs` → `manifest`).
fn sources() -> Vec<(String, PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&src_dir(), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(src_dir()).unwrap();
            let first = rel.components().next().unwrap().as_os_str().to_string_lossy().to_string();
            let module = first.trim_end_matches(".rs").to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            (module, path, text)
        })
        .collect()
}

/// Code without `//` comments, so prose that names a module is no dependency.
fn code(text: &str) -> String {
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// The file without its inline unit tests (`#[cfg(test)] mod tests { … }`, last in a file by
/// convention): unit tests may reach anywhere (e.g. the fake engine); only shipped code is
/// layered. A `#[cfg(test)] mod tests;` declaration cuts nothing.
fn shipped(text: &str) -> &str {
    let mut from = 0;
    while let Some(at) = text[from..].find("#[cfg(test)]").map(|i| from + i) {
        let after = text[at + "#[cfg(test)]".len()..].trim_start();
        if after.starts_with("mod tests {") {
            return &text[..at];
        }
        from = at + 1;
    }
    text
}

/// Top-level module → the top-level modules its non-test code names as `crate::<module>`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, path, text) in sources() {
        if module == "lib" || module == "main" || path.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let deps = graph.entry(module.clone()).or_default();
        for rest in code(shipped(&text)).split("crate::").skip(1) {
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() && name != module {
                deps.insert(name);
            }
        }
    }
    graph
}

/// A cycle through `start`, if there is one (depth-first search).
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn visit(
        graph: &BTreeMap<String, BTreeSet<String>>,
        node: &str,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(node).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if visit(graph, next, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    visit(graph, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn the_top_level_modules_form_no_cycle() {
    let graph = module_graph();
    assert!(graph.len() > 5, "the scan found too few modules: {graph:?}");
    let cycles: Vec<String> = graph.keys().filter_map(|m| cycle_from(&graph, m)).map(|c| c.join(" → ")).collect();
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

#[test]
fn adapter_crates_stay_in_their_adapters() {
    for (module, path, text) in sources() {
        let code = code(&text);
        for (krate, home) in [("bollard", "docker"), ("rusqlite", "history"), ("tiny_http", "daemon"), ("notify::", "daemon")] {
            if module != home {
                assert!(!code.contains(krate), "{} uses `{krate}`, which belongs in `{home}/` only", path.display());
            }
        }
        if module != "cli" && module != "main" {
            assert!(!code.contains("clap::"), "{} uses clap: the command line stays in `cli/`", path.display());
        }
    }
}

#[test]
fn the_pure_core_does_no_io() {
    for (module, path, text) in sources() {
        if !["manifest", "plan", "sql", "text"].contains(&module.as_str()) {
            continue;
        }
        let shipped = code(shipped(&text));
        for io in ["std::fs", "TcpStream", "UdpSocket", "ToSocketAddrs", "std::env", "tokio", "std::process", "Instant::now", "SystemTime"]
        {
            assert!(!shipped.contains(io), "{} is pure core but uses `{io}`", path.display());
        }
    }
}

#[test]
fn no_source_file_is_over_the_line_budget() {
    let long: Vec<String> = sources()
        .iter()
        .map(|(_, path, text)| (path, text.lines().count()))
        .filter(|(_, n)| *n > MAX_LINES)
        .map(|(p, n)| format!("{}: {n} lines", p.display()))
        .collect();
    assert!(long.is_empty(), "split these files (over {MAX_LINES} lines):\n{}", long.join("\n"));
}

/// `export/` (ARCHITECTURE.md): it may import only the pure core it converts, and its
/// conversions (`export/k8s/`) do no I/O: only `export/file.rs` reads and writes files.
#[test]
fn the_export_reads_only_the_pure_core_and_converts_without_io() {
    let graph = module_graph();
    let allowed = ["manifest", "plan"];
    let deps = graph.get("export").expect("the export module");
    let extra: Vec<&String> = deps.iter().filter(|d| !allowed.contains(&d.as_str())).collect();
    assert!(extra.is_empty(), "export/ may import only {allowed:?}, but names {extra:?}");
    for (module, path, text) in sources() {
        let rel = path.strip_prefix(src_dir()).unwrap();
        if module != "export" || !rel.starts_with("export/k8s") {
            continue;
        }
        let shipped = code(shipped(&text));
        for io in ["std::fs", "TcpStream", "std::env", "tokio", "std::process", "Instant::now", "SystemTime", "println!", "eprintln!"] {
            assert!(!shipped.contains(io), "{} converts, so must not use `{io}`", path.display());
        }
    }
}
