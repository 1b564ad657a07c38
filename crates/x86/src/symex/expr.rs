//! Bit-vector expressions over the machine state, and their concrete evaluator.
//!
//! An [`Expr`] is a tree over inputs ([`Var`]: registers and flags before an instruction,
//! the per-CPU segment bases, the immediate IV, a value saved before the seed) and memory
//! loads. Instruction semantics ([`super::sem`]) produce expressions; update recipes
//! ([`super::recipe`]) lower to them; [`Expr::eval`] gives the concrete value under an
//! [`Env`]. Evaluation never panics: a width mismatch, a missing input or an unmapped load is an
//! [`EvalError`].

use std::fmt;

use serde::{Deserialize, Serialize};

use super::bv::{Bv, Width};
use super::flags::{self, Flag, FlagOp, FlagState};
use super::state::{Gpr, Segment};

/// An input of an expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "var", rename_all = "snake_case")]
pub enum Var {
    /// The full 64-bit register before the instruction (or at the probe point, for recipes).
    Reg {
        /// The register.
        gpr: Gpr,
    },
    /// An arithmetic flag (1 bit).
    Flag {
        /// The flag.
        flag: Flag,
    },
    /// The base of `%fs` or `%gs` (64 bits): `%gs:` is the kernel's per-CPU area.
    SegmentBase {
        /// The segment register.
        segment: Segment,
    },
    /// The constant as the instruction encodes it (IV), at the operand width.
    Iv {
        /// The width.
        width: Width,
    },
    /// The value a probe saved before the seed executed.
    Saved {
        /// The width.
        width: Width,
    },
    /// The run-time address of the first instruction of the critical span (64 bits), the
    /// origin of RIP-relative addresses in recipes.
    SpanStart,
}

impl Var {
    /// The register variable.
    pub const fn reg(gpr: Gpr) -> Var {
        Var::Reg { gpr }
    }

    /// The width of the variable's value.
    pub const fn width(self) -> Width {
        match self {
            Var::Reg { .. } | Var::SegmentBase { .. } | Var::SpanStart => Width::W64,
            Var::Flag { .. } => Width::W1,
            Var::Iv { width } | Var::Saved { width } => width,
        }
    }
}

/// A unary operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnOp {
    /// Bitwise complement.
    Not,
    /// Two's complement negation.
    Neg,
}

/// A binary operation; both operands have the same width unless stated otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BinOp {
    /// Wrapping addition.
    Add,
    /// Wrapping subtraction.
    Sub,
    /// Bitwise and.
    And,
    /// Bitwise or.
    Or,
    /// Bitwise exclusive or.
    Xor,
    /// Shift left by the right operand (any width, not masked; past the width gives 0).
    Shl,
    /// Logical shift right (any-width count, not masked).
    Shr,
    /// Arithmetic shift right (any-width count, not masked).
    Sar,
    /// Low half of the product.
    MulLo,
    /// High half of the unsigned double-width product.
    MulHiU,
    /// High half of the signed double-width product.
    MulHiS,
    /// Unsigned quotient (division by zero is an error).
    UDiv,
    /// Unsigned remainder (division by zero is an error).
    URem,
    /// Equality (1 bit).
    Eq,
    /// Unsigned less-than (1 bit).
    Ult,
    /// Signed less-than (1 bit).
    Slt,
}

/// A width conversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CastOp {
    /// Zero extension to a wider (or equal) width.
    ZeroExtend,
    /// Sign extension to a wider (or equal) width.
    SignExtend,
    /// Keep the low bits (to a narrower or equal width).
    Truncate,
}

