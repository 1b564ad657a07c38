//! Division by a constant compiled to a multiply by a "magic" reciprocal.
//!
//! For `x / d` with `x` an n-bit unsigned value, compilers (GCC's `expand_divmod`, LLVM's
//! `UnsignedDivisionByConstantInfo`) use the Granlund-Montgomery construction (PLDI 1994, also
//! Hacker's Delight ch. 10): pick the smallest `l = ceil(log2 d)`, the multiplier
//! `m = floor((2^(n+l) + 2^(n+l-prec)) / d)` reduced while both bounds stay distinct, and
//! compute `q = mulhi(x, m) >> s`. When `m` needs n+1 bits, an even `d` is pre-shifted and an
//! odd one gets the add-fixup sequence. [`unsigned_division`] recomputes the shape and
//! constants for any `d`; [`check_form`] says whether a divisor keeps the exact instruction
//! sequence a site was compiled to; [`match_around`] recognises those sequences in code,
//! following the data flow of the multiplier: the compiler may schedule other instructions
//! (the load of the dividend, say) between its load and the multiply. Signed division is
//! recognised in the form whose multiplier needs the add of the dividend
//! ([`MagicForm::SignedImulAdd`]), after a `movslq` of that dividend.

use iced_x86::{
    Code, FlowControl, Instruction, InstructionInfoFactory, Mnemonic, OpKind, Register,
};

use super::bv::Width;
use super::sem;
use super::state::{Gpr, RegOperand, RegOperandExt};

// The arithmetic of magic division is plan data (a runtime recomputes the multiplier for V');
// recognising the sequences in code is analysis and lives here.
pub use kernelx_plan::magic::{
    MagicForm, MagicMismatch, UnsignedDivision, check_form, choose_multiplier, unsigned_division,
};

/// A recognised magic division sequence in a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MagicMatch {
    /// Index of the first instruction of the sequence.
    pub start: usize,
    /// Index one past the last instruction.
    pub end: usize,
    /// The shape.
    pub form: MagicForm,
    /// The 64-bit register the multiply reads the dividend from.
    pub dividend: Gpr,
    /// Index of the multiply (`imul`/`mul`) in the block.
    pub multiply: usize,
    /// [`MagicForm::ImulImmediateAdd`]: the register the fix-up subtracts the high half from
    /// (the 32-bit dividend, again).
    pub fixup: Option<Gpr>,
    /// Index of the first instruction that computes the sequence's inputs: `start`, or the
    /// `movslq` that sign-extends the dividend of a signed division.
    pub inputs_from: usize,
    /// The register that ends up holding the quotient.
    pub dest: Gpr,
    /// The other register the sequence leaves changed: the one the multiplier is loaded into
    /// ([`MagicForm::ImulRegister`]: `%temp`; [`MagicForm::Mul`]: `%rax`), the one of the
    /// add fix-up's two that does not get the sum, or the dividend's sign
    /// ([`MagicForm::SignedImulAdd`]).
    pub temp: Option<Gpr>,
    /// The multiplier in the code.
    pub multiplier: u64,
    /// The shift count in the code (0 when there is no shift).
    pub shift: u32,
}

impl MagicMatch {
    /// The division's width.
    pub fn width(&self) -> Width {
        match self.form {
            MagicForm::Mul { .. } => Width::W64,
            MagicForm::ImulImmediate
            | MagicForm::ImulRegister
            | MagicForm::ImulImmediateAdd { .. }
            | MagicForm::SignedImulAdd => Width::W32,
        }
    }
}

fn reg64(insn: &Instruction, op: u32) -> Option<Gpr> {
    if insn.op_kind(op) != OpKind::Register {
        return None;
    }
    RegOperand::from_iced(insn.op_register(op))
        .filter(|r| r.width == Width::W64 && !r.high8)
        .map(|r| r.gpr)
}

fn reg32(insn: &Instruction, op: u32) -> Option<Gpr> {
    if insn.op_kind(op) != OpKind::Register {
        return None;
    }
    RegOperand::from_iced(insn.op_register(op))
        .filter(|r| r.width == Width::W32)
        .map(|r| r.gpr)
}

/// `shr $c,%reg` (or `shr %reg`, count 1) at `width`: the register and count.
fn shr(insn: &Instruction, width: Width) -> Option<(Gpr, u32)> {
    if insn.mnemonic() != Mnemonic::Shr || insn.op_count() != 2 {
        return None;
    }
    let count = match insn.op1_kind() {
        OpKind::Immediate8 => u32::from(insn.immediate8()),
        _ => return None,
    };
    let reg = if width == Width::W64 {
        reg64(insn, 0)?
    } else {
        reg32(insn, 0)?
    };
    Some((reg, count))
}

