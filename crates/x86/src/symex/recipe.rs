//! Update recipes: how a probe after a critical span turns the state the V1 code left into
//! the state the V' code would have left.
//!
//! The recipe is plan data: [`Recipe`] and its vocabulary live in `kernelx_plan::recipe`, which
//! documents the format. This module gives a recipe its meaning over the symbolic machine:
//! [`RecipeSemantics`] (the probes' effects as [`Expr`]essions, and a concrete run of them),
//! [`PlaceExt`] and [`InputExt`] (places and inputs as expressions).
//!
//! # Semantics
//!
//! [`RecipeSemantics::apply`] is the reference the BPF runtime must match. At the post-probe
//! (the instruction at `span.end`), with `IV' = relation(V')` truncated to `iv_width`
//! ([`Recipe::iv`]):
//!
//! * [`Update::Load`]: `dest = IV'`.
//! * [`Update::Combine`]: `dest = op(input, IV')`, and the flags in `flags` as `op` sets them.
//! * [`Update::Compare`]: the flags in `flags` as `cmp`/`test` of `input` with IV' set them.
//! * [`Update::Divide`]: the registers the magic sequence writes, recomputed with the
//!   multiplier and shift of V' ([`super::magic::check_form`]), and the flags of its last
//!   instruction. The add fix-up form reads the dividend twice, as its code does: the 64-bit
//!   value it multiplies (`dividend`) and the 32-bit value the fix-up starts from (`fixup`).
//!
//! Inputs are read at the post-probe ([`Input::Read`], [`Input::Address`]), recovered from the
//! seed's own result by inverting it with IV(V1) ([`Input::Undo`]: `add`, `sub`, `xor`, `lea`,
//! and `imul` by an odd constant are bijections), or captured by a pre-probe at `span.start`
//! ([`Input::Saved`], when the seed destroys a value it cannot give back). Inputs are
//! zero-extended or truncated to the operation's width. A RIP-relative
//! [`Address`](super::state::Address) is relative to the run-time address of `span.start`.

use super::bv::Width;
use super::error::SymexError;
use super::expr::{BinOp, Env, EvalError, Expr, Var};
use super::flags::{Flag, FlagOp, FlagSet};
use super::magic::{self, MagicForm};
use super::range::BoundReason;
use super::sem::{self, Effect, Step};
use super::state::{AddressExt, Gpr, MachineState, RegOperand, RegOperandExt};

// The recipe vocabulary is plan data: the runtime reads it without this crate.
pub use kernelx_plan::recipe::{
    CombineOp, CompareOp, Coverage, CriticalSpan, Input, Place, Recipe, SynthesisKind, UndoOp,
    Update,
};

/// A [`Place`] as an expression over the state.
pub trait PlaceExt {
    /// The value as an expression over the state.
    fn read(&self) -> Expr;

    /// The effect of writing `value` here.
    fn write(&self, value: Expr) -> Effect;
}

impl PlaceExt for Place {
    fn read(&self) -> Expr {
        match self {
            Place::Reg { reg } => reg.expr(),
            Place::Mem { addr, width } => Expr::load(*width, addr.expr()),
        }
    }

