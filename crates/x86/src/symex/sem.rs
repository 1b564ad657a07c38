//! Instruction semantics: an iced [`Instruction`] as a list of [`Effect`]s over the state
//! before it, and a concrete executor built on them.
//!
//! Modelled: `mov` (register, memory, immediate; RIP-relative, indexed and `%fs:`/`%gs:`
//! addresses), `movzx`/`movsx`/`movsxd`, `lea`, `add/sub/and/or/xor/cmp/test`,
//! `inc/dec/neg/not`, `shl/sal/shr/sar` (immediate, 1, `%cl`), `imul` (1, 2 and 3 operands),
//! `mul`, `cbw/cwde/cdqe/cwd/cdq/cqo`, `jcc`, `setcc`, `cmovcc`, `nop`/`endbr64`. Anything else
//! is [`SymexError::UnknownInstruction`], never a guess.

use iced_x86::{Instruction, Mnemonic, OpKind, Register};

use super::bv::{Bv, Width};
use super::error::{SymexError, att};
use super::expr::{BinOp, EvalError, Expr, UnOp, Var};
use super::flags::{Condition, Flag, FlagOp, FlagSet};
use super::state::{Gpr, MachineState, RegOperand, RegOperandExt, Segment};

/// One architectural effect of an instruction; every expression reads the state *before* the
/// instruction (effects of one instruction happen in parallel).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Write a register view (with x86's sub-register rules).
    Reg {
        /// Destination.
        dest: RegOperand,
        /// Value of `dest.width`.
        value: Expr,
    },
    /// Store `width` bytes at a 64-bit address.
    Store {
        /// Address.
        addr: Expr,
        /// Width.
        width: Width,
        /// Value of `width`.
        value: Expr,
    },
    /// Set an arithmetic flag; the expression may evaluate to
    /// [`EvalError::Undefined`]/[`EvalError::Unchanged`].
    Flag {
        /// The flag.
        flag: Flag,
        /// 1-bit value.
        value: Expr,
    },
    /// A conditional branch.
    Branch {
        /// 1-bit condition.
        cond: Expr,
        /// Target address.
        target: u64,
    },
}

/// Which operand of an instruction is replaced by the symbolic constant [`Var::Iv`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    /// The immediate operand (at the operation's width; shift counts at 8 bits).
    Immediate,
    /// The memory displacement (64 bits, sign-extended).
    Displacement,
}

/// The effects of `insn`.
pub fn effects(insn: &Instruction) -> Result<Vec<Effect>, SymexError> {
    effects_with(insn, None)
}

/// The effects of `insn`, with `param` (if any) replaced by [`Var::Iv`].
pub fn effects_with(insn: &Instruction, param: Option<Param>) -> Result<Vec<Effect>, SymexError> {
    Lifter { insn, param }
        .lift()
        .map_err(|reason| unknown(insn, reason))
}

pub(crate) fn unknown(insn: &Instruction, reason: &'static str) -> SymexError {
    SymexError::UnknownInstruction {
        ip: insn.ip(),
        text: att(insn),
        reason,
    }
}

/// The registers an instruction writes (from its effects).
pub fn written_gprs(effects: &[Effect]) -> Vec<Gpr> {
    let mut out: Vec<Gpr> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Reg { dest, .. } => Some(dest.gpr),
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The flags whose effect expression is present (written, possibly undefined/unchanged).
pub fn touched_flags(effects: &[Effect]) -> FlagSet {
    effects.iter().fold(FlagSet::EMPTY, |acc, e| match e {
        Effect::Flag { flag, .. } => acc.with(*flag),
        _ => acc,
    })
}

/// What executing one instruction did besides changing the state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Flags the instruction left undefined (their old values were kept).
    pub undefined: FlagSet,
    /// For a conditional branch: whether it was taken.
    pub taken: Option<bool>,
}

/// Executes `insn` on `state` concretely (through its effects); `rip` moves to the next
/// instruction or to the branch target.
pub fn execute(insn: &Instruction, state: &mut MachineState) -> Result<Step, SymexError> {
    let fx = effects(insn)?;
    let mut step = Step::default();
    apply_effects(&fx, state, &mut step)?;
    state.rip = match step.taken {
        Some(true) => fx
            .iter()
            .find_map(|e| match e {
                Effect::Branch { target, .. } => Some(*target),
                _ => None,
            })
            .unwrap_or(insn.next_ip()),
        _ => insn.next_ip(),
    };
    Ok(step)
}

