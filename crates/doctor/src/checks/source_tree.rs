//! `source-tree`: does the kernel source tree given match the running kernel (version, config,
//! release), and if not, the commands that make it match.

use std::num::NonZeroUsize;

use kernelx_kbuild::{CommandLine, KernelTree, Tolerance, Toolchain, make_command, shell_quote};

use super::{check, render};
use crate::config::RunningConfig;
use crate::facts::Facts;
use crate::{Check, CheckStatus, DoctorOptions};

pub(crate) fn check_source_tree(facts: &Facts, options: &DoctorOptions) -> Check {
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
    use kernelx_runtime::host::OSRELEASE;

    use super::*;
    use crate::testing::{CONFIG, FakeHost, RELEASE, assert_status};

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
        host.write(OSRELEASE, "6.1.0-28-cloud-amd64\n");
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
