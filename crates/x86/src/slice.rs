//! Safe Spans from the binary: the forward data-dependence slice of a critical span on the
//! function's CFG.
//!
//! A task is inside a span's Safe Span while a value derived from the constant is live in its
//! registers, flags or stack frame: its IP, or a return address on its stack, falls in one of
//! [`SafeSpanSlice::ranges`]. The runtime's per-task and global modes wait on that.
//!
//! # How
//!
//! 1. Stack offsets: a forward pass tracks `%rsp` (and `%rbp` when it is a frame pointer)
//!    relative to the entry `%rsp`, through `push`/`pop`, `sub`/`add $imm,%rsp`, `lea`, `mov
//!    %rsp,%rbp` and `leave`, so `rsp`/`rbp`-relative operands name stack slots (8-byte
//!    words). A conflict at a join makes the pointer unknown, and its operands unknown stack.
//! 2. Taint, forward: everything the span's instructions write is derived; an instruction that
//!    reads a derived location makes everything it writes derived; whole writes of underived
//!    values kill (32/64-bit register writes, flags, fully covered slots; 8/16-bit writes
//!    keep the rest of the register). Calls follow the ABI ([`crate::dataflow`]).
//! 3. Control dependence (on by default, [`SliceOptions::control_dependence`]): a conditional
//!    branch that reads derived flags is *derived*; the blocks control-dependent on it
//!    (between it and its immediate post-dominator) are its region, which is in the span.
//!    What the region writes is derived where control leaves it (at the join, or where it
//!    leaves the function), so a value merged at the join (`x = n > IV ? a : b` compiled as
//!    branches, not `cmov`) is derived like its `cmov` form; a store inside the region is an
//!    escape (whether it happens depends on the constant). Steps 2-3 repeat until no new
//!    branch is derived.
//! 4. Liveness, backward, over the same locations; at a `ret` the caller sees `%rax` (and
//!    `%rdx` with [`SliceOptions::returns_rdx`]), `%rsp`, the callee-saved registers and its
//!    own frame.
//! 5. An instruction is in the span when it belongs to the critical span or to a derived
//!    branch's region, or when a location both derived and live reaches it.
//! 6. Escapes extend the span conservatively, each recorded as an [`Extension`]: a derived value
//!    stored to memory other than a known stack slot (or to the stack of a function whose
//!    stack addresses escape), or passed to a callee (in an argument register: all six unless
//!    [`slice_span_with_arity`] says how many the callee takes), makes every instruction
//!    reachable from there part of the span (to every exit); a derived value live into the
//!    function's `.cold` part (the part is not sliced: everything counts as live there)
//!    extends from the jump and from every place the cold part jumps back to. Values returned,
//!    tail-called or live at an indirect jump leave the function: recorded, nothing to
//!    extend.
//!
//! # Limits
//!
//! Memory is not tracked beyond stack slots: loads from the heap or globals are never derived
//! (a derived store already extends the span to every exit, but not beyond the function's
//! return). Callees are not analysed: only their arguments and `%rax` carry derived values, and
//! the calls inside a derived branch's region are not escapes. A span that starts in a `.cold`
//! part stops where the part jumps back into its function.
//!
//! Every exit of the function that lies in the span (`ret`, `jmp __x86_return_thunk`, tail
//! calls, `.cold` jumps, indirect jumps, traps) is recorded with its kind.

use std::fmt;
use std::ops::Range;

use iced_x86::{Code, FlowControl, Mnemonic, OpKind, Register};

use crate::cfg::{Exit, Successor};
use crate::dataflow::{
    ARG_REGS, CALLEE_SAVED, Effects, FunctionCode, MemRef, RETURN_REGS, RegSet, Transfer,
    effects_of, jumps_from_other_parts,
};
use crate::decode::is_immediate;
use crate::format::AttFormatter;

/// Options of [`slice_span`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceOptions {
    /// Follow control dependence from branches on derived flags (see the module doc). Off, the
    /// slice is the pure data-dependence slice.
    pub control_dependence: bool,
    /// The function returns a value in `%rdx` too (a 16-byte struct or `__int128`: the
    /// prototype in BTF or DWARF says so; the code does not). Off, a `ret` hands the caller
    /// `%rax` only, so a derived value left in `%rdx` dies there.
    pub returns_rdx: bool,
}

impl Default for SliceOptions {
    fn default() -> Self {
        Self {
            control_dependence: true,
            returns_rdx: false,
        }
    }
}

/// How control leaves the function at an exit of the span.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ExitKind {
    /// `ret`, or `jmp __x86_return_thunk`.
    Return,
    /// A direct `jmp`/`jcc` to another function.
    TailCall {
        /// The callee, as `symbol` or `symbol+offset`.
        target: String,
    },
    /// A `jmp`/`jcc` into the function's `.cold` part.
    Cold {
        /// The target, as `symbol` or `symbol+offset`.
        target: String,
    },
    /// An indirect jump (`jmp *%rax`, `jmp __x86_indirect_thunk_rax`).
    IndirectJump,
    /// `ud2`/`int3` (`BUG()`, a speculation trap).
    Trap,
    /// Execution runs past the function's end (after a `noreturn` call).
    FallsOffEnd,
}

impl fmt::Display for ExitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitKind::Return => f.write_str("return"),
            ExitKind::TailCall { target } => write!(f, "tail-call {target}"),
            ExitKind::Cold { target } => write!(f, "cold {target}"),
            ExitKind::IndirectJump => f.write_str("indirect-jump"),
            ExitKind::Trap => f.write_str("trap"),
            ExitKind::FallsOffEnd => f.write_str("falls-off-end"),
        }
    }
}