/// Evaluates `effects` against `env` (the state before) and commits them to `state`.
pub(crate) fn apply_effects_env(
    fx: &[Effect],
    env: &dyn super::expr::Env,
    state: &mut MachineState,
    step: &mut Step,
) -> Result<(), SymexError> {
    enum Done {
        Reg(RegOperand, u64),
        Store(u64, Width, u64),
        Flag(Flag, bool),
        Undefined(Flag),
    }
    let mut done = Vec::with_capacity(fx.len());
    for e in fx {
        match e {
            Effect::Reg { dest, value } => done.push(Done::Reg(*dest, value.eval(env)?.unsigned())),
            Effect::Store { addr, width, value } => done.push(Done::Store(
                addr.eval(env)?.unsigned(),
                *width,
                value.eval(env)?.unsigned(),
            )),
            Effect::Flag { flag, value } => match value.eval(env) {
                Ok(v) => done.push(Done::Flag(*flag, v.is_true())),
                Err(EvalError::Unchanged) => {}
                Err(EvalError::Undefined) => done.push(Done::Undefined(*flag)),
                Err(err) => return Err(err.into()),
            },
            Effect::Branch { cond, .. } => step.taken = Some(cond.eval(env)?.is_true()),
        }
    }
    for d in done {
        match d {
            Done::Reg(r, v) => state.write_reg(r, v),
            Done::Store(a, w, v) => state.memory.write(a, w, v)?,
            Done::Flag(f, v) => state.set_flag(f, v),
            Done::Undefined(f) => step.undefined = step.undefined.with(f),
        }
    }
    Ok(())
}

fn apply_effects(
    fx: &[Effect],
    state: &mut MachineState,
    step: &mut Step,
) -> Result<(), SymexError> {
    let before = state.clone();
    apply_effects_env(fx, &before, state, step)
}

/// The 1-bit expression of a condition over the flag inputs.
pub fn condition_expr(cc: Condition) -> Expr {
    let f = Expr::flag_var;
    let or = |a, b| Expr::binary(BinOp::Or, a, b);
    let xor = |a, b| Expr::binary(BinOp::Xor, a, b);
    let not = |a| Expr::unary(UnOp::Not, a);
    match cc {
        Condition::O => f(Flag::Of),
        Condition::No => not(f(Flag::Of)),
        Condition::B => f(Flag::Cf),
        Condition::Ae => not(f(Flag::Cf)),
        Condition::E => f(Flag::Zf),
        Condition::Ne => not(f(Flag::Zf)),
        Condition::Be => or(f(Flag::Cf), f(Flag::Zf)),
        Condition::A => not(or(f(Flag::Cf), f(Flag::Zf))),
        Condition::S => f(Flag::Sf),
        Condition::Ns => not(f(Flag::Sf)),
        Condition::P => f(Flag::Pf),
        Condition::Np => not(f(Flag::Pf)),
        Condition::L => xor(f(Flag::Sf), f(Flag::Of)),
        Condition::Ge => not(xor(f(Flag::Sf), f(Flag::Of))),
        Condition::Le => or(f(Flag::Zf), xor(f(Flag::Sf), f(Flag::Of))),
        Condition::G => not(or(f(Flag::Zf), xor(f(Flag::Sf), f(Flag::Of)))),
    }
}

/// The flag effects of `op` on `lhs`, `rhs` for every arithmetic flag.
pub fn flag_effects(op: FlagOp, lhs: &Expr, rhs: &Expr) -> Vec<Effect> {
    Flag::ALL
        .iter()
        .map(|&flag| Effect::Flag {
            flag,
            value: Expr::flag(flag, op, lhs.clone(), rhs.clone()),
        })
        .collect()
}

type Lift<T> = Result<T, &'static str>;

struct Lifter<'a> {
    insn: &'a Instruction,
    param: Option<Param>,
}

