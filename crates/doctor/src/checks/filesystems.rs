//! `bpffs`, `tracefs` and `kcore`: the file systems KernelX pins to, diagnoses with and reads
//! the live kernel code from.

use std::io::ErrorKind;
use std::path::Path;

use kernelx_runtime::host::{HostError, HostView, Mount};

use super::{check, render};
use crate::facts::Facts;
use crate::{Check, CheckStatus};

const TRACEFS_MOUNT_POINTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
const BPFFS: &str = "/sys/fs/bpf";
const LOCKDOWN: &str = "/sys/kernel/security/lockdown";

pub(crate) fn check_bpffs(facts: &Facts) -> Check {
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

pub(crate) fn check_tracefs(facts: &Facts) -> Check {
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

pub(crate) fn check_kcore(host: &HostView) -> Check {
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

#[cfg(test)]
mod tests {
    use crate::CheckStatus;
    use crate::testing::{FakeHost, MOUNTS, assert_status};

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
}