/// A bit-vector expression.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Expr {
    /// A constant.
    Const(Bv),
    /// An input.
    Var(Var),
    /// A little-endian memory load of `width` at the 64-bit address.
    Load {
        /// Width of the loaded value.
        width: Width,
        /// Address (64 bits).
        addr: Box<Expr>,
    },
    /// A unary operation.
    Unary {
        /// Operation.
        op: UnOp,
        /// Operand.
        arg: Box<Expr>,
    },
    /// A binary operation.
    Binary {
        /// Operation.
        op: BinOp,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// A width conversion.
    Cast {
        /// Conversion.
        op: CastOp,
        /// Target width.
        width: Width,
        /// Operand.
        arg: Box<Expr>,
    },
    /// `cond ? then : otherwise` (only the chosen branch is evaluated).
    Ite {
        /// 1-bit condition.
        cond: Box<Expr>,
        /// Value when the condition is 1.
        then: Box<Expr>,
        /// Value when the condition is 0.
        otherwise: Box<Expr>,
    },
    /// One arithmetic flag after `op` on `lhs`, `rhs` at their (common) width. Evaluates to
    /// [`EvalError::Undefined`] or [`EvalError::Unchanged`] when the operation leaves the flag
    /// so for these operands.
    Flag {
        /// The flag.
        flag: Flag,
        /// The operation.
        op: FlagOp,
        /// First operand.
        lhs: Box<Expr>,
        /// Second operand (the masked count for shifts).
        rhs: Box<Expr>,
    },
}

/// Why an expression has no value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// The environment has no value for an input.
    #[error("no value for {0:?}")]
    Unbound(Var),
    /// A load touched memory the state does not hold.
    #[error("{width} load from unmapped address {addr:#x}")]
    Unmapped {
        /// Address of the access.
        addr: u64,
        /// Width of the access.
        width: Width,
    },
    /// Operands of different widths, or a width an operation does not accept.
    #[error("ill-typed expression: {0}")]
    IllTyped(&'static str),
    /// Division by zero.
    #[error("division by zero")]
    DivisionByZero,
    /// The flag is undefined after this operation (Intel SDM).
    #[error("the flag is undefined after this operation")]
    Undefined,
    /// The operation leaves the flag unchanged for these operands (e.g. a shift by 0).
    #[error("the flag is unchanged by this operation")]
    Unchanged,
}

/// Values of inputs and memory for [`Expr::eval`].
pub trait Env {
    /// The value of an input (only the low `var.width()` bits are used).
    fn var(&self, var: Var) -> Result<u64, EvalError>;
    /// A little-endian load.
    fn load(&self, addr: u64, width: Width) -> Result<u64, EvalError>;
}

impl Expr {
    /// A constant of width `width` (the value is masked to it).
    pub fn constant(width: Width, value: u64) -> Expr {
        Expr::Const(Bv::new(width, value))
    }

    /// A full 64-bit register.
    pub fn reg(gpr: Gpr) -> Expr {
        Expr::Var(Var::reg(gpr))
    }

    /// A flag input.
    pub fn flag_var(flag: Flag) -> Expr {
        Expr::Var(Var::Flag { flag })
    }

    /// A memory load.
    pub fn load(width: Width, addr: Expr) -> Expr {
        Expr::Load {
            width,
            addr: Box::new(addr),
        }
    }

    /// A unary operation.
    pub fn unary(op: UnOp, arg: Expr) -> Expr {
        Expr::Unary {
            op,
            arg: Box::new(arg),
        }
    }

    /// A binary operation.
    pub fn binary(op: BinOp, lhs: Expr, rhs: Expr) -> Expr {
        Expr::Binary {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
        }
    }

    /// A width conversion.
    pub fn cast(op: CastOp, width: Width, arg: Expr) -> Expr {
        Expr::Cast {
            op,
            width,
            arg: Box::new(arg),
        }
    }

    /// Zero extension (or identity) to `width`.
    pub fn zext(self, width: Width) -> Expr {
        Expr::cast(CastOp::ZeroExtend, width, self)
    }

    /// Sign extension (or identity) to `width`.
    pub fn sext(self, width: Width) -> Expr {
        Expr::cast(CastOp::SignExtend, width, self)
    }

    /// Truncation (or identity) to `width`.
    pub fn trunc(self, width: Width) -> Expr {
        Expr::cast(CastOp::Truncate, width, self)
    }

