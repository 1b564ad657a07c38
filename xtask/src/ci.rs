//! `cargo xtask ci`: the sequence `.ci/run` calls, so CI and developers run the same checks.

use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::Result;
use clap::Args;

use crate::lab::{self, Cache, LabKernel, SetupParts};
use crate::{eval, process};

#[derive(Args)]
pub struct CiArgs {
    /// Skip the lab (no VM boot): formatting, lints and host tests only.
    #[arg(long)]
    no_lab: bool,
}

pub fn run(args: CiArgs) -> Result<ExitCode> {
    let cache = Cache::from_env()?;
    let kernel = LabKernel::selected()?;
    let start = Instant::now();
    if !args.no_lab {
        lab::setup_all(&cache, &kernel, SetupParts::ALL)?;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    section("cargo fmt --check");
    process::run_visible(Command::new(&cargo).args(["fmt", "--all", "--", "--check"]))?;
    section("cargo clippy");
    process::run_visible(Command::new(&cargo).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    section("host tests");
    let mut tests = Command::new(&cargo);
    tests.args(["test", "--workspace"]);
    if !args.no_lab {
        // Tests that read the prepared lab tree or the debug vmlinux are #[ignore]d for plain
        // `cargo test`; with the lab set up they run here. Only lab VM tests are named `vm_*`.
        let files = cache.kernel(&kernel);
        tests
            .env("KERNELX_LAB_TREE", files.source())
            .env("KERNELX_LAB_VMLINUX", files.vmlinux())
            // The kernel build directory tests/target-module is analysed against.
            .env(
                "KERNELX_LAB_HEADERS",
                format!("/usr/src/linux-headers-{}", kernel.release()),
            )
            .args(["--", "--include-ignored", "--skip", "vm_"]);
    }
    process::run_visible(&mut tests)?;
    let code = if args.no_lab {
        ExitCode::SUCCESS
    } else {
        section("lab tests (in the VM)");
        let suite = lab::test(&cache, &kernel, &lab::TestArgs::all())?;
        section("catalog evaluation (plans on the host, loads in the VM)");
        let eval = eval::run(eval::EvalArgs::whole_catalog())?;
        section("stress run (in the VM)");
        let stress = lab::test(&cache, &kernel, &lab::TestArgs::stress())?;
        [suite, eval, stress]
            .into_iter()
            .find(|code| *code != ExitCode::SUCCESS)
            .unwrap_or(ExitCode::SUCCESS)
    };
    eprintln!("ci: finished in {:.0}s", start.elapsed().as_secs_f64());
    Ok(code)
}

fn section(title: &str) {
    eprintln!("\n==== {title}");
}