/// Why the span was extended beyond where its values are live, or why a value leaves the
/// function.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExtensionReason {
    /// A derived value (or a store under a derived branch) to memory that is not a known stack
    /// slot (heap, globals, per-CPU data, or the stack at an offset not tracked): the value
    /// may outlive the span. Extended to every exit reachable from here.
    Stored {
        /// The instruction (AT&T).
        insn: String,
    },
    /// A derived value stored to the stack of a function that lets stack addresses escape
    /// (`lea` of a slot into a register): a callee may read it. Extended as for `Stored`.
    StackAddressEscapes {
        /// The instruction (AT&T).
        insn: String,
    },
    /// Derived values in argument registers at a call. Extended as for `Stored`.
    PassedToCall {
        /// The callee, when direct.
        callee: Option<String>,
        /// The derived argument registers.
        regs: Vec<Register>,
    },
    /// Derived values returned to the caller.
    Returned {
        /// `%rax` and/or `%rdx`.
        regs: Vec<Register>,
    },
    /// Derived values in argument registers at a tail call.
    TailCall {
        /// The callee.
        target: String,
        /// The derived argument registers.
        regs: Vec<Register>,
    },
    /// Derived values live into the function's `.cold` part, which is not sliced; extended from
    /// the jump and from every place the cold part jumps back to.
    ColdPart {
        /// The target.
        target: String,
    },
    /// Derived values live at an indirect jump (targets unknown).
    IndirectJump,
}

/// One conservative extension or escape, at an instruction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Extension {
    /// The instruction's offset.
    pub at: u32,
    /// What happens there.
    pub reason: ExtensionReason,
}

impl fmt::Display for Extension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let regs = |regs: &[Register]| {
            regs.iter()
                .map(|r| format!("%{r:?}").to_lowercase())
                .collect::<Vec<_>>()
                .join(",")
        };
        write!(f, "{:#x}: ", self.at)?;
        match &self.reason {
            ExtensionReason::Stored { insn } => write!(
                f,
                "derived value stored to memory other than a known stack slot ({insn}); \
                 extended to every exit reachable from here"
            ),
            ExtensionReason::StackAddressEscapes { insn } => write!(
                f,
                "derived value stored to a stack slot whose address may escape ({insn}); \
                 extended to every exit reachable from here"
            ),
            ExtensionReason::PassedToCall { callee, regs: r } => write!(
                f,
                "derived {} passed to {}; extended to every exit reachable from here",
                regs(r),
                callee.as_deref().unwrap_or("an indirect call")
            ),
            ExtensionReason::Returned { regs: r } => {
                write!(f, "derived {} returned to the caller", regs(r))
            }
            ExtensionReason::TailCall { target, regs: r } => {
                write!(f, "derived {} passed to tail-called {target}", regs(r))
            }
            ExtensionReason::ColdPart { target } => write!(
                f,
                "derived values live into {target} (not sliced); extended from the jump and \
                 from where the cold part returns"
            ),
            ExtensionReason::IndirectJump => {
                write!(
                    f,
                    "derived values live at an indirect jump (targets unknown)"
                )
            }
        }
    }
}

/// The Safe Span of one critical span, in offsets of the function.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SafeSpanSlice {
    /// Sorted, disjoint, non-adjacent instruction ranges (the critical span included).
    pub ranges: Vec<Range<u32>>,
    /// Every exit of the function inside the span, by offset of the exiting instruction.
    pub exits: Vec<(u32, ExitKind)>,
    /// Conservative extensions and escapes, in offset order.
    pub conservative: Vec<Extension>,
    /// Conditional branches whose direction depends on the constant (empty without control
    /// dependence).
    pub derived_branches: Vec<u32>,
}

impl SafeSpanSlice {
    /// Whether `offset` (an IP, or a return address) is inside the span.
    pub fn contains(&self, offset: u32) -> bool {
        self.ranges.iter().any(|r| r.contains(&offset))
    }
}

impl fmt::Display for SafeSpanSlice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ranges: Vec<String> = self
            .ranges
            .iter()
            .map(|r| format!("{:#x}..{:#x}", r.start, r.end))
            .collect();
        write!(f, "ranges {}", ranges.join(","))?;
        for (at, kind) in &self.exits {
            write!(f, "\n  exit {at:#x} {kind}")?;
        }
        for b in &self.derived_branches {
            write!(f, "\n  derived branch {b:#x}")?;
        }
        for e in &self.conservative {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// What can go wrong slicing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SliceError {
    /// A span boundary that is not an instruction boundary of the function.
    #[error(
        "{function}+{offset:#x} is not an instruction boundary: the critical span does not \
         match this function's code"
    )]
    NotAnInstruction {
        /// The function.
        function: String,
        /// The boundary.
        offset: u32,
    },
    /// An empty or reversed span.
    #[error("{function}: critical span {start:#x}..{end:#x} is empty")]
    EmptySpan {
        /// The function.
        function: String,
        /// Start.
        start: u32,
        /// End.
        end: u32,
    },
}

/// The registers that may be live after instruction `n` of `code`: read on some path before
/// a whole (32/64-bit) redefinition, or handed on where control leaves the function (a `ret`
/// hands on `%rax`, `%rdx` and the callee-saved registers; a call or tail call its argument
/// registers), as full 64-bit registers. Synthesis asks it for the end of a seed's block.
pub fn registers_live_after(code: &FunctionCode<'_, '_>, n: usize) -> Vec<Register> {
    // The prototype is not known here: a `ret` may return `%rdx` too.
    let options = SliceOptions {
        returns_rdx: true,
        ..SliceOptions::default()
    };
    let slicer = Slicer::new(code, options, &|_| None);
    let live = slicer.liveness();
    let mut out = slicer.steps[n]
        .exit_live
        .clone()
        .unwrap_or_else(|| slicer.bits());
    for &j in &slicer.succs[n] {
        out.union_with(&live[j]);
    }
    out.regs().registers()
}

/// Computes the Safe Span of the critical span `cs` (V1 offsets, `start..end` as in the
/// recipe: `end` is the instruction after the span). Every argument register counts as passed
/// at a call; [`slice_span_with_arity`] knows better.
pub fn slice_span(
    code: &FunctionCode<'_, '_>,
    cs: Range<u32>,
    options: SliceOptions,
) -> Result<SafeSpanSlice, SliceError> {
    slice_span_with_arity(code, cs, options, &|_| None)
}

