//! Making sure every service has its image: pulled when missing, or built from its context
//! (after an optional host build command), keyed by a content hash so unchanged contexts are
//! never rebuilt.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::progress::{Phase, Reporter};
use crate::docker::{labels, ContainerEngine, ImageProgress};
use crate::error::Error;
use crate::manifest::{Build, Manifest, Service};
use crate::plan;
use crate::secrets::Redactor;

/// Why a service has no image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot run build command `{command}`: {source}")]
    HostCommandSpawn { command: String, source: std::io::Error },
    /// The host build command failed; `output_tail` is its last 20 lines, secrets masked.
    #[error("build command `{command}` failed ({status})\n{output_tail}")]
    HostCommandFailed { command: String, status: ExitStatus, output_tail: String },
    #[error("reading build context {}: {source}", path.display())]
    Context { path: PathBuf, source: std::io::Error },
    /// The blocking task that reads the context panicked or was cancelled.
    #[error("{0}")]
    ContextTask(#[from] tokio::task::JoinError),
    #[error(
        "{source}\n  = help: check the image name, or that the registry is reachable (pull it by hand with `docker pull {reference}`)"
    )]
    Pull { reference: String, source: Error },
    #[error("pulled {reference} but it is not present")]
    PulledButMissing { reference: String },
    #[error(transparent)]
    Docker(#[from] Error),
    /// The build this service shares with others failed: each of them fails with its message.
    #[error(transparent)]
    Shared(Arc<ImageError>),
}

/// The image a service will run, and how it was obtained.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    pub id: String,
    pub reference: String,
    pub how: &'static str,
    pub seconds: f64,
}

/// What makes two builds the same: services whose `build` has the same context, dockerfile,
/// args and host command get one image.
/// The host command then runs once too, with `STAGECTL_SERVICE` naming the service that builds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct BuildKey {
    context: PathBuf,
    dockerfile: String,
    args: BTreeMap<String, String>,
    command: Option<String>,
}

impl BuildKey {
    fn of(build: &Build) -> Self {
        BuildKey {
            context: build.context.clone(),
            dockerfile: build.dockerfile.clone(),
            args: build.args.clone(),
            command: build.command.clone(),
        }
    }
}

/// A build done (or found cached) once for every service that shares it.
#[derive(Debug, Clone)]
struct Built {
    id: String,
    hash: String,
    how: &'static str,
    /// The service whose pipeline did it.
    by: String,
}

/// The result every sharing service awaits: the first to ask does the work. A failure is
/// shared too, so they all fail with the same message.
#[derive(Default)]
struct Shared {
    /// Set by the first pipeline to ask: the others say they wait.
    claimed: AtomicBool,
    result: tokio::sync::OnceCell<Result<Built, Arc<ImageError>>>,
}
type SharedBuild = Arc<Shared>;

/// The builds of one `up`: each distinct build (see [`BuildKey`]) is run once, by the first
/// pipeline that needs it; the others await the same result and run the same image.
pub struct Builds {
    shared: BTreeMap<BuildKey, (Vec<String>, SharedBuild)>,
}

impl Builds {
    pub fn new(manifest: &Manifest) -> Self {
        let mut shared: BTreeMap<BuildKey, (Vec<String>, SharedBuild)> = BTreeMap::new();
        for s in &manifest.services {
            if let Some(build) = &s.build {
                shared.entry(BuildKey::of(build)).or_default().0.push(s.name.clone());
            }
        }
        Builds { shared }
    }
}

/// Every build's tag starts so: `stagectl-build/<service>:<content hash prefix>`.
pub const BUILD_REPOSITORY_PREFIX: &str = "stagectl-build/";

/// The tag of a service's build, by content.
fn build_tag(service: &str, hash: &str) -> String {
    format!("{BUILD_REPOSITORY_PREFIX}{service}:{}", &hash[..16])
}

