//! What `kernelx doctor` reports: the check ids, the statuses, one [`Check`] per id, the JSON
//! format (on [`CheckReport`]), and the options that decide what is checked.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// The id of every check, in report order. Ids are stable: scripts and tests match on them.
///
/// | id | what it requires |
/// |----|------------------|
/// | `root` | effective uid 0 with the capabilities KernelX uses |
/// | `kprobes` | a kernel built with `CONFIG_KPROBES` |
/// | `optprobes` | `CONFIG_OPTPROBES` and `/proc/sys/debug/kprobes-optimization` = 1 |
/// | `btf` | `/sys/kernel/btf/vmlinux`, parseable |
/// | `kfunc-hook` | `BTF_KFUNC_HOOK_KPROBE` in the kernel's `enum btf_kfunc_hook`, and module BTF |
/// | `bpffs` | a bpf file system at `/sys/fs/bpf` |
/// | `tracefs` | tracefs mounted |
/// | `kcore` | `/proc/kcore` readable |
/// | `modules` | loadable, unsigned modules accepted |
/// | `kernel-headers` | `/lib/modules/<release>/build/Makefile` |
/// | `source-tree` | when a tree is given: its version, `.config` and `kernel.release` match |
pub const CHECK_IDS: [&str; 11] = [
    "root",
    "kprobes",
    "optprobes",
    "btf",
    "kfunc-hook",
    "bpffs",
    "tracefs",
    "kcore",
    "modules",
    "kernel-headers",
    "source-tree",
];

/// What the user asked to check beyond the host itself.
#[derive(Debug, Clone, Default)]
pub struct DoctorOptions {
    /// A kernel source tree to check against the running kernel (`--kernel-dir`/`KERNEL_DIR`).
    pub kernel_dir: Option<PathBuf>,
}

/// The outcome of one check, by severity:
///
/// * [`CheckStatus::Fail`]: KernelX cannot load or run a plan on this host (or, for
///   `source-tree`, cannot build a valid plan from the tree given).
/// * [`CheckStatus::Warn`]: it works, degraded or unverified (e.g. probes that cannot be
///   jump-optimized cost several times more per hit).
/// * [`CheckStatus::Skip`]: the check does not apply (no source tree given) or depends on a
///   check that already failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// The requirement is met.
    Pass,
    /// KernelX works, degraded or unverified.
    Warn,
    /// KernelX cannot work until this is fixed.
    Fail,
    /// The check does not apply, or depends on one that failed.
    Skip,
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckStatus::Pass => "pass",
            CheckStatus::Warn => "warn",
            CheckStatus::Fail => "fail",
            CheckStatus::Skip => "skip",
        })
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable identifier, one of [`CHECK_IDS`].
    pub id: &'static str,
    /// A short human title.
    pub title: &'static str,
    /// The outcome.
    pub status: CheckStatus,
    /// What was found, concretely: paths, values.
    pub detail: String,
    /// What to do about a `fail` or `warn`.
    pub fix: Option<String>,
}

/// The result of [`check_host`](crate::check_host).
///
/// # JSON format
///
/// `kernelx doctor --json` prints this struct, serialized:
///
/// ```json
/// {
///   "checks": [
///     {
///       "id": "kprobes",
///       "title": "kprobes in the running kernel",
///       "status": "fail",
///       "detail": "CONFIG_KPROBES is not set in /proc/config.gz: ...",
///       "fix": "boot a kernel built with CONFIG_KPROBES=y ..."
///     }
///   ]
/// }
/// ```
///
/// * `checks`: one object per id of [`CHECK_IDS`], in that order.
/// * `id`: stable identifier. `title`: human text, may change.
/// * `status`: `"pass"`, `"warn"`, `"fail"` or `"skip"` (see [`CheckStatus`] for severities).
/// * `detail`: what was found. `fix`: what to do, or `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// The checks, in [`CHECK_IDS`] order.
    pub checks: Vec<Check>,
}

impl CheckReport {
    /// The check with this id.
    pub fn get(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// The checks with this status.
    pub fn with_status(&self, status: CheckStatus) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(move |c| c.status == status)
    }

    /// `true` when no check failed.
    pub fn is_ok(&self) -> bool {
        self.with_status(CheckStatus::Fail).next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use crate::CHECK_IDS;
    use crate::testing::FakeHost;

    #[test]
    fn the_report_serializes_as_documented() {
        let report = FakeHost::healthy().run();
        let json = serde_json::to_value(&report).unwrap();
        let first = &json["checks"][0];
        assert_eq!(first["id"], "root");
        assert_eq!(first["status"], "pass");
        assert!(first["fix"].is_null());
        assert_eq!(json["checks"].as_array().unwrap().len(), CHECK_IDS.len());
    }
}
