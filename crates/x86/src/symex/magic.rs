//! Unsigned division by a constant compiled to a multiply by a "magic" reciprocal.
//!
//! For `x / d` with `x` an n-bit unsigned value, compilers (GCC's `expand_divmod`, LLVM's
//! `UnsignedDivisionByConstantInfo`) use the Granlund-Montgomery construction (PLDI 1994, also
//! Hacker's Delight ch. 10): pick the smallest `l = ceil(log2 d)`, the multiplier
//! `m = floor((2^(n+l) + 2^(n+l-prec)) / d)` reduced while both bounds stay distinct, and
//! compute `q = mulhi(x, m) >> s`. When `m` needs n+1 bits, an even `d` is pre-shifted and an
//! odd one gets the add-fixup sequence. [`unsigned_division`] recomputes the shape and
//! constants for any `d`; [`check_form`] says whether a divisor keeps the exact instruction
//! sequence a site was compiled to; [`match_around`] recognises those sequences in code.

use iced_x86::{Code, Instruction, Mnemonic, OpKind, Register};

use super::bv::Width;
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
    /// The 64-bit register holding the dividend when the sequence starts.
    pub dividend: Gpr,
    /// The register that ends up holding the quotient.
    pub dest: Gpr,
    /// The register the multiplier is loaded into ([`MagicForm::ImulRegister`]: `%temp`;
    /// [`MagicForm::Mul`]: `%rax`).
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
            _ => Width::W32,
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

/// `shr $c,%reg64` (or `shr %reg64`, count 1): the register and count.
fn shr64(insn: &Instruction) -> Option<(Gpr, u32)> {
    if insn.mnemonic() != Mnemonic::Shr
        || insn.op_count() != 2
        || insn.op1_kind() != OpKind::Immediate8
    {
        return None;
    }
    Some((reg64(insn, 0)?, u32::from(insn.immediate8())))
}

fn match_at(block: &[Instruction], s: usize) -> Option<MagicMatch> {
    let at = |i: usize| block.get(i);
    let first = at(s)?;
    match first.code() {
        Code::Imul_r64_rm64_imm32 => {
            let (dest, src) = (reg64(first, 0)?, reg64(first, 1)?);
            let m = first.immediate32to64();
            let (sreg, c) = shr64(at(s + 1)?)?;
            (sreg == dest && (1..1 << 31).contains(&m) && (32..64).contains(&c)).then_some(
                MagicMatch {
                    start: s,
                    end: s + 2,
                    form: MagicForm::ImulImmediate,
                    dividend: src,
                    dest,
                    temp: None,
                    multiplier: m as u64,
                    shift: c,
                },
            )
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
                dest,
                temp: Some(temp),
                multiplier: u64::from(first.immediate32()),
                shift: c,
            })
        }
        Code::Mov_r64_imm64 if first.op0_register() == Register::RAX => {
            let mul = at(s + 1)?;
            if mul.code() != Code::Mul_rm64 {
                return None;
            }
            let src = reg64(mul, 0)?;
            if src == Gpr::Rax {
                return None;
            }
            let mut end = s + 2;
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
    (seed.saturating_sub(3)..=seed)
        .filter_map(|s| match_at(block, s))
        .find(|m| (m.start..m.end).contains(&seed))
}