pub async fn ensure_image<E: ContainerEngine + ?Sized>(
    docker: &E,
    manifest: &Manifest,
    service: &Service,
    builds: &Builds,
    reporter: &dyn Reporter,
    redactor: &Redactor,
) -> Result<ResolvedImage, ImageError> {
    let start = Instant::now();
    let name = service.name.as_str();
    if let Some(build) = &service.build {
        let (group, cell) =
            builds.shared.get(&BuildKey::of(build)).cloned().unwrap_or_else(|| (vec![name.to_string()], Default::default()));
        if cell.claimed.swap(true, Ordering::SeqCst) && !cell.result.initialized() {
            reporter.phase(name, Phase::Waiting, &format!("for the build it shares with {}", others(&group, name)));
        }
        let built = cell
            .result
            .get_or_init(|| async { build_once(docker, manifest, service, build, &group, reporter, redactor).await.map_err(Arc::new) })
            .await
            .clone()
            .map_err(ImageError::Shared)?;
        let tag = build_tag(name, &built.hash);
        // The service's own tag and the user-facing one (`image = ...`) name the shared image
        // (a fresh build already carries the builder's tags).
        if !(built.how == "built" && built.by == name) {
            for t in std::iter::once(&tag).chain(service.image.iter()) {
                if docker.image_id(t).await?.as_deref() != Some(built.id.as_str()) {
                    docker.tag_image(&built.id, t).await?;
                }
            }
        }
        if built.by != name {
            reporter.phase(name, Phase::ImageReady, &format!("{} once for {}", built.how, group.join(", ")));
        }
        return Ok(ResolvedImage { id: built.id, reference: tag, how: built.how, seconds: start.elapsed().as_secs_f64() });
    }
    let reference = service.image.clone().unwrap_or_default();
    if let Some(id) = docker.image_id(&reference).await? {
        reporter.phase(name, Phase::ImageReady, "image present");
        return Ok(ResolvedImage { id, reference, how: "present", seconds: start.elapsed().as_secs_f64() });
    }
    reporter.phase(name, Phase::Pulling, &reference);
    let progress = |p: ImageProgress| match p {
        ImageProgress::Bytes { current, total } => reporter.bytes(name, current, total),
        ImageProgress::Line(l) => reporter.output(name, &l),
    };
    docker.pull_image(&reference, &progress).await.map_err(|source| ImageError::Pull { reference: reference.clone(), source })?;
    let id = docker.image_id(&reference).await?.ok_or_else(|| ImageError::PulledButMissing { reference: reference.clone() })?;
    reporter.phase(name, Phase::ImageReady, "pulled");
    Ok(ResolvedImage { id, reference, how: "pulled", seconds: start.elapsed().as_secs_f64() })
}

/// The image `up` would run for `service`, found without pulling or building (`stagectl
/// diff`): the present image of its reference, or the cached build of its context as it is
/// now (a host build command is not run). `Err(note)` says why it is not known: what `up`
/// would do instead.
pub async fn current_image<E: ContainerEngine + ?Sized>(
    docker: &E,
    service: &Service,
) -> Result<std::result::Result<String, String>, ImageError> {
    let Some(build) = &service.build else {
        let reference = service.image.clone().unwrap_or_default();
        return Ok(docker.image_id(&reference).await?.ok_or(format!("would be pulled: {reference} is not present")));
    };
    let (_, hash) = context_tar_and_hash(build).await?;
    let unrun = if build.command.is_some() { " (its host build command was not run)" } else { "" };
    Ok(docker.image_id(&build_tag(&service.name, &hash)).await?.ok_or(format!("would be rebuilt: the build context changed{unrun}")))
}

/// The tag of the image `up` would build for `service` as its context is now, when that image
/// is present (`snapshots push`); `Err(note)` says why not (as [`current_image`]).
pub async fn current_build_reference<E: ContainerEngine + ?Sized>(
    docker: &E,
    service: &Service,
    build: &Build,
) -> Result<std::result::Result<String, String>, ImageError> {
    let (_, hash) = context_tar_and_hash(build).await?;
    let tag = build_tag(&service.name, &hash);
    Ok(match docker.image_id(&tag).await? {
        Some(_) => Ok(tag),
        None => Err("not built: the build context changed since the last `up` (or it never ran)".to_string()),
    })
}

/// The build context as a tar (what `.dockerignore` leaves), and its content hash.
async fn context_tar_and_hash(build: &Build) -> Result<(Vec<u8>, String), ImageError> {
    let context = build.context.clone();
    let ignore = read_dockerignore(&context);
    let tar = tokio::task::spawn_blocking(move || context_tar(&context, &ignore))
        .await?
        .map_err(|source| ImageError::Context { path: build.context.clone(), source })?;
    let hash = context_hash(&tar, build);
    Ok((tar, hash))
}

/// `` `a`, `b` `` for every service of `group` but `name`.
fn others(group: &[String], name: &str) -> String {
    group.iter().filter(|s| *s != name).map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
}

/// Host command, context tar and hash, then the image: cached when any service of `group`
/// has a tag for this content, else built (reported under `service`, the one doing it).
async fn build_once<E: ContainerEngine + ?Sized>(
    docker: &E,
    manifest: &Manifest,
    service: &Service,
    build: &Build,
    group: &[String],
    reporter: &dyn Reporter,
    redactor: &Redactor,
) -> Result<Built, ImageError> {
    let name = service.name.as_str();
    if let Some(cmd) = &build.command {
        reporter.phase(name, Phase::Building, &format!("host command: {cmd}"));
        run_host_command(cmd, &manifest.dir, name, build, reporter, redactor).await?;
    }
    let (tar, hash) = context_tar_and_hash(build).await?;
    for s in group {
        if let Some(id) = docker.image_id(&build_tag(s, &hash)).await? {
            reporter.phase(name, Phase::ImageReady, "build cached (context unchanged)");
            return Ok(Built { id, hash, how: "cached", by: name.to_string() });
        }
    }
    let mut tags = vec![build_tag(name, &hash)];
    tags.extend(service.image.iter().cloned());
    reporter.phase(name, Phase::Building, &format!("docker build {}", build.context.display()));
    // The stack's labels let `down` and prune find what it built.
    let mut image_labels = plan::stack_labels(&manifest.stack);
    image_labels.insert(labels::CONTEXT_HASH.to_string(), hash.clone());
    let progress = |p: ImageProgress| {
        if let ImageProgress::Line(l) = p {
            reporter.output(name, &l)
        }
    };
    let id = docker.build_image(tar, &build.dockerfile, &tags, &build.args, &image_labels, &progress).await?;
    reporter.phase(name, Phase::ImageReady, "built");
    Ok(Built { id, hash, how: "built", by: name.to_string() })
}

