//! One lock for every command that changes KernelX's state in the kernel (load, set, unload),
//! so two of them never interleave their map writes, pins and records.
//!
//! The lock is an exclusive `flock` on `<state dir>/lock`, a root-only file (directory 0700,
//! file 0600). The kernel releases it when its holder exits, even by `kill -9`, so a crashed
//! command never leaves it taken. The holder writes its pid into the file, only so that a
//! refused command can name it; the flock, not the pid, is the truth.

use std::fs::{self, DirBuilder, File, OpenOptions, TryLockError};
use std::io::{self, Read as _, Seek as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// Where KernelX keeps its lock and load records unless told otherwise.
pub const DEFAULT_STATE_DIR: &str = "/run/kernelx";

const LOCK_FILE: &str = "lock";

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "another kernelx ({}) is changing tunables and holds {}; try again when it has finished",
        holder.map_or("pid unknown".to_owned(), |pid| format!("pid {pid}")),
        path.display()
    )]
    Busy {
        /// The lock file.
        path: PathBuf,
        /// The holder's pid, when it had written it yet.
        holder: Option<u32>,
    },
    /// The lock file or its directory may be written by others than root.
    #[error(
        "{} is writable by group or others (mode {mode:o}): refusing to trust it; remove it or \
         `chmod go-w` it",
        path.display()
    )]
    Insecure {
        /// The file or directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A file operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// The held lock; dropping it releases it.
#[derive(Debug)]
pub struct StateLock {
    // Held for its flock, which closing the file releases.
    _file: File,
}

impl StateLock {
    /// Takes the lock in `dir` (created 0700 when missing), or fails at once naming the holder.
    pub fn acquire(dir: &Path) -> Result<StateLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io_error = |action, path: &Path| {
            let path = path.to_owned();
            move |source| LockError::Io {
                action,
                path,
                source,
            }
        };
        create_private_dir(dir)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_error("opening", &path))?;
        check_private(&path, &file.metadata().map_err(io_error("reading", &path))?)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Busy {
                    holder: read_pid(&mut file),
                    path,
                });
            }
            Err(TryLockError::Error(source)) => return Err(io_error("locking", &path)(source)),
        }
        file.set_len(0).map_err(io_error("writing", &path))?;
        file.rewind().map_err(io_error("writing", &path))?;
        write!(file, "{}", std::process::id()).map_err(io_error("writing", &path))?;
        Ok(StateLock { _file: file })
    }
}

/// Creates `dir` (and its parents) as 0700 when missing; refuses one others can write.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), LockError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| LockError::Io {
            action: "creating",
            path: dir.to_owned(),
            source,
        })?;
    let metadata = fs::metadata(dir).map_err(|source| LockError::Io {
        action: "reading",
        path: dir.to_owned(),
        source,
    })?;
    check_private(dir, &metadata)
}

fn check_private(path: &Path, metadata: &fs::Metadata) -> Result<(), LockError> {
    let mode = metadata.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(LockError::Insecure {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("run/kernelx");
        let held = StateLock::acquire(&dir).expect("the first lock");
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(LOCK_FILE)), 0o600);
        // A second open file description conflicts even within one process.
        match StateLock::acquire(&dir) {
            Err(LockError::Busy { holder, .. }) => {
                assert_eq!(holder, Some(std::process::id()));
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        let message = StateLock::acquire(&dir).unwrap_err().to_string();
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        drop(held);
        StateLock::acquire(&dir).expect("free again once dropped");
    }

    #[test]
    fn a_lock_directory_others_can_write_is_refused() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("kernelx");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        match StateLock::acquire(&dir) {
            Err(LockError::Insecure { mode, .. }) => assert_eq!(mode, 0o777),
            other => panic!("expected Insecure, got {other:?}"),
        }
        assert!(!dir.join(LOCK_FILE).exists(), "nothing was created");
    }
}
