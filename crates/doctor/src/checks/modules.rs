//! `modules` and `kernel-headers`: can this kernel load the KernelX module, and can it be
//! built for it.

use std::path::PathBuf;

use kernelx_runtime::host::HostView;

use super::{check, render};
use crate::facts::Facts;
use crate::{Check, CheckStatus};

pub(crate) fn check_modules(host: &HostView) -> Check {
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

pub(crate) fn check_kernel_headers(host: &HostView, facts: &Facts) -> Check {
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

#[cfg(test)]
mod tests {
    use crate::CheckStatus;
    use crate::testing::{FakeHost, RELEASE, assert_status};

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
}
