//! Kernel source trees: what version they hold, whether they are configured and prepared.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::{KbuildError, KernelConfig, ModuleTree};

/// A kernel version as the top Makefile states it (`VERSION`, `PATCHLEVEL`, `SUBLEVEL`,
/// `EXTRAVERSION`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KernelVersion {
    /// `VERSION`, e.g. 6.
    pub version: u32,
    /// `PATCHLEVEL`, e.g. 12.
    pub patchlevel: u32,
    /// `SUBLEVEL`, e.g. 117.
    pub sublevel: u32,
    /// `EXTRAVERSION`, e.g. `-rc3`; usually empty.
    pub extraversion: String,
}

impl KernelVersion {
    /// `true` when `release` (e.g. `uname -r`'s `6.12.117+deb12-cloud-amd64`) is this version
    /// followed by a local suffix or nothing.
    ///
    /// `6.12.117` matches `6.12.117+deb12-cloud-amd64` and `6.12.117`, but not `6.12.1170`.
    pub fn matches_release(&self, release: &str) -> bool {
        release
            .strip_prefix(self.to_string().as_str())
            .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()))
    }
}

impl fmt::Display for KernelVersion {
    /// The kernel's own `KERNELVERSION`, e.g. `6.12.117` or `6.13.0-rc3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}{}",
            self.version, self.patchlevel, self.sublevel, self.extraversion
        )
    }
}

/// A kernel source tree on disk, opened and validated by [`KernelTree::open`].
///
/// Opening reads, never writes: KernelX does not modify a user's tree.
#[derive(Debug, Clone)]
pub struct KernelTree {
    path: PathBuf,
    version: KernelVersion,
    config: Option<KernelConfig>,
    kernel_release: Option<String>,
}

impl KernelTree {
    /// Opens the kernel source tree whose top directory is `path`.
    ///
    /// Reads the version from the top Makefile, `.config` if the tree is configured, and
    /// `include/config/kernel.release` if it is prepared (`make prepare` writes it).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, KbuildError> {
        let path = path.as_ref();
        let not_a_tree = |reason: String| KbuildError::NotAKernelTree {
            path: path.to_owned(),
            reason,
        };
        if !path.is_dir() {
            return Err(not_a_tree(
                "no such directory; pass the top directory of the kernel sources".to_owned(),
            ));
        }
        let makefile = path.join("Makefile");
        if !makefile.is_file() {
            return Err(not_a_tree(
                "it has no Makefile; pass the top directory of the kernel sources (the one \
                 holding Makefile, Kconfig and arch/), e.g. the tree extracted from \
                 linux-source-<version>"
                    .to_owned(),
            ));
        }
        let text = read_to_string(&makefile)?;
        let version = parse_makefile_version(&text).map_err(|missing| {
            not_a_tree(format!(
                "its Makefile sets no {missing}; pass the top directory of the full kernel \
                 sources (a linux-headers package's wrapper Makefile is not enough)"
            ))
        })?;

        let dot_config = path.join(".config");
        let config = if dot_config.is_file() {
            Some(KernelConfig::read(&dot_config)?)
        } else {
            None
        };
        let release_file = path.join("include/config/kernel.release");
        let kernel_release = if release_file.is_file() {
            Some(read_to_string(&release_file)?.trim().to_owned())
        } else {
            None
        };
        Ok(KernelTree {
            path: path.to_owned(),
            version,
            config,
            kernel_release,
        })
    }

    /// The tree's top directory, as given to [`KernelTree::open`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The version its top Makefile states.
    pub fn version(&self) -> &KernelVersion {
        &self.version
    }

    /// Its `.config`, when the tree is configured.
    pub fn config(&self) -> Option<&KernelConfig> {
        self.config.as_ref()
    }

    /// The path of its `.config` (which may not exist yet).
    pub fn config_path(&self) -> PathBuf {
        self.path.join(".config")
    }

    /// Its `include/config/kernel.release`, when the tree is prepared.
    pub fn kernel_release(&self) -> Option<&str> {
        self.kernel_release.as_deref()
    }
}

/// What variant builds run on: the kernel's source tree, or an external module's directory
/// built against a kernel build directory. Both are "trees": sources found, edited and built
/// the same way; they differ in where kbuild's commands and the list of built units come from.
#[derive(Debug, Clone, Copy)]
pub enum SourceTree<'a> {
    /// A kernel source tree.
    Kernel(&'a KernelTree),
    /// An external module.
    Module(&'a ModuleTree),
}

impl SourceTree<'_> {
    /// The top of the sources.
    pub fn path(&self) -> &Path {
        match self {
            SourceTree::Kernel(tree) => tree.path(),
            SourceTree::Module(module) => module.path(),
        }
    }

    /// The kernel release the code is built for: the tree's `kernel.release` (else its
    /// Makefile version), or the module's kernel build directory's.
    pub fn release(&self) -> String {
        match self {
            SourceTree::Kernel(tree) => tree
                .kernel_release()
                .map_or_else(|| tree.version().to_string(), str::to_owned),
            SourceTree::Module(module) => module.release().to_owned(),
        }
    }

    /// The module, when this is one.
    pub fn module(&self) -> Option<&ModuleTree> {
        match self {
            SourceTree::Kernel(_) => None,
            SourceTree::Module(module) => Some(module),
        }
    }
}

