//! The host checks behind `kernelx doctor`: can KernelX tune this kernel, and if not, why and
//! what to do.
//!
//! [`check_host`] runs every check against a [`HostView`] and returns a [`CheckReport`], one
//! [`Check`] per entry of [`CHECK_IDS`], always in that order.
//!
//! # Severity
//!
//! * [`CheckStatus::Fail`]: KernelX cannot load or run a plan on this host (or, for
//!   `source-tree`, cannot build a valid plan from the tree given).
//! * [`CheckStatus::Warn`]: it works, degraded or unverified (e.g. probes that cannot be
//!   jump-optimized cost several times more per hit).
//! * [`CheckStatus::Skip`]: the check does not apply (no source tree given) or depends on a
//!   check that already failed.
//!
//! # Checks
//!
//! | id | what it requires |
//! |----|------------------|
//! | `root` | effective uid 0 with the capabilities KernelX uses |
//! | `kprobes` | a kernel built with `CONFIG_KPROBES` |
//! | `optprobes` | `CONFIG_OPTPROBES` and `/proc/sys/debug/kprobes-optimization` = 1 |
//! | `btf` | `/sys/kernel/btf/vmlinux`, parseable |
//! | `kfunc-hook` | `BTF_KFUNC_HOOK_KPROBE` in the kernel's `enum btf_kfunc_hook`, and module BTF |
//! | `bpffs` | a bpf file system at `/sys/fs/bpf` |
//! | `tracefs` | tracefs mounted |
//! | `kcore` | `/proc/kcore` readable |
//! | `modules` | loadable, unsigned modules accepted |
//! | `kernel-headers` | `/lib/modules/<release>/build/Makefile` |
//! | `source-tree` | when a tree is given: its version, `.config` and `kernel.release` match |

use std::fmt;
use std::io::ErrorKind;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use kernelx_kbuild::{
    CommandLine, ConfigValue, KernelTree, Tolerance, Toolchain, make_command, shell_quote,
};
use serde::Serialize;

use crate::btf::{Btf, BtfError};
use crate::host::{HostError, HostView, Mount, RunningConfig};

/// The id of every check, in report order. Ids are stable: scripts and tests match on them.
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

/// The outcome of one check.
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

/// The result of [`check_host`].
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
/// * `status`: `"pass"`, `"warn"`, `"fail"` or `"skip"` (see the module docs for severities).
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

/// Runs every check against `host` and returns them in [`CHECK_IDS`] order.
///
/// Never fails: what cannot be read becomes part of a check's result.
pub fn check_host(host: &HostView, options: &DoctorOptions) -> CheckReport {
    let facts = Facts::gather(host);
    let btf_bytes = host.read(VMLINUX_BTF);
    let btf = match &btf_bytes {
        Ok(bytes) => match Btf::parse(bytes) {
            Ok(btf) => BtfState::Parsed {
                len: bytes.len(),
                btf,
            },
            Err(e) => BtfState::Unparseable(e),
        },
        Err(e) => BtfState::Unreadable(e),
    };

    let kprobes = check_kprobes(host, &facts);
    let optprobes = check_optprobes(host, &facts, kprobes.status);
    let checks = vec![
        check_root(host),
        kprobes,
        optprobes,
        check_btf(&btf),
        check_kfunc_hook(&btf, &facts),
        check_bpffs(&facts),
        check_tracefs(&facts),
        check_kcore(host),
        check_modules(host),
        check_kernel_headers(host, &facts),
        check_source_tree(&facts, options),
    ];
    debug_assert!(checks.iter().map(|c| c.id).eq(CHECK_IDS));
    CheckReport { checks }
}

const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
const KPROBE_INTERFACES: [&str; 3] = [
    "/sys/kernel/tracing/kprobe_events",
    "/sys/kernel/debug/tracing/kprobe_events",
    "/sys/kernel/debug/kprobes/list",
];
const KPROBES_OPTIMIZATION: &str = "/proc/sys/debug/kprobes-optimization";
const TRACEFS_MOUNT_POINTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
const BPFFS: &str = "/sys/fs/bpf";
const LOCKDOWN: &str = "/sys/kernel/security/lockdown";

/// What several checks need, read once. Errors are kept rendered, as checks only show them.
struct Facts {
    release: Result<String, String>,
    config: Result<Option<RunningConfig>, String>,
    mounts: Result<Vec<Mount>, String>,
}

impl Facts {
    fn gather(host: &HostView) -> Self {
        let release = host.kernel_release().map_err(|e| render(&e));
        let config = match &release {
            Ok(release) => host.running_config(release).map_err(|e| render(&e)),
            Err(e) => Err(format!("the running kernel's release is unknown ({e})")),
        };
        Facts {
            release,
            config,
            mounts: host.mounts().map_err(|e| render(&e)),
        }
    }

    /// The running config's value for `option`, or why it is unknown.
    fn config_value(&self, option: &str) -> ConfigFact<'_> {
        match &self.config {
            Ok(Some(running)) => ConfigFact::Known {
                path: &running.path,
                value: running.config.get(option),
            },
            Ok(None) => ConfigFact::Unknown(self.config_missing()),
            Err(e) => ConfigFact::Unknown(e.clone()),
        }
    }

    fn config_missing(&self) -> String {
        let release = self.release.as_deref().unwrap_or("<release>");
        let [a, b] = HostView::running_config_candidates(release);
        format!(
            "the running kernel's config is neither at {} nor at {}",
            a.display(),
            b.display()
        )
    }
}

enum ConfigFact<'a> {
    Known {
        path: &'a Path,
        value: Option<&'a ConfigValue>,
    },
    Unknown(String),
}

/// `CONFIG_X=y`, `CONFIG_X is not set`, `CONFIG_X is absent` for details.
fn describe_option(option: &str, value: Option<&ConfigValue>) -> String {
    match value {
        Some(ConfigValue::NotSet) => format!("{option} is not set"),
        Some(value) => format!("{option}={value}"),
        None => format!("{option} is absent"),
    }
}

