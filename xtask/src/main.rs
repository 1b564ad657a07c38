//! Developer tasks for KernelX: the kernel lab (QEMU VMs booting Debian's 6.12 cloud kernel),
//! the lab test suite and the CI sequence. Run as `cargo xtask <command>`.

mod bench;
mod cargo;
mod ci;
mod eval;
mod lab;
mod process;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "KernelX developer tasks", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The kernel lab: fetch, prepare and boot Debian's 6.12 cloud kernel under QEMU.
    #[command(subcommand)]
    Lab(lab::LabCommand),
    /// What CI runs: formatting, clippy, unit tests, then the lab tests in one VM boot, the
    /// catalog evaluation and the stress run.
    Ci(ci::CiArgs),
    /// Benchmarks, in the lab: `build` times `kernelx build` cold and warm per constant;
    /// `runtime` times probe triggers, loads, sets and unloads in the lab VM; `charts` redraws
    /// their charts.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// The catalog's coverage report: build every entry of tunables/linux-6.12 on the lab
    /// tree, then load each in one lab VM boot, run its workload and check its probes and
    /// effect. Writes target/eval/report.{md,json}.
    Eval(eval::EvalArgs),
    /// The part of `eval` that runs inside the lab VM.
    #[command(hide = true)]
    EvalGuest(eval::guest::GuestArgs),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Time `kernelx build` on the prepared lab tree, cold and warm.
    Build(bench::BenchArgs),
    /// Time a trigger of an SIE probe against a bare kprobe and no probe, the load, set
    /// and unload of plans of 1, 5 and 15 sites, and transitions with threads inside a safe
    /// span, in one lab VM boot.
    Runtime,
    /// Redraw the charts in docs/bench/ from the JSON there, running nothing.
    Charts(bench::chart::ChartArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Lab(command) => lab::run(command),
        Command::Ci(args) => ci::run(args),
        Command::Bench(BenchCommand::Build(args)) => bench::run(args),
        Command::Bench(BenchCommand::Runtime) => bench::runtime::run(),
        Command::Bench(BenchCommand::Charts(args)) => bench::chart::run(args),
        Command::Eval(args) => eval::run(args),
        Command::EvalGuest(args) => eval::guest::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
