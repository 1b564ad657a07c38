//! Which Debian kernel the lab boots, and where its pieces live in the cache.
//!
//! The lab pins one Debian 6.12 cloud kernel so that results (and later golden plans) are
//! reproducible; `KERNELX_LAB_KERNEL=<debian version>` selects another one that the archive
//! still carries (`cargo xtask lab versions` lists them).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::process;

/// The Debian package version the lab uses unless `KERNELX_LAB_KERNEL` says otherwise.
const PINNED_VERSION: &str = "6.12.117-1~deb12u1";

/// Debian ships the matching source of every 6.12 image under this one package name.
pub const SOURCE_PACKAGE: &str = "linux-source-6.12";

/// One Debian 6.12 cloud kernel build: image, headers, debug symbols and source share a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabKernel {
    /// Debian package version, e.g. `6.12.117-1~deb12u1`.
    pub version: String,
    /// Debian's ABI name, e.g. `6.12.117+deb12`.
    pub abi: String,
}

impl LabKernel {
    /// The pinned kernel, or the one `KERNELX_LAB_KERNEL` names.
    pub fn selected() -> Result<Self> {
        match std::env::var("KERNELX_LAB_KERNEL") {
            Ok(version) => Self::from_version(&version)
                .with_context(|| format!("KERNELX_LAB_KERNEL={version}")),
            Err(_) => Self::from_version(PINNED_VERSION),
        }
    }

    /// Derives the ABI name from a package version: `6.12.117-1~deb12u1` -> `6.12.117+deb12`.
    pub fn from_version(version: &str) -> Result<Self> {
        let (upstream, debian) = version.split_once('-').with_context(|| {
            format!("`{version}` is not a Debian kernel version like {PINNED_VERSION}")
        })?;
        if !upstream.starts_with("6.12.") {
            bail!(
                "the lab needs a 6.12 kernel (the kfunc hook for kprobe programs), not `{version}`"
            );
        }
        let release = debian
            .split_once("~deb")
            .and_then(|(_, rest)| rest.split('u').next())
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .with_context(|| {
                format!("`{version}` is not a bookworm backport like {PINNED_VERSION}")
            })?;
        Ok(Self {
            version: version.to_owned(),
            abi: format!("{upstream}+deb{release}"),
        })
    }

    /// `uname -r` inside the VM.
    pub fn release(&self) -> String {
        format!("{}-cloud-amd64", self.abi)
    }

    pub fn image_package(&self) -> String {
        format!("linux-image-{}-unsigned", self.release())
    }

    pub fn headers_package(&self) -> String {
        format!("linux-headers-{}", self.release())
    }

    pub fn dbg_package(&self) -> String {
        format!("linux-image-{}-dbg", self.release())
    }
}

/// Every 6.12 source version the configured apt archives carry, newest first.
pub fn available_versions() -> Result<Vec<String>> {
    let text = process::output(Command::new("apt-cache").args(["madison", SOURCE_PACKAGE]))?;
    Ok(parse_madison(&text))
}

fn parse_madison(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.split('|').nth(1))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

/// The lab's cache: downloads, tools and prepared trees, outside the repository so that every
/// checkout on this machine reuses them.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// `$KERNELX_CACHE`, else `$XDG_CACHE_HOME/kernelx`, else `~/.cache/kernelx`.
    pub fn from_env() -> Result<Self> {
        let root = if let Some(dir) = std::env::var_os("KERNELX_CACHE") {
            PathBuf::from(dir)
        } else if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
            PathBuf::from(dir).join("kernelx")
        } else {
            let home = std::env::var_os("HOME").context("neither KERNELX_CACHE nor HOME is set")?;
            PathBuf::from(home).join(".cache/kernelx")
        };
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn debs(&self) -> PathBuf {
        self.root.join("debs")
    }

    pub fn tools(&self) -> PathBuf {
        self.root.join("tools")
    }

    pub fn virtiofsd(&self) -> PathBuf {
        self.tools().join("bin/virtiofsd")
    }

    pub fn runs(&self) -> PathBuf {
        self.root.join("runs")
    }

    pub fn kernel(&self, kernel: &LabKernel) -> KernelFiles {
        KernelFiles {
            dir: self.root.join("kernels").join(kernel.release()),
            release: kernel.release(),
        }
    }
}

/// Where one kernel's extracted files live.
#[derive(Debug, Clone)]
pub struct KernelFiles {
    pub dir: PathBuf,
    release: String,
}

impl KernelFiles {
    /// The image package, extracted (`boot/`, `lib/modules/`).
    pub fn image(&self) -> PathBuf {
        self.dir.join("image")
    }

    pub fn vmlinuz(&self) -> PathBuf {
        self.image().join(format!("boot/vmlinuz-{}", self.release))
    }

    pub fn config(&self) -> PathBuf {
        self.image().join(format!("boot/config-{}", self.release))
    }

    /// `lib/modules/<release>` of the image; bound over the host's path inside the VM.
    pub fn modules(&self) -> PathBuf {
        self.image().join(format!("lib/modules/{}", self.release))
    }

    /// overlayfs, which the VM's init loads to make the shared host root writable in RAM.
    pub fn overlay_module(&self) -> PathBuf {
        self.modules().join("kernel/fs/overlayfs/overlay.ko.xz")
    }

    /// The vmlinux with symbols from the `-dbg` package.
    pub fn vmlinux(&self) -> PathBuf {
        self.dir.join(format!("vmlinux-{}", self.release))
    }

    /// The matching source tree, configured like the image and `make prepare`d.
    pub fn source(&self) -> PathBuf {
        // The package's tarball unpacks into a directory named like the package.
        self.dir.join(SOURCE_PACKAGE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_abi_from_debian_version() {
        let k = LabKernel::from_version("6.12.117-1~deb12u1").unwrap();
        assert_eq!(k.abi, "6.12.117+deb12");
        assert_eq!(k.release(), "6.12.117+deb12-cloud-amd64");
        assert_eq!(
            k.image_package(),
            "linux-image-6.12.117+deb12-cloud-amd64-unsigned"
        );
        assert_eq!(
            k.headers_package(),
            "linux-headers-6.12.117+deb12-cloud-amd64"
        );
        assert_eq!(
            k.dbg_package(),
            "linux-image-6.12.117+deb12-cloud-amd64-dbg"
        );
        assert_eq!(
            LabKernel::from_version("6.12.115-2~deb12u1").unwrap().abi,
            "6.12.115+deb12"
        );
    }

    #[test]
    fn rejects_other_versions() {
        assert!(LabKernel::from_version("6.1.158-1").is_err());
        assert!(LabKernel::from_version("6.12.117").is_err());
        assert!(LabKernel::from_version("6.12.57-1").is_err());
    }

    #[test]
    fn reads_madison_output() {
        let text = " linux-source-6.12 | 6.12.117-1~deb12u1 | http://x bookworm-security/main amd64 Packages\n \
                    linux-source-6.12 | 6.12.115-2~deb12u1 | http://x bookworm-security/main amd64 Packages\n";
        assert_eq!(
            parse_madison(text),
            ["6.12.117-1~deb12u1", "6.12.115-2~deb12u1"]
        );
    }
}
