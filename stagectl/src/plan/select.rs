//! Services named on the command line (`up SERVICE...`, `restart`, `stop`): checked against
//! the manifest, closed over what they need, and cut out as a smaller manifest.

use std::collections::BTreeSet;

use crate::manifest::{CheckKind, Manifest};

/// A service name the manifest does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no service `{name}` in stack `{stack}` (services: {})", known.join(", "))]
pub struct UnknownService {
    pub name: String,
    pub stack: String,
    pub known: Vec<String>,
}

/// Every name must be a service of the manifest.
pub fn check_names(manifest: &Manifest, names: &[String]) -> Result<(), UnknownService> {
    match names.iter().find(|n| manifest.service(n).is_none()) {
        None => Ok(()),
        Some(name) => Err(UnknownService {
            name: name.clone(),
            stack: manifest.stack.clone(),
            known: manifest.services.iter().map(|s| s.name.clone()).collect(),
        }),
    }
}

/// The named services and everything they need to come up: their dependencies, and for a
/// data service the jobs its fixture load waits for (`after`) with their dependencies, all
/// transitively.
pub fn with_dependencies(manifest: &Manifest, names: &[String]) -> Result<BTreeSet<String>, UnknownService> {
    check_names(manifest, names)?;
    let mut selected: BTreeSet<String> = BTreeSet::new();
    let mut todo: Vec<String> = names.to_vec();
    while let Some(name) = todo.pop() {
        if !selected.insert(name.clone()) {
            continue;
        }
        if let Some(s) = manifest.service(&name) {
            todo.extend(s.depends_on.iter().cloned());
        }
        if let Some(f) = manifest.fixtures_for(&name) {
            todo.extend(f.after.iter().cloned());
        }
        if let Some(job) = manifest.migrations.iter().find(|m| m.service == name).and_then(|m| m.job.clone()) {
            todo.push(job);
        }
    }
    Ok(selected)
}

/// The manifest with only the `keep` services (in file order) and their fixtures, migrations
/// and checks. The secrets stay whole: everything shown is still masked.
pub fn subset(manifest: &Manifest, keep: &BTreeSet<String>) -> Manifest {
    let mut m = manifest.clone();
    m.services.retain(|s| keep.contains(&s.name));
    m.fixtures.retain(|f| keep.contains(&f.service));
    m.migrations.retain(|g| keep.contains(&g.service));
    m.smoke.retain(|c| check_service(&c.kind).is_none_or(|s| keep.contains(s)));
    m
}

/// The service a smoke check runs against (a host script has none).
fn check_service(kind: &CheckKind) -> Option<&String> {
    match kind {
        CheckKind::Http { service, .. }
        | CheckKind::Tcp { service, .. }
        | CheckKind::Exec { service, .. }
        | CheckKind::Sql { service, .. } => Some(service),
        CheckKind::Script { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::tests::parse_ok;

    const STACK: &str = r#"
[stack]
name = "s"
[services.db]
image = "pg"
[services.migrate]
image = "pg"
job = true
depends_on = ["db"]
[services.cache]
image = "redis"
[services.app]
image = "app"
depends_on = ["cache"]
[services.other]
image = "app"
[fixtures.db]
files = ["f/*.sql"]
after = ["migrate"]
[[checks.smoke]]
name = "db"
tcp = { service = "db", port = 5432 }
[[checks.smoke]]
name = "other"
tcp = { service = "other", port = 80 }
"#;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_data_service_brings_the_jobs_its_load_waits_for_and_their_dependencies() {
        let m = parse_ok(STACK);
        assert_eq!(with_dependencies(&m, &["db".into()]).unwrap(), set(&["db", "migrate"]));
        assert_eq!(with_dependencies(&m, &["app".into()]).unwrap(), set(&["app", "cache"]));
        let part = subset(&m, &set(&["db", "migrate"]));
        let names: Vec<&str> = part.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["db", "migrate"], "in file order");
        assert_eq!((part.fixtures.len(), part.smoke.len()), (1, 1));
        assert_eq!(part.secret_values(), m.secret_values(), "secrets stay whole for masking");
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let m = parse_ok(STACK);
        let e = with_dependencies(&m, &["app".into(), "ap".into()]).unwrap_err();
        assert_eq!(e.to_string(), "no service `ap` in stack `s` (services: db, migrate, cache, app, other)");
    }
}
