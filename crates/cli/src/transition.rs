//! `--mode` and `--timeout`, and how a transition is reported.

use std::io::Write;
use std::time::Duration;

use anyhow::bail;
use kernelx_runtime::sie::{Outcome, Transition};
use kernelx_runtime::state::Mode as RuntimeMode;

use crate::args::{Mode, TransitionArgs, WaitArgs};

/// How long a per-task or global transition may take unless --timeout says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The mode and timeout a load uses; a timeout for immediate mode is refused (it has no
/// transition to bound).
pub fn load_mode(args: &TransitionArgs) -> anyhow::Result<(RuntimeMode, Duration)> {
    let mode = match args.mode {
        Mode::Immediate => {
            if let Some(timeout) = args.wait.timeout {
                bail!(
                    "--timeout {}s: immediate mode has no transition to time out (a timeout \
                     bounds per-task and global transitions); drop --timeout or choose --mode \
                     per-task|global; nothing was changed",
                    timeout.as_secs_f64()
                );
            }
            RuntimeMode::Immediate
        }
        Mode::PerTask => RuntimeMode::PerTask,
        Mode::Global => RuntimeMode::Global,
    };
    Ok((mode, timeout(&args.wait)))
}

/// --timeout, or the default.
pub fn timeout(args: &WaitArgs) -> Duration {
    args.timeout.unwrap_or(DEFAULT_TIMEOUT)
}

/// One line on how `transition` of `tunable` went.
pub fn report(tunable: &str, transition: &Transition, out: &mut impl Write) -> anyhow::Result<()> {
    let mode = transition.mode.name();
    let to = transition.to;
    match &transition.outcome {
        Outcome::Done { latency } => writeln!(
            out,
            "{tunable}: {mode} transition to {to} done in {:.3} ms",
            latency.as_secs_f64() * 1e3
        )?,
        Outcome::Pending { inside, waited } => writeln!(
            out,
            "{tunable}: {mode} transition to {to} still waiting after {:.1} s for {} task(s) \
             inside a safe span ({}); they keep the old value until they leave it, and \
             `kernelx status {tunable}` completes the transition",
            waited.as_secs_f64(),
            inside.len(),
            inside
                .iter()
                .take(5)
                .map(|t| match t.address {
                    Some(a) => format!("pid {} at {a:#x}", t.pid),
                    None => format!("pid {} (running)", t.pid),
                })
                .collect::<Vec<_>>()
                .join(", ")
        )?,
        Outcome::Aborted { .. } => writeln!(out, "{tunable}: {mode} transition to {to} aborted")?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use kernelx_runtime::sie::{Setting, TaskInside};

    use super::*;

    fn args(mode: Mode, timeout: Option<Duration>) -> TransitionArgs {
        TransitionArgs {
            mode,
            wait: WaitArgs { timeout },
        }
    }

    #[test]
    fn every_mode_loads_and_only_immediate_refuses_a_timeout() {
        assert_eq!(
            load_mode(&args(Mode::Immediate, None)).unwrap(),
            (RuntimeMode::Immediate, DEFAULT_TIMEOUT)
        );
        assert_eq!(
            load_mode(&args(Mode::PerTask, None)).unwrap(),
            (RuntimeMode::PerTask, DEFAULT_TIMEOUT)
        );
        assert_eq!(
            load_mode(&args(Mode::Global, Some(Duration::from_secs(2)))).unwrap(),
            (RuntimeMode::Global, Duration::from_secs(2))
        );
        let err = load_mode(&args(Mode::Immediate, Some(Duration::from_secs(5))))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--timeout 5s"), "{err}");
    }

    #[test]
    fn a_pending_transition_names_the_tasks_left_behind() {
        let mut out = Vec::new();
        let transition = Transition {
            mode: RuntimeMode::PerTask,
            to: Setting::Value(32),
            outcome: Outcome::Pending {
                inside: vec![
                    TaskInside {
                        pid: 42,
                        address: Some(0xffff_ffff_c000_1234),
                    },
                    TaskInside {
                        pid: 7,
                        address: None,
                    },
                ],
                waited: Duration::from_millis(1500),
            },
        };
        report("T", &transition, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with(
                "T: per-task transition to 32 still waiting after 1.5 s for 2 task(s)"
            ) && text.contains("pid 42 at 0xffffffffc0001234, pid 7 (running)"),
            "{text}"
        );
    }
}
