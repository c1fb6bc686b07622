//! PostgreSQL fixture snapshots off the critical path, restored without crash recovery.
//!
//! A `docker commit` walks the container's whole layer (seconds on fuse-overlayfs), and a
//! commit of a running server restores into crash recovery. So the live server is never
//! committed. A throwaway container of the same image and spec (no network alias, no ports,
//! not started; its data directory on a volume of its own, which takes a copy far faster than
//! a container's layer on fuse-overlayfs) receives a copy that a second server brings to the
//! exact state of the load:
//!
//! 1. While the fixtures load ([`locate`], then [`stage`]): a physical replication slot on
//!    the live server keeps every WAL segment from now on; an online base backup
//!    (`pg_basebackup` as a tar on stdout) is extracted straight into the throwaway
//!    container's data directory (Docker's archive API; nothing is written in the live
//!    container), with a targeted recovery set up: `recovery.signal`, `restore_command`,
//!    `recovery_target_name`, `promote`.
//! 2. Right after the load ([`mark`]): a named restore point, then a WAL switch (which flushes
//!    it). Milliseconds; the dependents start right after, so nothing they write can come
//!    before the restore point.
//! 3. In the background while the dependents start ([`collect_wal`], [`settle_replica`]): the
//!    WAL segments go into the throwaway container and the slot is dropped; the throwaway
//!    server replays up to the restore point exactly, promotes, forgets the recovery settings,
//!    and is stopped cleanly (a shutdown checkpoint). Only then is it committed: the snapshot
//!    holds a cluster that was shut down cleanly, so a restore is ready at the floor of a
//!    fresh start. PostgreSQL 13 and later refuse to start when recovery ends before its
//!    target: a snapshot never holds less than the load. The cluster is then copied into a
//!    second container's own layer (created, never started), which is committed.
//!
//! When the data directory is in a volume the image declares (the official image's
//! `VOLUME /var/lib/postgresql/data`), a commit would hold none of it: the snapshot keeps its
//! data under [`RELOCATED_DATA_DIR`] in its own layer instead, and carries [`PGDATA_LABEL`] so a
//! restore points `PGDATA` there.

use std::time::Duration;

use crate::docker::{ContainerEngine, ExecAs};
use crate::manifest::Service;

/// Where a snapshot keeps the data directory that the live server keeps in a volume the image
/// declares (under its own name: `/var/lib/stagectl-pgdata/data`).
pub const RELOCATED_DATA_DIR: &str = "/var/lib/stagectl-pgdata";
/// On a snapshot image: the data directory the restored server must use (`PGDATA`).
pub const PGDATA_LABEL: &str = "org.stagectl.snapshot-pgdata";
/// The WAL copied next to the backup, relative to the data directory (`restore_command`
/// runs there).
const WAL_DIR: &str = "stagectl_wal";
/// How long the throwaway server may take to replay the load's WAL.
const REPLAY_DEADLINE: Duration = Duration::from_secs(900);

/// Where the live server keeps its data, and where the throwaway one will.
#[derive(Debug, Clone)]
pub struct Located {
    user: String,
    database: String,
    /// `uid:gid` owning the live data directory: every file of the copy is theirs.
    owner: String,
    /// The live server's data directory, and the throwaway server's.
    data_dir: String,
    /// The snapshot's: the same, or under [`RELOCATED_DATA_DIR`].
    pub snapshot_data_dir: String,
    /// The live `postgresql.auto.conf`, which the copy's recovery settings extend.
    auto_conf: String,
}

impl Located {
    /// Whether the snapshot's server keeps its data elsewhere than the image says.
    pub fn relocated(&self) -> bool {
        self.snapshot_data_dir != self.data_dir
    }

    /// The live (and throwaway) server's data directory.
    pub fn data_dir(&self) -> &str {
        &self.data_dir
    }
}

/// A base backup in the throwaway container, waiting for its restore point.
#[derive(Debug, Clone)]
pub struct BaseBackup {
    /// The data service.
    pub service: String,
    pub at: Located,
    pub live: String,
    pub throwaway: String,
    slot: String,
}

