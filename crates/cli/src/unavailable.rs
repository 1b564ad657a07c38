//! Commands that exist on the command line but not yet in the crates: each says so, names the
//! part that brings it, and fails. Never pretend.

use std::fmt;

use crate::args::{Command, LoadArgs, RunArgs};

/// The parts of the project that bring the missing commands.
const ANALYSIS: &str = "issue #3";
const RUNTIME: &str = "issue #4";
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

/// What is missing for `command`; `None` for commands that work (`doctor`, `build`, `table`).
pub fn not_available(command: &Command) -> Option<NotAvailable> {
    let runtime = |what: &str| format!("{what} comes with the runtime ({RUNTIME})");
    let (name, reason) = match command {
        Command::Run(RunArgs { policy, .. }) => (
            "run".to_owned(),
            format!(
                "it builds a plan (the analysis, {ANALYSIS}) and loads it (the runtime, \
                 {RUNTIME}){}",
                policy_note(policy.is_some())
            ),
        ),
        Command::Load(LoadArgs { policy, .. }) => (
            "load".to_owned(),
            format!(
                "{}{}",
                runtime("loading plans into a live kernel"),
                policy_note(policy.is_some())
            ),
        ),
        Command::Set(_) => (
            "set".to_owned(),
            runtime("changing the value of a loaded tunable"),
        ),
        Command::Get(_) => (
            "get".to_owned(),
            runtime("reading the value of a loaded tunable"),
        ),
        Command::Unload(_) => ("unload".to_owned(), runtime("unloading tunables")),
        Command::Status(_) => ("status".to_owned(), runtime("listing loaded tunables")),
        Command::Trace(_) => ("trace".to_owned(), runtime("tracing live events")),
        Command::Gen(_) => (
            "gen".to_owned(),
            format!(
                "policy stubs come with X-tune policies ({POLICY}), and finding the tunable \
                 needs the analysis ({ANALYSIS})"
            ),
        ),
        Command::Clean(_) => (
            "clean".to_owned(),
            runtime("the build cache that `clean` empties"),
        ),
        Command::Setup(_) => (
            "setup".to_owned(),
            format!(
                "{}; until then, `kernelx doctor` lists what is missing and how to fix it",
                runtime("installing prerequisites")
            ),
        ),
        Command::Doctor(_) | Command::Build(_) | Command::Table(_) => return None,
    };
    Some(NotAvailable {
        command: name,
        reason,
    })
}

fn policy_note(policy: bool) -> String {
    if policy {
        format!("; `--policy` (X-tune policies) comes with {POLICY}")
    } else {
        String::new()
    }
}