fn shr64(insn: &Instruction) -> Option<(Gpr, u32)> {
    shr(insn, Width::W64)
}

/// `op %src32,%dest32` (register forms of `add`/`sub`): (dest, src).
fn alu32(insn: &Instruction, mnemonic: Mnemonic) -> Option<(Gpr, Gpr)> {
    if insn.mnemonic() != mnemonic || insn.op_count() != 2 {
        return None;
    }
    Some((reg32(insn, 0)?, reg32(insn, 1)?))
}

/// `sar $c,%reg32`: the register and count.
fn sar32(insn: &Instruction) -> Option<(Gpr, u32)> {
    if insn.mnemonic() != Mnemonic::Sar
        || insn.op_count() != 2
        || insn.op1_kind() != OpKind::Immediate8
    {
        return None;
    }
    Some((reg32(insn, 0)?, u32::from(insn.immediate8())))
}

/// The signed fix-up after `imul $m,%src,%temp ; shr $32,%temp` at `s`: `add %x,%temp32`,
/// then `sar $31,%x` and `sar $c,%temp32` in either order, then
/// `sub %x,%temp32`, as (x, end, shift). `%src` must be `%x` sign-extended by a `movslq`
/// before the imul, with `%x` unchanged since (its index is returned too).
fn signed_fixup(
    block: &[Instruction],
    s: usize,
    src: Gpr,
    temp: Gpr,
) -> Option<(Gpr, usize, u32, usize)> {
    let imul = s - 2;
    let (t, x) = alu32(block.get(s)?, Mnemonic::Add)?;
    if t != temp || x == temp {
        return None;
    }
    let mut sign = false;
    let mut shift = 0;
    let mut k = s + 1;
    loop {
        let insn = block.get(k)?;
        match sar32(insn) {
            Some((r, 31)) if r == x && !sign => sign = true,
            Some((r, c)) if r == temp && shift == 0 && (1..32).contains(&c) => shift = c,
            _ => break,
        }
        k += 1;
    }
    let (d, sub_src) = alu32(block.get(k)?, Mnemonic::Sub)?;
    if !sign || shift == 0 || d != temp || sub_src != x {
        return None;
    }
    // The dividend's sign extension: the last write of %src before the imul.
    let extend = (0..imul).rev().find(|&i| writes(&block[i], src))?;
    let movslq = &block[extend];
    if movslq.code() != Code::Movsxd_r64_rm32
        || reg64(movslq, 0)? != src
        || reg32(movslq, 1)? != x
        || block[extend + 1..imul].iter().any(|i| writes(i, x))
    {
        return None;
    }
    Some((x, k + 1, shift, extend))
}

/// Whether `insn` writes any part of `reg` (an instruction the executor does not model
/// counts as writing it).
pub(crate) fn writes(insn: &Instruction, reg: Gpr) -> bool {
    sem::effects(insn).map_or(true, |fx| sem::written_gprs(&fx).contains(&reg))
}

/// How many instructions may sit between the multiplier's load and the `mul`.
const MAX_INTERLEAVED: usize = 3;

/// Whether `insn` reads or writes any part of `reg`.
pub(crate) fn touches(insn: &Instruction, reg: Gpr) -> bool {
    InstructionInfoFactory::new()
        .info(insn)
        .used_registers()
        .iter()
        .any(|u| RegOperand::from_iced(u.register()).is_some_and(|r| r.gpr == reg))
}

/// The add fix-up after `imul $m,%src,%temp ; shr $32,%temp` at `s`: `sub %temp32,%x ;
/// shr %x ; add %temp32,%x` (or `add %x,%temp32`) `; shr $c,%sum`, as (x, whether the sum
/// is in %temp, end, shift).
fn add_fixup(block: &[Instruction], s: usize, temp: Gpr) -> Option<(Gpr, bool, usize, u32)> {
    let (x, t) = alu32(block.get(s)?, Mnemonic::Sub)?;
    let (half, one) = shr(block.get(s + 1)?, Width::W32)?;
    let (sum, addend) = alu32(block.get(s + 2)?, Mnemonic::Add)?;
    if t != temp || x == temp || half != x || one != 1 {
        return None;
    }
    let into_high = match (sum, addend) {
        (s, a) if s == x && a == temp => false,
        (s, a) if s == temp && a == x => true,
        _ => return None,
    };
    let (r, c) = shr(block.get(s + 3)?, Width::W32)?;
    (r == sum && (1..32).contains(&c)).then_some((x, into_high, s + 4, c))
}