impl Lifter<'_> {
    fn lift(&self) -> Lift<Vec<Effect>> {
        let insn = self.insn;
        if insn.has_lock_prefix() || insn.has_rep_prefix() || insn.has_repne_prefix() {
            return Err("lock/rep prefixes are not modelled");
        }
        let m = insn.mnemonic();
        match m {
            Mnemonic::Nop | Mnemonic::Endbr64 => Ok(Vec::new()),
            Mnemonic::Mov => {
                self.expect_ops(2)?;
                let w = self.width(0)?;
                let v = self.read(1, w)?;
                Ok(vec![self.write(0, v)?])
            }
            Mnemonic::Movzx | Mnemonic::Movsx | Mnemonic::Movsxd => {
                self.expect_ops(2)?;
                let (dw, sw) = (self.width(0)?, self.width(1)?);
                let src = self.read(1, sw)?;
                let v = if m == Mnemonic::Movzx {
                    src.zext(dw)
                } else {
                    src.sext(dw)
                };
                Ok(vec![self.write(0, v)?])
            }
            Mnemonic::Lea => {
                self.expect_ops(2)?;
                let w = self.width(0)?;
                let addr = self.address(false)?;
                Ok(vec![self.write(0, addr.trunc(w))?])
            }
            Mnemonic::Add
            | Mnemonic::Sub
            | Mnemonic::And
            | Mnemonic::Or
            | Mnemonic::Xor
            | Mnemonic::Cmp
            | Mnemonic::Test => {
                self.expect_ops(2)?;
                let w = self.width(0)?;
                let (a, b) = (self.read(0, w)?, self.read(1, w)?);
                let (op, fop) = match m {
                    Mnemonic::Add => (BinOp::Add, FlagOp::Add),
                    Mnemonic::Sub | Mnemonic::Cmp => (BinOp::Sub, FlagOp::Sub),
                    Mnemonic::And | Mnemonic::Test => (BinOp::And, FlagOp::Logic),
                    Mnemonic::Or => (BinOp::Or, FlagOp::Logic),
                    _ => (BinOp::Xor, FlagOp::Logic),
                };
                let r = Expr::binary(op, a.clone(), b.clone());
                let mut fx = if fop == FlagOp::Logic {
                    flag_effects(FlagOp::Logic, &r, &Expr::constant(w, 0))
                } else {
                    flag_effects(fop, &a, &b)
                };
                if !matches!(m, Mnemonic::Cmp | Mnemonic::Test) {
                    fx.push(self.write(0, r)?);
                }
                Ok(fx)
            }
            Mnemonic::Inc | Mnemonic::Dec | Mnemonic::Neg | Mnemonic::Not => {
                self.expect_ops(1)?;
                let w = self.width(0)?;
                let a = self.read(0, w)?;
                let one = Expr::constant(w, 1);
                let mut fx = match m {
                    Mnemonic::Inc => flag_effects(FlagOp::Inc, &a, &one),
                    Mnemonic::Dec => flag_effects(FlagOp::Dec, &a, &one),
                    Mnemonic::Neg => flag_effects(FlagOp::Sub, &Expr::constant(w, 0), &a),
                    _ => Vec::new(),
                };
                let r = match m {
                    Mnemonic::Inc => Expr::binary(BinOp::Add, a, one),
                    Mnemonic::Dec => Expr::binary(BinOp::Sub, a, one),
                    Mnemonic::Neg => Expr::unary(UnOp::Neg, a),
                    _ => Expr::unary(UnOp::Not, a),
                };
                fx.push(self.write(0, r)?);
                Ok(fx)
            }
            Mnemonic::Shl | Mnemonic::Sal | Mnemonic::Shr | Mnemonic::Sar => {
                self.expect_ops(2)?;
                let w = self.width(0)?;
                let a = self.read(0, w)?;
                let count_mask = if w == Width::W64 { 0x3f } else { 0x1f };
                let raw = match insn.op1_kind() {
                    OpKind::Register if insn.op1_register() == Register::CL => {
                        RegOperand::new(Gpr::Rcx, Width::W8).expr()
                    }
                    OpKind::Immediate8 => self.immediate(1, Width::W8)?,
                    _ => return Err("shift count must be an immediate or %cl"),
                };
                let count = Expr::binary(BinOp::And, raw, Expr::constant(Width::W8, count_mask));
                let (op, fop) = match m {
                    Mnemonic::Shl | Mnemonic::Sal => (BinOp::Shl, FlagOp::Shl),
                    Mnemonic::Shr => (BinOp::Shr, FlagOp::Shr),
                    _ => (BinOp::Sar, FlagOp::Sar),
                };
                let mut fx = flag_effects(fop, &a, &count.clone().zext(w));
                fx.push(self.write(0, Expr::binary(op, a, count))?);
                Ok(fx)
            }
            Mnemonic::Imul | Mnemonic::Mul => match insn.op_count() {
                1 => self.widening_multiply(m == Mnemonic::Imul),
                2 | 3 if m == Mnemonic::Imul => {
                    let w = self.width(0)?;
                    let (a, b) = if insn.op_count() == 2 {
                        (self.read(0, w)?, self.read(1, w)?)
                    } else {
                        (self.read(1, w)?, self.read(2, w)?)
                    };
                    let mut fx = flag_effects(FlagOp::Imul, &a, &b);
                    fx.push(self.write(0, Expr::binary(BinOp::MulLo, a, b))?);
                    Ok(fx)
                }
                _ => Err("unexpected operand count"),
            },
            Mnemonic::Cbw | Mnemonic::Cwde | Mnemonic::Cdqe => {
                let (from, to) = match m {
                    Mnemonic::Cbw => (Width::W8, Width::W16),
                    Mnemonic::Cwde => (Width::W16, Width::W32),
                    _ => (Width::W32, Width::W64),
                };
                let v = RegOperand::new(Gpr::Rax, from).expr().sext(to);
                Ok(vec![Effect::Reg {
                    dest: RegOperand::new(Gpr::Rax, to),
                    value: v,
                }])
            }
            Mnemonic::Cwd | Mnemonic::Cdq | Mnemonic::Cqo => {
                let w = match m {
                    Mnemonic::Cwd => Width::W16,
                    Mnemonic::Cdq => Width::W32,
                    _ => Width::W64,
                };
                let v = Expr::binary(
                    BinOp::Sar,
                    RegOperand::new(Gpr::Rax, w).expr(),
                    Expr::constant(Width::W8, 63),
                );
                Ok(vec![Effect::Reg {
                    dest: RegOperand::new(Gpr::Rdx, w),
                    value: v,
                }])
            }
            _ => {
                let cc = Condition::from_iced(insn.condition_code());
                match (cc, m) {
                    (Some(cc), _) if insn.is_jcc_short_or_near() => Ok(vec![Effect::Branch {
                        cond: condition_expr(cc),
                        target: insn.near_branch_target(),
                    }]),
                    (Some(cc), _) if is_setcc(m) => {
                        self.expect_ops(1)?;
                        Ok(vec![self.write(0, condition_expr(cc).zext(Width::W8))?])
                    }
                    (Some(cc), _) if is_cmovcc(m) => {
                        self.expect_ops(2)?;
                        let w = self.width(0)?;
                        let v = Expr::ite(condition_expr(cc), self.read(1, w)?, self.read(0, w)?);
                        Ok(vec![self.write(0, v)?])
                    }
                    _ => Err("mnemonic not in the modelled subset"),
                }
            }
        }
    }

    /// One-operand `mul`/`imul`: `rdx:rax = rax * src` at the operand width.
    fn widening_multiply(&self, signed: bool) -> Lift<Vec<Effect>> {
        let w = self.width(0)?;
        let src = self.read(0, w)?;
        let acc = RegOperand::new(Gpr::Rax, w).expr();
        let (lo, hi) = (
            Expr::binary(BinOp::MulLo, acc.clone(), src.clone()),
            Expr::binary(
                if signed { BinOp::MulHiS } else { BinOp::MulHiU },
                acc.clone(),
                src.clone(),
            ),
        );
        let mut fx = flag_effects(if signed { FlagOp::Imul } else { FlagOp::Mul }, &acc, &src);
        if w == Width::W8 {
            // ax = al * src8
            let high = Expr::binary(
                BinOp::Shl,
                hi.zext(Width::W16),
                Expr::constant(Width::W8, 8),
            );
            let ax = Expr::binary(BinOp::Or, high, lo.zext(Width::W16));
            fx.push(Effect::Reg {
                dest: RegOperand::new(Gpr::Rax, Width::W16),
                value: ax,
            });
        } else {
            fx.push(Effect::Reg {
                dest: RegOperand::new(Gpr::Rax, w),
                value: lo,
            });
            fx.push(Effect::Reg {
                dest: RegOperand::new(Gpr::Rdx, w),
                value: hi,
            });
        }
        Ok(fx)
    }

    fn expect_ops(&self, n: u32) -> Lift<()> {
        if self.insn.op_count() == n {
            Ok(())
        } else {
            Err("unexpected operand count")
        }
    }

    /// The width of operand `i` (register or memory).
    fn width(&self, i: u32) -> Lift<Width> {
        match self.insn.op_kind(i) {
            OpKind::Register => {
                Width::from_bytes(self.insn.op_register(i).size()).ok_or("register is not a GPR")
            }
            OpKind::Memory => {
                Width::from_bytes(self.insn.memory_size().size()).ok_or("memory operand size")
            }
            _ => Err("operand has no width of its own"),
        }
    }

    fn immediate(&self, i: u32, w: Width) -> Lift<Expr> {
        let v = self.insn.try_immediate(i).map_err(|_| "not an immediate")?;
        Ok(match self.param {
            Some(Param::Immediate) => Expr::Var(Var::Iv { width: w }),
            _ => Expr::Const(Bv::new(w, v)),
        })
    }

    /// Reads operand `i` at width `w` (immediates are sign-extended by the encoding and
    /// truncated to `w`).
    fn read(&self, i: u32, w: Width) -> Lift<Expr> {
        match self.insn.op_kind(i) {
            OpKind::Register => {
                let r = RegOperand::from_iced(self.insn.op_register(i))
                    .ok_or("register is not a GPR")?;
                if r.width != w {
                    return Err("operand widths differ");
                }
                Ok(r.expr())
            }
            OpKind::Memory => Ok(Expr::load(w, self.address(true)?)),
            OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64 => self.immediate(i, w),
            _ => Err("operand kind not modelled"),
        }
    }

    fn write(&self, i: u32, value: Expr) -> Lift<Effect> {
        match self.insn.op_kind(i) {
            OpKind::Register => {
                let dest = RegOperand::from_iced(self.insn.op_register(i))
                    .ok_or("register is not a GPR")?;
                Ok(Effect::Reg { dest, value })
            }
            OpKind::Memory => {
                let width = self.width(i)?;
                Ok(Effect::Store {
                    addr: self.address(true)?,
                    width,
                    value,
                })
            }
            _ => Err("destination is not a register or memory"),
        }
    }

    /// The memory operand's address; `with_segment` adds the `%fs`/`%gs` base (not for `lea`).
    fn address(&self, with_segment: bool) -> Lift<Expr> {
        let insn = self.insn;
        let disp = |value: u64| match self.param {
            Some(Param::Displacement) => Expr::Var(Var::Iv { width: Width::W64 }),
            _ => Expr::constant(Width::W64, value),
        };
        let mut e = if insn.is_ip_rel_memory_operand() {
            if insn.memory_base() != Register::RIP {
                return Err("32-bit addressing");
            }
            // iced resolves RIP-relative operands to the absolute target when decoding with
            // the instruction's address.
            if self.param == Some(Param::Displacement) {
                return Err("a RIP-relative displacement cannot be the constant");
            }
            Expr::constant(Width::W64, insn.memory_displacement64())
        } else {
            let mut e = disp(insn.memory_displacement64());
            let base = insn.memory_base();
            if base != Register::None {
                let r = RegOperand::from_iced(base)
                    .filter(|r| r.width == Width::W64)
                    .ok_or("32-bit addressing")?;
                e = Expr::binary(BinOp::Add, Expr::reg(r.gpr), e);
            }
            let index = insn.memory_index();
            if index != Register::None {
                let r = RegOperand::from_iced(index)
                    .filter(|r| r.width == Width::W64)
                    .ok_or("index is not a 64-bit GPR")?;
                let scale = Expr::constant(Width::W64, u64::from(insn.memory_index_scale()));
                e = Expr::binary(
                    BinOp::Add,
                    e,
                    Expr::binary(BinOp::MulLo, Expr::reg(r.gpr), scale),
                );
            }
            e
        };
        if with_segment {
            match insn.memory_segment() {
                Register::FS => {
                    e = Expr::binary(
                        BinOp::Add,
                        Expr::Var(Var::SegmentBase {
                            segment: Segment::Fs,
                        }),
                        e,
                    )
                }
                Register::GS => {
                    e = Expr::binary(
                        BinOp::Add,
                        Expr::Var(Var::SegmentBase {
                            segment: Segment::Gs,
                        }),
                        e,
                    )
                }
                _ => {}
            }
        }
        Ok(e)
    }
}

