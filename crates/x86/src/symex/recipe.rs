//! Update recipes: serde data saying how a probe after a critical span turns the state the
//! V1 code left into the state the V' code would have left.
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
//! # Semantics
//!
//! [`Recipe::apply`] is the reference the BPF runtime must match. At the post-probe (the
//! instruction at `span.end`), with `IV' = relation(V')` truncated to `iv_width`:
//!
//! * [`Update::Load`]: `dest = IV'`.
//! * [`Update::Combine`]: `dest = op(input, IV')`, and the flags in `flags` as `op` sets them.
//! * [`Update::Compare`]: the flags in `flags` as `cmp`/`test` of `input` with IV' set them.
//! * [`Update::Divide`]: the registers the magic sequence writes, recomputed with the
//!   multiplier and shift of V' ([`super::magic::check_form`]), and the flags of its last
//!   instruction.
//!
//! Inputs are read at the post-probe ([`Input::Read`], [`Input::Address`]), recovered from the
//! seed's own result by inverting it with IV(V1) ([`Input::Undo`]: `add`, `sub`, `xor`, `lea`,
//! and `imul` by an odd constant are bijections), or captured by a pre-probe at `span.start`
//! ([`Input::Saved`], when the seed destroys a value it cannot give back). Inputs are
//! zero-extended or truncated to the operation's width. A RIP-relative [`Address`] is relative
//! to the run-time address of `span.start`.

use serde::{Deserialize, Serialize};

