//! Test support (feature `test-util`): the SIE program loaded with a tunable's entries but
//! attached only where a test says, to check what the program and the kfuncs refuse (a wrong
//! cookie, a uprobe) in ways a [`super::SieRuntime::load`] never attaches it.

use libbpf_rs::{MapCore, MapFlags, MapHandle, Object, ProgramMut};

use super::abi::{self, Control, PROBE_ENTRY_SIZE, PROBE_STATS_SIZE, ProbeStats};
use super::loader::{
    CONTROL_MAP, PROBES_MAP, PROGRAM, STATS_MAP, map_error, map_of, open_and_load, write_entries,
};
use super::{SieError, SieProgram};

/// The loaded, unattached SIE program of one tunable; dropping it unloads it.
pub struct Detached {
    object: Object,
    stats: MapHandle,
}

impl Detached {
    /// Loads the program with `program`'s entries for V' = `value`, armed in immediate mode at
    /// generation 0 (whose slot holds them).
    pub fn load(program: &SieProgram, value: i64) -> Result<Detached, SieError> {
        let tunable = program.tunable();
        let entries = program.entries(value)?;
        let object = open_and_load(tunable)?;
        let probes = map_of(tunable, &object, PROBES_MAP, PROBE_ENTRY_SIZE)?;
        write_entries(tunable, &probes, 0, &entries)?;
        let stats = map_of(tunable, &object, STATS_MAP, PROBE_STATS_SIZE)?;
        let control = map_of(tunable, &object, CONTROL_MAP, abi::CONTROL_SIZE)?;
        let armed = Control {
            armed: 1,
            ..Control::default()
        };
        control
            .update(&0u32.to_ne_bytes(), &armed.to_bytes(), MapFlags::ANY)
            .map_err(|source| map_error(tunable, "writing", CONTROL_MAP, source))?;
        Ok(Detached { object, stats })
    }

    /// The program, to attach.
    pub fn program(&self) -> ProgramMut<'_> {
        self.object
            .progs_mut()
            .find(|p| p.name() == PROGRAM)
            .expect("bpf/sie.bpf.c defines kx_sie")
    }

    /// The attach cookie that selects probe `index`.
    pub fn cookie(index: usize) -> u64 {
        abi::COOKIE_BASE + index as u64
    }

    /// The counters of probe `index`.
    #[track_caller]
    pub fn stats(&self, index: usize) -> ProbeStats {
        let value = self
            .stats
            .lookup(&(index as u32).to_ne_bytes(), MapFlags::ANY)
            .unwrap_or_else(|e| panic!("reading kx_stats[{index}]: {e}"))
            .unwrap_or_else(|| panic!("kx_stats has no entry {index}"));
        ProbeStats::from_bytes(&value).expect("kx_stats values are struct kx_probe_stats")
    }
}
