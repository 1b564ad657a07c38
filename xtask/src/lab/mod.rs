//! `cargo xtask lab`: the kernel lab. Debian's 6.12 cloud kernel boots under QEMU TCG with the
//! host's file system shared read-only, runs one command and reports its output and exit code.

mod initramfs;
mod kernel;
mod setup;
mod vm;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
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
    Test(TestArgs),
    /// The main demo: set up the lab, build the PIPE_DEF_BUFFERS and BLK_MAX_REQUEST_COUNT
    /// plans on the host, boot the kernel and tune new pipes' size with `kernelx load`, `set`,
    /// `status` and `unload` in each mode and with a policy, then the requests per block plug
    /// flush under fio on a null_blk device.
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
pub struct TestArgs {
    /// Run only the test binaries with these names (e.g. `vm_sie`); all but the stress run
    /// (`vm_stress`) when none is given.
    #[arg(long = "binary", value_name = "NAME")]
    binaries: Vec<String>,
    /// Passed to every test binary: run only the tests whose names contain it.
    filter: Option<String>,
}

impl TestArgs {
    /// Every lab test but the stress run.
    pub fn all() -> Self {
        Self {
            binaries: Vec::new(),
            filter: None,
        }
    }

    /// The stress run alone.
    pub fn stress() -> Self {
        Self {
            binaries: vec![STRESS.to_owned()],
            filter: None,
        }
    }
}

/// The stress run (1,000 load/set/unload cycles, about 20 minutes under TCG): it boots on its
/// own, with its own time limit, and only when named (`--binary vm_stress`; `cargo xtask ci`
/// does).
const STRESS: &str = "vm_stress";

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
        LabCommand::Test(args) => {
            setup::check_bootable(&cache, &kernel)?;
            test(&cache, &kernel, &args)
        }
        LabCommand::Demo => {
            setup_all(&cache, &kernel, SetupParts::ALL)?;
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

/// Runs `script` in the lab VM through a child `xtask lab run` (which streams the job's
/// stdout to its own), echoing every line; returns the text after `prefix` of the lines that
/// carry it (libtest may print before it on the same line). Fails when the job fails.
pub fn run_collecting(script: &str, timeout_seconds: u64, prefix: &str) -> Result<Vec<String>> {
    let mut child = Command::new(std::env::current_exe().context("finding the xtask binary")?)
        .args([
            "lab",
            "run",
            "--timeout",
            &timeout_seconds.to_string(),
            "--",
        ])
        .arg(script)
        .current_dir(repo_root()?)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting `xtask lab run`")?;
    let stdout = child.stdout.take().context("the child's stdout is piped")?;
    let mut found = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading the lab run's output")?;
        match line.split_once(prefix) {
            Some((before, rest)) => {
                println!("{before}");
                found.push(rest.to_owned());
            }
            None => println!("{line}"),
        }
    }
    let status = child.wait().context("waiting for `xtask lab run`")?;
    if !status.success() {
        bail!("the job failed in the lab VM ({status}); its output is above");
    }
    Ok(found)
}

