//! Update recipes: serde data saying how a probe after a critical span turns the state the
//! V1 code left into the state the V' code would have left.
//!
//! A recipe is what the analysis (`kernelx-x86`'s synthesis) hands the runtime for one site.
//! It is self-contained: everything a probe needs besides V' is in it, and every register,
//! address and flag is named as x86-64 numbers it (`pt_regs` order, RFLAGS bits).
//!
//! # Format
//!
//! A [`Recipe`] serializes (JSON shown) as:
//!
//! ```json
//! {
//!   "kind": "compare",                       // immediate_load | combine | compare | folded
//!   "span": { "start": 107, "end": 113 },    // V1 offsets: pre-probe at start, post-probe at end
//!   "relation": { "form": "affine", "a": 4096, "b": -1 },
//!   "iv_width": 32,                          // width of IV' as the update uses it
//!   "save": null,                            // or a Place the pre-probe must capture
//!   "update": {
//!     "update": "compare", "op": "cmp", "width": 32,
//!     "input": { "input": "read", "place": { "place": "reg", "reg": { "gpr": "rbp", "width": 32 } } },
//!     "flags": 2261                          // RFLAGS mask the update writes (CF|PF|AF|ZF|SF|OF)
//!   },
//!   "consumers": 65,                         // RFLAGS mask read after the span (CF|ZF: jbe)
//!   "range": {                               // valid V', each bound with its reason
//!     "min": 1, "max": 1048576,
//!     "min_reason": { "reason": "iv_overflow", "width": 32, "domain": "unsigned" },
//!     "max_reason": { "reason": "iv_overflow", "width": 32, "domain": "unsigned" }
//!   }                                        // (+ "restriction": {"only": "power_of_two"} ...)
//! }
//! ```
//!
//! The pieces: [`SynthesisKind`] (`kind`), [`CriticalSpan`] (`span`), [`Relation`]
//! (`relation`, tagged by `form`), [`Width`] (a number of bits), [`Place`] (tagged by
//! `place`), [`Update`] (tagged by `update`) with its [`Input`]s (tagged by `input`),
//! [`FlagSet`] (an RFLAGS mask) and [`ValueRange`] (`range`, reasons tagged by `reason`,
//! restrictions by `only`). Registers are [`RegOperand`]s (`{"gpr": "rbp", "width": 32}`,
//! `"high8": true` for `%ah`..`%bh`), memory operands [`Address`]es.
//!
//! # Semantics
//!
//! `kernelx_x86::symex::RecipeSemantics::apply` is the reference implementation the BPF
//! runtime must match. At the post-probe (the instruction at `span.end`), with
//! `IV' = relation(V')` truncated to `iv_width` ([`Recipe::iv`]):
//!
//! * [`Update::Load`]: `dest = IV'`.
//! * [`Update::Combine`]: `dest = op(input, IV')`, and the flags in `flags` as `op` sets them.
//! * [`Update::Compare`]: the flags in `flags` as `cmp`/`test` of `input` with IV' set them.
//! * [`Update::Divide`]: the registers the magic sequence writes, recomputed with the
//!   multiplier and shift of V' ([`crate::magic::check_form`]), and the flags of its last
//!   instruction.
//!
//! Inputs are read at the post-probe ([`Input::Read`], [`Input::Address`]), recovered from the
//! seed's own result by inverting it with IV(V1) ([`Input::Undo`]: `add`, `sub`, `xor`, `lea`,
//! and `imul` by an odd constant are bijections), or captured by a pre-probe at `span.start`
//! ([`Input::Saved`], when the seed destroys a value it cannot give back). Inputs are
//! zero-extended or truncated to the operation's width. A RIP-relative [`Address`] is relative
//! to the run-time address of `span.start`. What an update may write is [`Recipe::coverage`].

use serde::{Deserialize, Serialize};

use crate::flags::FlagSet;
use crate::magic::MagicForm;
use crate::operand::{Address, Gpr, RegOperand, Width};
use crate::range::{BoundReason, OutOfRange, ValueRange};
use crate::relation::Relation;

