//! Where Podman's Docker-compatible API answers differently from Docker's, and what the engine
//! does about it (README "Podman"):
//! - image names come back qualified (`docker.io/stagectl-snapshot/db:…`,
//!   `localhost/stagectl/postgres:15`): [`familiar_name`] gives them back as stagectl wrote them;
//! - a commit keeps no copy of the container's config in the image, and `docker load` of a
//!   tar without its layers is refused: the snapshot rebuild that strips that copy on Docker
//!   before API 1.44 is neither needed nor possible (see the engine's `commit`);
//! - health checks are run by systemd timers, which a host without systemd (a CI container)
//!   does not have: the state stays `starting` for ever. While it is not `healthy`, each look
//!   at the container asks Podman to run the check now
//!   ([`BollardEngine::run_podman_healthcheck`]);
//! - a forced image removal also removes the containers using the image, running ones too:
//!   an image in use is refused first ([`BollardEngine::refuse_if_podman_image_in_use`]).

use super::*;

/// How long one health check run through Podman's own API may take (the check's own timeout
/// is enforced by Podman; this only bounds a stuck connection).
const HEALTHCHECK_RUN_LIMIT: Duration = Duration::from_secs(120);

/// How long the first `/_ping` may take before stagectl connects as to Docker (which then
/// has the usual [`CONNECT_TIMEOUT`] to answer).
const PING_HEADERS_LIMIT: Duration = Duration::from_secs(2);

/// What the engine's `/_ping` answer says in its headers: whether it is Podman
/// (`Libpod-Api-Version`), and the Docker API version it speaks (`Api-Version`). `None` when
/// it cannot be asked over plain HTTP (then bollard connects and negotiates as for Docker).
pub(super) async fn ping_headers(host: &str) -> Option<(bool, Option<bollard::ClientVersion>)> {
    let (status, head, _) = tokio::time::timeout(PING_HEADERS_LIMIT, raw_get(host, "/_ping")).await.ok()?.ok()?;
    if status != 200 {
        return None;
    }
    let header = |name: &str| {
        head.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string()))
    };
    let api = header("Api-Version").and_then(|v| {
        let (major, minor) = v.split_once('.')?;
        Some(bollard::ClientVersion { major_version: major.parse().ok()?, minor_version: minor.parse().ok()? })
    });
    Some((header("Libpod-Api-Version").is_some(), api))
}

/// A client for Podman at `host` (a unix socket) speaking `api` (at most bollard's own
/// version), without bollard's negotiation: Podman's `/version` takes most of a second (it
/// asks conmon and the OCI runtime for theirs), on every command.
pub(super) fn podman_client(host: &str, api: &bollard::ClientVersion) -> Option<Docker> {
    host.strip_prefix("unix://")?;
    let default = bollard::API_DEFAULT_VERSION;
    let version = if (api.major_version, api.minor_version) < (default.major_version, default.minor_version) { api } else { default };
    Docker::connect_with_unix(host, REQUEST_TIMEOUT, version).ok()
}

/// An image name as the engine reports it, in the short form stagectl uses: Docker Hub's
/// `docker.io/` (and `docker.io/library/`) left out, as Docker does; on Podman also its
/// `localhost/`, the domain it gives unqualified names of local images.
pub(super) fn familiar_name(name: &str, podman: bool) -> String {
    let short = name.strip_prefix("docker.io/library/").or_else(|| name.strip_prefix("docker.io/")).unwrap_or(name);
    match short.strip_prefix("localhost/") {
        Some(rest) if podman => rest.to_string(),
        _ => short.to_string(),
    }
}

