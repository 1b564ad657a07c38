//! A fake host for the checks' tests: a temporary directory holding a healthy 6.12 host's files,
//! until a test breaks one thing.

use kernelx_runtime::btf::testing::BtfBuilder;
use kernelx_runtime::host::{HostView, OSRELEASE};

use crate::checks::kprobes::KPROBES_OPTIMIZATION;
use crate::facts::VMLINUX_BTF;
use crate::{Check, CheckReport, CheckStatus, DoctorOptions, check_host};

pub(crate) const RELEASE: &str = "6.12.117+deb12-cloud-amd64";
pub(crate) const CONFIG: &str = "\
CONFIG_CC_VERSION_TEXT=\"x86_64-linux-gnu-gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0\"
CONFIG_GCC_VERSION=120200
CONFIG_MODULES=y
CONFIG_KPROBES=y
CONFIG_OPTPROBES=y
CONFIG_DEBUG_INFO_BTF=y
CONFIG_DEBUG_INFO_BTF_MODULES=y
# CONFIG_MODULE_SIG_FORCE is not set
";
pub(crate) const MOUNTS: &str = "\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
bpf /sys/fs/bpf bpf rw,nosuid,nodev,noexec,relatime,mode=700 0 0
tracefs /sys/kernel/tracing tracefs rw,nosuid,nodev,noexec,relatime 0 0
";

/// A fake host: a temporary directory that is its `/`.
pub(crate) struct FakeHost {
    pub(crate) dir: tempfile::TempDir,
}

impl FakeHost {
    /// A host with no files at all.
    pub(crate) fn empty() -> Self {
        FakeHost {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A healthy 6.12 host, on which every check passes, until a test breaks one thing.
    pub(crate) fn healthy() -> Self {
        let host = FakeHost::empty();
        host.write(OSRELEASE, format!("{RELEASE}\n"));
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

    pub(crate) fn view(&self) -> HostView {
        HostView::with_root(self.dir.path())
    }

    #[track_caller]
    pub(crate) fn write(&self, path: &str, contents: impl AsRef<[u8]>) {
        let real = self.view().resolve(path);
        std::fs::create_dir_all(real.parent().unwrap()).unwrap();
        std::fs::write(real, contents).unwrap();
    }

    #[track_caller]
    pub(crate) fn remove(&self, path: &str) {
        std::fs::remove_file(self.view().resolve(path)).unwrap();
    }

    pub(crate) fn run(&self) -> CheckReport {
        self.run_with(&DoctorOptions::default())
    }

    pub(crate) fn run_with(&self, options: &DoctorOptions) -> CheckReport {
        check_host(&self.view(), options)
    }

    /// Runs every check and returns the one named `id`.
    #[track_caller]
    pub(crate) fn check(&self, id: &str) -> Check {
        self.check_with(id, &DoctorOptions::default())
    }

    #[track_caller]
    pub(crate) fn check_with(&self, id: &str, options: &DoctorOptions) -> Check {
        let report = self.run_with(options);
        report
            .get(id)
            .unwrap_or_else(|| panic!("no check named {id} in {report:?}"))
            .clone()
    }
}

pub(crate) fn btf_with_hooks(extra: &[&str]) -> Vec<u8> {
    let mut hooks = vec![("BTF_KFUNC_HOOK_COMMON", 0), ("BTF_KFUNC_HOOK_XDP", 1)];
    hooks.extend(extra.iter().enumerate().map(|(i, n)| (*n, i as i32 + 2)));
    let mut b = BtfBuilder::new(false);
    b.raw_type(1, "int", 0, false, 4, &[0x0100_0020])
        .enum32("btf_kfunc_hook", &hooks);
    b.finish()
}

#[track_caller]
pub(crate) fn assert_status(check: &Check, status: CheckStatus, needles: &[&str]) {
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