/// An error and its causes on one line.
fn render(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn check(
    id: &'static str,
    title: &'static str,
    status: CheckStatus,
    detail: impl Into<String>,
    fix: Option<String>,
) -> Check {
    Check {
        id,
        title,
        status,
        detail: detail.into(),
        fix,
    }
}

/// Capabilities KernelX needs, and what for. Root in a container may lack some of them.
const REQUIRED_CAPABILITIES: [(u32, &str, &str); 4] = [
    (16, "CAP_SYS_MODULE", "load the KernelX module"),
    (17, "CAP_SYS_RAWIO", "read /proc/kcore"),
    (21, "CAP_SYS_ADMIN", "load BPF programs and attach kprobes"),
    (34, "CAP_SYSLOG", "read kernel addresses in /proc/kallsyms"),
];

fn check_root(host: &HostView) -> Check {
    const ID: &str = "root";
    const TITLE: &str = "running as root";
    let creds = match host.credentials() {
        Ok(creds) => creds,
        Err(e) => return check(ID, TITLE, CheckStatus::Fail, render(&e), None),
    };
    if creds.effective_uid != 0 {
        return check(
            ID,
            TITLE,
            CheckStatus::Fail,
            format!(
                "effective uid is {}: loading BPF programs, kprobes and modules needs root",
                creds.effective_uid
            ),
            Some("run kernelx as root, e.g. `sudo kernelx ...`".to_owned()),
        );
    }
    let missing: Vec<String> = REQUIRED_CAPABILITIES
        .iter()
        .filter(|(cap, _, _)| !creds.has_capability(*cap))
        .map(|(_, name, why)| format!("{name} (to {why})"))
        .collect();
    if missing.is_empty() {
        check(
            ID,
            TITLE,
            CheckStatus::Pass,
            format!(
                "euid 0, CapEff {:016x} has CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_SYS_ADMIN, CAP_SYSLOG",
                creds.effective_caps
            ),
            None,
        )
    } else {
        check(
            ID,
            TITLE,
            CheckStatus::Fail,
            format!(
                "euid 0, but CapEff {:016x} lacks {}",
                creds.effective_caps,
                missing.join(", ")
            ),
            Some(
                "run kernelx with full capabilities in the host's namespaces (a container \
                 needs to be privileged)"
                    .to_owned(),
            ),
        )
    }
}

fn check_kprobes(host: &HostView, facts: &Facts) -> Check {
    const ID: &str = "kprobes";
    const TITLE: &str = "kprobes in the running kernel";
    const WHY: &str = "this kernel cannot place kprobes, and KernelX applies every tuned value \
                       from a kprobe on the instruction that uses the constant";
    let fix = || {
        Some(
            "boot a kernel built with CONFIG_KPROBES=y (distribution kernels have it, e.g. \
             Debian 12's linux-image-6.12.*-cloud-amd64); kprobes cannot be added to a running \
             kernel"
                .to_owned(),
        )
    };
    let interfaces: Vec<&str> = KPROBE_INTERFACES
        .into_iter()
        .filter(|path| host.exists(path))
        .collect();
    // The kernel's own interfaces are proof; a config file might be stale.
    if !interfaces.is_empty() {
        return check(
            ID,
            TITLE,
            CheckStatus::Pass,
            format!("found {}", interfaces.join(", ")),
            None,
        );
    }
    let unseen = "no kprobe_events in tracefs and no /sys/kernel/debug/kprobes/list";
    match facts.config_value("CONFIG_KPROBES") {
        ConfigFact::Known {
            path,
            value: Some(ConfigValue::Yes),
        } => check(
            ID,
            TITLE,
            CheckStatus::Pass,
            format!(
                "CONFIG_KPROBES=y in {} ({unseen}: tracefs or debugfs is not mounted)",
                path.display()
            ),
            None,
        ),
        ConfigFact::Known { path, value } => check(
            ID,
            TITLE,
            CheckStatus::Fail,
            format!(
                "{} in {}, and {unseen}: {WHY}",
                describe_option("CONFIG_KPROBES", value),
                path.display()
            ),
            fix(),
        ),
        ConfigFact::Unknown(why_unknown) => {
            // Without a config, the symbol table still tells: register_kprobe exists exactly
            // when kprobes are built in.
            match host.read_to_string("/proc/kallsyms") {
                Ok(kallsyms) => {
                    let has = kallsyms
                        .lines()
                        .any(|line| line.split_whitespace().nth(2) == Some("register_kprobe"));
                    if has {
                        check(
                            ID,
                            TITLE,
                            CheckStatus::Pass,
                            format!("register_kprobe is in /proc/kallsyms ({unseen})"),
                            None,
                        )
                    } else {
                        check(
                            ID,
                            TITLE,
                            CheckStatus::Fail,
                            format!(
                                "/proc/kallsyms has no register_kprobe, {unseen} \
                                 ({why_unknown}): {WHY}"
                            ),
                            fix(),
                        )
                    }
                }
                Err(e) => check(
                    ID,
                    TITLE,
                    CheckStatus::Warn,
                    format!("cannot tell: {why_unknown}; {unseen}; {}", render(&e)),
                    Some(
                        "mount tracefs (`mount -t tracefs tracefs /sys/kernel/tracing`) and run \
                         `kernelx doctor` again"
                            .to_owned(),
                    ),
                ),
            }
        }
    }
}

fn check_optprobes(host: &HostView, facts: &Facts, kprobes: CheckStatus) -> Check {
    const ID: &str = "optprobes";
    const TITLE: &str = "jump-optimized kprobes";
    if kprobes != CheckStatus::Pass {
        return check(
            ID,
            TITLE,
            CheckStatus::Skip,
            "kprobes are not available (see `kprobes`)",
            None,
        );
    }
    let slow = "every probe will be an INT3 trap, several times slower per hit than a \
                jump-optimized probe";
    let config = facts.config_value("CONFIG_OPTPROBES");
    let config_text = match &config {
        ConfigFact::Known { path, value } => {
            let text = format!(
                "{} in {}",
                describe_option("CONFIG_OPTPROBES", *value),
                path.display()
            );
            if *value != Some(&ConfigValue::Yes) {
                return check(
                    ID,
                    TITLE,
                    CheckStatus::Warn,
                    format!("{text}: {slow}"),
                    Some("for full speed, use a kernel built with CONFIG_OPTPROBES=y".to_owned()),
                );
            }
            text
        }
        ConfigFact::Unknown(why) => format!("CONFIG_OPTPROBES unknown ({why})"),
    };
    match host.read_to_string(KPROBES_OPTIMIZATION) {
        Ok(value) if value.trim() == "1" => check(
            ID,
            TITLE,
            CheckStatus::Pass,
            format!("{config_text}; {KPROBES_OPTIMIZATION} = 1"),
            None,
        ),
        Ok(value) => check(
            ID,
            TITLE,
            CheckStatus::Warn,
            format!(
                "{config_text}; {KPROBES_OPTIMIZATION} = {}: {slow}",
                value.trim()
            ),
            Some(format!("echo 1 > {KPROBES_OPTIMIZATION}")),
        ),
        Err(e) => check(
            ID,
            TITLE,
            CheckStatus::Warn,
            format!(
                "{config_text}; {} (it exists only with CONFIG_OPTPROBES): probes may not be \
                 jump-optimized",
                render(&e)
            ),
            Some("for full speed, use a kernel built with CONFIG_OPTPROBES=y".to_owned()),
        ),
    }
}

/// The kernel's BTF as the `btf` and `kfunc-hook` checks see it, read and parsed once.
enum BtfState<'a> {
    Parsed { len: usize, btf: Btf<'a> },
    Unreadable(&'a HostError),
    Unparseable(BtfError),
}

fn check_btf(btf: &BtfState<'_>) -> Check {
    const ID: &str = "btf";
    const TITLE: &str = "kernel BTF";
    match btf {
        BtfState::Parsed { len, btf } => check(
            ID,
            TITLE,
            CheckStatus::Pass,
            format!("{VMLINUX_BTF}: {len} bytes, {} types", btf.type_count()),
            None,
        ),
        BtfState::Unparseable(e) => check(
            ID,
            TITLE,
            CheckStatus::Fail,
            format!("{VMLINUX_BTF} cannot be parsed: {e}"),
            Some(format!(
                "this is likely a KernelX bug: please report it with a copy of {VMLINUX_BTF}"
            )),
        ),
        BtfState::Unreadable(HostError::Read { source, .. })
            if source.kind() == ErrorKind::NotFound =>
        {
            check(
                ID,
                TITLE,
                CheckStatus::Fail,
                format!(
                    "{VMLINUX_BTF} does not exist: the kernel was built without \
                     CONFIG_DEBUG_INFO_BTF, and KernelX's BPF programs need the kernel's types"
                ),
                Some(
                    "boot a kernel built with CONFIG_DEBUG_INFO_BTF=y and \
                     CONFIG_DEBUG_INFO_BTF_MODULES=y (Debian's kernels are)"
                        .to_owned(),
                ),
            )
        }
        BtfState::Unreadable(e) => check(ID, TITLE, CheckStatus::Fail, render(*e), None),
    }
}

fn check_kfunc_hook(btf: &BtfState<'_>, facts: &Facts) -> Check {
    const ID: &str = "kfunc-hook";
    const TITLE: &str = "kfuncs callable from kprobe programs";
    const HOOK: &str = "BTF_KFUNC_HOOK_KPROBE";
    let BtfState::Parsed { btf, .. } = btf else {
        return check(
            ID,
            TITLE,
            CheckStatus::Skip,
            "needs the kernel's BTF (see `btf`)",
            None,
        );
    };
    let fix = || {
        Some(format!(
            "boot a kernel whose BTF has {HOOK} (Debian 12's 6.12 kernel has it, its 6.1 \
             kernel does not)"
        ))
    };
    let why = "kprobe BPF programs cannot call kfuncs, and KernelX's programs rewrite registers \
               through the KernelX module's kfuncs";
    let hooks = match btf.find_enum("btf_kfunc_hook") {
        Ok(Some(hooks)) => hooks,
        Ok(None) => {
            return check(
                ID,
                TITLE,
                CheckStatus::Fail,
                format!("the kernel's BTF has no enum btf_kfunc_hook: {why}"),
                fix(),
            );
        }
        Err(e) => {
            return check(
                ID,
                TITLE,
                CheckStatus::Fail,
                format!("cannot read enum btf_kfunc_hook: {e}"),
                None,
            );
        }
    };
    if !hooks.has_enumerator(HOOK) {
        let names: Vec<&str> = hooks.enumerators.iter().map(|e| e.name).collect();
        return check(
            ID,
            TITLE,
            CheckStatus::Fail,
            format!(
                "enum btf_kfunc_hook has no {HOOK} (it has {}): {why}",
                names.join(", ")
            ),
            fix(),
        );
    }
    let found = format!("enum btf_kfunc_hook has {HOOK}");
    // The kfuncs live in a module; the verifier finds them through the module's BTF.
    match facts.config_value("CONFIG_DEBUG_INFO_BTF_MODULES") {
        ConfigFact::Known {
            value: Some(ConfigValue::Yes),
            path,
        } => check(
            ID,
            TITLE,
            CheckStatus::Pass,
            format!(
                "{found}; CONFIG_DEBUG_INFO_BTF_MODULES=y in {}",
                path.display()
            ),
            None,
        ),
        ConfigFact::Known { path, value } => check(
            ID,
            TITLE,
            CheckStatus::Fail,
            format!(
                "{found}, but {} in {}: the KernelX module would have no BTF, so BPF programs \
                 cannot call its kfuncs",
                describe_option("CONFIG_DEBUG_INFO_BTF_MODULES", value),
                path.display()
            ),
            Some("boot a kernel built with CONFIG_DEBUG_INFO_BTF_MODULES=y".to_owned()),
        ),
        ConfigFact::Unknown(why) => check(
            ID,
            TITLE,
            CheckStatus::Pass,
            format!("{found} (module BTF not confirmed: {why})"),
            None,
        ),
    }
}

fn check_bpffs(facts: &Facts) -> Check {
    const ID: &str = "bpffs";
    const TITLE: &str = "BPF file system at /sys/fs/bpf";
    let mounts = match &facts.mounts {
        Ok(mounts) => mounts,
        Err(e) => return check(ID, TITLE, CheckStatus::Fail, e.clone(), None),
    };
    let bpf: Vec<&Mount> = mounts.iter().filter(|m| m.fstype == "bpf").collect();
    if bpf.iter().any(|m| m.target == Path::new(BPFFS)) {
        return check(
            ID,
            TITLE,
            CheckStatus::Pass,
            format!("bpf mounted at {BPFFS}"),
            None,
        );
    }
    let elsewhere = if bpf.is_empty() {
        String::new()
    } else {
        let targets: Vec<String> = bpf.iter().map(|m| m.target.display().to_string()).collect();
        format!(" (bpf is mounted at {})", targets.join(", "))
    };
    check(
        ID,
        TITLE,
        CheckStatus::Fail,
        format!(
            "no bpf file system at {BPFFS}{elsewhere}: KernelX pins its programs, links and maps \
             under {BPFFS}/kernelx so that tunables outlive the command and can be found again"
        ),
        Some(format!("mount -t bpf bpf {BPFFS}")),
    )
}

fn check_tracefs(facts: &Facts) -> Check {
    const ID: &str = "tracefs";
    const TITLE: &str = "tracefs mounted";
    let mounts = match &facts.mounts {
        Ok(mounts) => mounts,
        Err(e) => return check(ID, TITLE, CheckStatus::Warn, e.clone(), None),
    };
    let found: Vec<String> = mounts
        .iter()
        .filter(|m| m.fstype == "tracefs")
        .filter(|m| {
            TRACEFS_MOUNT_POINTS
                .iter()
                .any(|p| m.target == Path::new(p))
        })
        .map(|m| m.target.display().to_string())
        .collect();
    if found.is_empty() {
        check(
            ID,
            TITLE,
            CheckStatus::Warn,
            format!(
                "tracefs is not mounted at {}: the kernel's kprobe_events and trace output are \
                 not visible for diagnosing probes",
                TRACEFS_MOUNT_POINTS.join(" or ")
            ),
            Some("mount -t tracefs tracefs /sys/kernel/tracing".to_owned()),
        )
    } else {
        check(
            ID,
            TITLE,
            CheckStatus::Pass,
            format!("tracefs mounted at {}", found.join(", ")),
            None,
        )
    }
}

fn check_kcore(host: &HostView) -> Check {
    const ID: &str = "kcore";
    const TITLE: &str = "/proc/kcore readable";
    const KCORE: &str = "/proc/kcore";
    const WHY: &str = "KernelX reads the live code at every probe site to verify a plan before \
                       attaching";
    match host.read_prefix(KCORE, 4) {
        Ok(magic) if magic == b"\x7fELF" => check(
            ID,
            TITLE,
            CheckStatus::Pass,
            format!("{KCORE} opens and starts with an ELF header"),
            None,
        ),
        Ok(magic) => check(
            ID,
            TITLE,
            CheckStatus::Fail,
            format!("{KCORE} does not start with an ELF header (read {magic:02x?})"),
            None,
        ),
        Err(HostError::Read { source, .. }) if source.kind() == ErrorKind::NotFound => check(
            ID,
            TITLE,
            CheckStatus::Fail,
            format!("{KCORE} does not exist (kernel built without CONFIG_PROC_KCORE): {WHY}"),
            Some("boot a kernel built with CONFIG_PROC_KCORE=y".to_owned()),
        ),
        Err(e) => {
            let lockdown = host
                .read_to_string(LOCKDOWN)
                .map(|l| format!("; {LOCKDOWN}: {}", l.trim()))
                .unwrap_or_default();
            check(
                ID,
                TITLE,
                CheckStatus::Fail,
                format!("{}{lockdown}: {WHY}", render(&e)),
                Some(
                    "run as root (CAP_SYS_RAWIO); if kernel lockdown is `confidentiality`, \
                     boot without it"
                        .to_owned(),
                ),
            )
        }
    }
}

fn check_modules(host: &HostView) -> Check {
    const ID: &str = "modules";
    const TITLE: &str = "loadable kernel modules";
    const DISABLED: &str = "/proc/sys/kernel/modules_disabled";
    const SIG_ENFORCE: &str = "/sys/module/module/parameters/sig_enforce";
    if !host.exists("/proc/modules") {
        return check(
            ID,
            TITLE,
            CheckStatus::Fail,
            "/proc/modules does not exist: the kernel was built without CONFIG_MODULES, and \
             KernelX's kfuncs live in a kernel module",
            Some("boot a kernel built with CONFIG_MODULES=y".to_owned()),
        );
    }
    let mut found = vec!["/proc/modules exists".to_owned()];
    match host.read_to_string(DISABLED).map(|v| v.trim().to_owned()) {
        Ok(v) if v == "0" => found.push(format!("{DISABLED} = 0")),
        Ok(v) => {
            return check(
                ID,
                TITLE,
                CheckStatus::Fail,
                format!("{DISABLED} = {v}: module loading is off until the next reboot"),
                Some(
                    "reboot, and load KernelX before anything sets kernel.modules_disabled".into(),
                ),
            );
        }
        Err(e) => found.push(render(&e)),
    }
    if let Ok(v) = host.read_to_string(SIG_ENFORCE) {
        if v.trim() == "Y" {
            return check(
                ID,
                TITLE,
                CheckStatus::Fail,
                format!(
                    "{SIG_ENFORCE} = Y: the kernel loads only signed modules (Secure Boot or \
                     module.sig_enforce), and the KernelX module is unsigned"
                ),
                Some(
                    "sign the KernelX module with a key the kernel trusts (e.g. enrolled with \
                     mokutil), or boot without signature enforcement"
                        .to_owned(),
                ),
            );
        }
        found.push(format!("{SIG_ENFORCE} = {}", v.trim()));
    }
    check(ID, TITLE, CheckStatus::Pass, found.join("; "), None)
}

fn check_kernel_headers(host: &HostView, facts: &Facts) -> Check {
    const ID: &str = "kernel-headers";
    const TITLE: &str = "kernel headers for the KernelX module";
    let release = match &facts.release {
        Ok(release) => release,
        Err(e) => return check(ID, TITLE, CheckStatus::Fail, e.clone(), None),
    };
    let build = PathBuf::from(format!("/lib/modules/{release}/build"));
    let makefile = build.join("Makefile");
    if host.exists(&makefile) {
        let target = std::fs::read_link(host.resolve(&build))
            .map(|t| format!(" (build -> {})", t.display()))
            .unwrap_or_default();
        check(
            ID,
            TITLE,
            CheckStatus::Pass,
            format!("{}{target}", makefile.display()),
            None,
        )
    } else {
        check(
            ID,
            TITLE,
            CheckStatus::Fail,
            format!(
                "{} does not exist: the headers to build the KernelX module for {release} are \
                 not installed",
                makefile.display()
            ),
            Some(format!(
                "install the headers of this exact kernel: `apt install linux-headers-{release}` \
                 on Debian and Ubuntu"
            )),
        )
    }
}

fn check_source_tree(facts: &Facts, options: &DoctorOptions) -> Check {
    const ID: &str = "source-tree";
    const TITLE: &str = "kernel source tree matches the running kernel";
    let Some(dir) = &options.kernel_dir else {
        return check(
            ID,
            TITLE,
            CheckStatus::Skip,
            "no kernel source tree given (pass --kernel-dir DIR or set KERNEL_DIR)",
            None,
        );
    };
    let fail =
        |detail: String, fix: Option<String>| check(ID, TITLE, CheckStatus::Fail, detail, fix);
    let tree = match KernelTree::open(dir) {
        Ok(tree) => tree,
        Err(e) => return fail(render(&e), None),
    };
    let shown = dir.display();
    let version = tree.version();
    let release = match &facts.release {
        Ok(release) => release,
        Err(e) => {
            return fail(
                format!("cannot compare {shown} with the running kernel: {e}"),
                None,
            );
        }
    };
    if !version.matches_release(release) {
        return fail(
            format!("{shown} holds Linux {version}, but the running kernel is {release}"),
            Some(format!(
                "use the source of the running kernel ({release}), e.g. from the \
                 distribution's linux-source package"
            )),
        );
    }
    let running = match &facts.config {
        Ok(Some(running)) => running,
        Ok(None) => {
            return check(
                ID,
                TITLE,
                CheckStatus::Warn,
                format!(
                    "{shown} holds Linux {version}, but its config cannot be compared: {}",
                    facts.config_missing()
                ),
                None,
            );
        }
        Err(e) => {
            return check(
                ID,
                TITLE,
                CheckStatus::Warn,
                format!("{shown} holds Linux {version}, but its config cannot be compared: {e}"),
                None,
            );
        }
    };
    let toolchain = Toolchain::debian_gcc12();
    let configure = || configure_commands(&tree, &toolchain, running);
    let Some(config) = tree.config() else {
        return fail(
            format!(
                "{} does not exist: the tree is not configured",
                tree.config_path().display()
            ),
            Some(configure()),
        );
    };
    let comparison = config.compare_to_running(&running.config);
    if !comparison.matches() {
        const SHOWN: usize = 8;
        let mut listed: Vec<String> = comparison
            .mismatches
            .iter()
            .take(SHOWN)
            .map(ToString::to_string)
            .collect();
        if comparison.mismatches.len() > SHOWN {
            listed.push(format!("and {} more", comparison.mismatches.len() - SHOWN));
        }
        return fail(
            format!(
                "{} between {} and {} (tree vs running): {}",
                match comparison.mismatches.len() {
                    1 => "1 option differs".to_owned(),
                    n => format!("{n} options differ"),
                },
                tree.config_path().display(),
                running.path.display(),
                listed.join("; ")
            ),
            Some(configure()),
        );
    }
    let mut matched = format!(
        "{shown} holds Linux {version}; its .config matches {} ({} options",
        running.path.display(),
        config.len()
    );
    // Group tolerated differences by reason: the names are what a reader checks.
    let mut reasons: Vec<(Tolerance, Vec<&str>)> = Vec::new();
    for t in &comparison.tolerated {
        let name = t.difference.option.as_str();
        match reasons
            .iter_mut()
            .find(|(tolerance, _)| *tolerance == t.tolerance)
        {
            Some((_, names)) => names.push(name),
            None => reasons.push((t.tolerance, vec![name])),
        }
    }
    for (tolerance, names) in reasons {
        matched.push_str(&format!("; tolerated {} ({tolerance})", names.join(", ")));
    }
    matched.push(')');
    let jobs = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
    let prepare = make_command(&tree, &toolchain, jobs, &["prepare"]);
    match tree.kernel_release() {
        Some(tree_release) if tree_release == release => check(
            ID,
            TITLE,
            CheckStatus::Pass,
            format!("{matched}; kernel.release {tree_release}"),
            None,
        ),
        Some(tree_release) => {
            let mut prepare = prepare;
            prepare.args.push(format!("KERNELRELEASE={release}").into());
            check(
                ID,
                TITLE,
                CheckStatus::Warn,
                format!(
                    "{matched}; but the tree was prepared as {tree_release}, not {release}: the \
                     few objects that embed the release string would differ"
                ),
                Some(format!("prepare it with the running release: {prepare}")),
            )
        }
        None => check(
            ID,
            TITLE,
            CheckStatus::Warn,
            format!("{matched}; the tree is not prepared (no include/config/kernel.release)"),
            Some(format!("prepare it: {prepare}")),
        ),
    }
}

/// The commands that give `tree` the running kernel's config: copy it, then `olddefconfig`.
fn configure_commands(tree: &KernelTree, toolchain: &Toolchain, running: &RunningConfig) -> String {
    let dot_config = tree.config_path().into_os_string();
    let copy = if running.path.extension().is_some_and(|e| e == "gz") {
        let zcat = CommandLine::new("zcat", vec![running.path.clone().into_os_string()]);
        format!("{zcat} > {}", shell_quote(&dot_config))
    } else {
        CommandLine::new(
            "cp",
            vec![running.path.clone().into_os_string(), dot_config],
        )
        .to_string()
    };
    let olddefconfig = make_command(tree, toolchain, NonZeroUsize::MIN, &["olddefconfig"]);
    format!("copy the running config and refresh it: {copy} && {olddefconfig}")
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::btf::tests::BtfBuilder;

    const RELEASE: &str = "6.12.117+deb12-cloud-amd64";
    const CONFIG: &str = "\
CONFIG_CC_VERSION_TEXT=\"x86_64-linux-gnu-gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0\"
CONFIG_GCC_VERSION=120200
CONFIG_MODULES=y
CONFIG_KPROBES=y
CONFIG_OPTPROBES=y
CONFIG_DEBUG_INFO_BTF=y
CONFIG_DEBUG_INFO_BTF_MODULES=y
# CONFIG_MODULE_SIG_FORCE is not set
";
    const MOUNTS: &str = "\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
bpf /sys/fs/bpf bpf rw,nosuid,nodev,noexec,relatime,mode=700 0 0
tracefs /sys/kernel/tracing tracefs rw,nosuid,nodev,noexec,relatime 0 0
";

    /// A fake host in a temporary directory, healthy until a test breaks one thing.
    struct FakeHost {
        dir: tempfile::TempDir,
    }

    impl FakeHost {
        fn healthy() -> Self {
            let host = FakeHost {
                dir: tempfile::tempdir().unwrap(),
            };
            host.write(crate::host::OSRELEASE, format!("{RELEASE}\n"));
            host.write(&format!("/boot/config-{RELEASE}"), CONFIG);
            host.write(
                "/proc/self/status",
                "Name:\tkernelx\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nCapEff:\t000001ffffffffff\n",
            );
            host.write("/proc/self/mounts", MOUNTS);
            host.write("/sys/kernel/tracing/kprobe_events", "");
            host.write(KPROBES_OPTIMIZATION, "1\n");
            host.write(VMLINUX_BTF, btf_with_hooks(&["BTF_KFUNC_HOOK_KPROBE"]));
            host.write("/proc/kcore", b"\x7fELF\x02\x01\x01");
            host.write("/proc/modules", "");
            host.write("/proc/sys/kernel/modules_disabled", "0\n");
            host.write(&format!("/lib/modules/{RELEASE}/build/Makefile"), "");
            host
        }

        fn view(&self) -> HostView {
            HostView::with_root(self.dir.path())
        }

        #[track_caller]
        fn write(&self, path: &str, contents: impl AsRef<[u8]>) {
            let real = self.view().resolve(path);
            std::fs::create_dir_all(real.parent().unwrap()).unwrap();
            std::fs::write(real, contents).unwrap();
        }

        #[track_caller]
        fn remove(&self, path: &str) {
            std::fs::remove_file(self.view().resolve(path)).unwrap();
        }

        fn run(&self) -> CheckReport {
            self.run_with(&DoctorOptions::default())
        }

        fn run_with(&self, options: &DoctorOptions) -> CheckReport {
            check_host(&self.view(), options)
        }

        /// Runs every check and returns the one named `id`.
        #[track_caller]
        fn check(&self, id: &str) -> Check {
            self.check_with(id, &DoctorOptions::default())
        }

        #[track_caller]
        fn check_with(&self, id: &str, options: &DoctorOptions) -> Check {
            let report = self.run_with(options);
            report
                .get(id)
                .unwrap_or_else(|| panic!("no check named {id} in {report:?}"))
                .clone()
        }
    }

    fn btf_with_hooks(extra: &[&str]) -> Vec<u8> {
        let mut hooks = vec![("BTF_KFUNC_HOOK_COMMON", 0), ("BTF_KFUNC_HOOK_XDP", 1)];
        hooks.extend(extra.iter().enumerate().map(|(i, n)| (*n, i as i32 + 2)));
        let mut b = BtfBuilder::new(false);
        b.raw_type(1, "int", 0, false, 4, &[0x0100_0020])
            .enum32("btf_kfunc_hook", &hooks);
        b.finish()
    }

    #[track_caller]
    fn assert_status(check: &Check, status: CheckStatus, needles: &[&str]) {
        assert_eq!(check.status, status, "{check:#?}");
        let text = format!("{} {}", check.detail, check.fix.as_deref().unwrap_or(""));
        for needle in needles {
            assert!(text.contains(needle), "{needle:?} not in {check:#?}");
        }
        if matches!(status, CheckStatus::Fail | CheckStatus::Warn) {
            assert!(
                check.fix.is_some() || !check.detail.is_empty(),
                "{check:#?}"
            );
        }
    }

    #[test]
    fn a_healthy_host_passes_every_check_and_skips_the_tree() {
        let report = FakeHost::healthy().run();
        assert!(report.checks.iter().map(|c| c.id).eq(CHECK_IDS));
        for check in &report.checks {
            let expected = if check.id == "source-tree" {
                CheckStatus::Skip
            } else {
                CheckStatus::Pass
            };
            assert_eq!(check.status, expected, "{check:#?}");
        }
        assert!(report.is_ok());
    }

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

    #[test]
    fn root_fails_for_other_users_and_missing_capabilities() {
        let host = FakeHost::healthy();
        host.write(
            "/proc/self/status",
            "Uid:\t1000\t1000\t1000\t1000\nCapEff:\t0\n",
        );
        assert_status(
            &host.check("root"),
            CheckStatus::Fail,
            &["uid is 1000", "sudo"],
        );
        host.write(
            "/proc/self/status",
            "Uid:\t0\t0\t0\t0\nCapEff:\t0000000000200000\n",
        );
        assert_status(
            &host.check("root"),
            CheckStatus::Fail,
            &["lacks CAP_SYS_MODULE", "CAP_SYSLOG", "privileged"],
        );
    }

    #[test]
    fn kprobes_pass_on_interfaces_or_config() {
        let host = FakeHost::healthy();
        assert_status(
            &host.check("kprobes"),
            CheckStatus::Pass,
            &["/sys/kernel/tracing/kprobe_events"],
        );
        host.remove("/sys/kernel/tracing/kprobe_events");
        assert_status(
            &host.check("kprobes"),
            CheckStatus::Pass,
            &["CONFIG_KPROBES=y in /boot/config-6.12.117+deb12-cloud-amd64"],
        );
        host.remove(&format!("/boot/config-{RELEASE}"));
        host.write("/sys/kernel/debug/kprobes/list", "");
        assert_status(
            &host.check("kprobes"),
            CheckStatus::Pass,
            &["/sys/kernel/debug/kprobes/list"],
        );
    }

    #[test]
    fn kprobes_fail_on_a_kernel_without_them_and_explain_why() {
        let host = FakeHost::healthy();
        host.remove("/sys/kernel/tracing/kprobe_events");
        host.write(
            &format!("/boot/config-{RELEASE}"),
            CONFIG.replace("CONFIG_KPROBES=y", "# CONFIG_KPROBES is not set"),
        );
        let check = host.check("kprobes");
        assert_status(
            &check,
            CheckStatus::Fail,
            &[
                "CONFIG_KPROBES is not set",
                "cannot place kprobes",
                "CONFIG_KPROBES=y",
            ],
        );
        assert_status(&host.check("optprobes"), CheckStatus::Skip, &["kprobes"]);
    }

    #[test]
    fn kprobes_without_config_fall_back_to_kallsyms() {
        let host = FakeHost::healthy();
        host.remove("/sys/kernel/tracing/kprobe_events");
        host.remove(&format!("/boot/config-{RELEASE}"));
        assert_status(
            &host.check("kprobes"),
            CheckStatus::Warn,
            &["cannot tell", "mount"],
        );
        host.write(
            "/proc/kallsyms",
            "0000000000000000 T _stext\n0000000000000000 T register_kprobe\n",
        );
        assert_status(
            &host.check("kprobes"),
            CheckStatus::Pass,
            &["register_kprobe"],
        );
        host.write("/proc/kallsyms", "0000000000000000 T register_kprobes_x\n");
        assert_status(
            &host.check("kprobes"),
            CheckStatus::Fail,
            &["no register_kprobe", "neither at /proc/config.gz"],
        );
    }

    #[test]
    fn kprobes_read_proc_config_gz_first() {
        let host = FakeHost::healthy();
        host.remove("/sys/kernel/tracing/kprobe_events");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"# CONFIG_KPROBES is not set\n").unwrap();
        host.write(crate::host::PROC_CONFIG_GZ, gz.finish().unwrap());
        assert_status(
            &host.check("kprobes"),
            CheckStatus::Fail,
            &["in /proc/config.gz"],
        );
    }

    #[test]
    fn optprobes_warn_when_disabled_or_not_built() {
        let host = FakeHost::healthy();
        assert_status(
            &host.check("optprobes"),
            CheckStatus::Pass,
            &["CONFIG_OPTPROBES=y", "kprobes-optimization = 1"],
        );
        host.write(KPROBES_OPTIMIZATION, "0\n");
        assert_status(
            &host.check("optprobes"),
            CheckStatus::Warn,
            &["= 0", "echo 1 > /proc/sys/debug/kprobes-optimization"],
        );
        host.write(
            &format!("/boot/config-{RELEASE}"),
            CONFIG.replace("CONFIG_OPTPROBES=y", "# CONFIG_OPTPROBES is not set"),
        );
        assert_status(
            &host.check("optprobes"),
            CheckStatus::Warn,
            &["CONFIG_OPTPROBES is not set", "INT3"],
        );
    }

    #[test]
    fn btf_fails_when_missing_or_corrupt_and_skips_the_hook() {
        let host = FakeHost::healthy();
        host.write(VMLINUX_BTF, b"\x9f\xeb\x01\x00");
        assert_status(
            &host.check("btf"),
            CheckStatus::Fail,
            &["cannot be parsed", "truncated"],
        );
        host.remove(VMLINUX_BTF);
        assert_status(
            &host.check("btf"),
            CheckStatus::Fail,
            &["does not exist", "CONFIG_DEBUG_INFO_BTF=y"],
        );
        assert_status(&host.check("kfunc-hook"), CheckStatus::Skip, &["`btf`"]);
    }

    #[test]
    fn kfunc_hook_requires_the_kprobe_hook_not_a_version() {
        let host = FakeHost::healthy();
        assert_status(
            &host.check("kfunc-hook"),
            CheckStatus::Pass,
            &["BTF_KFUNC_HOOK_KPROBE", "CONFIG_DEBUG_INFO_BTF_MODULES=y"],
        );
        // Debian's 6.1: the enum exists, without a kprobe hook.
        host.write(VMLINUX_BTF, btf_with_hooks(&["BTF_KFUNC_HOOK_TRACING"]));
        assert_status(
            &host.check("kfunc-hook"),
            CheckStatus::Fail,
            &["no BTF_KFUNC_HOOK_KPROBE", "BTF_KFUNC_HOOK_TRACING", "6.12"],
        );
        let mut b = BtfBuilder::new(false);
        b.enum32("other", &[("X", 0)]);
        host.write(VMLINUX_BTF, b.finish());
        assert_status(
            &host.check("kfunc-hook"),
            CheckStatus::Fail,
            &["no enum btf_kfunc_hook"],
        );
    }

    #[test]
    fn kfunc_hook_needs_module_btf() {
        let host = FakeHost::healthy();
        host.write(
            &format!("/boot/config-{RELEASE}"),
            CONFIG.replace("CONFIG_DEBUG_INFO_BTF_MODULES=y\n", ""),
        );
        assert_status(
            &host.check("kfunc-hook"),
            CheckStatus::Fail,
            &["CONFIG_DEBUG_INFO_BTF_MODULES is absent", "kfuncs"],
        );
    }

    #[test]
    fn bpffs_must_be_at_sys_fs_bpf() {
        let host = FakeHost::healthy();
        host.write(
            "/proc/self/mounts",
            MOUNTS.replace("/sys/fs/bpf", "/mnt/bpf"),
        );
        assert_status(
            &host.check("bpffs"),
            CheckStatus::Fail,
            &["bpf is mounted at /mnt/bpf", "mount -t bpf bpf /sys/fs/bpf"],
        );
        host.write("/proc/self/mounts", "sysfs /sys sysfs rw 0 0\n");
        assert_status(
            &host.check("bpffs"),
            CheckStatus::Fail,
            &["no bpf file system"],
        );
    }

    #[test]
    fn tracefs_warns_when_unmounted_and_accepts_the_debugfs_path() {
        let host = FakeHost::healthy();
        host.write("/proc/self/mounts", "bpf /sys/fs/bpf bpf rw 0 0\n");
        assert_status(
            &host.check("tracefs"),
            CheckStatus::Warn,
            &["not mounted", "mount -t tracefs"],
        );
        host.write(
            "/proc/self/mounts",
            "tracefs /sys/kernel/debug/tracing tracefs rw 0 0\n",
        );
        assert_status(
            &host.check("tracefs"),
            CheckStatus::Pass,
            &["/sys/kernel/debug/tracing"],
        );
    }

    #[test]
    fn kcore_must_exist_and_be_elf() {
        let host = FakeHost::healthy();
        host.write("/proc/kcore", "nope");
        assert_status(&host.check("kcore"), CheckStatus::Fail, &["ELF header"]);
        host.remove("/proc/kcore");
        assert_status(
            &host.check("kcore"),
            CheckStatus::Fail,
            &["CONFIG_PROC_KCORE", "verify a plan"],
        );
    }

    #[test]
    fn modules_fail_when_absent_disabled_or_signature_enforced() {
        let host = FakeHost::healthy();
        host.write("/sys/module/module/parameters/sig_enforce", "Y\n");
        assert_status(
            &host.check("modules"),
            CheckStatus::Fail,
            &["unsigned", "mokutil"],
        );
        host.write("/sys/module/module/parameters/sig_enforce", "N\n");
        assert_status(
            &host.check("modules"),
            CheckStatus::Pass,
            &["sig_enforce = N"],
        );
        host.write("/proc/sys/kernel/modules_disabled", "1\n");
        assert_status(
            &host.check("modules"),
            CheckStatus::Fail,
            &["= 1", "reboot"],
        );
        host.remove("/proc/modules");
        assert_status(
            &host.check("modules"),
            CheckStatus::Fail,
            &["CONFIG_MODULES"],
        );
    }

    #[test]
    fn kernel_headers_fix_names_the_package() {
        let host = FakeHost::healthy();
        host.remove(&format!("/lib/modules/{RELEASE}/build/Makefile"));
        assert_status(
            &host.check("kernel-headers"),
            CheckStatus::Fail,
            &["apt install linux-headers-6.12.117+deb12-cloud-amd64"],
        );
    }

    /// A source tree next to the fake host: `Makefile`, optional `.config` and release.
    fn tree(host: &FakeHost, config: Option<&str>, release: Option<&str>) -> DoctorOptions {
        let dir = host.dir.path().join("src/linux-6.12");
        std::fs::create_dir_all(dir.join("include/config")).unwrap();
        std::fs::write(
            dir.join("Makefile"),
            "VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 117\nEXTRAVERSION =\n",
        )
        .unwrap();
        if let Some(config) = config {
            std::fs::write(dir.join(".config"), config).unwrap();
        }
        if let Some(release) = release {
            std::fs::write(dir.join("include/config/kernel.release"), release).unwrap();
        }
        DoctorOptions {
            kernel_dir: Some(dir),
        }
    }

    #[test]
    fn source_tree_passes_when_config_and_release_match() {
        let host = FakeHost::healthy();
        let configured = format!("{CONFIG}CONFIG_BUILD_SALT=\"\"\nCONFIG_MODULE_SIG_ALL=y\n");
        let options = tree(&host, Some(&configured), Some(RELEASE));
        assert_status(
            &host.check_with("source-tree", &options),
            CheckStatus::Pass,
            &[
                "holds Linux 6.12.117",
                "tolerated CONFIG_BUILD_SALT, CONFIG_MODULE_SIG_ALL (build-machine setting",
                "kernel.release 6.12.117+deb12-cloud-amd64",
            ],
        );
    }

    #[test]
    fn source_tree_fails_without_config_and_shows_how_to_configure() {
        let host = FakeHost::healthy();
        let options = tree(&host, None, None);
        assert_status(
            &host.check_with("source-tree", &options),
            CheckStatus::Fail,
            &[
                "not configured",
                "cp /boot/config-6.12.117+deb12-cloud-amd64",
                "CC=x86_64-linux-gnu-gcc-12",
                "olddefconfig",
            ],
        );
    }

    #[test]
    fn source_tree_fails_on_config_differences_and_names_them() {
        let host = FakeHost::healthy();
        let config = CONFIG.replace("CONFIG_OPTPROBES=y", "# CONFIG_OPTPROBES is not set");
        let options = tree(&host, Some(&config), Some(RELEASE));
        assert_status(
            &host.check_with("source-tree", &options),
            CheckStatus::Fail,
            &["1 option differs", "CONFIG_OPTPROBES: is not set vs y"],
        );
    }

    #[test]
    fn source_tree_fails_on_another_version() {
        let host = FakeHost::healthy();
        host.write(crate::host::OSRELEASE, "6.1.0-28-cloud-amd64\n");
        let options = tree(&host, Some(CONFIG), None);
        assert_status(
            &host.check_with("source-tree", &options),
            CheckStatus::Fail,
            &["holds Linux 6.12.117, but the running kernel is 6.1.0-28-cloud-amd64"],
        );
    }

    #[test]
    fn source_tree_warns_when_unprepared_or_prepared_for_another_release() {
        let host = FakeHost::healthy();
        let options = tree(&host, Some(CONFIG), None);
        assert_status(
            &host.check_with("source-tree", &options),
            CheckStatus::Warn,
            &["not prepared", "prepare"],
        );
        let options = tree(&host, Some(CONFIG), Some("6.12.117\n"));
        assert_status(
            &host.check_with("source-tree", &options),
            CheckStatus::Warn,
            &[
                "prepared as 6.12.117",
                "KERNELRELEASE=6.12.117+deb12-cloud-amd64",
            ],
        );
    }

    #[test]
    fn source_tree_warns_when_the_running_config_is_unknown() {
        let host = FakeHost::healthy();
        host.remove(&format!("/boot/config-{RELEASE}"));
        let options = tree(&host, Some(CONFIG), Some(RELEASE));
        assert_status(
            &host.check_with("source-tree", &options),
            CheckStatus::Warn,
            &["cannot be compared"],
        );
    }

    #[test]
    fn source_tree_fails_on_a_directory_that_is_not_a_tree() {
        let host = FakeHost::healthy();
        let options = DoctorOptions {
            kernel_dir: Some(host.dir.path().join("nowhere")),
        };
        assert_status(
            &host.check_with("source-tree", &options),
            CheckStatus::Fail,
            &["not a kernel source tree"],
        );
    }
}