/// Where a value lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "place", rename_all = "snake_case")]
pub enum Place {
    /// A register view.
    Reg {
        /// The register.
        reg: RegOperand,
    },
    /// Memory, address recomputed from the registers at the probe.
    Mem {
        /// The address.
        addr: Address,
        /// Access width.
        width: Width,
    },
}

impl Place {
    /// The width of the value.
    pub const fn width(&self) -> Width {
        match self {
            Place::Reg { reg } => reg.width,
            Place::Mem { width, .. } => *width,
        }
    }
}

/// The inverse operation [`Input::Undo`] applies to recover a seed's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UndoOp {
    /// `input = place - operand` (undoes `add`/`lea`).
    Sub,
    /// `input = place + operand` (undoes `sub`).
    Add,
    /// `input = place ^ operand` (undoes `xor`).
    Xor,
    /// `input = place * operand` (undoes `imul` by an odd constant: operand is its inverse
    /// modulo 2^width).
    Mul,
}

/// An input of an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum Input {
    /// Read at the post-probe: the seed did not change it.
    Read {
        /// Where.
        place: Place,
    },
    /// `base + index*scale` as `lea` computes it (64 bits), from registers at the post-probe.
    Address {
        /// Base register.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base: Option<Gpr>,
        /// Index register.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        index: Option<Gpr>,
        /// Scale.
        scale: u8,
    },
    /// The value the pre-probe captured from [`Recipe::save`].
    Saved,
    /// Recovered from the seed's result: `op(place, operand)` at the place's width.
    Undo {
        /// The seed's destination.
        place: Place,
        /// The inverse operation.
        op: UndoOp,
        /// Its constant (derived from IV(V1)).
        operand: u64,
    },
}

/// The operation of a combining update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CombineOp {
    /// `input + IV'`.
    Add,
    /// `input - IV'`.
    Sub,
    /// `input & IV'`.
    And,
    /// `input | IV'`.
    Or,
    /// `input ^ IV'`.
    Xor,
    /// `input << IV'`.
    Shl,
    /// `input >> IV'` (logical).
    Shr,
    /// `input >> IV'` (arithmetic).
    Sar,
    /// `input * IV'` (low half; 3-operand `imul`).
    Imul,
    /// `input + IV'` without flags (`lea` with IV' as displacement).
    Lea,
}

impl CombineOp {
    /// Whether IV' is a shift count.
    pub const fn is_shift(self) -> bool {
        matches!(self, CombineOp::Shl | CombineOp::Shr | CombineOp::Sar)
    }
}

/// The operation of a compare update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareOp {
    /// `cmp $IV', input`: the flags of `input - IV'`.
    Cmp,
    /// `test $IV', input`: the flags of `input & IV'`.
    Test,
}

/// What the post-probe computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "update", rename_all = "snake_case")]
pub enum Update {
    /// `dest = IV'`.
    Load {
        /// Destination (register or the memory just stored).
        dest: Place,
    },
    /// `dest = op(input, IV')` and `flags`.
    Combine {
        /// Operation.
        op: CombineOp,
        /// Destination.
        dest: Place,
        /// The other operand.
        input: Input,
        /// Flags recomputed (those `op` defines for every valid V').
        flags: FlagSet,
    },
    /// The flags of `cmp`/`test` of `input` with IV'.
    Compare {
        /// Operation.
        op: CompareOp,
        /// Operand width.
        width: Width,
        /// The compared value.
        input: Input,
        /// Flags recomputed.
        flags: FlagSet,
    },
    /// An unsigned magic division, recomputed with V's multiplier and shift.
    Divide {
        /// Division width.
        width: Width,
        /// Instruction sequence.
        form: MagicForm,
        /// The 64-bit value the sequence multiplies.
        dividend: Input,
        /// [`MagicForm::ImulImmediateAdd`]: the 32-bit value the fix-up subtracts the high
        /// half of the product from (the dividend again, in another register).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fixup: Option<Input>,
        /// Register receiving the quotient.
        dest: Gpr,
        /// The other register the sequence leaves changed: the one the multiplier is loaded
        /// into, the high half of the product ([`MagicForm::ImulImmediateAdd`]) or the
        /// dividend's sign ([`MagicForm::SignedImulAdd`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        temp: Option<Gpr>,
        /// Flags recomputed.
        flags: FlagSet,
    },
}