fn is_setcc(m: Mnemonic) -> bool {
    matches!(
        m,
        Mnemonic::Seto
            | Mnemonic::Setno
            | Mnemonic::Setb
            | Mnemonic::Setae
            | Mnemonic::Sete
            | Mnemonic::Setne
            | Mnemonic::Setbe
            | Mnemonic::Seta
            | Mnemonic::Sets
            | Mnemonic::Setns
            | Mnemonic::Setp
            | Mnemonic::Setnp
            | Mnemonic::Setl
            | Mnemonic::Setge
            | Mnemonic::Setle
            | Mnemonic::Setg
    )
}

fn is_cmovcc(m: Mnemonic) -> bool {
    matches!(
        m,
        Mnemonic::Cmovo
            | Mnemonic::Cmovno
            | Mnemonic::Cmovb
            | Mnemonic::Cmovae
            | Mnemonic::Cmove
            | Mnemonic::Cmovne
            | Mnemonic::Cmovbe
            | Mnemonic::Cmova
            | Mnemonic::Cmovs
            | Mnemonic::Cmovns
            | Mnemonic::Cmovp
            | Mnemonic::Cmovnp
            | Mnemonic::Cmovl
            | Mnemonic::Cmovge
            | Mnemonic::Cmovle
            | Mnemonic::Cmovg
    )
}

