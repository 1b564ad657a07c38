//! The running kernel's config: where it may be, and what it says.

use std::path::PathBuf;

use kernelx_kbuild::{KbuildError, KernelConfig};
use kernelx_runtime::host::{HostError, HostView};

/// The running kernel's own copy of its config (`CONFIG_IKCONFIG_PROC=y`).
pub const PROC_CONFIG_GZ: &str = "/proc/config.gz";

/// Why the running kernel's config could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunningConfigError {
    /// Its file could not be read.
    #[error(transparent)]
    Host(#[from] HostError),
    /// It could not be parsed (boxed: kbuild's error carries whole command lines).
    #[error(transparent)]
    Config(Box<KbuildError>),
}

impl From<KbuildError> for RunningConfigError {
    fn from(error: KbuildError) -> Self {
        RunningConfigError::Config(Box::new(error))
    }
}

/// The running kernel's config and where it was found.
#[derive(Debug, Clone)]
pub struct RunningConfig {
    /// The host path it was read from.
    pub path: PathBuf,
    /// The parsed config.
    pub config: KernelConfig,
}

/// The places the running kernel's config may be, most authoritative first:
/// `/proc/config.gz` (embedded in the kernel itself), then `/boot/config-<release>`
/// (installed next to it by the distribution).
pub fn running_config_candidates(release: &str) -> [PathBuf; 2] {
    [
        PROC_CONFIG_GZ.into(),
        PathBuf::from(format!("/boot/config-{release}")),
    ]
}

/// The running kernel's config from the first of [`running_config_candidates`] that exists
/// on `host`; `Ok(None)` when none does.
pub fn running_config(
    host: &HostView,
    release: &str,
) -> Result<Option<RunningConfig>, RunningConfigError> {
    for path in running_config_candidates(release) {
        if !host.exists(&path) {
            continue;
        }
        let bytes = host.read(&path)?;
        let origin = path.display().to_string();
        let config = if bytes.starts_with(&[0x1f, 0x8b]) {
            KernelConfig::from_gzip(&bytes, &origin)?
        } else {
            KernelConfig::parse(&String::from_utf8_lossy(&bytes), &origin)?
        };
        return Ok(Some(RunningConfig { path, config }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::path::Path;

    use kernelx_runtime::host::OSRELEASE;

    use super::*;
    use crate::testing::FakeHost;

    #[test]
    fn reads_release_and_prefers_proc_config_gz() {
        let fake = FakeHost::empty();
        let host = fake.view();
        let err = host.kernel_release().unwrap_err().to_string();
        assert_eq!(err, "cannot read /proc/sys/kernel/osrelease");

        fake.write(OSRELEASE, "6.12.117+deb12-cloud-amd64\n");
        let release = host.kernel_release().unwrap();
        assert_eq!(release, "6.12.117+deb12-cloud-amd64");
        assert!(running_config(&host, &release).unwrap().is_none());

        fake.write(
            "/boot/config-6.12.117+deb12-cloud-amd64",
            "CONFIG_KPROBES=y\n",
        );
        let found = running_config(&host, &release).unwrap().unwrap();
        assert_eq!(
            found.path,
            Path::new("/boot/config-6.12.117+deb12-cloud-amd64")
        );

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"# CONFIG_KPROBES is not set\n").unwrap();
        fake.write(PROC_CONFIG_GZ, gz.finish().unwrap());
        let found = running_config(&host, &release).unwrap().unwrap();
        assert_eq!(found.path, Path::new(PROC_CONFIG_GZ));
        assert!(!found.config.is_enabled("CONFIG_KPROBES"));
    }
}