async fn run_host_command(
    cmd: &str,
    dir: &Path,
    service: &str,
    build: &Build,
    reporter: &dyn Reporter,
    redactor: &Redactor,
) -> Result<(), ImageError> {
    let output = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .env("STAGECTL_SERVICE", service)
        .env("STAGECTL_CONTEXT", &build.context)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|source| ImageError::HostCommandSpawn { command: cmd.to_string(), source })?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    for line in text.lines() {
        reporter.output(service, &redactor.apply(line));
    }
    if output.status.success() {
        return Ok(());
    }
    let tail = crate::text::last_lines_joined(&text, 20, "\n");
    Err(ImageError::HostCommandFailed { command: cmd.to_string(), status: output.status, output_tail: redactor.apply(&tail) })
}

/// Patterns from `.dockerignore` (comments and blank lines dropped).
fn read_dockerignore(context: &Path) -> Vec<glob::Pattern> {
    std::fs::read_to_string(context.join(".dockerignore"))
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| glob::Pattern::new(l.trim_start_matches("./").trim_end_matches('/')).ok())
        .collect()
}

fn ignored(rel: &str, ignore: &[glob::Pattern]) -> bool {
    // A pattern that matches a directory excludes everything below it.
    let mut prefix = String::new();
    for part in rel.split('/') {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(part);
        if ignore.iter().any(|p| p.matches(&prefix)) {
            return true;
        }
    }
    false
}

/// A deterministic tar of the context: sorted entries, zero mtimes and owners, so the same
/// content always gives the same bytes (and the same hash).
pub fn context_tar(context: &Path, ignore: &[glob::Pattern]) -> std::io::Result<Vec<u8>> {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    let mut stack = vec![context.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let rel = path.strip_prefix(context).unwrap_or(&path).to_string_lossy().replace('\\', "/");
            if rel == ".git" || ignored(&rel, ignore) {
                continue;
            }
            let ft = entry.file_type()?;
            if ft.is_dir() {
                stack.push(path);
            } else {
                files.push((rel, path));
            }
        }
    }
    files.sort();
    let mut builder = tar::Builder::new(Vec::new());
    for (rel, path) in files {
        // Plain ustar headers built by hand: the engine's tar reader rejects GNU sparse entries,
        // and fixed owner and mtime keep the bytes (and the hash) a function of content alone.
        let meta = std::fs::symlink_metadata(&path)?;
        let mut header = tar::Header::new_ustar();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        if meta.file_type().is_symlink() {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            header.set_mode(0o777);
            builder.append_link(&mut header, &rel, std::fs::read_link(&path)?)?;
        } else {
            use std::os::unix::fs::PermissionsExt;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(meta.len());
            header.set_mode(if meta.permissions().mode() & 0o111 != 0 { 0o755 } else { 0o644 });
            builder.append_data(&mut header, &rel, std::fs::File::open(&path)?)?;
        }
    }
    builder.into_inner()
}

pub fn context_hash(tar: &[u8], build: &Build) -> String {
    let mut h = Sha256::new();
    h.update(tar);
    h.update(build.dockerfile.as_bytes());
    for (k, v) in &build.args {
        h.update(format!("\0{k}={v}").as_bytes());
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_context_tar_is_deterministic_and_honours_dockerignore() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::create_dir_all(dir.path().join("target/debug")).unwrap();
        std::fs::write(dir.path().join("target/debug/big"), "x").unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "# comment\ntarget\n").unwrap();
        let ignore = read_dockerignore(dir.path());
        let a = context_tar(dir.path(), &ignore).unwrap();
        // Touching a file without changing it must not change the tar.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        let b = context_tar(dir.path(), &ignore).unwrap();
        assert_eq!(a, b);
        let names: Vec<String> =
            tar::Archive::new(&a[..]).entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
        assert_eq!(names, [".dockerignore", "Dockerfile"]);
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\nENV A=1\n").unwrap();
        let c = context_tar(dir.path(), &ignore).unwrap();
        assert_ne!(a, c);
    }
}
