//! `kernelx`: the command line of KernelX. Glue only: it parses arguments, calls the crates and
//! renders their results.

mod args;
mod build;
mod clean;
mod doctor;
mod load;
mod module;
mod policy;
mod progress;
mod run;
mod status;
mod stub;
mod table;
mod trace;
mod transition;
mod tune;
mod unload;

use std::io::{self, Write as _};
use std::process::ExitCode;

use clap::Parser as _;

use crate::args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // A reader that went away (`kernelx doctor | head -1`) is not an error.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            let mut stderr = io::stderr().lock();
            // If stderr itself is gone there is nowhere left to report to.
            let _ = writeln!(stderr, "error: {err}");
            for cause in err.chain().skip(1) {
                let _ = writeln!(stderr, "caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Doctor(args) => {
            let passed = doctor::run(args, &mut io::stdout().lock())?;
            Ok(if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Build(args) => {
            build::run(args, &mut io::stdout().lock(), &mut io::stderr().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => {
            run::run(args, &mut io::stdout().lock(), &mut io::stderr().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Load(args) => {
            load::run(args, &mut io::stdout().lock(), &mut io::stderr().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Set(args) => {
            tune::set(args, &mut io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Get(args) => {
            tune::get(args, &mut io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status(args) => {
            status::run(args, &mut io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Unload(args) => {
            unload::run(args, &mut io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Setup(args) => {
            module::setup(args, &mut io::stdout().lock(), &mut io::stderr().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Clean(args) => {
            clean::run(args, &mut io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Trace(args) => {
            trace::run(args, &mut io::stdout().lock(), &mut io::stderr().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Table(args) => {
            table::run(&args.command, &mut io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Gen(args) => {
            stub::run(args, &mut io::stdout().lock(), &mut io::stderr().lock())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use anyhow::Context as _;

    use super::*;

    #[test]
    fn a_broken_pipe_anywhere_in_the_chain_is_recognised() {
        let err = Err::<(), _>(io::Error::from(io::ErrorKind::BrokenPipe))
            .context("writing the report")
            .unwrap_err();
        assert!(is_broken_pipe(&err));
        let err = anyhow::anyhow!("something else");
        assert!(!is_broken_pipe(&err));
    }
}