/// [`slice_span`], told how many register arguments a callee takes (by symbol name; `None`:
/// unknown, all six), e.g. from the prototypes in the kernel's BTF. Only those argument
/// registers are passed at a call or tail call: a derived value left in `%rdx` is not passed to
/// `capable(int)`.
pub fn slice_span_with_arity(
    code: &FunctionCode<'_, '_>,
    cs: Range<u32>,
    options: SliceOptions,
    arity: &dyn Fn(&str) -> Option<usize>,
) -> Result<SafeSpanSlice, SliceError> {
    let not_insn = |offset| SliceError::NotAnInstruction {
        function: code.function.name.to_owned(),
        offset,
    };
    if cs.start >= cs.end {
        return Err(SliceError::EmptySpan {
            function: code.function.name.to_owned(),
            start: cs.start,
            end: cs.end,
        });
    }
    let first = code.index_at(cs.start).ok_or_else(|| not_insn(cs.start))?;
    let last = if cs.end == code.len() {
        code.insns.len()
    } else {
        code.index_at(cs.end).ok_or_else(|| not_insn(cs.end))?
    };
    let slicer = Slicer::new(code, options, arity);
    Ok(slicer.run(first..last, options))
}

// ---------------------------------------------------------------------------------------------
// Locations as bits: 16 GPRs, 6 status flags, then the stack words the function touches.

const FLAG_BASE: usize = 16;
const WORD_BASE: usize = FLAG_BASE + 6;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    fn union_with(&mut self, o: &Bits) -> bool {
        let mut changed = false;
        for (a, b) in self.0.iter_mut().zip(&o.0) {
            let n = *a | b;
            changed |= n != *a;
            *a = n;
        }
        changed
    }
    fn minus(&self, o: &Bits) -> Bits {
        Bits(self.0.iter().zip(&o.0).map(|(a, b)| a & !b).collect())
    }
    fn intersects(&self, o: &Bits) -> bool {
        self.0.iter().zip(&o.0).any(|(a, b)| a & b != 0)
    }
    fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }
    fn add_regs(&mut self, regs: RegSet) {
        for n in 0..16 {
            if regs.0 & (1 << n) != 0 {
                self.set(n);
            }
        }
    }
    fn add_flags(&mut self, status: u8) {
        for k in 0..6 {
            if status & (1 << k) != 0 {
                self.set(FLAG_BASE + k);
            }
        }
    }
    fn regs(&self) -> RegSet {
        RegSet(
            (0..16)
                .filter(|&n| self.get(n))
                .fold(0, |acc, n| acc | 1 << n),
        )
    }
}

/// Where a memory operand points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemClass {
    /// Bytes `lo..hi` relative to the entry `%rsp`.
    Stack { lo: i64, hi: i64 },
    /// The stack, at an offset not known.
    StackUnknown,
    /// Anything else.
    Other,
}

/// `%rsp` and frame-pointer `%rbp` relative to the entry `%rsp`, before an instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Frame {
    rsp: Option<i64>,
    rbp: Option<i64>,
}

/// One instruction as the slicer sees it.
#[derive(Debug, Clone)]
struct Step {
    reads: Bits,
    kills: Bits,
    writes: Bits,
    /// Writes memory outside the known stack (or at an unknown stack offset).
    other_store: bool,
    /// Writes a known stack slot.
    stack_store: bool,
    transfer: Transfer,
    /// What the world outside the function reads after this instruction leaves it.
    exit_live: Option<Bits>,
    /// Registers a call or tail call hands to the callee (arguments, a thunk's target).
    passed: RegSet,
}

struct Slicer<'c, 'o, 'a> {
    code: &'c FunctionCode<'o, 'a>,
    effects: Vec<Effects>,
    steps: Vec<Step>,
    succs: Vec<Vec<usize>>,
    preds: Vec<Vec<usize>>,
    nbits: usize,
    /// What a `ret` hands to the caller: `%rax`, and `%rdx` if [`SliceOptions::returns_rdx`].
    returned: RegSet,
    /// Stack words (offset / 8) that have a bit, sorted.
    words: Vec<i64>,
    stack_address_escapes: bool,
}

impl<'c, 'o, 'a> Slicer<'c, 'o, 'a> {
    fn new(
        code: &'c FunctionCode<'o, 'a>,
        options: SliceOptions,
        arity: &dyn Fn(&str) -> Option<usize>,
    ) -> Self {
        let effects = effects_of(code);
        let (succs, preds) = insn_graph(code);
        let frames = frames(code, &effects, &succs);
        let classes: Vec<Vec<MemClass>> = effects
            .iter()
            .zip(&frames)
            .map(|(e, f)| e.mem.iter().map(|m| classify(m, *f)).collect())
            .collect();
        let mut words: Vec<i64> = classes
            .iter()
            .flatten()
            .filter_map(|c| match *c {
                MemClass::Stack { lo, hi } => Some(lo.div_euclid(8)..=(hi - 1).div_euclid(8)),
                _ => None,
            })
            .flatten()
            .collect();
        words.sort_unstable();
        words.dedup();
        let nbits = WORD_BASE + words.len();
        let stack_address_escapes = code
            .insns
            .iter()
            .zip(&frames)
            .any(|(insn, f)| takes_stack_address(&insn.instruction, *f));
        let mut slicer = Slicer {
            code,
            effects,
            steps: Vec::new(),
            succs,
            preds,
            nbits,
            returned: if options.returns_rdx {
                RegSet::of(&RETURN_REGS)
            } else {
                RegSet::EMPTY.with(Register::RAX)
            },
            words,
            stack_address_escapes,
        };
        slicer.steps = (0..code.insns.len())
            .map(|n| slicer.step(n, &classes[n], arity))
            .collect();
        slicer
    }

    fn bits(&self) -> Bits {
        Bits::new(self.nbits)
    }

    fn word_bit(&self, word: i64) -> Option<usize> {
        self.words.binary_search(&word).ok().map(|i| WORD_BASE + i)
    }

    /// Bits of the caller's frame (offsets >= 0: return address, stack arguments).
    fn caller_frame(&self) -> Bits {
        let mut b = self.bits();
        for (i, w) in self.words.iter().enumerate() {
            if *w >= 0 {
                b.set(WORD_BASE + i);
            }
        }
        b
    }

    fn all(&self) -> Bits {
        let mut b = self.bits();
        for i in 0..self.nbits {
            b.set(i);
        }
        b
    }

