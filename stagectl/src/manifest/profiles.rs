//! Compose-style profiles: a service with `profiles` runs only when one of them is selected
//! (`--profile NAME`, `STAGECTL_PROFILES`); a service without runs always. Pure.

use super::{CheckKind, Manifest};

/// A profile selection that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("service `{service}` depends on `{dependency}`, which only runs with profile {profiles} (not selected)\n  = help: select it with `--profile {first}` (or STAGECTL_PROFILES), or give `{service}` the same profile")]
    DependencyNotSelected { service: String, dependency: String, profiles: String, first: String },
    #[error("the fixtures of `{service}` wait for job `{job}`, which only runs with profile {profiles} (not selected)\n  = help: select it with `--profile {first}`, or take `{job}` out of the fixtures' `after`")]
    FixtureJobNotSelected { service: String, job: String, profiles: String, first: String },
    #[error("no service has profile `{profile}` (profiles in the manifest: {known})")]
    Unknown { profile: String, known: String },
}

impl Manifest {
    /// The manifest with only the services that run under `selected` profiles (`*`: all);
    /// the others are listed in `inactive`, and their fixtures, migrations and smoke checks
    /// are left out too.
    pub fn select_profiles(mut self, selected: &[String]) -> Result<Manifest, ProfileError> {
        let all = selected.iter().any(|p| p == "*");
        let mut known: Vec<&str> = self.services.iter().flat_map(|s| s.profiles.iter().map(String::as_str)).collect();
        known.sort_unstable();
        known.dedup();
        if let Some(p) = selected.iter().find(|p| *p != "*" && !known.contains(&p.as_str())) {
            let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
            return Err(ProfileError::Unknown { profile: p.clone(), known });
        }
        let runs = |profiles: &[String]| all || profiles.is_empty() || profiles.iter().any(|p| selected.contains(p));
        let inactive: Vec<String> = self.services.iter().filter(|s| !runs(&s.profiles)).map(|s| s.name.clone()).collect();
        if inactive.is_empty() {
            return Ok(self);
        }
        let describe = |name: &str| {
            let profiles = &self.service(name).map(|s| s.profiles.clone()).unwrap_or_default();
            let text = profiles.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(" or ");
            (text, profiles.first().cloned().unwrap_or_default())
        };
        for s in self.services.iter().filter(|s| runs(&s.profiles)) {
            if let Some(dep) = s.depends_on.iter().find(|d| inactive.contains(d)) {
                let (profiles, first) = describe(dep);
                return Err(ProfileError::DependencyNotSelected { service: s.name.clone(), dependency: dep.clone(), profiles, first });
            }
        }
        for f in self.fixtures.iter().filter(|f| !inactive.contains(&f.service)) {
            if let Some(job) = f.after.iter().find(|j| inactive.contains(j)) {
                let (profiles, first) = describe(job);
                return Err(ProfileError::FixtureJobNotSelected { service: f.service.clone(), job: job.clone(), profiles, first });
            }
        }
        self.services.retain(|s| !inactive.contains(&s.name));
        self.fixtures.retain(|f| !inactive.contains(&f.service));
        self.migrations.retain(|m| !inactive.contains(&m.service) && m.job.as_ref().is_none_or(|j| !inactive.contains(j)));
        self.smoke.retain(|c| match &c.kind {
            CheckKind::Http { service, .. }
            | CheckKind::Tcp { service, .. }
            | CheckKind::Exec { service, .. }
            | CheckKind::Sql { service, .. } => !inactive.contains(service),
            CheckKind::Script { .. } => true,
        });
        self.inactive = inactive;
        Ok(self)
    }
}
