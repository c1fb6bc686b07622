//! The daemon's bearer token: chosen by the operator (a file only its owner can read, or
//! `STAGECTL_TOKEN`), or generated into the state directory for a loopback-only daemon.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::Options;
use crate::error::{Error, Result};

/// The bearer token: from a file (refused if group/other can read it), STAGECTL_TOKEN, or
/// generated (loopback only). Returns it and the file a generated one was written to.
pub(super) fn token(options: &Options, stack: &str, addr: SocketAddr) -> Result<(String, Option<PathBuf>)> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(f) = &options.token_file {
        let meta = std::fs::metadata(f).map_err(|e| Error::Usage(format!("--token-file {}: {e}", f.display())))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(Error::Usage(format!(
                "--token-file {}: readable by group or others (mode {:o}); run `chmod 600 {}`",
                f.display(),
                meta.permissions().mode() & 0o777,
                f.display()
            )));
        }
        let t = std::fs::read_to_string(f).map_err(|e| Error::Usage(format!("--token-file {}: {e}", f.display())))?.trim().to_string();
        if t.len() < 16 {
            return Err(Error::Usage(format!("--token-file {}: the token is shorter than 16 characters", f.display())));
        }
        return Ok((t, None));
    }
    if let Ok(t) = std::env::var("STAGECTL_TOKEN") {
        if t.len() < 16 {
            return Err(Error::Usage("STAGECTL_TOKEN is shorter than 16 characters".into()));
        }
        return Ok((t, None));
    }
    if !addr.ip().is_loopback() {
        return Err(Error::Usage(format!(
            "refusing to listen on {addr} without a token: pass --token-file FILE (mode 600) or set STAGECTL_TOKEN"
        )));
    }
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::Usage(format!("/dev/urandom: {e}")))?;
    let t = hex::encode(bytes);
    let path = crate::history::state_dir().join("daemons").join(format!("{stack}.token"));
    if let Some(dir) = path.parent() {
        crate::history::private_dir(dir).map_err(|e| Error::Usage(format!("{}: {e}", dir.display())))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    use std::io::Write;
    opts.open(&path).and_then(|mut f| f.write_all(t.as_bytes())).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    Ok((t, Some(path)))
}