/// Runs the `vm_*` integration test binaries of the workspace (all, or those `args` select) in
/// one boot.
pub fn test(cache: &Cache, kernel: &LabKernel, args: &TestArgs) -> Result<ExitCode> {
    build_modules(kernel)?;
    let tests: Vec<_> = cargo::build(&["test", "--workspace", "--no-run"])?
        .into_iter()
        .filter(|e| e.is_test && e.name.starts_with("vm_"))
        .filter(|e| {
            if args.binaries.is_empty() {
                e.name != STRESS
            } else {
                args.binaries.contains(&e.name)
            }
        })
        .collect();
    if tests.is_empty() {
        bail!(
            "no `vm_*` integration test binaries were built{}; the lab test suite is missing",
            if args.binaries.is_empty() {
                String::new()
            } else {
                format!(" named {}", args.binaries.join(", "))
            }
        );
    }
    let filter = args
        .filter
        .as_deref()
        .map(|f| format!(" '{}'", f.replace('\'', "")))
        .unwrap_or_default();
    // The lab tests are #[ignore]d on the host (they need the VM's kernel); run only those.
    let mut script = String::from("failed=0\n");
    for test in &tests {
        script.push_str(&format!(
            "echo '== lab tests: {}'\n'{}' --ignored --test-threads=1{filter} || failed=1\n",
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
        (
            "KERNELX_MODULE".to_owned(),
            kernelx_module()?.display().to_string(),
        ),
        (
            "KERNELX_EXAMPLES".to_owned(),
            repo_root()?.join("examples/policies").display().to_string(),
        ),
        (
            "KERNELX_WORKLOADS".to_owned(),
            repo_root()?
                .join("tunables/linux-6.12/workloads")
                .display()
                .to_string(),
        ),
    ];
    // Generous: a TCG guest on a busy 2-core host runs the suite in about 20 minutes, the
    // stress run alone in about 25.
    let limit = if tests.iter().any(|t| t.name == STRESS) {
        Duration::from_secs(3600)
    } else {
        Duration::from_secs(2400)
    };
    exit_code(vm::run(cache, kernel, &job(script, env, limit)?)?)
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

/// Builds the kernel modules the lab tests load (the target module and kernelx) on the host.
pub fn build_modules(kernel: &LabKernel) -> Result<()> {
    LAB_MODULES
        .iter()
        .try_for_each(|module| build_module(kernel, module))
}

/// Builds `module` (into `<dir>/build/`) on the host, against the lab kernel's headers: kbuild
/// in the guest would run under TCG, several times slower. make leaves an up-to-date module
/// alone.
fn build_module(kernel: &LabKernel, module: &LabModule) -> Result<()> {
    let dir = repo_root()?.join(module.dir);
    eprintln!("lab: building {}", dir.display());
    // Where the headers package puts them (setup installs it).
    let kdir = format!("KDIR=/usr/src/linux-headers-{}", kernel.release());
    let log = std::env::temp_dir().join(format!("kernelx-{}.log", module.dir.replace('/', "-")));
    process::run_logged(Command::new("make").arg("-C").arg(&dir).arg(kdir), &log)
        .with_context(|| format!("building {}", module.what))
}

pub fn repo_root() -> Result<PathBuf> {
    Ok(Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")?
        .to_owned())
}

/// The kernelx module as `build_module` leaves it (the lab tests and the demo load it).
pub fn kernelx_module() -> Result<PathBuf> {
    Ok(repo_root()?.join("kmod/build/kernelx.ko"))
}

/// The demo in the VM: one new pipe's size around each step. `kernelx` is a shell function
/// so the echoed commands read as a user types them.
const DEMO_SCRIPT: &str = r#"set -e
kernelx() { "$KERNELX_BIN" "$@"; }
pipe_size() { python3 -c 'import fcntl, os; r, w = os.pipe(); print(fcntl.fcntl(r, fcntl.F_GETPIPE_SZ))'; }
step() { echo; echo "\$ $*"; "$@"; }
step uname -r
step pipe_size
step kernelx load PIPE_DEF_BUFFERS --value 32
step pipe_size
step kernelx set PIPE_DEF_BUFFERS 64
step pipe_size
# The kernel jump-optimizes a probe a moment after it is attached.
sleep 3
step kernelx status
step kernelx unload PIPE_DEF_BUFFERS
step pipe_size
# The same in the other consistency modes: per-task (each task once it is outside the
# function's safe spans) and global (everyone at once, when nobody is inside).
step kernelx load PIPE_DEF_BUFFERS --value 32 --mode per-task
step pipe_size
step kernelx unload PIPE_DEF_BUFFERS
step kernelx load PIPE_DEF_BUFFERS --value 64 --mode global
step pipe_size
step kernelx unload PIPE_DEF_BUFFERS
step pipe_size
# An X-tune policy (examples/policies/cgroup_hint.bpf.c, compiled here with clang against
# the kernel's BTF): 64 pages for the processes of one cgroup, the default for all others.
mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null || true
mkdir -p /sys/fs/cgroup/big-pipes
step kernelx load PIPE_DEF_BUFFERS --policy "$KERNELX_EXAMPLES/cgroup_hint.bpf.c" --mode per-task
step kernelx set PIPE_DEF_BUFFERS --param cgroup=$(stat -c %i /sys/fs/cgroup/big-pipes)
echo; echo "a process in big-pipes, and one outside:"
( echo 0 > /sys/fs/cgroup/big-pipes/cgroup.procs; pipe_size )
pipe_size
step kernelx status PIPE_DEF_BUFFERS
step kernelx unload PIPE_DEF_BUFFERS
( echo 0 > /sys/fs/cgroup/big-pipes/cgroup.procs; pipe_size )
# A case study under load: BLK_MAX_REQUEST_COUNT caps the requests a block plug holds before
# it dispatches them. fio writes 4 KiB blocks at random to a null_blk device, 64 per
# submission; the tracepoint block:block_unplug counts the requests of each dispatch.
echo; echo "BLK_MAX_REQUEST_COUNT: fio on /dev/nullb0, 64 random 4 KiB writes per submission"
plug() { sh "$KERNELX_WORKLOADS/blk_plug.sh"; }
step plug
step kernelx load BLK_MAX_REQUEST_COUNT --value 8
step plug
step kernelx set BLK_MAX_REQUEST_COUNT 16
step plug
step kernelx unload BLK_MAX_REQUEST_COUNT
step plug
"#;

/// Builds the PIPE_DEF_BUFFERS plan on the host (fs/pipe.c only: see the golden test
/// `lab_tree_pipe_def_buffers_in_fs` for why fs/splice.c and kernel/trace/trace.c keep the
/// compiled value) and the BLK_MAX_REQUEST_COUNT plan, then loads, sets, shows and unloads
/// them in the VM.
fn demo(cache: &Cache, kernel: &LabKernel) -> Result<ExitCode> {
    build_module(kernel, &LAB_MODULES[1])?;
    let kernelx = cargo::kernelx(false)?;
    // target/<profile>/kernelx -> target/kernelx-demo/plans: a plan store of the demo's own.
    let plans = kernelx
        .parent()
        .and_then(Path::parent)
        .context("the kernelx binary has no target directory")?
        .join("kernelx-demo/plans");
    let files = cache.kernel(kernel);
    let demo_builds: [(&str, &[&str]); 2] = [
        (
            "PIPE_DEF_BUFFERS",
            &[
                "--exclude-unit",
                "fs/splice.c",
                "--exclude-unit",
                "kernel/trace/trace.c",
            ],
        ),
        ("BLK_MAX_REQUEST_COUNT", &[]),
    ];
    for (tunable, args) in demo_builds {
        let mut build = Command::new(&kernelx);
        build
            .arg("build")
            .arg(tunable)
            .arg("--kernel-dir")
            .arg(files.source())
            .arg("--vmlinux")
            .arg(files.vmlinux())
            .args(args)
            .env("KERNELX_PLANS", &plans);
        eprintln!("lab: $ {}", process::render(&build));
        process::run_visible(&mut build).with_context(|| format!("building the {tunable} plan"))?;
    }
    let env = vec![
        ("KERNELX_BIN".to_owned(), kernelx.display().to_string()),
        ("KERNELX_PLANS".to_owned(), plans.display().to_string()),
        (
            "KERNELX_MODULE".to_owned(),
            kernelx_module()?.display().to_string(),
        ),
        (
            "KERNELX_EXAMPLES".to_owned(),
            repo_root()?.join("examples/policies").display().to_string(),
        ),
        (
            "KERNELX_WORKLOADS".to_owned(),
            repo_root()?
                .join("tunables/linux-6.12/workloads")
                .display()
                .to_string(),
        ),
    ];
    exit_code(vm::run(
        cache,
        kernel,
        &job(DEMO_SCRIPT.to_owned(), env, Duration::from_secs(600))?,
    )?)
}
