//! `stagectl snapshots push REGISTRY`: the images a stack needs that exist only on this engine
//! (its fixture snapshots and the images built from its contexts) pushed to a registry, so
//! every node of a swarm can pull them (`deploy --swarm --registry`).
//!
//! An image keeps its repository and tag under the registry: `stagectl-snapshot/db:<key>`
//! goes to `REGISTRY/stagectl-snapshot/db:<key>`. The snapshots are those `snapshots export`
//! takes (the ones the current manifest keys; `--all`: every snapshot of the stack), the
//! built images those of each `build` as its context is now. Nothing is written beside the
//! registry: the references follow from the manifest and the registry's address, so `deploy`
//! needs only `--registry` again. No credentials are sent (a registry that wants a login
//! refuses the push).

use std::time::Instant;

use serde::Serialize;

use super::images;
use super::progress::{Phase, Reporter};
use super::snapshots;
use crate::docker::{ContainerEngine, ImageProgress};
use crate::error::{Error, Result};
use crate::manifest::Manifest;

/// Repositories of images that exist only where stagectl made them.
const LOCAL_ONLY_PREFIXES: [&str; 2] = [crate::data::snapshot::REPOSITORY_PREFIX, images::BUILD_REPOSITORY_PREFIX];

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry `{registry}`: {reason}\n  = help: give its address as `HOST:PORT` or `HOST:PORT/PATH`, e.g. `127.0.0.1:5000` or `registry.example:5000/team`")]
    BadAddress { registry: String, reason: String },
    #[error("nothing to push: stack `{stack}` has no data service with fixture snapshots on and no service with a `build`")]
    Nothing { stack: String },
    #[error("service `{service}`: its built image is not here ({why}); run `stagectl up` first")]
    NotBuilt { service: String, why: String },
    #[error("pushing {image} to registry {registry} failed: {detail}\n  = help: is the registry running and reachable from the Docker engine (Docker allows plain HTTP only to registries on 127.0.0.0/8 unless configured as insecure)?")]
    Push { registry: String, image: String, detail: String },
}

impl From<RegistryError> for Error {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Push { .. } => Error::StackFailed(e.to_string()),
            _ => Error::Usage(e.to_string()),
        }
    }
}

/// Refuses what Docker would not take as the start of an image reference.
pub fn check_registry(registry: &str) -> std::result::Result<(), RegistryError> {
    // What is named in the message: never a `user:password@` part.
    let shown = match registry.rsplit_once('@') {
        Some((_, host)) => format!("<credentials>@{host}"),
        None => registry.to_string(),
    };
    let bad = |reason: &str| Err(RegistryError::BadAddress { registry: shown.clone(), reason: reason.to_string() });
    if registry.is_empty() {
        return bad("empty");
    }
    if registry.contains("://") {
        return bad("a scheme is not part of an image reference (Docker picks HTTPS, or HTTP on loopback)");
    }
    if registry.contains('@') {
        return bad("credentials do not belong in the address (they would show in image names)");
    }
    if registry.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("it contains white space");
    }
    let registry = registry.trim_end_matches('/');
    let (host, path) = registry.split_once('/').unwrap_or((registry, ""));
    if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)) {
        return bad("its host part is not a host name or address (with an optional `:PORT`)");
    }
    for part in path.split('/').filter(|_| !path.is_empty()) {
        if part.is_empty() || !part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c)) {
            return bad("a path part may hold only lower-case letters, digits, `.`, `_` and `-`");
        }
    }
    Ok(())
}

/// Whether `reference` names an image only this engine has (a snapshot, a build).
pub fn local_only(reference: &str) -> bool {
    LOCAL_ONLY_PREFIXES.iter().any(|p| reference.starts_with(p))
}

/// The name of `reference` in `registry`: the same repository and tag under the registry.
pub fn registry_reference(registry: &str, reference: &str) -> String {
    let registry = registry.trim_end_matches('/');
    if reference.starts_with(&format!("{registry}/")) {
        return reference.to_string();
    }
    format!("{registry}/{reference}")
}

