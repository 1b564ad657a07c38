//! Probe placement: among the offsets where a critical span's probe does the same thing, the
//! one the kernel runs best.
//!
//! The post-probe of a span must run after the span's last instruction and before anything
//! reads what the recipe rewrites; `span.end` (the instruction after the span) is the earliest
//! such offset. Later offsets are equivalent while the instructions passed over
//!
//! * neither read nor write a location the recipe writes (registers, flags, memory), nor
//!   write a location it reads (its inputs, the address of a store it redoes);
//! * are not calls (a callee reads arguments and memory, and clobbers registers);
//! * stay in the same basic block: no control transfer is passed, and no instruction passed to
//!   is a branch target (a path that did not run the span would run the probe).
//!
//! The instruction that stops the scan is still a candidate, since a probe runs before the
//! instruction it sits on: for `cmp $0xffff,%ebp; jbe` the only candidate is the `jbe`.
//! The pre-probe (which captures a value the span destroys) moves the other way, to earlier
//! offsets, while the instructions passed over do not write what it saves.
//!
//! Each candidate gets the kernel's verdict ([`ProbeSites::check`]); the chosen one is the
//! first jump-optimized candidate that does not unoptimize another probe of the span, else the
//! first optimized one, else the first INT3 (or ftrace) one: earliest for a post-probe, latest
//! for a pre-probe.
//!
//! A recipe that reads `%rip` (RIP-relative addresses are relative to the span's start) must be
//! rebased by the distance the probe moved.

use std::fmt;

use crate::dataflow::{Effects, FunctionCode, Locations, Transfer, effects_of};
use crate::optprobe::{ProbeCheck, ProbeKind, ProbeNote, ProbeSites};

/// What can go wrong placing a probe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlacementError {
    /// The offset is not inside the function.
    #[error("{function}+{offset:#x} is outside the function (size {size:#x})")]
    OutsideFunction {
        /// The function.
        function: String,
        /// The offset asked about.
        offset: u32,
        /// The function's size.
        size: u32,
    },
    /// A span boundary that is not an instruction boundary of the decoded function.
    #[error(
        "{function}+{offset:#x} is not an instruction boundary: the span does not match this \
         function's code"
    )]
    NotAnInstruction {
        /// The function.
        function: String,
        /// The offset asked about.
        offset: u32,
    },
}

/// Why the scan for equivalent offsets stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScanStop {
    /// This instruction touches what the recipe writes or reads (post-probe: the first
    /// consumer); it is the last candidate.
    Consumer {
        /// Its offset.
        at: u32,
    },
    /// This instruction writes what the pre-probe saves; the pre-probe stays after it.
    Writer {
        /// Its offset.
        at: u32,
    },
    /// A call: a post-probe may sit on it, not past it; a pre-probe stays after it.
    Call {
        /// Its offset.
        at: u32,
    },
    /// A control transfer (`jmp`, `jcc`, `ret`, `ud2`, ...) ends the block.
    ControlTransfer {
        /// Its offset.
        at: u32,
    },
    /// A branch target: other paths enter here.
    BranchTarget {
        /// Its offset.
        at: u32,
    },
    /// The function's first or last instruction.
    FunctionEdge,
}

impl fmt::Display for ScanStop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScanStop::Consumer { at } => write!(f, "consumer at {at:#x}"),
            ScanStop::Writer { at } => write!(f, "writer at {at:#x}"),
            ScanStop::Call { at } => write!(f, "call at {at:#x}"),
            ScanStop::ControlTransfer { at } => write!(f, "control transfer at {at:#x}"),
            ScanStop::BranchTarget { at } => write!(f, "branch target at {at:#x}"),
            ScanStop::FunctionEdge => f.write_str("function edge"),
        }
    }
}