    /// `cond ? then : otherwise`.
    pub fn ite(cond: Expr, then: Expr, otherwise: Expr) -> Expr {
        Expr::Ite {
            cond: Box::new(cond),
            then: Box::new(then),
            otherwise: Box::new(otherwise),
        }
    }

    /// A flag of `op` on two operands.
    pub fn flag(flag: Flag, op: FlagOp, lhs: Expr, rhs: Expr) -> Expr {
        Expr::Flag {
            flag,
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
        }
    }

    /// The width of the expression's value, or why it is ill-typed.
    pub fn width(&self) -> Result<Width, EvalError> {
        Ok(match self {
            Expr::Const(bv) => bv.width(),
            Expr::Var(v) => v.width(),
            Expr::Load { width, addr } => {
                if addr.width()? != Width::W64 {
                    return Err(EvalError::IllTyped("load address must be 64 bits"));
                }
                if *width == Width::W1 {
                    return Err(EvalError::IllTyped("1-bit load"));
                }
                *width
            }
            Expr::Unary { arg, .. } => arg.width()?,
            Expr::Binary { op, lhs, rhs } => {
                let (l, r) = (lhs.width()?, rhs.width()?);
                match op {
                    BinOp::Shl | BinOp::Shr | BinOp::Sar => l,
                    _ if l != r => return Err(EvalError::IllTyped("operands of different widths")),
                    BinOp::Eq | BinOp::Ult | BinOp::Slt => Width::W1,
                    _ => l,
                }
            }
            Expr::Cast { op, width, arg } => {
                let from = arg.width()?;
                let ok = match op {
                    CastOp::ZeroExtend | CastOp::SignExtend => *width >= from,
                    CastOp::Truncate => *width <= from,
                };
                if !ok {
                    return Err(EvalError::IllTyped("cast in the wrong direction"));
                }
                *width
            }
            Expr::Ite {
                cond,
                then,
                otherwise,
            } => {
                if cond.width()? != Width::W1 {
                    return Err(EvalError::IllTyped("condition must be 1 bit"));
                }
                let (t, o) = (then.width()?, otherwise.width()?);
                if t != o {
                    return Err(EvalError::IllTyped("branches of different widths"));
                }
                t
            }
            Expr::Flag { lhs, rhs, .. } => {
                if lhs.width()? != rhs.width()? {
                    return Err(EvalError::IllTyped("flag operands of different widths"));
                }
                Width::W1
            }
        })
    }

    /// Whether the expression reads `var`.
    pub fn mentions(&self, var: Var) -> bool {
        match self {
            Expr::Const(_) => false,
            Expr::Var(v) => *v == var,
            Expr::Load { addr, .. } => addr.mentions(var),
            Expr::Unary { arg, .. } | Expr::Cast { arg, .. } => arg.mentions(var),
            Expr::Binary { lhs, rhs, .. } | Expr::Flag { lhs, rhs, .. } => {
                lhs.mentions(var) || rhs.mentions(var)
            }
            Expr::Ite {
                cond,
                then,
                otherwise,
            } => cond.mentions(var) || then.mentions(var) || otherwise.mentions(var),
        }
    }