/// One image pushed.
#[derive(Debug, Clone, Serialize)]
pub struct Pushed {
    pub service: String,
    /// `snapshot` or `build`.
    pub kind: &'static str,
    /// The local reference.
    pub image: String,
    /// Where it is in the registry.
    pub reference: String,
    /// For a snapshot: `current`, `latest` or `all` (as `snapshots export`).
    pub how: String,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    pub registry: String,
    pub seconds: f64,
    pub images: Vec<Pushed>,
    pub notes: Vec<String>,
}

/// Pushes the stack's local-only images (see the module docs) to `registry`, reporting each
/// under its service.
pub async fn push<E: ContainerEngine + ?Sized>(
    docker: &E,
    manifest: &Manifest,
    registry: &str,
    all: bool,
    reporter: &dyn Reporter,
) -> Result<PushReport> {
    check_registry(registry)?;
    let registry = registry.trim_end_matches('/');
    let started = Instant::now();
    let mut wanted: Vec<(String, &'static str, String, String)> = Vec::new();
    let mut notes = Vec::new();
    if all || manifest.fixtures.iter().any(|f| f.snapshot) {
        let (chosen, why) = snapshots::select(docker, manifest, all).await?;
        notes.extend(why);
        wanted.extend(chosen.into_iter().map(|s| (s.service, "snapshot", s.reference, s.how)));
    }
    for service in &manifest.services {
        let Some(build) = &service.build else { continue };
        let failed = |e: &dyn std::fmt::Display| Error::StackFailed(format!("snapshots push: service `{}`: {e}", service.name));
        match images::current_build_reference(docker, service, build).await.map_err(|e| failed(&e))? {
            Ok(tag) => wanted.push((service.name.clone(), "build", tag, "current".into())),
            Err(why) => return Err(RegistryError::NotBuilt { service: service.name.clone(), why }.into()),
        }
    }
    if wanted.is_empty() {
        return Err(RegistryError::Nothing { stack: manifest.stack.clone() }.into());
    }
    let mut pushed = Vec::new();
    for (service, kind, image, how) in wanted {
        let one = Instant::now();
        let reference = registry_reference(registry, &image);
        let subject = format!("{service} ({kind})");
        reporter.phase(&subject, Phase::Pushing, &reference);
        let failed = |detail: String| RegistryError::Push { registry: registry.to_string(), image: image.clone(), detail };
        docker.tag_image(&image, &reference).await?;
        let progress = |p: ImageProgress| match p {
            ImageProgress::Bytes { current, total } => reporter.bytes(&subject, current, total),
            ImageProgress::Line(l) => reporter.output(&subject, &l),
        };
        let result = docker.push_image(&reference, &progress).await;
        // The registry tag was only the push's handle: the local name stays the one `up` uses.
        let untagged = docker.remove_image(&reference).await;
        match result {
            Err(Error::Docker { detail, .. }) => return Err(failed(detail).into()),
            other => other?,
        }
        untagged?;
        let seconds = one.elapsed().as_secs_f64();
        reporter.phase(&subject, Phase::Pushed, &format!("{reference} in {seconds:.1}s"));
        pushed.push(Pushed { service, kind, image, reference, how, seconds });
    }
    Ok(PushReport { registry: registry.to_string(), seconds: started.elapsed().as_secs_f64(), images: pushed, notes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::snapshot;
    use crate::docker::fake::FakeEngine;

    struct Quiet;
    impl Reporter for Quiet {
        fn phase(&self, _: &str, _: Phase, _: &str) {}
    }

    fn stack_with_a_snapshot(fake: &FakeEngine) -> (Manifest, String) {
        let toml = "[stack]\nname = \"s\"\n[services.db]\nimage = \"stagectl/postgres:15\"\n[fixtures.db]\nfiles = [\"seed.sql\"]\n";
        let vars = crate::manifest::VarSource::default();
        let manifest = crate::manifest::parse(toml, "stack.toml", std::path::Path::new("/proj"), &vars, &|_| true)
            .unwrap_or_else(|e| panic!("{}", e.render()));
        let key = "b".repeat(64);
        let reference = snapshot::reference("db", &key);
        fake.labelled_image("sha256:snap", &reference, snapshot::image_labels("s", "db", &key, "sha256:base", 2, 0.1));
        (manifest, reference)
    }

    #[tokio::test]
    async fn every_snapshot_is_pushed_under_the_registry_and_the_handle_tag_is_removed() {
        let fake = FakeEngine::default();
        let (manifest, reference) = stack_with_a_snapshot(&fake);
        let report = push(&fake, &manifest, "127.0.0.1:5000/", true, &Quiet).await.unwrap();
        let pushed = format!("127.0.0.1:5000/{reference}");
        assert_eq!(fake.calls_to("push_image"), vec![format!("push_image {pushed}")]);
        assert_eq!((report.images[0].reference.as_str(), report.images[0].how.as_str()), (pushed.as_str(), "all"));
        assert_eq!(report.registry, "127.0.0.1:5000");
        assert!(fake.image_id(&pushed).await.unwrap().is_none(), "the registry tag is not kept");
        assert!(fake.image_id(&reference).await.unwrap().is_some(), "the snapshot is");
    }

    #[tokio::test]
    async fn a_refused_push_names_the_registry_and_the_image_and_leaves_no_tag() {
        let fake = FakeEngine::default();
        let (manifest, reference) = stack_with_a_snapshot(&fake);
        fake.fail_on("push_image", "dial tcp 127.0.0.1:9: connect: connection refused");
        let err = push(&fake, &manifest, "127.0.0.1:9", true, &Quiet).await.unwrap_err();
        assert_eq!(err.exit_code(), crate::error::exit::STACK_FAILED);
        let text = err.to_string();
        assert!(text.contains(&format!("pushing {reference} to registry 127.0.0.1:9 failed: dial tcp")), "{text}");
        assert!(fake.image_id(&format!("127.0.0.1:9/{reference}")).await.unwrap().is_none());
    }

    #[test]
    fn a_reference_keeps_its_repository_and_tag_under_the_registry() {
        assert_eq!(registry_reference("127.0.0.1:5000", "stagectl-snapshot/db:0123abcd"), "127.0.0.1:5000/stagectl-snapshot/db:0123abcd");
        assert_eq!(
            registry_reference("reg.example:5000/team/", "stagectl-build/app:ff00"),
            "reg.example:5000/team/stagectl-build/app:ff00"
        );
        assert_eq!(registry_reference("127.0.0.1:5000", "127.0.0.1:5000/stagectl-build/app:1"), "127.0.0.1:5000/stagectl-build/app:1");
    }

    #[test]
    fn only_stagectl_made_images_are_local_only() {
        assert!(local_only("stagectl-snapshot/db:abc"));
        assert!(local_only("stagectl-build/app:abc"));
        assert!(!local_only("stagectl/postgres:15"));
        assert!(!local_only("docker.io/library/redis:7"));
    }

    #[test]
    fn addresses_docker_would_refuse_are_refused_with_the_reason() {
        for ok in ["127.0.0.1:5000", "registry.example:5000/team", "localhost:5000/a/b-c", "[::1]:5000", "reg/"] {
            assert!(check_registry(ok).is_ok(), "{ok}");
        }
        let reason = |r: &str| check_registry(r).unwrap_err().to_string();
        assert!(reason("http://127.0.0.1:5000").contains("scheme"));
        assert!(reason("user:pw@reg:5000").contains("credentials"));
        assert!(!reason("user:pw@reg:5000").contains("pw"), "a password in the address is not repeated");
        assert!(reason("reg:5000/Team").contains("lower-case"));
        assert!(reason("reg:5000//x").contains("path part"));
        assert!(reason("").contains("empty"));
        assert!(reason("a b").contains("white space"));
    }
}