/// The equivalent offsets for one probe and the choice among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The span boundary asked about (`span.end` for a post-probe, `span.start` for a
    /// pre-probe).
    pub anchor: u32,
    /// Every equivalent offset with its verdict, nearest to the anchor first.
    pub candidates: Vec<ProbeCheck>,
    /// Index into `candidates` of the chosen one; `None` when none is usable (all refused or
    /// unsafe).
    pub chosen: Option<usize>,
    /// Why the scan stopped.
    pub stop: ScanStop,
    /// Post-probe only: the other ways into the anchor, which do not run the span. The probe
    /// runs on those paths too, so the recipe must be right there as well (or the span must be
    /// re-cut).
    pub also_reached_from: Vec<JoinFrom>,
}

/// A way into an instruction other than falling through from the one before it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JoinFrom {
    /// The last instruction of a block of the function (a branch, or a fall-through into a
    /// branch target).
    Local {
        /// Its offset.
        at: u32,
    },
    /// A jump from the function's other part (`foo.cold`).
    Outside {
        /// The jump, as `symbol+offset`.
        from: String,
    },
}

impl fmt::Display for JoinFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinFrom::Local { at } => write!(f, "{at:#x}"),
            JoinFrom::Outside { from } => f.write_str(from),
        }
    }
}

impl Placement {
    /// The chosen candidate.
    pub fn chosen(&self) -> Option<&ProbeCheck> {
        self.chosen.map(|i| &self.candidates[i])
    }

    /// The chosen offset.
    pub fn offset(&self) -> Option<u32> {
        self.chosen().map(|c| c.offset)
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.chosen() {
            Some(c) => write!(f, "{:#x} -> {:#x} {}", self.anchor, c.offset, c.kind)?,
            None => write!(f, "{:#x} -> none usable", self.anchor)?,
        }
        write!(f, " ({})", self.stop)?;
        for c in &self.candidates {
            write!(f, "\n  {c}")?;
        }
        if !self.also_reached_from.is_empty() {
            let from: Vec<String> = self
                .also_reached_from
                .iter()
                .map(|o| o.to_string())
                .collect();
            write!(f, "\n  also reached from {}", from.join(", "))?;
        }
        Ok(())
    }
}

/// Places the post-probe of a span ending at `end` (the first instruction after the span).
///
/// `writes` is what the recipe rewrites there, `reads` what it reads (its inputs, and the
/// registers of a store address it recomputes); `other_probes` are the other probes of the
/// span (its pre-probe), so that candidates that would unoptimize them rank lower.
pub fn place_post_probe(
    sites: &ProbeSites<'_, '_>,
    end: u32,
    writes: &Locations,
    reads: &Locations,
    other_probes: &[u32],
) -> Result<Placement, PlacementError> {
    let code = sites.code();
    let first = instruction_at(&code, end)?;
    let effects = effects_of(&code);
    let mut indices = vec![first];
    let mut k = first;
    let stop = loop {
        let insn = &code.insns[k];
        if touches(&effects[k], writes, reads) {
            break ScanStop::Consumer { at: insn.offset };
        }
        if matches!(effects[k].transfer, Transfer::Call { .. }) {
            break ScanStop::Call { at: insn.offset };
        }
        if k + 1 == code.insns.len() {
            break ScanStop::FunctionEdge;
        }
        if code.starts_block(k + 1) && ends_with_transfer(&code, k) {
            break ScanStop::ControlTransfer { at: insn.offset };
        }
        let next = code.insns[k + 1].offset;
        if code.starts_block(k + 1) || sites.is_entered_from_outside(next) {
            break ScanStop::BranchTarget { at: next };
        }
        k += 1;
        indices.push(k);
    };
    let mut also_reached_from = Vec::new();
    if code.starts_block(first) && first > 0 {
        let block = &code.cfg.blocks()[code.cfg.block_of(first) as usize];
        let mut from: Vec<usize> = block
            .preds
            .iter()
            .map(|&p| code.cfg.blocks()[p as usize].insns.end - 1)
            .filter(|&last| last != first - 1)
            .collect();
        from.sort_unstable();
        also_reached_from.extend(from.into_iter().map(|last| JoinFrom::Local {
            at: code.insns[last].offset,
        }));
    }
    also_reached_from.extend(
        sites
            .entries_from_outside()
            .iter()
            .filter(|(_, t)| *t == end)
            .map(|(from, _)| JoinFrom::Outside { from: from.clone() }),
    );
    finish(sites, end, &indices, stop, other_probes, also_reached_from)
}

