//! An X-tune policy's BPF object next to a tunable's SIE program: its `freplace/kx_policy`
//! program replaces the program's `kx_policy` function, its other programs (observers of the
//! kernel feeding the policy) attach where their sections say, and its parameters
//! (`.data.kx_params`) are pinned so `kernelx set --param` reaches them. Everything is pinned
//! in the tunable's directory, so the loader's unload and recovery paths remove it with the
//! rest:
//!
//! * `link-policy`: the freplace link (holds the policy program and the SIE program);
//! * `link-policy-<program>`: each observer's link;
//! * `policy-params`: the parameters' section, one array entry (when the policy has any).

use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use libbpf_rs::{Link, MapCore, MapFlags, MapHandle, Object, ObjectBuilder, Program};

use super::SieError;
use super::loader::{map_error, pin_error};
use super::program::PolicyBound;
use crate::policy::{PARAMS_SECTION, POLICY_SECTION};

/// The function of the SIE program a policy replaces (bpf/sie.bpf.c).
pub(crate) const POLICY_FUNCTION: &str = "kx_policy";
/// The pin of the parameters' map in a tunable's directory.
pub(crate) const PARAMS_PIN: &str = "policy-params";
/// The pin of the freplace link.
const POLICY_LINK_PIN: &str = "link-policy";

/// A compiled policy to load with a tunable.
#[derive(Clone, Debug)]
pub struct PolicyLoad {
    /// The BPF object (`policy::compile_policy`).
    pub object: Vec<u8>,
    /// Where it came from, for messages.
    pub source: String,
    /// What happens to a value outside the tunable's range.
    pub bound: PolicyBound,
}

/// A policy loaded and attached, not pinned yet.
pub(crate) struct LoadedPolicy {
    object: Object,
    /// Each program's link, with its pin name.
    links: Vec<(String, Link)>,
}

/// Loads `policy` against `target` (the loaded `kx_sie` program) and attaches its programs.
/// Nothing is pinned: dropping the result detaches everything.
pub(crate) fn load(
    tunable: &str,
    policy: &PolicyLoad,
    target: &Program<'_>,
) -> Result<LoadedPolicy, SieError> {
    let error = |what: &str, source: libbpf_rs::Error| SieError::Policy {
        tunable: tunable.to_owned(),
        source_file: policy.source.clone(),
        what: format!("{what}: {source}"),
    };
    let mut open = ObjectBuilder::default()
        .open_memory(&policy.object)
        .map_err(|e| error("opening the compiled object", e))?;
    let mut found = false;
    for mut prog in open.progs_mut() {
        if prog.section() == POLICY_SECTION {
            found = true;
            prog.set_attach_target(target.as_fd().as_raw_fd(), Some(POLICY_FUNCTION.to_owned()))
                .map_err(|e| error("naming the function it replaces", e))?;
        }
    }
    if !found {
        return Err(SieError::Policy {
            tunable: tunable.to_owned(),
            source_file: policy.source.clone(),
            what: format!(
                "it has no program in section {POLICY_SECTION}: define the policy with \
                 KX_POLICY(ctx, probe, dflt) from kernelx_policy.h"
            ),
        });
    }
    let object = open
        .load()
        .map_err(|e| error("the kernel refused it (the verifier's log is above)", e))?;
    let mut links = Vec::new();
    for prog in object.progs_mut() {
        let name = prog.name().to_string_lossy().into_owned();
        let section = prog.section().to_string_lossy().into_owned();
        let link = prog
            .attach()
            .map_err(|e| error(&format!("attaching {name} ({section})"), e))?;
        let pin = if section == POLICY_SECTION {
            POLICY_LINK_PIN.to_owned()
        } else {
            format!("{POLICY_LINK_PIN}-{name}")
        };
        links.push((pin, link));
    }
    Ok(LoadedPolicy { object, links })
}

impl LoadedPolicy {
    /// Pins the links and the parameters in `dir` (the tunable's directory).
    pub(crate) fn pin(mut self, tunable: &str, dir: &Path) -> Result<(), SieError> {
        for (pin, link) in &mut self.links {
            let path = dir.join(pin);
            link.pin(&path).map_err(pin_error(tunable, &path))?;
        }
        if let Some(mut map) = self.object.maps_mut().find(|m| m.name() == PARAMS_SECTION) {
            let path = dir.join(PARAMS_PIN);
            map.pin(&path).map_err(pin_error(tunable, &path))?;
        }
        Ok(())
    }
}

/// The parameters' section image of the policy loaded with `tunable` (pinned in `dir`).
pub(crate) fn read_params(tunable: &str, dir: &Path) -> Result<Vec<u8>, SieError> {
    let map = params_map(tunable, dir)?;
    map.lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
        .map_err(|source| map_error(tunable, "reading", PARAMS_SECTION, source))?
        .ok_or_else(|| SieError::Layout {
            map: PARAMS_SECTION.to_owned(),
            found: 0,
            expected: map.value_size() as usize,
        })
}

/// Writes the parameters' section image `bytes` (as [`read_params`] gave it, changed).
pub(crate) fn write_params(tunable: &str, dir: &Path, bytes: &[u8]) -> Result<(), SieError> {
    let map = params_map(tunable, dir)?;
    if map.value_size() as usize != bytes.len() {
        return Err(SieError::Layout {
            map: PARAMS_SECTION.to_owned(),
            found: map.value_size(),
            expected: bytes.len(),
        });
    }
    map.update(&0u32.to_ne_bytes(), bytes, MapFlags::ANY)
        .map_err(|source| map_error(tunable, "writing", PARAMS_SECTION, source))
}

fn params_map(tunable: &str, dir: &Path) -> Result<MapHandle, SieError> {
    let path = dir.join(PARAMS_PIN);
    if !path.exists() {
        return Err(SieError::NoPolicyParams {
            tunable: tunable.to_owned(),
        });
    }
    MapHandle::from_pinned_path(&path)
        .map_err(|source| map_error(tunable, "opening", &path.display().to_string(), source))
}
