//! `cargo xtask lab`: the kernel lab. Debian's 6.12 cloud kernel boots under QEMU TCG with the
//! host's file system shared read-only, runs one command and reports its output and exit code.

mod initramfs;
mod kernel;
mod setup;
mod vm;

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use crate::{cargo, process};
pub use kernel::{Cache, LabKernel};
pub use setup::SetupParts;

#[derive(Subcommand)]
pub enum LabCommand {
    /// Install missing host packages and tools, fetch the kernel into the cache, prepare its
    /// source tree. Re-runs only check.
    Setup(SetupArgs),
    /// Boot the lab kernel and run a shell command inside, in the current directory.
    ///
    /// Example: cargo xtask lab run -- 'uname -r; cat /sys/kernel/debug/kprobes/list'
    Run(RunArgs),
    /// Build the lab tests (integration tests named `vm_*`) and run them all in one boot.
    Test,
    /// The main demo: set up the lab, boot the kernel and run `kernelx doctor` inside.
    Demo,
    /// List the Debian 6.12 kernel versions the apt archives carry (for KERNELX_LAB_KERNEL).
    Versions,
}

#[derive(Args)]
pub struct SetupArgs {
    /// Skip the 1.7 GB prepared source tree.
    #[arg(long)]
    no_source: bool,
    /// Skip the 341 MB vmlinux with debug symbols.
    #[arg(long)]
    no_debug_vmlinux: bool,
}

#[derive(Args)]
pub struct RunArgs {
    /// Stop the VM after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// The shell command to run inside the VM.
    #[arg(required = true, trailing_var_arg = true)]
    command: Vec<String>,
}

pub fn run(command: LabCommand) -> Result<ExitCode> {
    let cache = Cache::from_env()?;
    let kernel = LabKernel::selected()?;
    match command {
        LabCommand::Setup(args) => {
            let parts = SetupParts {
                debug_vmlinux: !args.no_debug_vmlinux,
                source: !args.no_source,
            };
            setup_all(&cache, &kernel, parts)?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Run(args) => {
            let job = job(
                args.command.join(" "),
                Vec::new(),
                Duration::from_secs(args.timeout),
            )?;
            exit_code(vm::run(&cache, &kernel, &job)?)
        }
        LabCommand::Test => {
            setup::check_bootable(&cache, &kernel)?;
            test(&cache, &kernel)
        }
        LabCommand::Demo => {
            setup_all(
                &cache,
                &kernel,
                SetupParts {
                    debug_vmlinux: true,
                    source: true,
                },
            )?;
            demo(&cache, &kernel)
        }
        LabCommand::Versions => {
            let pinned = LabKernel::selected()?;
            for version in kernel::available_versions()? {
                let mark = if version == pinned.version {
                    "  (selected)"
                } else {
                    ""
                };
                println!("{version}{mark}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn setup_all(cache: &Cache, kernel: &LabKernel, parts: SetupParts) -> Result<()> {
    eprintln!(
        "lab: setting up {} in {}",
        kernel.release(),
        cache.root().display()
    );
    setup::setup(cache, kernel, parts)
}

fn job(script: String, env: Vec<(String, String)>, timeout: Duration) -> Result<vm::Job> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    Ok(vm::Job {
        script,
        cwd,
        env,
        timeout,
    })
}

fn exit_code(finished: vm::Finished) -> Result<ExitCode> {
    eprintln!(
        "lab: job exited with {} (boot {:.1}s, total {:.1}s)",
        finished.exit_code,
        finished.boot.as_secs_f64(),
        finished.total.as_secs_f64()
    );
    Ok(ExitCode::from(
        u8::try_from(finished.exit_code).unwrap_or(1),
    ))
}

/// Runs every `vm_*` integration test binary of the workspace in one boot.
pub fn test(cache: &Cache, kernel: &LabKernel) -> Result<ExitCode> {
    for module in LAB_MODULES {
        build_module(kernel, module)?;
    }
    let tests: Vec<_> = cargo::build(&["test", "--workspace", "--no-run"])?
        .into_iter()
        .filter(|e| e.is_test && e.name.starts_with("vm_"))
        .collect();
    if tests.is_empty() {
        bail!("no `vm_*` integration tests were built; the lab test suite is missing");
    }
    // The lab tests are #[ignore]d on the host (they need the VM's kernel); run only those.
    let mut script = String::from("failed=0\n");
    for test in &tests {
        script.push_str(&format!(
            "echo '== lab tests: {}'\n'{}' --ignored --test-threads=1 || failed=1\n",
            test.name,
            test.path.display()
        ));
    }
    script.push_str("exit $failed\n");
    let env = vec![
        ("KERNELX_LAB_RELEASE".to_owned(), kernel.release()),
        (
            "KERNELX_LAB_SOURCE".to_owned(),
            cache.kernel(kernel).source().display().to_string(),
        ),
    ];
    exit_code(vm::run(
        cache,
        kernel,
        &job(script, env, Duration::from_secs(1200))?,
    )?)
}

/// A kernel module the lab tests load, built on the host.
struct LabModule {
    /// Its directory in the repository (a Makefile taking KDIR).
    dir: &'static str,
    /// What it is, for messages.
    what: &'static str,
}

const LAB_MODULES: &[LabModule] = &[
    LabModule {
        dir: "tests/target-module",
        what: "the lab tests' target module",
    },
    LabModule {
        dir: "kmod",
        what: "the kernelx module",
    },
];

/// Builds `module` (into `<dir>/build/`) on the host, against the lab kernel's headers: kbuild
/// in the guest would run under TCG, several times slower. make leaves an up-to-date module
/// alone.
fn build_module(kernel: &LabKernel, module: &LabModule) -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")?;
    let dir = root.join(module.dir);
    eprintln!("lab: building {}", dir.display());
    // Where the headers package puts them (setup installs it).
    let kdir = format!("KDIR=/usr/src/linux-headers-{}", kernel.release());
    let log = std::env::temp_dir().join(format!("kernelx-{}.log", module.dir.replace('/', "-")));
    process::run_logged(Command::new("make").arg("-C").arg(&dir).arg(kdir), &log)
        .with_context(|| format!("building {}", module.what))
}

fn demo(cache: &Cache, kernel: &LabKernel) -> Result<ExitCode> {
    let kernelx = cargo::build(&["build", "--package", "kernelx", "--bin", "kernelx"])?
        .into_iter()
        .find(|e| e.name == "kernelx" && !e.is_test)
        .context("cargo did not report the kernelx binary")?;
    let script = format!(
        "echo '$ uname -r'; uname -r\necho '$ kernelx doctor'\n'{}' doctor --kernel-dir '{}'\n",
        kernelx.path.display(),
        cache.kernel(kernel).source().display()
    );
    exit_code(vm::run(
        cache,
        kernel,
        &job(script, Vec::new(), Duration::from_secs(600))?,
    )?)
}
