//! `--mode` and `--timeout`: which of them this runtime can honour. Only immediate mode exists;
//! the others are refused before anything changes, never run as immediate.

use anyhow::bail;

use crate::args::{Mode, TransitionArgs};

/// The mode the runtime will use, or why the arguments cannot be honoured.
pub fn require_immediate(args: &TransitionArgs) -> anyhow::Result<kernelx_runtime::state::Mode> {
    let name = match args.mode {
        Mode::Immediate => {
            if let Some(timeout) = args.timeout {
                bail!(
                    "--timeout {}s: immediate mode has no transition to time out (a timeout \
                     bounds per-task and global transitions, issue #4); drop --timeout; \
                     nothing was changed",
                    timeout.as_secs_f64()
                );
            }
            return Ok(kernelx_runtime::state::Mode::Immediate);
        }
        Mode::PerTask => "per-task",
        Mode::Global => "global",
    };
    bail!(
        "--mode {name} is not implemented yet (the consistency modes come with issue #4): only \
         --mode immediate exists, and a {name} request is not run as immediate; nothing was \
         changed"
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn args(mode: Mode, timeout: Option<Duration>) -> TransitionArgs {
        TransitionArgs { mode, timeout }
    }

    #[test]
    fn only_immediate_without_a_timeout_is_accepted() {
        assert_eq!(
            require_immediate(&args(Mode::Immediate, None)).unwrap(),
            kernelx_runtime::state::Mode::Immediate
        );
        for (mode, name) in [(Mode::PerTask, "per-task"), (Mode::Global, "global")] {
            let err = require_immediate(&args(mode, None))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("--mode {name} is not implemented yet"))
                    && err.contains("issue #4"),
                "{err}"
            );
        }
        let err = require_immediate(&args(Mode::Immediate, Some(Duration::from_secs(5))))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--timeout 5s"), "{err}");
    }
}