    /// The concrete value under `env`.
    pub fn eval(&self, env: &dyn Env) -> Result<Bv, EvalError> {
        Ok(match self {
            Expr::Const(bv) => *bv,
            Expr::Var(v) => Bv::new(v.width(), env.var(*v)?),
            Expr::Load { width, addr } => {
                let a = addr.eval(env)?;
                if a.width() != Width::W64 || *width == Width::W1 {
                    return Err(EvalError::IllTyped("load"));
                }
                Bv::new(*width, env.load(a.unsigned(), *width)?)
            }
            Expr::Unary { op, arg } => {
                let a = arg.eval(env)?;
                let v = match op {
                    UnOp::Not => !a.unsigned(),
                    UnOp::Neg => a.unsigned().wrapping_neg(),
                };
                Bv::new(a.width(), v)
            }
            Expr::Binary { op, lhs, rhs } => {
                let (l, r) = (lhs.eval(env)?, rhs.eval(env)?);
                binary(*op, l, r)?
            }
            Expr::Cast { op, width, arg } => {
                let a = arg.eval(env)?;
                match op {
                    CastOp::ZeroExtend if *width >= a.width() => Bv::new(*width, a.unsigned()),
                    CastOp::SignExtend if *width >= a.width() => {
                        // A 1-bit value sign-extends to all ones.
                        let v = if a.width() == Width::W1 {
                            (a.unsigned() as i64).wrapping_neg()
                        } else {
                            a.signed()
                        };
                        Bv::new(*width, v as u64)
                    }
                    CastOp::Truncate if *width <= a.width() => Bv::new(*width, a.unsigned()),
                    _ => return Err(EvalError::IllTyped("cast in the wrong direction")),
                }
            }
            Expr::Ite {
                cond,
                then,
                otherwise,
            } => {
                let c = cond.eval(env)?;
                if c.width() != Width::W1 {
                    return Err(EvalError::IllTyped("condition must be 1 bit"));
                }
                let (taken, other) = if c.is_true() {
                    (then, otherwise)
                } else {
                    (otherwise, then)
                };
                let v = taken.eval(env)?;
                if other.width()? != v.width() {
                    return Err(EvalError::IllTyped("branches of different widths"));
                }
                v
            }
            Expr::Flag { flag, op, lhs, rhs } => {
                let (l, r) = (lhs.eval(env)?, rhs.eval(env)?);
                if l.width() != r.width() || l.width() == Width::W1 {
                    return Err(EvalError::IllTyped("flag operands"));
                }
                match flags::compute(*op, l.width(), l.unsigned(), r.unsigned()).get(*flag) {
                    FlagState::Value(b) => Bv::bit(b),
                    FlagState::Undefined => return Err(EvalError::Undefined),
                    FlagState::Unchanged => return Err(EvalError::Unchanged),
                }
            }
        })
    }
}