/// Places the pre-probe of a span starting at `start`, which captures `saved` (a register, or
/// memory with its address registers).
pub fn place_pre_probe(
    sites: &ProbeSites<'_, '_>,
    start: u32,
    saved: &Locations,
    other_probes: &[u32],
) -> Result<Placement, PlacementError> {
    let code = sites.code();
    let first = instruction_at(&code, start)?;
    let effects = effects_of(&code);
    let mut indices = vec![first];
    let mut k = first;
    let stop = loop {
        if k == 0 {
            break ScanStop::FunctionEdge;
        }
        if code.starts_block(k) || sites.is_entered_from_outside(code.insns[k].offset) {
            break ScanStop::BranchTarget {
                at: code.insns[k].offset,
            };
        }
        let p = k - 1;
        let at = code.insns[p].offset;
        if matches!(effects[p].transfer, Transfer::Call { .. }) {
            break ScanStop::Call { at };
        }
        if writes_any(&effects[p], saved) {
            break ScanStop::Writer { at };
        }
        k = p;
        indices.push(k);
    };
    finish(sites, start, &indices, stop, other_probes, Vec::new())
}

fn finish(
    sites: &ProbeSites<'_, '_>,
    anchor: u32,
    indices: &[usize],
    stop: ScanStop,
    other_probes: &[u32],
    also_reached_from: Vec<JoinFrom>,
) -> Result<Placement, PlacementError> {
    let code = sites.code();
    let candidates = indices
        .iter()
        .map(|&n| sites.check(code.insns[n].offset, other_probes))
        .collect::<Result<Vec<_>, _>>()?;
    let chosen = candidates
        .iter()
        .enumerate()
        .filter_map(|(i, c)| rank(c).map(|r| (r, i)))
        .min()
        .map(|(_, i)| i);
    Ok(Placement {
        anchor,
        candidates,
        chosen,
        stop,
        also_reached_from,
    })
}

/// Lower is better; `None` for unusable.
fn rank(c: &ProbeCheck) -> Option<u8> {
    let deoptimizes = c
        .notes
        .iter()
        .any(|n| matches!(n, ProbeNote::DeoptimizesProbe { .. }));
    match c.kind {
        ProbeKind::JumpOptimized if !deoptimizes => Some(0),
        ProbeKind::JumpOptimized => Some(1),
        ProbeKind::Int3 => Some(2),
        ProbeKind::Ftrace => Some(3),
        ProbeKind::Unsafe | ProbeKind::Refused => None,
    }
}

fn instruction_at(code: &FunctionCode<'_, '_>, offset: u32) -> Result<usize, PlacementError> {
    if offset >= code.len() {
        return Err(PlacementError::OutsideFunction {
            function: code.function.name.to_owned(),
            offset,
            size: code.len(),
        });
    }
    code.index_at(offset)
        .ok_or_else(|| PlacementError::NotAnInstruction {
            function: code.function.name.to_owned(),
            offset,
        })
}

/// Whether instruction `n` (the last of its block) transfers control rather than falling into
/// a branch target.
fn ends_with_transfer(code: &FunctionCode<'_, '_>, n: usize) -> bool {
    use crate::cfg::Successor;
    let block = &code.cfg.blocks()[code.cfg.block_of(n) as usize];
    !matches!(block.succs[..], [Successor::FallThrough(_)])
}