/// The synthesis kinds of the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SynthesisKind {
    /// `mov $IV, reg|mem`.
    ImmediateLoad,
    /// `add/sub/and/or/xor/shl/shr/sar/imul/lea` with IV and other inputs.
    Combine,
    /// `cmp/test $IV`.
    Compare,
    /// Constants not affine in V that need more than one instruction recomputed (magic
    /// division). Single-instruction folds (`1 << V`, masks, `log2 V`) are combine/compare/load
    /// updates with an [`Relation::Exp2`] or [`Relation::Log2`] relation.
    Folded,
}

/// The instruction range of a critical span, as offsets of the V1 code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CriticalSpan {
    /// First instruction (the pre-probe goes here when the recipe saves a value).
    pub start: u64,
    /// The instruction after the span (the post-probe goes here).
    pub end: u64,
}

/// What a recipe rewrites.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Registers written.
    pub regs: Vec<RegOperand>,
    /// Memory written.
    pub memory: Option<(Address, Width)>,
    /// Flags written.
    pub flags: FlagSet,
}

/// The synthesized update for one critical span.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipe {
    /// Kind (for reports).
    pub kind: SynthesisKind,
    /// The span, in V1 offsets.
    pub span: CriticalSpan,
    /// IV = f(V) of the seed.
    pub relation: Relation,
    /// Width at which IV' enters the update.
    pub iv_width: Width,
    /// What the pre-probe at `span.start` must capture.
    #[serde(default)]
    pub save: Option<Place>,
    /// What the post-probe computes.
    pub update: Update,
    /// Flags read after the span before being redefined.
    pub consumers: FlagSet,
    /// Valid V'.
    pub range: ValueRange,
}

impl Recipe {
    /// The valid range of V'.
    pub fn valid_range(&self) -> ValueRange {
        self.range
    }

    /// IV' for `v_new` at [`Recipe::iv_width`] (checks the range first).
    pub fn iv(&self, v_new: i64) -> Result<u64, OutOfRange> {
        self.range.check(v_new)?;
        let iv = self.relation.eval(v_new).ok_or(OutOfRange {
            value: v_new,
            min: self.range.min,
            max: self.range.max,
            reason: BoundReason::Unbounded,
        })?;
        Ok((iv as u64) & self.iv_width.mask())
    }

    /// What the recipe rewrites.
    pub fn coverage(&self) -> Coverage {
        let mut c = Coverage::default();
        let mut place = |p: Place| match p {
            Place::Reg { reg } => c.regs.push(reg),
            Place::Mem { addr, width } => c.memory = Some((addr, width)),
        };
        match self.update {
            Update::Load { dest } => place(dest),
            Update::Combine { dest, flags, .. } => {
                place(dest);
                c.flags = flags;
            }
            Update::Compare { flags, .. } => c.flags = flags,
            Update::Divide {
                dest,
                temp,
                form,
                flags,
                ..
            } => {
                c.regs.push(RegOperand::full(dest));
                match (form, temp) {
                    (MagicForm::Mul { .. }, _) => {
                        c.regs.push(RegOperand::full(Gpr::Rax));
                        c.regs.push(RegOperand::full(Gpr::Rdx));
                    }
                    (MagicForm::ImulRegister, Some(t)) => {
                        c.regs.push(RegOperand::new(t, Width::W32))
                    }
                    (MagicForm::ImulImmediateAdd { .. } | MagicForm::SignedImulAdd, Some(t)) => {
                        c.regs.push(RegOperand::full(t));
                    }
                    _ => {}
                }
                c.flags = flags;
            }
        }
        c
    }
}
