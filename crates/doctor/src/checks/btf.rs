//! `btf` and `kfunc-hook`: the kernel's BTF, and whether kprobe programs may call kfuncs.

use std::io::ErrorKind;

use kernelx_kbuild::ConfigValue;
use kernelx_runtime::host::HostError;

use super::{check, describe_option, render};
use crate::facts::{BtfState, ConfigFact, Facts, VMLINUX_BTF};
use crate::{Check, CheckStatus};

pub(crate) fn check_btf(btf: &BtfState<'_>) -> Check {
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

pub(crate) fn check_kfunc_hook(btf: &BtfState<'_>, facts: &Facts) -> Check {
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

#[cfg(test)]
mod tests {
    use kernelx_runtime::btf::testing::BtfBuilder;

    use crate::CheckStatus;
    use crate::facts::VMLINUX_BTF;
    use crate::testing::{CONFIG, FakeHost, RELEASE, assert_status, btf_with_hooks};

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
}