/// Whether an instruction passed over by a post-probe conflicts with the recipe.
fn touches(e: &Effects, writes: &Locations, reads: &Locations) -> bool {
    let (w, r) = (writes.reg_set(), reads.reg_set());
    e.reads.union(e.writes()).intersects(w)
        || e.writes().intersects(r)
        || (e.flags_read | e.flags_written) & writes.status() != 0
        || e.flags_written & reads.status() != 0
        || (writes.memory && (e.reads_memory() || e.writes_memory()))
        || (reads.memory && e.writes_memory())
        || !matches!(e.transfer, Transfer::Plain | Transfer::Call { .. })
}

fn writes_any(e: &Effects, saved: &Locations) -> bool {
    e.writes().intersects(saved.reg_set())
        || e.flags_written & saved.status() != 0
        || (saved.memory && e.writes_memory())
}

#[cfg(test)]
mod tests {
    use iced_x86::Register;

    use super::*;
    use crate::cfg::Cfg;
    use crate::decode::Disassembler;
    use crate::elf::ObjectFile;
    use crate::optprobe::{KernelProbeConfig, ProbeBlocker};

    fn with_sites<R>(bytes: &[u8], f: impl FnOnce(&ProbeSites<'_, '_>) -> R) -> R {
        let object = ObjectFile::from_code("t", &[("f", bytes)]);
        let func = &object.functions()[0];
        let insns = Disassembler::new().decode(func);
        let cfg = Cfg::build(&object, func, &insns);
        let code = FunctionCode::new(&object, func, &insns, &cfg);
        f(&ProbeSites::new(code, KernelProbeConfig::default()))
    }

    fn offsets(p: &Placement) -> Vec<(u32, ProbeKind)> {
        p.candidates.iter().map(|c| (c.offset, c.kind)).collect()
    }

    #[test]
    fn compare_probes_at_the_jcc() {
        // 0: cmp $0xffff,%ebp; 6: jbe 0xd; 8: mov $0x10,%eax; d: ret
        let bytes = [
            0x81, 0xfd, 0xff, 0xff, 0, 0, 0x76, 0x05, 0xb8, 0x10, 0, 0, 0, 0xc3,
        ];
        with_sites(&bytes, |sites| {
            let flags = Locations::none().with_flags(Locations::CF | Locations::ZF);
            let p = place_post_probe(sites, 6, &flags, &Locations::regs(&[Register::RBP]), &[])
                .unwrap();
            assert_eq!(offsets(&p), [(6, ProbeKind::Int3)]);
            assert_eq!(p.stop, ScanStop::Consumer { at: 6 });
            assert_eq!(p.offset(), Some(6));
        });
    }

    #[test]
    fn moves_past_an_unboostable_region() {
        // 0: mov $0x10,%eax; 5: lfence; 8: add %ecx,%edx; a: nopl 0x0(%rax,%rax,1);
        // f: mov %eax,%esi; 11: ret
        let bytes = [
            0xb8, 0x10, 0, 0, 0, 0x0f, 0xae, 0xe8, 0x01, 0xca, 0x0f, 0x1f, 0x44, 0, 0, 0x89, 0xc6,
            0xc3,
        ];
        with_sites(&bytes, |sites| {
            let rax = Locations::regs(&[Register::RAX]);
            let p = place_post_probe(sites, 5, &rax, &Locations::none(), &[]).unwrap();
            assert_eq!(
                offsets(&p),
                [
                    (5, ProbeKind::Int3),
                    (8, ProbeKind::JumpOptimized),
                    (0xa, ProbeKind::JumpOptimized),
                    (0xf, ProbeKind::Int3),
                ],
                "{p}"
            );
            assert_eq!(p.offset(), Some(8));
            assert_eq!(p.stop, ScanStop::Consumer { at: 0xf });
            assert!(matches!(
                &p.candidates[0].blockers[..],
                [ProbeBlocker::NotBoostable { at: 5, .. }]
            ));
            // 0xf: mov (2) + ret (1): only 3 bytes left.
            assert_eq!(
                p.candidates[3].blockers,
                [ProbeBlocker::TooCloseToEnd { room: 3 }]
            );
        });
    }