    fn write(&self, value: Expr) -> Effect {
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

/// An [`Input`] as an expression over the state at the post-probe.
pub trait InputExt {
    /// The input at `width` (zero-extended or truncated from its natural width).
    fn expr(&self, width: Width, save: Option<Place>) -> Result<Expr, EvalError>;
}

impl InputExt for Input {
    fn expr(&self, width: Width, save: Option<Place>) -> Result<Expr, EvalError> {
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

/// The flags `op` computes, as [`FlagOp`] (`None` for `lea`, which sets none).
fn flag_op(op: CombineOp) -> Option<FlagOp> {
    Some(match op {
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

/// A value captured by the pre-probe (empty when the recipe saves nothing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Saved(pub Option<u64>);

/// What a [`Recipe`] means: its probes as expressions and as a concrete run.
///
/// This is the reference semantics of the recipe format; `kernelx_plan` holds the data.
pub trait RecipeSemantics {
    /// Runs the pre-probe: captures [`Recipe::save`] from the state at `span.start` (whose
    /// `rip` is the run-time address of `span.start`).
    fn capture(&self, state: &MachineState) -> Result<Saved, SymexError>;

    /// The post-probe's effects for `v_new`, as expressions over the state at the probe,
    /// [`Var::Saved`] and [`Var::SpanStart`].
    fn effects(&self, v_new: i64) -> Result<Vec<Effect>, SymexError>;

    /// Runs the post-probe: rewrites `state` (the state at `span.end`, whose `rip` is the
    /// run-time address of `span.end`) into the state the V' code leaves there. `saved` comes
    /// from [`RecipeSemantics::capture`] at `span.start` of the same execution.
    #[doc(alias = "bpf_kx_set_reg")]
    fn apply(&self, state: &mut MachineState, saved: Saved, v_new: i64) -> Result<(), SymexError>;
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

impl RecipeSemantics for Recipe {
    fn capture(&self, state: &MachineState) -> Result<Saved, SymexError> {
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

    fn effects(&self, v_new: i64) -> Result<Vec<Effect>, SymexError> {
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
                if let Some(fop) = flag_op(op) {
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
                fixup,
                dest,
                temp,
                flags,
            } => {
                let (m, shift) = magic::check_form(v_new, width, form).map_err(|mismatch| {
                    out_of_range(self, v_new, BoundReason::MagicShape { mismatch })
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
                    MagicForm::ImulImmediateAdd { into_high } => {
                        let (Some(other), Some(fixup)) = (temp, fixup) else {
                            return Err(SymexError::MalformedRecipe {
                                what: "an add fix-up division without `temp` and `fixup`",
                            });
                        };
                        // t = mulhi(x, 2^32 + m) - x, as the 64-bit imul and `shr $32` give it;
                        // then q = (t + ((x - t) >> 1)) >> (s - 1) in 32 bits.
                        let product = Expr::binary(BinOp::MulLo, x, m64);
                        let high = Expr::binary(BinOp::Shr, product, Expr::constant(Width::W8, 32));
                        let t32 = high.clone().trunc(Width::W32);
                        let x32 = fixup.expr(Width::W32, self.save)?;
                        let diff = Expr::binary(BinOp::Sub, x32, t32.clone());
                        let half = Expr::binary(BinOp::Shr, diff, Expr::constant(Width::W8, 1));
                        let sum = Expr::binary(BinOp::Add, half.clone(), t32.clone());
                        push_flags(
                            &mut fx,
                            flags,
                            FlagOp::Shr,
                            &sum,
                            &count.clone().zext(Width::W32),
                        );
                        let q = Expr::binary(BinOp::Shr, sum, count);
                        // The register that does not get the sum keeps the high half (64-bit
                        // `shr`) or the halved difference (32-bit `shr`).
                        let (other_width, other_value) = if into_high {
                            (Width::W32, half)
                        } else {
                            (Width::W64, high)
                        };
                        fx.push(Effect::Reg {
                            dest: RegOperand::new(other, other_width),
                            value: other_value,
                        });
                        fx.push(Effect::Reg {
                            dest: RegOperand::new(dest, Width::W32),
                            value: q,
                        });
                    }
                    MagicForm::SignedImulAdd => {
                        let Some(sign_reg) = temp else {
                            return Err(SymexError::MalformedRecipe {
                                what: "a signed division without `temp`",
                            });
                        };
                        // q = ((mulhs(x, m) + x) >> s) - (x >> 31), all in 32 bits but the
                        // product, which the code forms from x sign-extended to 64 bits.
                        let x32 = dividend.expr(Width::W32, self.save)?;
                        let m_sext = Expr::constant(Width::W64, m as u32 as i32 as i64 as u64);
                        let product =
                            Expr::binary(BinOp::MulLo, x32.clone().sext(Width::W64), m_sext);
                        let high = Expr::binary(BinOp::Shr, product, Expr::constant(Width::W8, 32))
                            .trunc(Width::W32);
                        let sum = Expr::binary(BinOp::Add, high, x32.clone());
                        let sign = Expr::binary(BinOp::Sar, x32, Expr::constant(Width::W8, 31));
                        let shifted_sum = Expr::binary(BinOp::Sar, sum, count);
                        push_flags(&mut fx, flags, FlagOp::Sub, &shifted_sum, &sign);
                        let q = Expr::binary(BinOp::Sub, shifted_sum, sign.clone());
                        fx.push(Effect::Reg {
                            dest: RegOperand::new(sign_reg, Width::W32),
                            value: sign,
                        });
                        fx.push(Effect::Reg {
                            dest: RegOperand::new(dest, Width::W32),
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

    fn apply(&self, state: &mut MachineState, saved: Saved, v_new: i64) -> Result<(), SymexError> {
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
}

fn out_of_range(recipe: &Recipe, value: i64, reason: BoundReason) -> SymexError {
    SymexError::OutOfRange {
        value,
        min: recipe.range.min,
        max: recipe.range.max,
        reason,
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
