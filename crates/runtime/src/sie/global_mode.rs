//! Global mode's side of a transition: the kernelx module activates a generation with every
//! CPU stopped, only when no task is inside a safe span (crate::global); the program reads the
//! active generation through the kfunc `kernelx_active_gen(key)`.

use std::time::Duration;

use super::SieError;
use super::abi::{Control, TransitionCode};
use super::transition::{Outcome, Pinned, Setting, TaskInside, Transition, monotonic_ns};
use crate::global::{AddressRange, GlobalControl, GlobalError};
use crate::state::Mode;

/// Activates `control.target_gen` (its slot written) within `timeout`, or aborts keeping the
/// active generation.
pub(super) fn commit(
    pinned: &Pinned,
    mut control: Control,
    to: Setting,
    timeout: Duration,
) -> Result<Transition, SieError> {
    let tunable = pinned.tunable();
    let module = GlobalControl::open().map_err(|source| global_error(tunable, source))?;
    let ranges: Vec<AddressRange> = pinned
        .ranges(control.ranges)?
        .iter()
        .map(|r| AddressRange::new(r.start, r.end))
        .collect();
    control.transition = TransitionCode::Pending as u64;
    pinned.write_control(&control)?;
    match module.commit(control.key, control.target_gen, &ranges, timeout) {
        Ok(_) => {
            control.stable_gen = control.target_gen;
            control.transition = TransitionCode::Done as u64;
            control.latency_ns = monotonic_ns().saturating_sub(control.started_ns);
            pinned.write_control(&control)?;
            Ok(Transition {
                mode: Mode::Global,
                to,
                outcome: Outcome::Done {
                    latency: Duration::from_nanos(control.latency_ns),
                },
            })
        }
        Err(GlobalError::Timeout {
            blocker,
            attempts,
            waited,
            ..
        }) => {
            // Nobody switched: the target is the active generation again.
            control.target_gen = control.stable_gen;
            control.transition = TransitionCode::Aborted as u64;
            control.latency_ns = monotonic_ns().saturating_sub(control.started_ns);
            pinned.write_control(&control)?;
            Err(SieError::Aborted {
                tunable: tunable.to_owned(),
                to,
                blocker: Some(TaskInside {
                    pid: blocker.pid as u32,
                    address: blocker.addr,
                }),
                attempts: u64::from(attempts),
                waited,
            })
        }
        Err(other) => {
            control.target_gen = control.stable_gen;
            control.transition = TransitionCode::Aborted as u64;
            pinned.write_control(&control)?;
            Err(global_error(tunable, other))
        }
    }
}

/// The generation the module has active for the tunable.
pub(super) fn active(pinned: &Pinned, control: &Control) -> Result<u64, SieError> {
    let tunable = pinned.tunable();
    GlobalControl::open()
        .and_then(|module| module.active(control.key))
        .map_err(|source| global_error(tunable, source))
}

/// Settles a global transition whose kernelx was killed while it committed: done if the
/// module activated the target generation, else aborted with the target back at the active one.
pub(super) fn recover(pinned: &Pinned, mut control: Control) -> Result<(), SieError> {
    if active(pinned, &control)? == control.target_gen {
        control.stable_gen = control.target_gen;
        control.transition = TransitionCode::Done as u64;
    } else {
        control.target_gen = control.stable_gen;
        control.transition = TransitionCode::Aborted as u64;
    }
    control.latency_ns = monotonic_ns().saturating_sub(control.started_ns);
    pinned.write_control(&control)
}

/// Makes the module forget the tunable (its generations start from 0 for the next user of the
/// key).
pub(super) fn forget(pinned: &Pinned, control: &Control) -> Result<(), SieError> {
    let module = GlobalControl::open().map_err(|source| global_error(pinned.tunable(), source))?;
    module
        .release(control.key)
        .map(|_known| ())
        .map_err(|source| global_error(pinned.tunable(), source))
}

fn global_error(tunable: &str, source: GlobalError) -> SieError {
    SieError::Global {
        tunable: tunable.to_owned(),
        source,
    }
}