    #[test]
    fn stops_at_calls_branch_targets_and_writers() {
        // 0: mov $0x10,%eax; 5: mov %ecx,%edx; 7: call 0xc; c: jmp 0x7; e: ret
        let bytes = [
            0xb8, 0x10, 0, 0, 0, 0x89, 0xca, 0xe8, 0, 0, 0, 0, 0xeb, 0xf9, 0xc3,
        ];
        with_sites(&bytes, |sites| {
            let rax = Locations::regs(&[Register::RAX]);
            let p = place_post_probe(sites, 5, &rax, &Locations::none(), &[]).unwrap();
            // The call at 7 is a branch target (of the jmp at c).
            assert_eq!(p.stop, ScanStop::BranchTarget { at: 7 });
            assert_eq!(p.candidates.len(), 1);
            let at_call = place_post_probe(sites, 7, &rax, &Locations::none(), &[]).unwrap();
            assert_eq!(
                at_call.stop,
                ScanStop::Consumer { at: 7 },
                "a call reads nothing of rax but clobbers it"
            );
            assert_eq!(at_call.also_reached_from, [JoinFrom::Local { at: 0xc }]);
            // Pre-probe saving %ecx: the mov at 5 reads it, nothing writes it before.
            let pre = place_pre_probe(sites, 5, &Locations::regs(&[Register::RCX]), &[]).unwrap();
            assert_eq!(
                offsets(&pre).iter().map(|c| c.0).collect::<Vec<_>>(),
                [5, 0]
            );
            assert_eq!(pre.stop, ScanStop::FunctionEdge);
            let pre = place_pre_probe(sites, 5, &Locations::regs(&[Register::RAX]), &[]).unwrap();
            assert_eq!(pre.stop, ScanStop::Writer { at: 0 });
        });
    }

    #[test]
    fn avoids_unoptimizing_the_pre_probe() {
        // 0: add $0x10,%eax; 3: mov %ecx,%edx; 5: mov %esi,%edi; 7: nopl 0x0(%rax,%rax,1);
        // c: mov %eax,%esi; e: ret
        let bytes = [
            0x83, 0xc0, 0x10, 0x89, 0xca, 0x89, 0xf7, 0x0f, 0x1f, 0x44, 0, 0, 0x89, 0xc6, 0xc3,
        ];
        with_sites(&bytes, |sites| {
            let rax = Locations::regs(&[Register::RAX]);
            let pre = place_pre_probe(sites, 0, &rax, &[]).unwrap();
            assert_eq!(pre.offset(), Some(0));
            assert_eq!(pre.chosen().unwrap().region, Some(0..5));
            let flags = rax.clone().with_flags(Locations::STATUS_FLAGS);
            let post = place_post_probe(sites, 3, &flags, &rax, &[0]).unwrap();
            // 3 is optimizable itself but sits inside the pre-probe's five bytes.
            assert_eq!(
                post.candidates[0].notes,
                [ProbeNote::DeoptimizesProbe { probe: 0 }]
            );
            assert_eq!(post.offset(), Some(5), "{post}");
        });
    }

    #[test]
    fn rejects_offsets_off_the_code() {
        with_sites(&[0x90, 0xc3], |sites| {
            assert!(matches!(
                place_post_probe(sites, 2, &Locations::none(), &Locations::none(), &[]),
                Err(PlacementError::OutsideFunction { offset: 2, .. })
            ));
        });
        with_sites(&[0xb8, 0x10, 0, 0, 0, 0xc3], |sites| {
            assert!(matches!(
                place_post_probe(sites, 1, &Locations::none(), &Locations::none(), &[]),
                Err(PlacementError::NotAnInstruction { offset: 1, .. })
            ));
        });
    }
}