fn binary(op: BinOp, l: Bv, r: Bv) -> Result<Bv, EvalError> {
    let w = l.width();
    let shift_ops = matches!(op, BinOp::Shl | BinOp::Shr | BinOp::Sar);
    if !shift_ops && r.width() != w {
        return Err(EvalError::IllTyped("operands of different widths"));
    }
    let (a, b) = (l.unsigned(), r.unsigned());
    let bits = w.bits();
    Ok(match op {
        BinOp::Add => Bv::new(w, a.wrapping_add(b)),
        BinOp::Sub => Bv::new(w, a.wrapping_sub(b)),
        BinOp::And => Bv::new(w, a & b),
        BinOp::Or => Bv::new(w, a | b),
        BinOp::Xor => Bv::new(w, a ^ b),
        BinOp::Shl => Bv::new(w, if b >= u64::from(bits) { 0 } else { a << b }),
        BinOp::Shr => Bv::new(w, if b >= u64::from(bits) { 0 } else { a >> b }),
        BinOp::Sar => Bv::new(w, (l.signed() >> b.min(63)) as u64),
        BinOp::MulLo => Bv::new(w, a.wrapping_mul(b)),
        BinOp::MulHiU => Bv::new(w, ((u128::from(a) * u128::from(b)) >> bits) as u64),
        BinOp::MulHiS => {
            let p = i128::from(l.signed()) * i128::from(r.signed());
            Bv::new(w, (p >> bits) as u64)
        }
        BinOp::UDiv | BinOp::URem => {
            if b == 0 {
                return Err(EvalError::DivisionByZero);
            }
            Bv::new(w, if op == BinOp::UDiv { a / b } else { a % b })
        }
        BinOp::Eq => Bv::bit(a == b),
        BinOp::Ult => Bv::bit(a < b),
        BinOp::Slt => Bv::bit(l.signed() < r.signed()),
    })
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Const(bv) => write!(f, "{bv}"),
            Expr::Var(Var::Reg { gpr }) => write!(f, "%{}", gpr.name()),
            Expr::Var(Var::Flag { flag }) => f.write_str(flag.name()),
            Expr::Var(Var::SegmentBase { segment }) => write!(f, "{segment:?}.base"),
            Expr::Var(Var::Iv { width }) => write!(f, "IV:{}", width.bits()),
            Expr::Var(Var::Saved { width }) => write!(f, "saved:{}", width.bits()),
            Expr::Var(Var::SpanStart) => f.write_str("span_start"),
            Expr::Load { width, addr } => write!(f, "mem{}[{addr}]", width.bits()),
            Expr::Unary { op, arg } => write!(f, "{op:?}({arg})"),
            Expr::Binary { op, lhs, rhs } => write!(f, "{op:?}({lhs}, {rhs})"),
            Expr::Cast { op, width, arg } => write!(f, "{op:?}{}({arg})", width.bits()),
            Expr::Ite {
                cond,
                then,
                otherwise,
            } => write!(f, "({cond} ? {then} : {otherwise})"),
            Expr::Flag { flag, op, lhs, rhs } => write!(f, "{}.{op:?}({lhs}, {rhs})", flag.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Regs([u64; 16]);

    impl Env for Regs {
        fn var(&self, var: Var) -> Result<u64, EvalError> {
            match var {
                Var::Reg { gpr } => Ok(self.0[gpr.index()]),
                other => Err(EvalError::Unbound(other)),
            }
        }
        fn load(&self, addr: u64, width: Width) -> Result<u64, EvalError> {
            Err(EvalError::Unmapped { addr, width })
        }
    }

    #[test]
    fn evaluates_mul_halves_and_extensions() {
        let mut regs = [0u64; 16];
        regs[Gpr::Rax.index()] = 0xffff_ffff_ffff_fffe;
        regs[Gpr::Rdi.index()] = 3;
        let env = Regs(regs);
        let lo = Expr::binary(BinOp::MulLo, Expr::reg(Gpr::Rax), Expr::reg(Gpr::Rdi));
        assert_eq!(lo.eval(&env).unwrap().signed(), -6);
        let hi = Expr::binary(BinOp::MulHiU, Expr::reg(Gpr::Rax), Expr::reg(Gpr::Rdi));
        assert_eq!(hi.eval(&env).unwrap().unsigned(), 2);
        let his = Expr::binary(BinOp::MulHiS, Expr::reg(Gpr::Rax), Expr::reg(Gpr::Rdi));
        assert_eq!(his.eval(&env).unwrap().signed(), -1);
        let byte = Expr::reg(Gpr::Rax).trunc(Width::W8).sext(Width::W32);
        assert_eq!(byte.eval(&env).unwrap(), Bv::new(Width::W32, 0xffff_fffe));
        assert_eq!(byte.width(), Ok(Width::W32));
    }

    #[test]
    fn reports_errors_instead_of_panicking() {
        let env = Regs([0; 16]);
        let bad = Expr::binary(
            BinOp::Add,
            Expr::constant(Width::W8, 1),
            Expr::constant(Width::W16, 1),
        );
        assert!(matches!(bad.eval(&env), Err(EvalError::IllTyped(_))));
        let div = Expr::binary(
            BinOp::UDiv,
            Expr::constant(Width::W8, 1),
            Expr::constant(Width::W8, 0),
        );
        assert_eq!(div.eval(&env), Err(EvalError::DivisionByZero));
        let shift0 = Expr::flag(
            Flag::Cf,
            FlagOp::Shl,
            Expr::constant(Width::W32, 1),
            Expr::constant(Width::W32, 0),
        );
        assert_eq!(shift0.eval(&env), Err(EvalError::Unchanged));
        let load = Expr::load(Width::W32, Expr::constant(Width::W64, 0x1000));
        assert!(matches!(
            load.eval(&env),
            Err(EvalError::Unmapped { addr: 0x1000, .. })
        ));
    }
}