    fn step(&self, n: usize, classes: &[MemClass], arity: &dyn Fn(&str) -> Option<usize>) -> Step {
        let e = &self.effects[n];
        // The argument registers a call or tail call passes (all six unless told).
        let args_of = |name: Option<&str>| {
            let k = name
                .map(|n| n.split('+').next().unwrap_or(n))
                .and_then(arity)
                .map_or(ARG_REGS.len(), |k| k.min(ARG_REGS.len()));
            RegSet::of(&ARG_REGS[..k])
        };
        let passed = match &e.transfer {
            Transfer::Call { callee } => Some(args_of(callee.as_deref())),
            Transfer::TailCall { target } => Some(args_of(Some(target))),
            _ => None,
        };
        let reads = match passed {
            _ if e.transfer == Transfer::Return => {
                e.reads.minus(RegSet::of(&RETURN_REGS)).union(self.returned)
            }
            Some(args) => e.reads.minus(RegSet::of(&ARG_REGS)).union(args),
            None => e.reads,
        };
        let mut s = Step {
            reads: self.bits(),
            kills: self.bits(),
            writes: self.bits(),
            other_store: false,
            stack_store: false,
            transfer: e.transfer.clone(),
            exit_live: None,
            passed: match passed {
                Some(_) => reads.minus(RegSet::EMPTY.with(Register::RSP)),
                None => RegSet::EMPTY,
            },
        };
        s.reads.add_regs(reads);
        s.reads.add_flags(e.flags_read);
        s.kills.add_regs(e.kills);
        s.kills.add_flags(e.flags_written);
        if matches!(e.transfer, Transfer::Call { .. }) {
            // A callee's result comes back in %rax; the other caller-saved registers hold
            // garbage, not values derived from its arguments. (Derived arguments extend the
            // span to every exit anyway: this only decides what a `ret` reports.)
            s.writes.add_regs(RegSet::EMPTY.with(Register::RAX));
        } else {
            s.writes.add_regs(e.writes());
            s.writes.add_flags(e.flags_written);
        }
        // A call's push of its return address belongs to the callee's frame.
        let own_memory = !matches!(e.transfer, Transfer::Call { .. });
        for (m, c) in e.mem.iter().zip(classes).filter(|_| own_memory) {
            match *c {
                MemClass::Stack { lo, hi } => {
                    for w in lo.div_euclid(8)..=(hi - 1).div_euclid(8) {
                        let bit = self.word_bit(w).expect("every stack word has a bit");
                        if m.read {
                            s.reads.set(bit);
                        }
                        if m.write {
                            s.writes.set(bit);
                            s.stack_store = true;
                            if lo <= w * 8 && w * 8 + 8 <= hi && !m.read {
                                s.kills.set(bit);
                            }
                        }
                    }
                }
                MemClass::StackUnknown => {
                    if m.read {
                        for i in 0..self.words.len() {
                            s.reads.set(WORD_BASE + i);
                        }
                    }
                    s.other_store |= m.write;
                }
                MemClass::Other => s.other_store |= m.write,
            }
        }
        let mut outside = self.bits();
        match &e.transfer {
            Transfer::Return => {
                outside.add_regs(self.returned.union(RegSet::of(&CALLEE_SAVED)));
                outside.add_regs(RegSet::EMPTY.with(Register::RSP));
                outside.union_with(&self.caller_frame());
                s.exit_live = Some(outside);
            }
            Transfer::TailCall { .. } => {
                outside.add_regs(s.passed.union(RegSet::of(&CALLEE_SAVED)));
                outside.add_regs(RegSet::EMPTY.with(Register::RSP));
                outside.union_with(&self.caller_frame());
                s.exit_live = Some(outside);
            }
            Transfer::Cold { .. } | Transfer::IndirectJump => s.exit_live = Some(self.all()),
            Transfer::Plain | Transfer::Call { .. } => {}
        }
        s
    }

    fn run(&self, cs: Range<usize>, options: SliceOptions) -> SafeSpanSlice {
        let n = self.code.insns.len();
        let in_cs = |i: usize| cs.contains(&i);
        let cs_mask: Vec<bool> = (0..n).map(in_cs).collect();
        // Control dependence: the instructions of derived branches' regions, and what those
        // regions write, derived where control leaves them (at the join).
        let mut cd_mask = vec![false; n];
        let mut joins: Vec<Option<Bits>> = vec![None; n];
        let mut leaving: Vec<Option<Bits>> = vec![None; n];
        let mut derived_branches = Vec::new();
        let ipdom = if options.control_dependence {
            immediate_post_dominators(self.code)
        } else {
            Vec::new()
        };
        let taint = loop {
            let taint = self.taint(&cs_mask, &joins);
            if !options.control_dependence {
                break taint;
            }
            derived_branches = (0..n)
                .filter(|&i| {
                    self.code.insns[i].instruction.flow_control() == FlowControl::ConditionalBranch
                        && self.steps[i].reads.intersects(&taint[i])
                })
                .collect();
            let (new_cd, new_joins, new_leaving) = self.regions(&derived_branches, &ipdom);
            if new_cd == cd_mask && new_joins == joins {
                break taint;
            }
            cd_mask = new_cd;
            joins = new_joins;
            leaving = new_leaving;
        };
        let gen_mask: Vec<bool> = (0..n).map(|i| cs_mask[i] || cd_mask[i]).collect();
        let live = self.liveness();

        // Escapes.
        let mut formatter = AttFormatter::new();
        let mut conservative = Vec::new();
        let mut extend_from: Vec<usize> = Vec::new();
        for i in 0..n {
            let step = &self.steps[i];
            // What leaves the function here includes what a derived branch's region wrote.
            let mut t = taint[i].clone();
            if let Some(w) = &leaving[i] {
                t.union_with(w);
            }
            let t = &t;
            let tainted = gen_mask[i] || step.reads.intersects(t);
            let insn = &self.code.insns[i];
            let at = insn.offset;
            let asm = |f: &mut AttFormatter| f.format(self.code.object, self.code.function, insn);
            let derived_regs = |regs: RegSet| t.regs().and(regs).registers();
            let mut push = |reason, extend: bool, conservative: &mut Vec<Extension>| {
                conservative.push(Extension { at, reason });
                if extend {
                    extend_from.push(i);
                }
            };
            if tainted && step.other_store {
                push(
                    ExtensionReason::Stored {
                        insn: asm(&mut formatter),
                    },
                    true,
                    &mut conservative,
                );
            } else if tainted && step.stack_store && self.stack_address_escapes {
                push(
                    ExtensionReason::StackAddressEscapes {
                        insn: asm(&mut formatter),
                    },
                    true,
                    &mut conservative,
                );
            }
            match &step.transfer {
                Transfer::Call { callee } => {
                    let regs = derived_regs(step.passed);
                    if !regs.is_empty() {
                        let callee = callee.clone();
                        push(
                            ExtensionReason::PassedToCall { callee, regs },
                            true,
                            &mut conservative,
                        );
                    }
                }
                Transfer::Return => {
                    let regs = derived_regs(self.returned);
                    if !regs.is_empty() {
                        push(ExtensionReason::Returned { regs }, false, &mut conservative);
                    }
                }
                Transfer::TailCall { target } => {
                    let regs = derived_regs(step.passed);
                    if !regs.is_empty() {
                        let target = target.clone();
                        push(
                            ExtensionReason::TailCall { target, regs },
                            false,
                            &mut conservative,
                        );
                    }
                }
                Transfer::Cold { target } => {
                    if !t.is_empty() {
                        let target = target.clone();
                        push(
                            ExtensionReason::ColdPart { target },
                            true,
                            &mut conservative,
                        );
                    }
                }
                Transfer::IndirectJump => {
                    if !t.is_empty() {
                        push(ExtensionReason::IndirectJump, false, &mut conservative);
                    }
                }
                Transfer::Plain => {}
            }
        }

        // Membership.
        let mut inside: Vec<bool> = (0..n)
            .map(|i| in_cs(i) || cd_mask[i] || taint[i].intersects(&live[i]))
            .collect();
        let mut stack = extend_from.clone();
        if extend_from
            .iter()
            .any(|&i| matches!(self.steps[i].transfer, Transfer::Cold { .. }))
        {
            stack.extend(self.cold_reentries());
        }
        let mut seen = vec![false; n];
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            inside[i] = true;
            stack.extend(self.succs[i].iter().copied());
        }

