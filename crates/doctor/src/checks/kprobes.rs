//! `kprobes` and `optprobes`: can this kernel place kprobes, and jump-optimize them.

use kernelx_kbuild::ConfigValue;
use kernelx_runtime::host::HostView;

use super::{check, describe_option, render};
use crate::facts::{ConfigFact, Facts};
use crate::{Check, CheckStatus};

const KPROBE_INTERFACES: [&str; 3] = [
    "/sys/kernel/tracing/kprobe_events",
    "/sys/kernel/debug/tracing/kprobe_events",
    "/sys/kernel/debug/kprobes/list",
];
pub(crate) const KPROBES_OPTIMIZATION: &str = "/proc/sys/debug/kprobes-optimization";

pub(crate) fn check_kprobes(host: &HostView, facts: &Facts) -> Check {
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

pub(crate) fn check_optprobes(host: &HostView, facts: &Facts, kprobes: CheckStatus) -> Check {
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

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::config::PROC_CONFIG_GZ;
    use crate::testing::{CONFIG, FakeHost, RELEASE, assert_status};

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
        host.write(PROC_CONFIG_GZ, gz.finish().unwrap());
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
}
