//! One operation per stack, machine-wide: an exclusive `flock` on `<state>/locks/<stack>.lock`,
//! held by the CLI and by the daemon's worker for the whole operation.

use std::fs::File;
use std::path::PathBuf;

/// Exclusive right to operate on one stack, held until dropped (the OS releases it when the
/// process dies, so a killed runner never leaves a stale lock).
pub struct StackLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot lock stack `{stack}`: {source}")]
pub struct LockError {
    pub stack: String,
    #[source]
    pub source: std::io::Error,
}

impl StackLock {
    fn path(stack: &str) -> PathBuf {
        crate::history::state_dir().join("locks").join(format!("{stack}.lock"))
    }

    fn open(stack: &str) -> std::io::Result<File> {
        let path = Self::path(stack);
        if let Some(dir) = path.parent() {
            crate::history::private_dir(dir)?;
        }
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)
    }

    /// The lock if it is free now; `None` when another process or run holds it.
    pub fn try_acquire(stack: &str) -> std::io::Result<Option<StackLock>> {
        let file = Self::open(stack)?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => Ok(Some(StackLock { _file: file })),
            Err(fs4::TryLockError::WouldBlock) => Ok(None),
            Err(fs4::TryLockError::Error(e)) => Err(e),
        }
    }

    /// Waits for the lock (blocking: call from a blocking thread).
    pub fn acquire(stack: &str) -> std::io::Result<StackLock> {
        let file = Self::open(stack)?;
        fs4::FileExt::lock(&file)?;
        Ok(StackLock { _file: file })
    }

    /// The lock, now or after waiting on a blocking thread; `on_wait` is called once when the
    /// stack is busy, so the caller can say why nothing happens yet.
    pub async fn acquire_async(stack: &str, on_wait: impl FnOnce()) -> Result<StackLock, LockError> {
        let failed = |source| LockError { stack: stack.to_string(), source };
        if let Some(lock) = Self::try_acquire(stack).map_err(failed)? {
            return Ok(lock);
        }
        on_wait();
        let owned = stack.to_string();
        tokio::task::spawn_blocking(move || Self::acquire(&owned)).await.map_err(|e| failed(std::io::Error::other(e)))?.map_err(failed)
    }
}

impl From<LockError> for crate::error::Error {
    fn from(e: LockError) -> Self {
        crate::error::Error::Usage(e.to_string())
    }
}