        // Exits and ranges.
        let mut exits = Vec::new();
        for block in self.code.cfg.blocks() {
            let last = block.insns.end - 1;
            if !inside[last] {
                continue;
            }
            for s in &block.succs {
                if let Successor::Exit(x) = s {
                    exits.push((self.code.insns[last].offset, self.exit_kind(last, *x)));
                }
            }
        }
        let mut ranges: Vec<Range<u32>> = Vec::new();
        for (i, insn) in self.code.insns.iter().enumerate() {
            if !inside[i] {
                continue;
            }
            match ranges.last_mut() {
                Some(r) if r.end == insn.offset => r.end = insn.end(),
                _ => ranges.push(insn.offset..insn.end()),
            }
        }
        SafeSpanSlice {
            ranges,
            exits,
            conservative,
            derived_branches: derived_branches
                .iter()
                .map(|&i| self.code.insns[i].offset)
                .collect(),
        }
    }

    fn exit_kind(&self, n: usize, exit: Exit) -> ExitKind {
        match (exit, &self.steps[n].transfer) {
            (Exit::Return, _) => ExitKind::Return,
            (Exit::Jump { .. }, Transfer::Cold { target }) => ExitKind::Cold {
                target: target.clone(),
            },
            (Exit::Jump { .. }, Transfer::TailCall { target }) => ExitKind::TailCall {
                target: target.clone(),
            },
            (Exit::Jump { .. } | Exit::IndirectJump { .. } | Exit::BadTarget { .. }, _) => {
                ExitKind::IndirectJump
            }
            (Exit::Trap { .. }, _) => ExitKind::Trap,
            (Exit::FallsOffEnd, _) => ExitKind::FallsOffEnd,
        }
    }

    /// Forward taint: the derived locations before each instruction. Everything the critical
    /// span's instructions write is derived; `joins` adds derived locations on entry to an
    /// instruction (where a derived branch's region is left).
    fn taint(&self, cs_mask: &[bool], joins: &[Option<Bits>]) -> Vec<Bits> {
        let n = self.code.insns.len();
        let mut t_in = vec![self.bits(); n];
        let mut work: Vec<usize> = Vec::new();
        let mut queued = vec![false; n];
        for i in 0..n {
            if let Some(j) = &joins[i] {
                t_in[i].union_with(j);
            }
            if cs_mask[i] || joins[i].is_some() {
                queued[i] = true;
                work.push(i);
            }
        }
        while let Some(i) = work.pop() {
            queued[i] = false;
            let s = &self.steps[i];
            let mut out = t_in[i].minus(&s.kills);
            if cs_mask[i] || s.reads.intersects(&t_in[i]) {
                out.union_with(&s.writes);
            }
            for &j in &self.succs[i] {
                if t_in[j].union_with(&out) && !queued[j] {
                    queued[j] = true;
                    work.push(j);
                }
            }
        }
        t_in
    }

    /// The regions of derived branches (instructions); the locations derived on entry to
    /// each instruction that a region's edges lead to from inside it (whatever the region
    /// writes differs with the path taken); and the same for the region's exits from the
    /// function, by exiting instruction.
    fn regions(
        &self,
        branches: &[usize],
        ipdom: &[Option<usize>],
    ) -> (Vec<bool>, Vec<Option<Bits>>, Vec<Option<Bits>>) {
        let n = self.code.insns.len();
        let blocks = self.code.cfg.blocks();
        let mut cd = vec![false; n];
        let mut joins: Vec<Option<Bits>> = vec![None; n];
        let mut leaving: Vec<Option<Bits>> = vec![None; n];
        for &i in branches {
            let b = self.code.cfg.block_of(i) as usize;
            let region = control_dependent(self.code, b, ipdom);
            let mut written = self.bits();
            for block in blocks
                .iter()
                .enumerate()
                .filter(|(r, _)| region[*r])
                .map(|(_, x)| x)
            {
                for k in block.insns.clone() {
                    cd[k] = true;
                    written.union_with(&self.steps[k].writes);
                }
            }
            // Edges leaving the region, and the branch's own edges past it (the path that
            // skips the region).
            let sources = (0..blocks.len()).filter(|&r| region[r] || r == b);
            for r in sources {
                for s in &blocks[r].succs {
                    let (Successor::FallThrough(t) | Successor::Branch(t)) = *s else {
                        if region[r] {
                            leaving[blocks[r].insns.end - 1]
                                .get_or_insert_with(|| self.bits())
                                .union_with(&written);
                        }
                        continue;
                    };
                    if region[t as usize] {
                        continue;
                    }
                    let first = blocks[t as usize].insns.start;
                    joins[first]
                        .get_or_insert_with(|| self.bits())
                        .union_with(&written);
                }
            }
        }
        (cd, joins, leaving)
    }

    /// Backward liveness: the locations live before each instruction.
    fn liveness(&self) -> Vec<Bits> {
        let n = self.code.insns.len();
        let mut l_in = vec![self.bits(); n];
        let mut work: Vec<usize> = (0..n).collect();
        let mut queued = vec![true; n];
        while let Some(i) = work.pop() {
            queued[i] = false;
            let s = &self.steps[i];
            let mut out = s.exit_live.clone().unwrap_or_else(|| self.bits());
            for &j in &self.succs[i] {
                out.union_with(&l_in[j]);
            }
            let mut new = out.minus(&s.kills);
            new.union_with(&s.reads);
            if new != l_in[i] {
                l_in[i] = new;
                for &p in &self.preds[i] {
                    if !queued[p] {
                        queued[p] = true;
                        work.push(p);
                    }
                }
            }
        }
        l_in
    }

    /// Instructions the function's `.cold` parts jump back to.
    fn cold_reentries(&self) -> Vec<usize> {
        jumps_from_other_parts(self.code.object, self.code.function)
            .into_iter()
            .filter_map(|(_, target)| self.code.index_at(target))
            .collect()
    }
}

