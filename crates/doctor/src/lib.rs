#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod checks;
mod config;
mod facts;
mod report;
#[cfg(test)]
mod testing;

use kernelx_runtime::host::HostView;

pub use config::{
    PROC_CONFIG_GZ, RunningConfig, RunningConfigError, running_config, running_config_candidates,
};
pub use report::{CHECK_IDS, Check, CheckReport, CheckStatus, DoctorOptions};

use crate::checks::{
    check_bpffs, check_btf, check_kcore, check_kernel_headers, check_kfunc_hook, check_kprobes,
    check_modules, check_optprobes, check_root, check_source_tree, check_tracefs,
};
use crate::facts::{BtfState, Facts, VMLINUX_BTF};

/// Runs every check against `host` and returns them in [`CHECK_IDS`] order.
///
/// Never fails: what cannot be read becomes part of a check's result.
pub fn check_host(host: &HostView, options: &DoctorOptions) -> CheckReport {
    let facts = Facts::gather(host);
    let btf_bytes = host.read(VMLINUX_BTF);
    let btf = BtfState::new(&btf_bytes);

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

#[cfg(test)]
mod tests {
    use crate::testing::FakeHost;
    use crate::{CHECK_IDS, CheckStatus};

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
}
