//! `[fixtures.SERVICE]`: the loader, the files, the jobs to wait for, masking and snapshots.

use std::collections::BTreeMap;

use toml::de::DeTable;

use super::cx::{env_or, Cx, Key, Value};
use crate::manifest::diag::{locate, Diagnostic};
use crate::manifest::{Fixtures, Loader, MaskRule, Service};

pub(super) const FIXTURE_KEYS: &[&str] =
    &["loader", "database", "user", "command", "files", "after", "mask", "sensitive", "seed", "snapshot"];
const LOADERS: &[&str] = &["postgres", "mysql", "redis", "command"];
/// Keys that only some loaders use, and those loaders.
const LOADER_ONLY_KEYS: [(&str, &[&str]); 3] =
    [("database", &["postgres", "mysql"]), ("user", &["postgres", "mysql"]), ("command", &["command"])];

/// `table.column`, as mask rules and sensitive columns are keyed.
pub(super) fn is_table_column(s: &str) -> bool {
    let ident = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    matches!(s.split_once('.'), Some((t, c)) if ident(t) && ident(c))
}

impl Cx<'_> {
    /// `[fixtures]`: one entry per data service, in file order.
    pub(super) fn fixtures(&mut self, v: &Value<'_>, services: &[Service], stack: &str) -> Vec<Fixtures> {
        let Some(t) = self.table(v, "`fixtures`") else { return Vec::new() };
        t.iter().filter_map(|(name, body)| self.fixtures_of(name, body, services, stack)).collect()
    }

    /// `stack`: the stack name, the default masking seed.
    fn fixtures_of(&mut self, name_key: &Key<'_>, body: &Value<'_>, services: &[Service], stack: &str) -> Option<Fixtures> {
        let service_name = name_key.get_ref().to_string();
        let field = |k: &str| format!("`fixtures.{service_name}.{k}`");
        let t = self.table(body, &format!("`fixtures.{service_name}`"))?;
        self.unknown_keys(t, FIXTURE_KEYS, &format!("[fixtures.{service_name}]"));
        let service = self.keyed_service(name_key, services, "fixtures", "fixtures are keyed by the data service they load into")?;
        if service.job {
            self.diags.push(
                Diagnostic::new(name_key.span(), format!("fixtures cannot load into job `{service_name}`"))
                    .help("load into the long-running data service instead"),
            );
            return None;
        }
        let loader = self.loader(body, t, service)?;
        if matches!(&loader, Loader::Mysql { database, .. } if database.is_empty()) {
            self.diags.push(
                Diagnostic::new(body.span(), format!("the mysql loader of [fixtures.{service_name}] needs a database")).help(format!(
                    "add `database = \"app\"`, or set MARIADB_DATABASE (or MYSQL_DATABASE) in `services.{service_name}.env`"
                )),
            );
            return None;
        }
        self.masking_needs_a_sql_loader(t, &loader, &service_name);
        let (files, files_lines) = self.fixture_files(body, t, &service_name)?;
        let after = self.after(t, services, &service_name)?;
        let mask = match t.get("mask") {
            Some(v) => self.mask(v, &field("mask"))?,
            None => BTreeMap::new(),
        };
        let sensitive = t.get("sensitive").map(|v| self.sensitive(v, &mask, &service_name)).unwrap_or_default();
        let seed = match t.get("seed") {
            Some(v) => self.plain_string(v, &field("seed"))?,
            None => stack.to_string(),
        };
        let snapshot = self.snapshot_flag(t, &loader, &service_name)?;
        let manifest_file = String::new(); // named by `manifest::parse`, which knows the file
        Some(Fixtures { service: service_name, loader, files, files_lines, manifest_file, after, mask, sensitive, seed, snapshot })
    }

    /// `loader` (default postgres) and its settings; settings of another loader are reported.
    fn loader(&mut self, body: &Value<'_>, t: &DeTable<'_>, service: &Service) -> Option<Loader> {
        let field = |k: &str| format!("`fixtures.{}.{k}`", service.name);
        let loader_name = match t.get("loader") {
            Some(v) => {
                let l = self.raw_string(v, &field("loader"))?.to_string();
                if !LOADERS.contains(&l.as_str()) {
                    self.diags.push(
                        Diagnostic::new(v.span(), format!("unknown loader `{l}`")).help(format!("use one of: {}", LOADERS.join(", "))),
                    );
                    return None;
                }
                l
            }
            None => "postgres".to_string(),
        };
        for (key, only) in LOADER_ONLY_KEYS {
            if let Some(v) = t.get(key).filter(|_| !only.contains(&loader_name.as_str())) {
                self.diags.push(Diagnostic::new(v.span(), format!("`{key}` only applies to the {} loader", only.join(" and "))));
            }
        }
        Some(match loader_name.as_str() {
            "postgres" => Loader::Postgres {
                database: match t.get("database") {
                    Some(v) => self.plain_string(v, &field("database"))?,
                    None => env_or(service, "POSTGRES_DB", "postgres"),
                },
                user: match t.get("user") {
                    Some(v) => self.plain_string(v, &field("user"))?,
                    None => env_or(service, "POSTGRES_USER", "postgres"),
                },
            },
            "mysql" => Loader::Mysql {
                database: match t.get("database") {
                    Some(v) => self.plain_string(v, &field("database"))?,
                    None => match env_or(service, "MARIADB_DATABASE", "") {
                        d if d.is_empty() => env_or(service, "MYSQL_DATABASE", ""),
                        d => d,
                    },
                }
                .trim()
                .to_string(),
                user: match t.get("user") {
                    Some(v) => self.plain_string(v, &field("user"))?,
                    None => "root".to_string(),
                },
            },
            "redis" => Loader::Redis,
            _ => match t.get("command") {
                Some(v) => Loader::Command { command: self.command(v, &field("command"))? },
                None => {
                    self.diags.push(
                        Diagnostic::new(body.span(), format!("the command loader needs {}", field("command")))
                            .help("add `command = [\"sh\", \"-c\", \"mysql -uroot app\"]`; each file is streamed to its stdin"),
                    );
                    return None;
                }
            },
        })
    }

    /// `files`: glob patterns, at least one, each with its manifest line.
    fn fixture_files(&mut self, body: &Value<'_>, t: &DeTable<'_>, service: &str) -> Option<(Vec<String>, Vec<usize>)> {
        let field = format!("`fixtures.{service}.files`");
        let Some(v) = t.get("files") else {
            self.diags.push(
                Diagnostic::new(body.span(), format!("missing {field}")).help("add `files = [\"fixtures/*.sql\", \"fixtures/*.csv\"]`"),
            );
            return None;
        };
        let items = self.string_array(v, &field)?;
        if items.is_empty() {
            self.diags.push(Diagnostic::new(v.span(), format!("{field} is empty")));
            return None;
        }
        for (pattern, span) in &items {
            if let Err(e) = glob::Pattern::new(pattern) {
                self.diags.push(Diagnostic::new(span.clone(), format!("invalid file pattern `{pattern}`: {}", e.msg)));
            }
        }
        let lines = items.iter().map(|(_, span)| locate(self.src, span.start).0).collect();
        Some((items.into_iter().map(|(p, _)| p).collect(), lines))
    }

    /// `after`: jobs that depend on the service (default: all of them), such as its migrations.
    fn after(&mut self, t: &DeTable<'_>, services: &[Service], service: &str) -> Option<Vec<String>> {
        let dependent_jobs: Vec<&str> =
            services.iter().filter(|s| s.job && s.depends_on.iter().any(|d| d == service)).map(|s| s.name.as_str()).collect();
        let Some(v) = t.get("after") else { return Some(dependent_jobs.iter().map(|s| s.to_string()).collect()) };
        let field = format!("`fixtures.{service}.after`");
        let items = self.string_array(v, &field)?;
        for (a, span) in &items {
            if !dependent_jobs.contains(&a.as_str()) {
                self.diags.push(
                    Diagnostic::new(span.clone(), format!("`{a}` in {field} is not a job that depends on `{service}`"))
                        .help("list jobs (job = true) whose depends_on includes this service, such as its migrations"),
                );
            }
        }
        Some(items.into_iter().map(|(a, _)| a).collect())
    }

    /// Only the postgres and mysql loaders read the rows they load (CSV), so only they can mask
    /// them: a rule another loader would ignore is an error, never a silent pass-through of raw
    /// values.
    fn masking_needs_a_sql_loader(&mut self, t: &DeTable<'_>, loader: &Loader, service: &str) {
        if matches!(loader, Loader::Postgres { .. } | Loader::Mysql { .. }) {
            return;
        }
        let name = match loader {
            Loader::Redis => "redis",
            _ => "command",
        };
        for key in ["mask", "sensitive"] {
            if let Some(v) = t.get(key) {
                self.diags.push(
                    Diagnostic::new(
                        v.span(),
                        format!("`fixtures.{service}.{key}` cannot be applied by the {name} loader: it streams files unchanged"),
                    )
                    .help("mask the data before it goes into the fixture files, or load CSV files with loader = \"postgres\" or \"mysql\""),
                );
            }
        }
    }

    /// `mask`: `table.column` → rule; bad entries are reported and left out.
    fn mask(&mut self, v: &Value<'_>, what: &str) -> Option<BTreeMap<String, MaskRule>> {
        let mt = self.table(v, what)?;
        let mut mask = BTreeMap::new();
        for (k, rv) in mt.iter() {
            let key: &str = k.get_ref();
            if !is_table_column(key) {
                self.diags.push(Diagnostic::new(k.span(), format!("mask key `{key}` must be `table.column`")));
                continue;
            }
            let Some(text) = self.raw_string(rv, &format!("mask rule for `{key}`")) else { continue };
            match MaskRule::parse(text) {
                Some(r) => {
                    mask.insert(key.to_string(), r);
                }
                None => self.diags.push(
                    Diagnostic::new(rv.span(), format!("unknown mask rule `{text}`"))
                        .help("use one of: email, name, phone, hash, null, keep, fixed:VALUE"),
                ),
            }
        }
        Some(mask)
    }

    /// `sensitive`: columns that must have a mask rule.
    fn sensitive(&mut self, v: &Value<'_>, mask: &BTreeMap<String, MaskRule>, service: &str) -> Vec<String> {
        let mut sensitive = Vec::new();
        for (c, span) in self.string_array(v, &format!("`fixtures.{service}.sensitive`")).unwrap_or_default() {
            if !is_table_column(&c) {
                self.diags.push(Diagnostic::new(span, format!("sensitive column `{c}` must be `table.column`")));
            } else if !mask.contains_key(&c) {
                self.diags.push(
                    Diagnostic::new(span, format!("sensitive column `{c}` has no mask rule"))
                        .help(format!("add a rule for it to `fixtures.{service}.mask`, e.g. \"{c}\" = \"hash\"")),
                );
            } else {
                sensitive.push(c);
            }
        }
        sensitive
    }

    /// `snapshot`: on by default for the postgres and mysql loaders; the command loader may
    /// opt in (the service is stopped cleanly for the commit, so its data must be on disk by
    /// then). Not for Redis: the staging image keeps nothing on disk, a stop loses the data.
    fn snapshot_flag(&mut self, t: &DeTable<'_>, loader: &Loader, service: &str) -> Option<bool> {
        let by_default = matches!(loader, Loader::Postgres { .. } | Loader::Mysql { .. });
        let Some(v) = t.get("snapshot") else { return Some(by_default) };
        let snapshot = self.boolean(v, &format!("`fixtures.{service}.snapshot`"))?;
        if snapshot && matches!(loader, Loader::Redis) {
            self.diags.push(
                Diagnostic::new(v.span(), "snapshots are not supported for the redis loader")
                    .help("remove `snapshot = true`; reloading small Redis fixtures is fast"),
            );
        }
        Some(snapshot)
    }
}