/// Successors and predecessors of each instruction inside the function.
fn insn_graph(code: &FunctionCode<'_, '_>) -> (Vec<Vec<usize>>, Vec<Vec<usize>>) {
    let n = code.insns.len();
    let mut succs = vec![Vec::new(); n];
    for block in code.cfg.blocks() {
        for (i, succ) in succs[block.insns.clone()].iter_mut().enumerate() {
            let i = block.insns.start + i;
            if i + 1 < block.insns.end {
                succ.push(i + 1);
            }
        }
        let last = block.insns.end - 1;
        for s in &block.succs {
            if let Successor::FallThrough(t) | Successor::Branch(t) = *s {
                let first = code.cfg.blocks()[t as usize].insns.start;
                if !succs[last].contains(&first) {
                    succs[last].push(first);
                }
            }
        }
    }
    let mut preds = vec![Vec::new(); n];
    for (i, ss) in succs.iter().enumerate() {
        for &j in ss {
            preds[j].push(i);
        }
    }
    (succs, preds)
}

/// `%rsp`/`%rbp` before each instruction (see the module doc).
fn frames(code: &FunctionCode<'_, '_>, effects: &[Effects], succs: &[Vec<usize>]) -> Vec<Frame> {
    let n = code.insns.len();
    let unknown = Frame {
        rsp: None,
        rbp: None,
    };
    let mut state: Vec<Option<Frame>> = vec![None; n];
    if n == 0 {
        return Vec::new();
    }
    state[0] = Some(Frame {
        rsp: Some(0),
        rbp: None,
    });
    let mut work = vec![0];
    while let Some(i) = work.pop() {
        let before = state[i].expect("queued instructions have a state");
        let after = frame_step(&code.insns[i].instruction, &effects[i], before);
        for &j in &succs[i] {
            let merged = match state[j] {
                None => after,
                Some(old) => Frame {
                    rsp: if old.rsp == after.rsp { old.rsp } else { None },
                    rbp: if old.rbp == after.rbp { old.rbp } else { None },
                },
            };
            if state[j] != Some(merged) {
                state[j] = Some(merged);
                work.push(j);
            }
        }
    }
    state.into_iter().map(|s| s.unwrap_or(unknown)).collect()
}

fn frame_step(i: &iced_x86::Instruction, e: &Effects, f: Frame) -> Frame {
    let mut out = f;
    let writes = e.writes();
    let mem_base = |reg: Register| {
        (i.memory_index() == Register::None && i.memory_base() == reg)
            .then(|| i.memory_displacement64() as i64)
    };
    if writes.contains(Register::RSP) {
        out.rsp = match i.mnemonic() {
            // Calls return with %rsp where it was (also `call __fentry__`, which has no ABI
            // effects).
            Mnemonic::Call => f.rsp,
            Mnemonic::Push | Mnemonic::Pop | Mnemonic::Pushfq | Mnemonic::Popfq => {
                f.rsp.map(|r| r + i64::from(i.stack_pointer_increment()))
            }
            Mnemonic::Leave => f.rbp.map(|b| b + 8),
            Mnemonic::Sub | Mnemonic::Add
                if i.op0_register() == Register::RSP && is_immediate(i.op1_kind()) =>
            {
                let imm = i.immediate(1) as i64;
                let delta = if i.mnemonic() == Mnemonic::Sub {
                    -imm
                } else {
                    imm
                };
                f.rsp.map(|r| r + delta)
            }
            Mnemonic::Lea if i.op0_register() == Register::RSP => mem_base(Register::RSP)
                .and_then(|d| f.rsp.map(|r| r + d))
                .or_else(|| mem_base(Register::RBP).and_then(|d| f.rbp.map(|b| b + d))),
            Mnemonic::Mov
                if i.op0_register() == Register::RSP && i.op1_register() == Register::RBP =>
            {
                f.rbp
            }
            _ => None,
        };
    }
    if writes.contains(Register::RBP) {
        out.rbp = match i.mnemonic() {
            Mnemonic::Mov
                if i.op0_register() == Register::RBP && i.op1_register() == Register::RSP =>
            {
                f.rsp
            }
            Mnemonic::Lea if i.op0_register() == Register::RBP => {
                mem_base(Register::RSP).and_then(|d| f.rsp.map(|r| r + d))
            }
            _ => None,
        };
    }
    out
}