#[cfg(test)]
mod tests {
    use iced_x86::{Decoder, DecoderOptions};

    use super::*;

    fn decode(bytes: &[u8], ip: u64) -> Instruction {
        Decoder::with_ip(64, bytes, ip, DecoderOptions::NONE).decode()
    }

    #[test]
    fn cmp_sets_flags_and_jbe_reads_them() {
        // cmp $0xffff,%ebp ; jbe +0x10
        let cmp = decode(&[0x81, 0xfd, 0xff, 0xff, 0x00, 0x00], 0x6b);
        let jbe = decode(&[0x76, 0x10], 0x71);
        let mut s = MachineState::default();
        s.set(Gpr::Rbp, 0xffff);
        execute(&cmp, &mut s).unwrap();
        assert!(s.flag(Flag::Zf) && !s.flag(Flag::Cf));
        let step = execute(&jbe, &mut s).unwrap();
        assert_eq!(step.taken, Some(true));
        assert_eq!(s.rip, 0x73 + 0x10);
    }

    #[test]
    fn partial_writes_and_gs_stores() {
        // mov $0x10,%eax ; movb $0x7f,%gs:0x8(%rdi)
        let mut s = MachineState::default();
        s.set(Gpr::Rax, u64::MAX);
        s.set(Gpr::Rdi, 0x100);
        s.gs_base = 0x1000;
        s.memory.map(0x1108, vec![0; 1]);
        execute(&decode(&[0xb8, 0x10, 0, 0, 0], 0), &mut s).unwrap();
        assert_eq!(s.get(Gpr::Rax), 0x10);
        execute(&decode(&[0x65, 0xc6, 0x47, 0x08, 0x7f], 0), &mut s).unwrap();
        assert_eq!(s.memory.read(0x1108, Width::W8), Ok(0x7f));
    }

    #[test]
    fn cmov_32_zero_extends_even_when_false() {
        // cmove %ecx,%eax with ZF = 0
        let mut s = MachineState::default();
        s.set(Gpr::Rax, 0xffff_ffff_0000_0001);
        execute(&decode(&[0x0f, 0x44, 0xc1], 0), &mut s).unwrap();
        assert_eq!(s.get(Gpr::Rax), 1);
    }

    #[test]
    fn rejects_unmodelled_instructions_by_name() {
        let err = effects(&decode(&[0x0f, 0xa2], 0x40)).unwrap_err(); // cpuid
        assert!(err.to_string().contains("cpuid"), "{err}");
    }
}
