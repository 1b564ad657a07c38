//! Commands that exist on the command line but not yet in the crates: each says so, names the
//! part that brings it, and fails. Never pretend.

use std::fmt;

use crate::args::{Command, LoadArgs, RunArgs};

/// The parts of the project that bring the missing commands.
const ANALYSIS: &str = "issue #3";
const POLICY: &str = "issue #5";

/// A command that is not available yet, and why.
#[derive(Debug)]
pub struct NotAvailable {
    /// The command as typed, e.g. `table cs`.
    pub command: String,
    /// Which part brings it.
    pub reason: String,
}

impl fmt::Display for NotAvailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`kernelx {}` is not available yet: {}",
            self.command, self.reason
        )
    }
}

impl std::error::Error for NotAvailable {}

/// What is missing for `command`; `None` for commands that work.
pub fn not_available(command: &Command) -> Option<NotAvailable> {
    let (name, reason) = match command {
        Command::Run(RunArgs {
            policy: Some(_), ..
        }) => ("run --policy".to_owned(), policy_reason()),
        Command::Load(LoadArgs {
            policy: Some(_), ..
        }) => ("load --policy".to_owned(), policy_reason()),
        Command::Gen(_) => (
            "gen".to_owned(),
            format!(
                "policy stubs come with X-tune policies ({POLICY}), and finding the tunable \
                 needs the analysis ({ANALYSIS})"
            ),
        ),
        Command::Doctor(_)
        | Command::Build(_)
        | Command::Table(_)
        | Command::Run(_)
        | Command::Load(_)
        | Command::Set(_)
        | Command::Get(_)
        | Command::Unload(_)
        | Command::Status(_)
        | Command::Setup(_)
        | Command::Trace(_)
        | Command::Clean(_) => return None,
    };
    Some(NotAvailable {
        command: name,
        reason,
    })
}

fn policy_reason() -> String {
    format!("X-tune policies come with {POLICY}; without --policy, --value V loads one fixed value")
}