fn classify(m: &MemRef, f: Frame) -> MemClass {
    if m.segment {
        return MemClass::Other;
    }
    let known = |base: Option<i64>| match base {
        Some(b) if m.index == Register::None => {
            let lo = b + m.displacement;
            MemClass::Stack {
                lo,
                hi: lo + i64::from(m.size.max(1)),
            }
        }
        _ => MemClass::StackUnknown,
    };
    match m.base {
        Register::RSP => known(f.rsp),
        Register::RBP if f.rbp.is_some() => known(f.rbp),
        _ => MemClass::Other,
    }
}

/// Whether the instruction puts a stack address in a register other than `%rsp`/`%rbp`.
fn takes_stack_address(i: &iced_x86::Instruction, f: Frame) -> bool {
    let dest = i.op0_register().full_register();
    let stack_base =
        |reg: Register| reg == Register::RSP || (reg == Register::RBP && f.rbp.is_some());
    let to_other = dest != Register::RSP && dest != Register::RBP && dest != Register::None;
    match i.code() {
        _ if i.mnemonic() == Mnemonic::Lea => to_other && stack_base(i.memory_base()),
        Code::Mov_r64_rm64 | Code::Mov_rm64_r64 => {
            to_other && i.op1_kind() == OpKind::Register && stack_base(i.op1_register())
        }
        _ => false,
    }
}

/// The blocks control-dependent on block `b` (which ends with a conditional branch): for each
/// edge b -> s, the blocks on the post-dominator tree path from s up to (excluding) b's
/// immediate post-dominator.
fn control_dependent(code: &FunctionCode<'_, '_>, b: usize, ipdom: &[Option<usize>]) -> Vec<bool> {
    let blocks = code.cfg.blocks();
    let nb = blocks.len();
    let mut out = vec![false; nb];
    let stop = ipdom[b];
    for s in &blocks[b].succs {
        let (Successor::FallThrough(t) | Successor::Branch(t)) = *s else {
            continue;
        };
        let mut runner = Some(t as usize);
        let mut guard = 0;
        while let Some(r) = runner {
            if Some(r) == stop || guard > nb {
                break;
            }
            out[r] = true;
            runner = ipdom[r];
            guard += 1;
        }
    }
    out
}