impl BollardEngine {
    /// Runs container `id`'s health check once through Podman's own API (`/libpod/…`, beside
    /// the Docker-compatible one on the same socket); Podman records the result as if its
    /// timer had run it. Returns the health it reports, `None` when it could not be asked
    /// (then the state read from `inspect` stands).
    pub(super) async fn run_podman_healthcheck(&self, id: &str) -> Option<String> {
        // Podman 4.3 serves its own API only under a version prefix.
        let path = format!("/v4.0.0/libpod/containers/{id}/healthcheck");
        let answer = match tokio::time::timeout(HEALTHCHECK_RUN_LIMIT, raw_get(&self.host, &path)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                tracing::debug!("podman healthcheck run of {id}: {e}");
                return None;
            }
            Err(_) => return None,
        };
        let (status, _, body) = answer;
        if status != 200 {
            tracing::debug!(status, body, "podman healthcheck run of {id} refused");
            return None;
        }
        let value: serde_json::Value = serde_json::from_str(&body).ok()?;
        value.get("Status").and_then(|s| s.as_str()).map(str::to_string).filter(|s| !s.is_empty())
    }
}

impl BollardEngine {
    /// An error when a container (running or not) was created from image `reference` or an
    /// image built on it: removing it with `force`, as stagectl does, would remove those
    /// containers on Podman. (A container created between this check and the removal is not
    /// seen; stagectl creates none from images it removes.)
    pub(super) async fn refuse_if_podman_image_in_use(&self, reference: &str) -> Result<()> {
        // The filter takes a full image ID without its `sha256:`, not a short one or a tag.
        let id = match self.docker.inspect_image(reference).await {
            Ok(info) => info.id.unwrap_or_default(),
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(lost_or(&self.host, format!("inspecting image {reference}"), e)),
        };
        let id = id.strip_prefix("sha256:").unwrap_or(&id).to_string();
        let filters = HashMap::from([("ancestor".to_string(), vec![id])]);
        let opts = bollard::query_parameters::ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let users = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| lost_or(&self.host, format!("listing the containers of image {reference}"), e))?;
        match users.iter().filter_map(|c| c.names.as_ref()?.first()).next() {
            Some(name) => Err(Error::docker(
                format!("removing image {reference}"),
                format!("image is in use by container {}", name.trim_start_matches('/')),
            )),
            None => Ok(()),
        }
    }
}

/// One `GET path` on the engine at `host` (`unix://` or `tcp://`), HTTP/1.0 so the answer is
/// not chunked; returns the status code, the head and the body.
async fn raw_get(host: &str, path: &str) -> std::io::Result<(u16, String, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET {path} HTTP/1.0\r\nHost: podman\r\n\r\n");
    let mut answer = Vec::new();
    if let Some(socket) = host.strip_prefix("unix://") {
        let mut stream = tokio::net::UnixStream::connect(socket).await?;
        stream.write_all(request.as_bytes()).await?;
        stream.read_to_end(&mut answer).await?;
    } else if let Some(addr) = host.strip_prefix("tcp://").or_else(|| host.strip_prefix("http://")) {
        let mut stream = tokio::net::TcpStream::connect(addr.trim_end_matches('/')).await?;
        stream.write_all(request.as_bytes()).await?;
        stream.read_to_end(&mut answer).await?;
    } else {
        return Err(std::io::Error::other(format!("no plain HTTP transport for {host}")));
    }
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, head.to_string(), body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_names_are_given_back_short() {
        assert_eq!(familiar_name("docker.io/stagectl-snapshot/db:abc", false), "stagectl-snapshot/db:abc");
        assert_eq!(familiar_name("docker.io/library/redis:7", false), "redis:7");
        assert_eq!(familiar_name("localhost/stagectl/postgres:15", true), "stagectl/postgres:15");
        // On Docker `localhost/` is a registry: kept.
        assert_eq!(familiar_name("localhost/stagectl/postgres:15", false), "localhost/stagectl/postgres:15");
        assert_eq!(familiar_name("registry.example:5000/a/b:1", true), "registry.example:5000/a/b:1");
        assert_eq!(familiar_name("stagectl-snapshot/db:abc", true), "stagectl-snapshot/db:abc");
    }
}