impl<'a> From<&'a KernelTree> for SourceTree<'a> {
    fn from(tree: &'a KernelTree) -> Self {
        SourceTree::Kernel(tree)
    }
}

impl<'a> From<&'a ModuleTree> for SourceTree<'a> {
    fn from(module: &'a ModuleTree) -> Self {
        SourceTree::Module(module)
    }
}

fn read_to_string(path: &Path) -> Result<String, KbuildError> {
    std::fs::read_to_string(path).map_err(|source| KbuildError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads `VERSION = 6` style assignments from the first lines of a top Makefile. Returns the
/// name of the first missing variable on failure.
fn parse_makefile_version(text: &str) -> Result<KernelVersion, &'static str> {
    let lookup = |name: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.trim_start();
            let value = rest.strip_prefix(":=").or_else(|| rest.strip_prefix('='))?;
            Some(value.trim().to_owned())
        })
    };
    let number = |name: &'static str| lookup(name).and_then(|v| v.parse::<u32>().ok()).ok_or(name);
    Ok(KernelVersion {
        version: number("VERSION")?,
        patchlevel: number("PATCHLEVEL")?,
        sublevel: number("SUBLEVEL")?,
        extraversion: lookup("EXTRAVERSION").unwrap_or_default(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes the skeleton of a kernel tree: a top Makefile as upstream starts it.
    #[track_caller]
    pub(crate) fn fake_tree(dir: &Path, extraversion: &str) {
        std::fs::write(
            dir.join("Makefile"),
            format!(
                "# SPDX-License-Identifier: GPL-2.0\nVERSION = 6\nPATCHLEVEL = 12\n\
                 SUBLEVEL = 117\nEXTRAVERSION ={extraversion}\nNAME = Baby Opossum Posse\n"
            ),
        )
        .unwrap();
    }

    #[test]
    fn opens_a_bare_tree() {
        let dir = tempfile::tempdir().unwrap();
        fake_tree(dir.path(), "");
        let tree = KernelTree::open(dir.path()).unwrap();
        assert_eq!(tree.version().to_string(), "6.12.117");
        assert!(tree.config().is_none());
        assert!(tree.kernel_release().is_none());
        assert_eq!(tree.path(), dir.path());
    }

    #[test]
    fn reads_config_and_release_when_prepared() {
        let dir = tempfile::tempdir().unwrap();
        fake_tree(dir.path(), " -rc3");
        std::fs::write(dir.path().join(".config"), "CONFIG_KPROBES=y\n").unwrap();
        std::fs::create_dir_all(dir.path().join("include/config")).unwrap();
        std::fs::write(
            dir.path().join("include/config/kernel.release"),
            "6.12.117-rc3\n",
        )
        .unwrap();
        let tree = KernelTree::open(dir.path()).unwrap();
        assert_eq!(tree.version().to_string(), "6.12.117-rc3");
        assert!(tree.config().unwrap().is_enabled("CONFIG_KPROBES"));
        assert_eq!(tree.kernel_release(), Some("6.12.117-rc3"));
    }

    #[test]
    fn rejects_what_is_not_a_tree_and_says_what_to_pass() {
        let dir = tempfile::tempdir().unwrap();
        let err = KernelTree::open(dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such directory"), "{err}");

        let err = KernelTree::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("has no Makefile"), "{err}");
        assert!(err.contains(&dir.path().display().to_string()), "{err}");

        std::fs::write(
            dir.path().join("Makefile"),
            "include /usr/src/linux-headers-6.12.117+deb12-common/Makefile\n",
        )
        .unwrap();
        let err = KernelTree::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("sets no VERSION"), "{err}");
        assert!(err.contains("linux-headers"), "{err}");
    }

    #[test]
    fn a_version_matches_releases_with_a_local_suffix_only() {
        let v = parse_makefile_version("VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 117\n").unwrap();
        assert!(v.matches_release("6.12.117"));
        assert!(v.matches_release("6.12.117+deb12-cloud-amd64"));
        assert!(!v.matches_release("6.12.1170"));
        assert!(!v.matches_release("6.1.0-28-amd64"));
    }
}