/// Immediate post-dominator of each block (`None`: the virtual exit).
fn immediate_post_dominators(code: &FunctionCode<'_, '_>) -> Vec<Option<usize>> {
    let blocks = code.cfg.blocks();
    let nb = blocks.len();
    let exit = nb;
    let words = (nb + 1).div_ceil(64);
    let full = |_: usize| vec![u64::MAX; words];
    let mut pdom: Vec<Vec<u64>> = (0..=nb).map(full).collect();
    pdom[exit] = vec![0; words];
    pdom[exit][exit / 64] |= 1 << (exit % 64);
    let succ_ids = |b: usize| -> Vec<usize> {
        blocks[b]
            .succs
            .iter()
            .map(|s| match *s {
                Successor::FallThrough(t) | Successor::Branch(t) => t as usize,
                Successor::Exit(_) => exit,
            })
            .collect()
    };
    let mut changed = true;
    while changed {
        changed = false;
        for b in (0..nb).rev() {
            let mut new = vec![u64::MAX; words];
            for s in succ_ids(b) {
                for (w, x) in new.iter_mut().zip(&pdom[s]) {
                    *w &= x;
                }
            }
            new[b / 64] |= 1 << (b % 64);
            if new != pdom[b] {
                pdom[b] = new;
                changed = true;
            }
        }
    }
    let has = |set: &Vec<u64>, i: usize| set[i / 64] & (1 << (i % 64)) != 0;
    let size = |set: &Vec<u64>| set.iter().map(|w| w.count_ones() as usize).sum::<usize>();
    // A block that cannot reach an exit (an endless loop) keeps the full set: no post-dominator.
    let reaches_exit = |b: usize| size(&pdom[b]) <= nb + 1;
    (0..nb)
        .map(|b| {
            if !reaches_exit(b) {
                return None;
            }
            // The strict post-dominator nearest to b has the largest set of its own.
            (0..nb)
                .filter(|&d| d != b && has(&pdom[b], d))
                .max_by_key(|&d| size(&pdom[d]))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cfg::Cfg;
    use crate::decode::Disassembler;
    use crate::elf::ObjectFile;

    fn spans(s: &SafeSpanSlice) -> Vec<(u32, u32)> {
        s.ranges.iter().map(|r| (r.start, r.end)).collect()
    }

    fn slice_bytes(bytes: &[u8], cs: Range<u32>, options: SliceOptions) -> SafeSpanSlice {
        let object = ObjectFile::from_code("t", &[("f", bytes)]);
        let f = &object.functions()[0];
        let insns = Disassembler::new().decode(f);
        let cfg = Cfg::build(&object, f, &insns);
        slice_span(&FunctionCode::new(&object, f, &insns, &cfg), cs, options).unwrap()
    }

    #[test]
    fn live_registers_follow_the_paths_and_the_abi() {
        // 0: mov $0xffffbeef,%ecx; 5: mov %cx,(%rdx); 8: test %edi,%edi; a: je 0xf;
        // c: mov %ecx,%eax; e: ret; f: xor %eax,%eax; 11: ret
        let bytes = [
            0xb9, 0xef, 0xbe, 0xff, 0xff, 0x66, 0x89, 0x0a, 0x85, 0xff, 0x74, 0x03, 0x89, 0xc8,
            0xc3, 0x31, 0xc0, 0xc3,
        ];
        let object = ObjectFile::from_code("t", &[("f", &bytes)]);
        let f = &object.functions()[0];
        let insns = Disassembler::new().decode(f);
        let cfg = Cfg::build(&object, f, &insns);
        let code = FunctionCode::new(&object, f, &insns, &cfg);
        let live = |n| registers_live_after(&code, n);
        // After the branch: %ecx is read on the fall-through path.
        assert!(live(3).contains(&Register::RCX));
        assert!(!live(3).contains(&Register::RAX));
        // After `xor %eax,%eax`: only what `ret` hands on.
        let at_ret = live(6);
        assert!(at_ret.contains(&Register::RAX) && at_ret.contains(&Register::RDX));
        assert!(at_ret.contains(&Register::RBX) && !at_ret.contains(&Register::RCX));
        // After the last `ret` as well.
        assert_eq!(live(7), at_ret);
    }

    #[test]
    fn ends_where_the_value_dies() {
        // 0: mov $0x10,%eax; 5: mov %edi,%ecx; 7: add $1,%ecx; a: add %eax,%ecx;
        // c: xor %eax,%eax; e: xor %ecx,%ecx; 10: ret
        let bytes = [
            0xb8, 0x10, 0, 0, 0, 0x89, 0xf9, 0x83, 0xc1, 1, 0x01, 0xc1, 0x31, 0xc0, 0x31, 0xc9,
            0xc3,
        ];
        let s = slice_bytes(&bytes, 0..5, SliceOptions::default());
        assert_eq!(spans(&s), [(0, 0xc)], "{s}");
        assert!(s.exits.is_empty() && s.conservative.is_empty(), "{s}");
    }

    #[test]
    fn stores_and_calls_extend_to_every_exit() {
        // 0: mov $0x10,%eax; 5: mov %eax,0x0(%rip); b: xor %eax,%eax; d: ret
        let bytes = [
            0xb8, 0x10, 0, 0, 0, 0x89, 0x05, 0, 0, 0, 0, 0x31, 0xc0, 0xc3,
        ];
        let s = slice_bytes(&bytes, 0..5, SliceOptions::default());
        assert_eq!(spans(&s), [(0, 0xe)], "{s}");
        assert_eq!(s.exits, [(0xd, ExitKind::Return)]);
        assert!(
            matches!(
                &s.conservative[..],
                [Extension {
                    at: 5,
                    reason: ExtensionReason::Stored { .. }
                }]
            ),
            "{s}"
        );

        // 0: mov $0x10,%edi; 5: call 0xa; a: xor %eax,%eax; c: ret
        let bytes = [0xbf, 0x10, 0, 0, 0, 0xe8, 0, 0, 0, 0, 0x31, 0xc0, 0xc3];
        let s = slice_bytes(&bytes, 0..5, SliceOptions::default());
        assert_eq!(spans(&s), [(0, 0xd)], "{s}");
        assert_eq!(
            s.conservative,
            [Extension {
                at: 5,
                reason: ExtensionReason::PassedToCall {
                    callee: None,
                    regs: vec![Register::RDI]
                }
            }]
        );
    }

    #[test]
    fn follows_stack_slots_across_calls() {
        // 0: push %rbx; 1: sub $0x10,%rsp; 5: mov $0x10,%eax; a: mov %eax,0x8(%rsp);
        // e: xor %eax,%eax; 10: call 0x15; 15: mov 0x8(%rsp),%ebx; 19: add $0x10,%rsp;
        // 1d: pop %rbx; 1e: ret
        let bytes = [
            0x53, 0x48, 0x83, 0xec, 0x10, 0xb8, 0x10, 0, 0, 0, 0x89, 0x44, 0x24, 0x08, 0x31, 0xc0,
            0xe8, 0, 0, 0, 0, 0x8b, 0x5c, 0x24, 0x08, 0x48, 0x83, 0xc4, 0x10, 0x5b, 0xc3,
        ];
        let s = slice_bytes(&bytes, 5..0xa, SliceOptions::default());
        // Live in the slot across the call (the return address 0x15 is inside); loaded into
        // %rbx, which nothing reads before the pop restores the caller's: dead from 0x19.
        assert_eq!(spans(&s), [(5, 0x19)], "{s}");
        assert!(s.exits.is_empty() && s.conservative.is_empty(), "{s}");
    }

    #[test]
    fn two_returns_and_control_dependence() {
        // 0: cmp $0xffff,%ebp; 6: jbe 0xd; 8: mov $0x1,%ebx; d: mov %ebx,%eax; f: ret;
        let bytes = [
            0x81, 0xfd, 0xff, 0xff, 0, 0, 0x76, 0x05, 0xbb, 1, 0, 0, 0, 0x89, 0xd8, 0xc3,
        ];
        let data = slice_bytes(
            &bytes,
            0..6,
            SliceOptions {
                control_dependence: false,
                ..SliceOptions::default()
            },
        );
        assert_eq!(spans(&data), [(0, 8)], "{data}");
        assert!(data.derived_branches.is_empty());
        let s = slice_bytes(&bytes, 0..6, SliceOptions::default());
        // %ebx merged at 0xd depends on the branch: returned.
        assert_eq!(spans(&s), [(0, 0x10)], "{s}");
        assert_eq!(s.derived_branches, [6]);
        assert_eq!(s.exits, [(0xf, ExitKind::Return)]);

        // 0: mov $0x10,%eax; 5: test %edi,%edi; 7: je 0xb; 9: add %eax,%eax; b: ret
        let bytes = [
            0xb8, 0x10, 0, 0, 0, 0x85, 0xff, 0x74, 0x02, 0x01, 0xc0, 0xc3,
        ];
        let s = slice_bytes(&bytes, 0..5, SliceOptions::default());
        assert_eq!(spans(&s), [(0, 0xc)], "{s}");
        assert!(s.derived_branches.is_empty());
        // 0xb is one `ret` reached from two paths.
        assert_eq!(s.exits, [(0xb, ExitKind::Return)]);
    }

    #[test]
    fn rejects_spans_off_the_code() {
        let object = ObjectFile::from_code("t", &[("f", &[0xb8, 0x10, 0, 0, 0, 0xc3])]);
        let f = &object.functions()[0];
        let insns = Disassembler::new().decode(f);
        let cfg = Cfg::build(&object, f, &insns);
        let code = FunctionCode::new(&object, f, &insns, &cfg);
        let options = SliceOptions::default();
        assert!(matches!(
            slice_span(&code, 1..5, options),
            Err(SliceError::NotAnInstruction { offset: 1, .. })
        ));
        assert!(matches!(
            slice_span(&code, 5..5, options),
            Err(SliceError::EmptySpan { .. })
        ));
        assert_eq!(spans(&slice_span(&code, 5..6, options).unwrap()), [(5, 6)]);
    }
}