fn match_at(block: &[Instruction], s: usize) -> Option<MagicMatch> {
    let at = |i: usize| block.get(i);
    let first = at(s)?;
    match first.code() {
        Code::Imul_r64_rm64_imm32 => {
            let (dest, src) = (reg64(first, 0)?, reg64(first, 1)?);
            let m = first.immediate32to64();
            let (sreg, c) = shr64(at(s + 1)?)?;
            if sreg == dest
                && m < 0
                && c == 32
                && let Some((x, end, shift, extend)) = signed_fixup(block, s + 2, src, dest)
            {
                return Some(MagicMatch {
                    start: s,
                    end,
                    form: MagicForm::SignedImulAdd,
                    dividend: x,
                    multiply: s,
                    fixup: None,
                    inputs_from: extend,
                    dest,
                    temp: Some(x),
                    multiplier: u64::from(first.immediate32()),
                    shift,
                });
            }
            if sreg != dest || !(1..1 << 31).contains(&m) || !(32..64).contains(&c) {
                return None;
            }
            if c == 32
                && let Some((x, into_high, end, shift)) = add_fixup(block, s + 2, dest)
            {
                let (sum, other) = if into_high { (dest, x) } else { (x, dest) };
                return Some(MagicMatch {
                    start: s,
                    end,
                    form: MagicForm::ImulImmediateAdd { into_high },
                    dividend: src,
                    multiply: s,
                    fixup: Some(x),
                    inputs_from: s,
                    dest: sum,
                    temp: Some(other),
                    multiplier: m as u64,
                    shift,
                });
            }
            Some(MagicMatch {
                start: s,
                end: s + 2,
                form: MagicForm::ImulImmediate,
                dividend: src,
                multiply: s,
                fixup: None,
                inputs_from: s,
                dest,
                temp: None,
                multiplier: m as u64,
                shift: c,
            })
        }
        Code::Mov_r32_imm32 => {
            let temp = RegOperand::from_iced(first.op0_register())?.gpr;
            let imul = at(s + 1)?;
            if imul.code() != Code::Imul_r64_rm64 || reg64(imul, 1)? != temp {
                return None;
            }
            let dest = reg64(imul, 0)?;
            let (sreg, c) = shr64(at(s + 2)?)?;
            (sreg == dest && dest != temp && (32..64).contains(&c)).then_some(MagicMatch {
                start: s,
                end: s + 3,
                form: MagicForm::ImulRegister,
                dividend: dest,
                multiply: s + 1,
                fixup: None,
                inputs_from: s,
                dest,
                temp: Some(temp),
                multiplier: u64::from(first.immediate32()),
                shift: c,
            })
        }
        Code::Mov_r64_imm64 if first.op0_register() == Register::RAX => {
            // The multiply is the next instruction that touches %rax; those in between (the
            // dividend's load, typically) run inside the sequence.
            let multiply = (s + 1..=s + 1 + MAX_INTERLEAVED).find(|&k| {
                at(k).is_none_or(|i| touches(i, Gpr::Rax) || i.flow_control() != FlowControl::Next)
            })?;
            let mul = at(multiply)?;
            if mul.code() != Code::Mul_rm64 {
                return None;
            }
            let src = reg64(mul, 0)?;
            if src == Gpr::Rax {
                return None;
            }
            let mut end = multiply + 1;
            let mut dest = Gpr::Rdx;
            if let Some(mov) = at(end)
                && mov.code() == Code::Mov_rm64_r64
                && reg64(mov, 1) == Some(Gpr::Rdx)
                && let Some(d) = reg64(mov, 0)
            {
                dest = d;
                end += 1;
            }
            let (shifted, shift) = match at(end).and_then(shr64) {
                Some((r, c)) if r == dest && (1..64).contains(&c) => (true, c),
                _ => (false, 0),
            };
            if shifted {
                end += 1;
            }
            Some(MagicMatch {
                start: s,
                end,
                form: MagicForm::Mul { shifted },
                dividend: src,
                multiply,
                fixup: None,
                inputs_from: s,
                dest,
                temp: Some(Gpr::Rax),
                multiplier: first.immediate64(),
                shift,
            })
        }
        _ => None,
    }
}

/// The magic division sequence of `block` that contains instruction `seed`, if any.
pub fn match_around(block: &[Instruction], seed: usize) -> Option<MagicMatch> {
    (seed.saturating_sub(MAX_INTERLEAVED + 4)..=seed)
        .filter_map(|s| match_at(block, s))
        .find(|m| (m.start..m.end).contains(&seed))
}