use super::bv::Width;
use super::error::SymexError;
use super::expr::{BinOp, Env, EvalError, Expr, Var};
use super::flags::{Flag, FlagOp, FlagSet};
use super::magic::{self, MagicForm};
use super::range::{BoundReason, ValueRange};
use super::relation::Relation;
use super::sem::{self, Effect, Step};
use super::state::{Address, Gpr, MachineState, RegOperand};

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

    /// The value as an expression over the state.
    pub fn read(&self) -> Expr {
        match self {
            Place::Reg { reg } => reg.expr(),
            Place::Mem { addr, width } => Expr::load(*width, addr.expr()),
        }
    }

    /// The effect of writing `value` here.
    pub fn write(&self, value: Expr) -> Effect {
        match *self {
            Place::Reg { reg } => Effect::Reg { dest: reg, value },
            Place::Mem { addr, width } => Effect::Store {
                addr: addr.expr(),
                width,
                value,
            },
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

impl Input {
    /// The input at `width` (zero-extended or truncated from its natural width).
    pub fn expr(&self, width: Width, save: Option<Place>) -> Result<Expr, EvalError> {
        let raw = match *self {
            Input::Read { place } => place.read(),
            Input::Address { base, index, scale } => {
                let mut e = Expr::constant(Width::W64, 0);
                if let Some(b) = base {
                    e = Expr::binary(BinOp::Add, e, Expr::reg(b));
                }
                if let Some(i) = index {
                    let s = Expr::binary(
                        BinOp::MulLo,
                        Expr::reg(i),
                        Expr::constant(Width::W64, u64::from(scale)),
                    );
                    e = Expr::binary(BinOp::Add, e, s);
                }
                e
            }
            Input::Saved => {
                let w = save
                    .ok_or(EvalError::Unbound(Var::Saved { width }))?
                    .width();
                Expr::Var(Var::Saved { width: w })
            }
            Input::Undo { place, op, operand } => {
                let w = place.width();
                let k = Expr::constant(w, operand);
                let op = match op {
                    UndoOp::Sub => BinOp::Sub,
                    UndoOp::Add => BinOp::Add,
                    UndoOp::Xor => BinOp::Xor,
                    UndoOp::Mul => BinOp::MulLo,
                };
                Expr::binary(op, place.read(), k)
            }
        };
        let from = raw.width()?;
        Ok(if from < width {
            raw.zext(width)
        } else {
            raw.trunc(width)
        })
    }
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
    fn flag_op(self) -> Option<FlagOp> {
        Some(match self {
            CombineOp::Add => FlagOp::Add,
            CombineOp::Sub => FlagOp::Sub,
            CombineOp::And | CombineOp::Or | CombineOp::Xor => FlagOp::Logic,
            CombineOp::Shl => FlagOp::Shl,
            CombineOp::Shr => FlagOp::Shr,
            CombineOp::Sar => FlagOp::Sar,
            CombineOp::Imul => FlagOp::Imul,
            CombineOp::Lea => return None,
        })
    }

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
        /// Register receiving the quotient.
        dest: Gpr,
        /// Register the multiplier is loaded into, if any.
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

/// A value captured by the pre-probe (empty when the recipe saves nothing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Saved(pub Option<u64>);

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

struct RecipeEnv<'a> {
    state: &'a MachineState,
    saved: Saved,
    span_start: u64,
}

impl Env for RecipeEnv<'_> {
    fn var(&self, var: Var) -> Result<u64, EvalError> {
        match var {
            Var::Saved { .. } => self.saved.0.ok_or(EvalError::Unbound(var)),
            Var::SpanStart => Ok(self.span_start),
            other => self.state.var(other),
        }
    }

    fn load(&self, addr: u64, width: Width) -> Result<u64, EvalError> {
        self.state.load(addr, width)
    }
}

impl Recipe {
    /// The valid range of V'.
    pub fn valid_range(&self) -> ValueRange {
        self.range
    }

    /// IV' for `v_new` at [`Recipe::iv_width`] (checks the range first).
    pub fn iv(&self, v_new: i64) -> Result<u64, SymexError> {
        self.range.check(v_new)?;
        let iv = self.relation.eval(v_new).ok_or(SymexError::OutOfRange {
            value: v_new,
            min: self.range.min,
            max: self.range.max,
            reason: BoundReason::Unbounded,
        })?;
        Ok((iv as u64) & self.iv_width.mask())
    }

    /// Runs the pre-probe: captures [`Recipe::save`] from the state at `span.start` (whose
    /// `rip` is the run-time address of `span.start`).
    pub fn capture(&self, state: &MachineState) -> Result<Saved, SymexError> {
        let Some(place) = self.save else {
            return Ok(Saved(None));
        };
        let env = RecipeEnv {
            state,
            saved: Saved(None),
            span_start: state.rip,
        };
        Ok(Saved(Some(place.read().eval(&env)?.unsigned())))
    }

    /// The post-probe's effects for `v_new`, as expressions over the state at the probe,
    /// [`Var::Saved`] and [`Var::SpanStart`].
    pub fn effects(&self, v_new: i64) -> Result<Vec<Effect>, SymexError> {
        let iv = self.iv(v_new)?;
        let mut fx = Vec::new();
        match self.update {
            Update::Load { dest } => fx.push(dest.write(Expr::constant(dest.width(), iv))),
            Update::Combine {
                op,
                dest,
                input,
                flags,
            } => {
                let w = dest.width();
                let a = input.expr(w, self.save)?;
                let b = Expr::constant(w, iv);
                let count_mask = if w == Width::W64 { 0x3f } else { 0x1f };
                let count = Expr::constant(Width::W8, iv & count_mask);
                let result = match op {
                    CombineOp::Add | CombineOp::Lea => {
                        Expr::binary(BinOp::Add, a.clone(), b.clone())
                    }
                    CombineOp::Sub => Expr::binary(BinOp::Sub, a.clone(), b.clone()),
                    CombineOp::And => Expr::binary(BinOp::And, a.clone(), b.clone()),
                    CombineOp::Or => Expr::binary(BinOp::Or, a.clone(), b.clone()),
                    CombineOp::Xor => Expr::binary(BinOp::Xor, a.clone(), b.clone()),
                    CombineOp::Shl => Expr::binary(BinOp::Shl, a.clone(), count.clone()),
                    CombineOp::Shr => Expr::binary(BinOp::Shr, a.clone(), count.clone()),
                    CombineOp::Sar => Expr::binary(BinOp::Sar, a.clone(), count.clone()),
                    CombineOp::Imul => Expr::binary(BinOp::MulLo, a.clone(), b.clone()),
                };
                if let Some(fop) = op.flag_op() {
                    let (l, r) = match fop {
                        FlagOp::Logic => (result.clone(), Expr::constant(w, 0)),
                        FlagOp::Shl | FlagOp::Shr | FlagOp::Sar => (a, count.zext(w)),
                        _ => (a, b),
                    };
                    push_flags(&mut fx, flags, fop, &l, &r);
                }
                fx.push(dest.write(result));
            }
            Update::Compare {
                op,
                width,
                input,
                flags,
            } => {
                let a = input.expr(width, self.save)?;
                let b = Expr::constant(width, iv);
                match op {
                    CompareOp::Cmp => push_flags(&mut fx, flags, FlagOp::Sub, &a, &b),
                    CompareOp::Test => {
                        let r = Expr::binary(BinOp::And, a, b);
                        push_flags(&mut fx, flags, FlagOp::Logic, &r, &Expr::constant(width, 0))
                    }
                }
            }
            Update::Divide {
                width,
                form,
                dividend,
                dest,
                temp,
                flags,
            } => {
                let (m, shift) = magic::check_form(v_new, width, form).map_err(|mismatch| {
                    self.out_of_range(v_new, BoundReason::MagicShape { mismatch })
                })?;
                let x = dividend.expr(Width::W64, self.save)?;
                let m64 = Expr::constant(Width::W64, m);
                let count = Expr::constant(Width::W8, u64::from(shift));
                match form {
                    MagicForm::ImulImmediate | MagicForm::ImulRegister => {
                        if let (MagicForm::ImulRegister, Some(t)) = (form, temp) {
                            fx.push(Effect::Reg {
                                dest: RegOperand::new(t, Width::W32),
                                value: Expr::constant(Width::W32, m),
                            });
                        }
                        let product = Expr::binary(BinOp::MulLo, x, m64);
                        push_flags(
                            &mut fx,
                            flags,
                            FlagOp::Shr,
                            &product,
                            &count.clone().zext(Width::W64),
                        );
                        let q = Expr::binary(BinOp::Shr, product, count);
                        fx.push(Effect::Reg {
                            dest: RegOperand::full(dest),
                            value: q,
                        });
                    }
                    MagicForm::Mul { shifted } => {
                        let lo = Expr::binary(BinOp::MulLo, m64.clone(), x.clone());
                        let hi = Expr::binary(BinOp::MulHiU, m64.clone(), x.clone());
                        let q = if shifted {
                            push_flags(
                                &mut fx,
                                flags,
                                FlagOp::Shr,
                                &hi,
                                &count.clone().zext(Width::W64),
                            );
                            Expr::binary(BinOp::Shr, hi.clone(), count)
                        } else {
                            push_flags(&mut fx, flags, FlagOp::Mul, &m64, &x);
                            hi.clone()
                        };
                        let full = RegOperand::full;
                        if dest != Gpr::Rax {
                            fx.push(Effect::Reg {
                                dest: full(Gpr::Rax),
                                value: lo,
                            });
                        }
                        if dest != Gpr::Rdx {
                            fx.push(Effect::Reg {
                                dest: full(Gpr::Rdx),
                                value: hi,
                            });
                        }
                        fx.push(Effect::Reg {
                            dest: full(dest),
                            value: q,
                        });
                    }
                }
            }
        }
        Ok(fx)
    }

    /// Runs the post-probe: rewrites `state` (the state at `span.end`, whose `rip` is the
    /// run-time address of `span.end`) into the state the V' code leaves there. `saved` comes
    /// from [`Recipe::capture`] at `span.start` of the same execution.
    #[doc(alias = "bpf_kx_set_reg")]
    pub fn apply(
        &self,
        state: &mut MachineState,
        saved: Saved,
        v_new: i64,
    ) -> Result<(), SymexError> {
        let fx = self.effects(v_new)?;
        let before = state.clone();
        let env = RecipeEnv {
            state: &before,
            saved,
            span_start: state.rip.wrapping_sub(self.span.end - self.span.start),
        };
        let mut step = Step::default();
        sem::apply_effects_env(&fx, &env, state, &mut step)
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
                if let MagicForm::Mul { .. } = form {
                    c.regs.push(RegOperand::full(Gpr::Rax));
                    c.regs.push(RegOperand::full(Gpr::Rdx));
                } else if let (MagicForm::ImulRegister, Some(t)) = (form, temp) {
                    c.regs.push(RegOperand::new(t, Width::W32));
                }
                c.flags = flags;
            }
        }
        c
    }

    fn out_of_range(&self, value: i64, reason: BoundReason) -> SymexError {
        SymexError::OutOfRange {
            value,
            min: self.range.min,
            max: self.range.max,
            reason,
        }
    }
}

fn push_flags(fx: &mut Vec<Effect>, flags: FlagSet, op: FlagOp, lhs: &Expr, rhs: &Expr) {
    for flag in Flag::ALL.into_iter().filter(|f| flags.contains(*f)) {
        fx.push(Effect::Flag {
            flag,
            value: Expr::flag(flag, op, lhs.clone(), rhs.clone()),
        });
    }
}