impl BaseBackup {
    fn restore_point(&self) -> String {
        format!("{}_loaded", self.slot)
    }
}

/// Why no base backup was staged.
#[derive(Debug, Clone)]
pub struct NoBaseBackup {
    pub why: String,
    /// The data directory is on a mount (a volume or tmpfs of the service, or a volume the
    /// image declares): no commit can hold it, so no snapshot at all.
    pub data_in_mount: bool,
}

impl From<String> for NoBaseBackup {
    fn from(why: String) -> Self {
        NoBaseBackup { why, data_in_mount: false }
    }
}

fn sh(script: &str, args: &[&str]) -> Vec<String> {
    let mut cmd = vec!["sh".to_string(), "-c".to_string(), script.to_string(), "sh".to_string()];
    cmd.extend(args.iter().map(|a| a.to_string()));
    cmd
}

async fn run<E: ContainerEngine + ?Sized>(docker: &E, id: &str, cmd: &[String], what: &str) -> Result<String, String> {
    match docker.exec(id, cmd).await {
        Ok((0, out)) => Ok(out),
        Ok((code, out)) => Err(format!("{what} failed ({code}): {}", last_lines(&out))),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

fn psql(at: &Located, sql: &str) -> Vec<String> {
    crate::data::psql_command(&at.user, &at.database, &["-At", "-c", sql])
}

/// The end of a failed command's output, on one line.
fn last_lines(out: &str) -> String {
    crate::text::last_lines_joined(out, 3, " / ")
}

/// Whether `path` is `mount` or below it.
fn under(path: &str, mount: &str) -> bool {
    let mount = mount.trim_end_matches('/');
    path == mount || path.starts_with(&format!("{mount}/")) || mount.is_empty()
}

/// The mounts of `service` (its volumes and tmpfs) as container paths.
pub fn service_mounts(service: &Service) -> Vec<String> {
    service.volumes.iter().map(|v| v.target.clone()).chain(service.tmpfs.keys().cloned()).collect()
}

/// Where the live server `id` keeps its data and whether a snapshot can hold it. `declared`
/// are the volumes the image declares, `mounts` the service's own.
pub async fn locate<E: ContainerEngine + ?Sized>(
    docker: &E,
    id: &str,
    (user, database): (&str, &str),
    declared: &[String],
    mounts: &[String],
) -> Result<Located, NoBaseBackup> {
    let probe = sh(
        r#"set -e
d=$(psql -X -At -U "$1" -d "$2" -c 'SHOW data_directory')
echo "$d"
psql -X -At -U "$1" -d "$2" -c 'SHOW server_version_num'
stat -c %u:%g "$d"
cat "$d/postgresql.auto.conf" 2>/dev/null || :"#,
        &[user, database],
    );
    let out = run(docker, id, &probe, "finding the data directory").await?;
    let mut lines = out.lines();
    let (Some(live_data_dir), Some(version), Some(owner)) = (lines.next(), lines.next(), lines.next()) else {
        return Err(format!("unexpected answer: {}", last_lines(&out)).into());
    };
    let auto_conf: String = lines.map(|l| format!("{l}\n")).collect();
    let version: u32 = version.trim().parse().map_err(|_| format!("unexpected server_version_num `{version}`"))?;
    if let Some(m) = mounts.iter().find(|m| under(live_data_dir, m)) {
        let why = format!("the data directory {live_data_dir} is on the mount {m}, and a snapshot holds only the container's own layer");
        return Err(NoBaseBackup { why, data_in_mount: true });
    }
    let in_declared = declared.iter().any(|v| under(live_data_dir, v));
    if version < 130000 {
        let why = format!("PostgreSQL {} cannot be told to fail a recovery that ends before its target (13 or later can)", version / 10000);
        return Err(NoBaseBackup { why, data_in_mount: in_declared });
    }
    let basename = live_data_dir.trim_end_matches('/').rsplit('/').next().unwrap_or("data");
    Ok(Located {
        user: user.to_string(),
        database: database.to_string(),
        owner: owner.trim().to_string(),
        data_dir: live_data_dir.to_string(),
        snapshot_data_dir: if in_declared { format!("{RELOCATED_DATA_DIR}/{basename}") } else { live_data_dir.to_string() },
        auto_conf,
    })
}

/// Step 1: a slot on the live server, then its base backup extracted into `throwaway` (created,
/// not started) with the recovery settings. On failure the slot is dropped again; the caller
/// removes the throwaway container.
pub async fn stage<E: ContainerEngine + ?Sized>(
    docker: &E,
    (service, live): (&str, &str),
    at: Located,
    throwaway: &str,
    key: &str,
) -> Result<BaseBackup, NoBaseBackup> {
    let base = BaseBackup {
        service: service.to_string(),
        slot: format!("stagectl_{}_{}", &key[..12.min(key.len())], std::process::id()),
        at,
        live: live.to_string(),
        throwaway: throwaway.to_string(),
    };
    let in_mount = base.at.relocated();
    let fail = |why: String| NoBaseBackup { why, data_in_mount: in_mount };
    let (uid, gid) = parse_owner(&base.at.owner).ok_or_else(|| fail(format!("unexpected owner `{}`", base.at.owner)))?;
    let create = format!("SELECT pg_create_physical_replication_slot('{}', true)", base.slot);
    run(docker, live, &psql(&base.at, &create), "creating a replication slot").await.map_err(fail)?;
    let staged = async {
        let docker_err = |e: crate::error::Error| e.to_string();
        docker.upload_tar(throwaway, "/", directory_tar(&base.at.data_dir, uid, gid)).await.map_err(docker_err)?;
        let backup: Vec<String> = ["pg_basebackup", "-U", &base.at.user, "-D", "-", "-F", "t", "-X", "fetch", "-c", "fast"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let from = ExecAs { container: live, user: &base.at.owner };
        match docker.exec_into(from, &backup, throwaway, &base.at.data_dir).await.map_err(docker_err)? {
            (0, _) => {}
            (code, err) => return Err(format!("pg_basebackup failed ({code}): {}", last_lines(&err))),
        }
        let settings = recovery_tar(&base.at, uid, gid, &base.restore_point());
        docker.upload_tar(throwaway, "/", settings).await.map_err(docker_err)
    };
    if let Err(why) = staged.await {
        drop_slot(docker, &base).await;
        return Err(fail(why));
    }
    Ok(base)
}

fn parse_owner(owner: &str) -> Option<(u64, u64)> {
    let (u, g) = owner.split_once(':')?;
    Some((u.parse().ok()?, g.parse().ok()?))
}

fn header(path: &str, uid: u64, gid: u64, mode: u32, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    let _ = h.set_path(path.trim_start_matches('/'));
    h.set_entry_type(kind);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h.set_cksum();
    h
}

/// The data directory itself, owned by the server's user with the mode PostgreSQL demands.
fn directory_tar(data_dir: &str, uid: u64, gid: u64) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let _ = b.append(&header(data_dir, uid, gid, 0o700, tar::EntryType::Directory, 0), std::io::empty());
    b.into_inner().unwrap_or_default()
}

/// `recovery.signal`, the directory the WAL goes to, and `postgresql.auto.conf` with the
/// recovery settings after the live server's own.
fn recovery_tar(at: &Located, uid: u64, gid: u64, restore_point: &str) -> Vec<u8> {
    let conf = format!(
        "{}# stagectl: replay the fixture load to its restore point, then promote (reset after)\nrestore_command = 'cp {WAL_DIR}/%f \"%p\"'\nrecovery_target_name = '{restore_point}'\nrecovery_target_action = 'promote'\n",
        at.auto_conf
    );
    let path = |name: &str| format!("{}/{name}", at.data_dir);
    let mut b = tar::Builder::new(Vec::new());
    let _ = b.append(&header(&path(WAL_DIR), uid, gid, 0o700, tar::EntryType::Directory, 0), std::io::empty());
    let _ = b.append(&header(&path("recovery.signal"), uid, gid, 0o600, tar::EntryType::Regular, 0), std::io::empty());
    let _ = b.append(&header(&path("postgresql.auto.conf"), uid, gid, 0o600, tar::EntryType::Regular, conf.len() as u64), conf.as_bytes());
    b.into_inner().unwrap_or_default()
}

/// Step 2: the restore point, right after the load; the WAL switch flushes it to disk.
pub async fn mark<E: ContainerEngine + ?Sized>(docker: &E, base: &BaseBackup) -> Result<(), String> {
    let sql = format!("SELECT pg_create_restore_point('{}'); SELECT pg_switch_wal();", base.restore_point());
    run(docker, &base.live, &psql(&base.at, &sql), "creating the restore point").await.map(|_| ())
}

/// Drops the inactive slots of snapshots whose run ended before it could (`_` escaped: a
/// LIKE wildcard).
pub const DROP_STALE_SLOTS: &str =
    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'stagectl\\_%' AND NOT active";

/// Drops the slot (best effort). A slot left behind would keep every WAL segment forever.
pub async fn drop_slot<E: ContainerEngine + ?Sized>(docker: &E, base: &BaseBackup) {
    let sql = format!("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{}'", base.slot);
    let _ = docker.exec(&base.live, &psql(&base.at, &sql)).await;
}

/// Step 3, part one: the live server's WAL segments into the throwaway container; then the
/// slot goes.
pub async fn collect_wal<E: ContainerEngine + ?Sized>(docker: &E, base: &BaseBackup) -> Result<(), String> {
    // GNU tar exits 1 when a file changed while it was read: the segment being written, whose
    // part up to the restore point is flushed and final. A segment the replay needs that is
    // missing or torn fails the replay, never the snapshot's content.
    let tar = sh(r#"cd "$1/pg_wal" && tar -cf - 0*"#, &[&base.at.data_dir]);
    let from = ExecAs { container: &base.live, user: &base.at.owner };
    let copied = docker.exec_into(from, &tar, &base.throwaway, &format!("{}/{WAL_DIR}", base.at.data_dir)).await;
    drop_slot(docker, base).await;
    match copied {
        Ok((0 | 1, _)) => Ok(()),
        Ok((code, err)) => Err(format!("copying the WAL failed ({code}): {}", last_lines(&err))),
        Err(e) => Err(format!("copying the WAL: {e}")),
    }
}

/// Step 3, part two: waits until the throwaway server (started) replayed to the restore point
/// and promoted, checks it runs on the data directory it was given, then drops the recovery
/// settings and the copied WAL.
pub async fn settle_replica<E: ContainerEngine + ?Sized>(docker: &E, network: &str, base: &BaseBackup) -> Result<(), String> {
    let id = base.throwaway.as_str();
    let deadline = tokio::time::Instant::now() + REPLAY_DEADLINE;
    let ask = psql(&base.at, "SELECT pg_is_in_recovery(), current_setting('data_directory')");
    loop {
        let status = docker.container_status(id, network).await.map_err(|e| e.to_string())?;
        if !status.running {
            let logs = docker.tail_logs(id, 5).await.unwrap_or_default();
            return Err(format!("the replay stopped (exit {}): {}", status.exit_code.unwrap_or(-1), logs.join(" / ")));
        }
        if let Ok((0, out)) = docker.exec(id, &ask).await {
            match out.trim().split_once('|') {
                Some(("f", dir)) if dir == base.at.data_dir => break,
                Some(("f", dir)) => {
                    return Err(format!("the throwaway server ran on {dir}, not on the copied data in {}", base.at.data_dir))
                }
                _ => {}
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("the replay did not finish within {}s", REPLAY_DEADLINE.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reset = crate::data::psql_command(
        &base.at.user,
        &base.at.database,
        &[
            "-c",
            "ALTER SYSTEM RESET restore_command",
            "-c",
            "ALTER SYSTEM RESET recovery_target_name",
            "-c",
            "ALTER SYSTEM RESET recovery_target_action",
        ],
    );
    run(docker, id, &reset, "resetting the recovery settings").await?;
    let tidy = sh(r#"rm -rf "$1/$2""#, &[&base.at.data_dir, WAL_DIR]);
    run(docker, id, &tidy, "removing the copied WAL").await.map(|_| ())
}

/// Step 3, part three: the cleanly stopped cluster from the throwaway container's volume into
/// the own layer of `image_container` (created, never started), with the load marker
/// (`marker`: the snapshot key).
pub async fn copy_to_layer<E: ContainerEngine + ?Sized>(
    docker: &E,
    base: &BaseBackup,
    image_container: &str,
    marker: &str,
) -> Result<(), String> {
    let (uid, gid) = parse_owner(&base.at.owner).ok_or_else(|| format!("unexpected owner `{}`", base.at.owner))?;
    let target = &base.at.snapshot_data_dir;
    let parent = match target.rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((p, _)) => p,
    };
    let docker_err = |e: crate::error::Error| e.to_string();
    docker.upload_tar(image_container, "/", directory_tar(target, uid, gid)).await.map_err(docker_err)?;
    docker.copy_between(&base.throwaway, &base.at.data_dir, image_container, parent).await.map_err(docker_err)?;
    let mut b = tar::Builder::new(Vec::new());
    let line = format!("{marker}\n");
    let marker_path = crate::data::snapshot::MARKER_PATH;
    let _ = b.append(&header(marker_path, 0, 0, 0o644, tar::EntryType::Regular, line.len() as u64), line.as_bytes());
    docker.upload_tar(image_container, "/", b.into_inner().unwrap_or_default()).await.map_err(docker_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_under_its_mount_and_the_mount_itself() {
        assert!(under("/var/lib/postgresql/data", "/var/lib/postgresql/data"));
        assert!(under("/var/lib/postgresql/data", "/var/lib/postgresql/"));
        assert!(under("/var/lib/postgresql/data/pgdata", "/var/lib/postgresql/data"));
        assert!(!under("/var/lib/postgresql/data2", "/var/lib/postgresql/data"));
        assert!(!under("/srv/pg", "/var/lib/postgresql/data"));
    }

    fn located(auto_conf: &str) -> Located {
        Located {
            user: "u".into(),
            database: "d".into(),
            owner: "101:103".into(),
            data_dir: "/var/lib/stagectl-pgdata/data".into(),
            snapshot_data_dir: "/elsewhere/data".into(),
            auto_conf: auto_conf.into(),
        }
    }

    #[test]
    fn the_recovery_files_belong_to_the_server_and_keep_the_live_settings() {
        let tar = recovery_tar(&located("work_mem = '64MB'\n"), 101, 103, "stagectl_x_loaded");
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (101, 103));
            let path = entry.path().unwrap().display().to_string();
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
            if path.ends_with("postgresql.auto.conf") {
                assert!(text.starts_with("work_mem = '64MB'\n"), "{text}");
                assert!(text.contains("recovery_target_name = 'stagectl_x_loaded'"), "{text}");
                assert!(text.contains("restore_command = 'cp stagectl_wal/%f \"%p\"'"), "{text}");
            }
            seen.push((path, header.mode().unwrap()));
        }
        assert_eq!(
            seen,
            vec![
                ("var/lib/stagectl-pgdata/data/stagectl_wal".to_string(), 0o700),
                ("var/lib/stagectl-pgdata/data/recovery.signal".to_string(), 0o600),
                ("var/lib/stagectl-pgdata/data/postgresql.auto.conf".to_string(), 0o600),
            ]
        );
        assert!(located("").relocated());
    }

    #[test]
    fn an_owner_is_two_numbers() {
        assert_eq!(parse_owner("999:999"), Some((999, 999)));
        assert_eq!(parse_owner("postgres:postgres"), None);
        assert_eq!(parse_owner("999"), None);
    }
}
