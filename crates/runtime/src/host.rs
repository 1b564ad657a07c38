//! Facts about the host KernelX runs on, read through a root prefix.
//!
//! Everything here reads files (`/proc`, `/sys`, `/boot`, `/lib/modules`) through a
//! [`HostView`], whose root is `/` in production and a temporary directory in tests, so that a
//! fake host is a directory tree. The facts are small functions returning small types, for
//! `kernelx doctor` now and for verifying and loading plans later.
//!
//! The running kernel's config is not read here: parsing it is `kernelx-kbuild`'s job, and
//! this crate never depends on the analysis side (`kernelx-doctor` looks it up).

use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Where the running kernel's release is (what `uname -r` prints).
pub const OSRELEASE: &str = "/proc/sys/kernel/osrelease";

/// Why a host fact could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The path on the host (without the view's root).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file's contents are not what the kernel writes there.
    #[error("unexpected contents in {}: {message}", path.display())]
    Parse {
        /// The path on the host (without the view's root).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// A view of a host's file system: every host path is looked up under `root`.
///
/// Paths in results and messages are host paths (`/proc/...`), never prefixed with the root.
/// The view is a test seam, not a sandbox: an absolute symlink under the root resolves on the
/// real file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostView {
    root: PathBuf,
}

impl HostView {
    /// The machine this process runs on (root `/`).
    pub fn system() -> Self {
        HostView { root: "/".into() }
    }

    /// A host whose `/` is `root` (tests build a fake host in a temporary directory).
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        HostView { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The real path of host path `path` (which should be absolute).
    pub fn resolve(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        self.root.join(path.strip_prefix("/").unwrap_or(path))
    }

    /// `true` when `path` exists on the host (following symlinks).
    pub fn exists(&self, path: impl AsRef<Path>) -> bool {
        self.resolve(path).exists()
    }

    /// Opens host file `path` for reading (for files read in pieces, such as `/proc/kcore`).
    pub fn open(&self, path: impl AsRef<Path>) -> Result<std::fs::File, HostError> {
        let path = path.as_ref();
        std::fs::File::open(self.resolve(path)).map_err(|source| HostError::Read {
            path: path.to_owned(),
            source,
        })
    }

    /// Reads host file `path` whole.
    pub fn read(&self, path: impl AsRef<Path>) -> Result<Vec<u8>, HostError> {
        let path = path.as_ref();
        std::fs::read(self.resolve(path)).map_err(|source| HostError::Read {
            path: path.to_owned(),
            source,
        })
    }

    /// Reads host file `path` as text (lossily, as `/proc` and `/sys` files are ASCII).
    pub fn read_to_string(&self, path: impl AsRef<Path>) -> Result<String, HostError> {
        self.read(path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Reads the first `n` bytes of host file `path` (fewer if it is shorter). Use this for
    /// files that are huge or endless, such as `/proc/kcore`.
    pub fn read_prefix(&self, path: impl AsRef<Path>, n: usize) -> Result<Vec<u8>, HostError> {
        let path = path.as_ref();
        let error = |source| HostError::Read {
            path: path.to_owned(),
            source,
        };
        let file = self.open(path)?;
        let mut buf = Vec::with_capacity(n);
        file.take(n as u64).read_to_end(&mut buf).map_err(error)?;
        Ok(buf)
    }

    /// The running kernel's release, e.g. `6.12.117+deb12-cloud-amd64`.
    pub fn kernel_release(&self) -> Result<String, HostError> {
        let text = self.read_to_string(OSRELEASE)?;
        let release = text.trim();
        if release.is_empty() {
            return Err(HostError::Parse {
                path: OSRELEASE.into(),
                message: "empty".to_owned(),
            });
        }
        Ok(release.to_owned())
    }

    /// The mount table of this process's mount namespace (`/proc/self/mounts`).
    pub fn mounts(&self) -> Result<Vec<Mount>, HostError> {
        const MOUNTS: &str = "/proc/self/mounts";
        let text = self.read_to_string(MOUNTS)?;
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                let mut fields = line.split_whitespace();
                let mut next = || fields.next().map(unescape_mount_field);
                match (next(), next(), next()) {
                    (Some(source), Some(target), Some(fstype)) => Ok(Mount {
                        source,
                        target: target.into(),
                        fstype,
                    }),
                    _ => Err(HostError::Parse {
                        path: MOUNTS.into(),
                        message: format!("short line `{line}`"),
                    }),
                }
            })
            .collect()
    }

    /// This process's credentials, from `/proc/self/status`.
    pub fn credentials(&self) -> Result<Credentials, HostError> {
        const STATUS: &str = "/proc/self/status";
        let text = self.read_to_string(STATUS)?;
        let parse_error = |message: String| HostError::Parse {
            path: STATUS.into(),
            message,
        };
        let field = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
                .ok_or_else(|| parse_error(format!("no {name}: line")))
        };
        // `Uid:` lists real, effective, saved and file-system uids.
        let uid_line = field("Uid")?;
        let effective_uid = uid_line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| parse_error(format!("bad Uid: line `{uid_line}`")))?;
        let cap_line = field("CapEff")?;
        let effective_caps = u64::from_str_radix(cap_line, 16)
            .map_err(|_| parse_error(format!("bad CapEff: line `{cap_line}`")))?;
        Ok(Credentials {
            effective_uid,
            effective_caps,
        })
    }
}

/// One line of the mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// What is mounted (a device, or a name such as `bpf`).
    pub source: String,
    /// Where.
    pub target: PathBuf,
    /// The file system type, e.g. `bpf`, `tracefs`.
    pub fstype: String,
}

/// The process credentials that decide what KernelX may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credentials {
    /// The effective user id.
    pub effective_uid: u32,
    /// The effective capability set, one bit per `CAP_*` number.
    pub effective_caps: u64,
}

impl Credentials {
    /// `true` when the effective set holds capability number `cap`.
    pub fn has_capability(&self, cap: u32) -> bool {
        cap < 64 && self.effective_caps >> cap & 1 == 1
    }
}

/// The kernel escapes space, tab, newline and backslash in mount fields as `\ooo` octal.
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') << 6 | (d[1] - b'0') << 3 | (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_host::FakeHost;

    #[test]
    fn resolves_host_paths_under_the_root() {
        let host = HostView::with_root("/tmp/fake");
        assert_eq!(
            host.resolve("/proc/modules"),
            Path::new("/tmp/fake/proc/modules")
        );
        assert_eq!(
            HostView::system().resolve("/proc/modules"),
            Path::new("/proc/modules")
        );
    }

    #[test]
    fn parses_mounts_with_escaped_spaces() {
        let host = FakeHost::new();
        host.write(
            "/proc/self/mounts",
            "bpf /sys/fs/bpf bpf rw,nosuid 0 0\n/dev/sda1 /mnt/my\\040disk ext4 rw 0 0\n",
        );
        let mounts = host.view().mounts().unwrap();
        assert_eq!(mounts[0].fstype, "bpf");
        assert_eq!(mounts[1].target, Path::new("/mnt/my disk"));
    }

    #[test]
    fn reads_effective_uid_and_capabilities() {
        let host = FakeHost::new();
        host.write(
            "/proc/self/status",
            "Name:\tkernelx\nUid:\t1000\t0\t0\t0\nCapEff:\t0000000000200000\n",
        );
        let creds = host.view().credentials().unwrap();
        assert_eq!(creds.effective_uid, 0);
        assert!(creds.has_capability(21));
        assert!(!creds.has_capability(16));
    }
}
