//! `root`: the effective uid and the capabilities KernelX uses.

use kernelx_runtime::host::HostView;

use super::{check, render};
use crate::{Check, CheckStatus};

/// Capabilities KernelX needs, and what for. Root in a container may lack some of them.
const REQUIRED_CAPABILITIES: [(u32, &str, &str); 4] = [
    (16, "CAP_SYS_MODULE", "load the KernelX module"),
    (17, "CAP_SYS_RAWIO", "read /proc/kcore"),
    (21, "CAP_SYS_ADMIN", "load BPF programs and attach kprobes"),
    (34, "CAP_SYSLOG", "read kernel addresses in /proc/kallsyms"),
];

pub(crate) fn check_root(host: &HostView) -> Check {
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

#[cfg(test)]
mod tests {
    use crate::CheckStatus;
    use crate::testing::{FakeHost, assert_status};

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
}
