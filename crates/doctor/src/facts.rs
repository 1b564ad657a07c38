//! What several checks need, read from the host once: the kernel's release, its running config,
//! the mount table and the kernel's BTF.

use std::path::Path;

use kernelx_kbuild::ConfigValue;
use kernelx_runtime::btf::{Btf, BtfError};
use kernelx_runtime::host::{HostError, HostView, Mount};

use crate::checks::render;
use crate::config::{RunningConfig, running_config, running_config_candidates};

/// The kernel's own BTF.
pub(crate) const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// What several checks need, read once. Errors are kept rendered, as checks only show them.
pub(crate) struct Facts {
    pub(crate) release: Result<String, String>,
    pub(crate) config: Result<Option<RunningConfig>, String>,
    pub(crate) mounts: Result<Vec<Mount>, String>,
}

impl Facts {
    pub(crate) fn gather(host: &HostView) -> Self {
        let release = host.kernel_release().map_err(|e| render(&e));
        let config = match &release {
            Ok(release) => running_config(host, release).map_err(|e| render(&e)),
            Err(e) => Err(format!("the running kernel's release is unknown ({e})")),
        };
        Facts {
            release,
            config,
            mounts: host.mounts().map_err(|e| render(&e)),
        }
    }

    /// The running config's value for `option`, or why it is unknown.
    pub(crate) fn config_value(&self, option: &str) -> ConfigFact<'_> {
        match &self.config {
            Ok(Some(running)) => ConfigFact::Known {
                path: &running.path,
                value: running.config.get(option),
            },
            Ok(None) => ConfigFact::Unknown(self.config_missing()),
            Err(e) => ConfigFact::Unknown(e.clone()),
        }
    }

    /// Why the running config is unknown when none of its places has it.
    pub(crate) fn config_missing(&self) -> String {
        let release = self.release.as_deref().unwrap_or("<release>");
        let [a, b] = running_config_candidates(release);
        format!(
            "the running kernel's config is neither at {} nor at {}",
            a.display(),
            b.display()
        )
    }
}

/// What the running config says about one option.
pub(crate) enum ConfigFact<'a> {
    Known {
        path: &'a Path,
        value: Option<&'a ConfigValue>,
    },
    Unknown(String),
}

/// The kernel's BTF as the `btf` and `kfunc-hook` checks see it, read and parsed once.
pub(crate) enum BtfState<'a> {
    Parsed { len: usize, btf: Btf<'a> },
    Unreadable(&'a HostError),
    Unparseable(BtfError),
}

impl<'a> BtfState<'a> {
    /// Parses what was read from [`VMLINUX_BTF`]. The caller keeps the bytes, which the parsed
    /// BTF borrows.
    pub(crate) fn new(read: &'a Result<Vec<u8>, HostError>) -> Self {
        match read {
            Ok(bytes) => match Btf::parse(bytes) {
                Ok(btf) => BtfState::Parsed {
                    len: bytes.len(),
                    btf,
                },
                Err(e) => BtfState::Unparseable(e),
            },
            Err(e) => BtfState::Unreadable(e),
        }
    }
}
