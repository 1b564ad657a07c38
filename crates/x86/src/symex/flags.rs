//! The arithmetic flags: which ones an operation defines, their values, and which ones a
//! condition (`jcc`/`setcc`/`cmovcc`) reads.
//!
//! The rules follow the Intel SDM vol. 2 per instruction, by operand width. A flag an
//! instruction leaves *undefined* is reported as such, never guessed: no synthesized update
//! may promise a value for it.

use iced_x86::{ConditionCode, RflagsBits};
use serde::{Deserialize, Serialize};

use super::bv::Width;

// Flags and flag sets are plan data (recipes name them); their x86 semantics live here.
pub use kernelx_plan::{Flag, FlagSet};

/// [`FlagSet`] from iced's flag bits (`kernelx_plan` knows no iced).
pub trait FlagSetExt {
    /// Converts iced's `RflagsBits` (its own bit order); non-arithmetic bits are dropped.
    fn from_iced(bits: u32) -> FlagSet;
}

impl FlagSetExt for FlagSet {
    fn from_iced(bits: u32) -> FlagSet {
        let mut set = FlagSet::EMPTY;
        for (iced, flag) in [
            (RflagsBits::CF, Flag::Cf),
            (RflagsBits::PF, Flag::Pf),
            (RflagsBits::AF, Flag::Af),
            (RflagsBits::ZF, Flag::Zf),
            (RflagsBits::SF, Flag::Sf),
            (RflagsBits::OF, Flag::Of),
        ] {
            if bits & iced != 0 {
                set = set.with(flag);
            }
        }
        set
    }
}

/// A condition code as `jcc`, `setcc` and `cmovcc` encode it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    /// OF = 1.
    O,
    /// OF = 0.
    No,
    /// CF = 1 (unsigned below).
    B,
    /// CF = 0 (unsigned above or equal).
    Ae,
    /// ZF = 1.
    E,
    /// ZF = 0.
    Ne,
    /// CF = 1 or ZF = 1 (unsigned below or equal).
    Be,
    /// CF = 0 and ZF = 0 (unsigned above).
    A,
    /// SF = 1.
    S,
    /// SF = 0.
    Ns,
    /// PF = 1.
    P,
    /// PF = 0.
    Np,
    /// SF != OF (signed less).
    L,
    /// SF = OF (signed greater or equal).
    Ge,
    /// ZF = 1 or SF != OF (signed less or equal).
    Le,
    /// ZF = 0 and SF = OF (signed greater).
    G,
}

impl Condition {
    /// The condition of an iced condition code (`None` for instructions without one).
    pub fn from_iced(cc: ConditionCode) -> Option<Condition> {
        Some(match cc {
            ConditionCode::o => Condition::O,
            ConditionCode::no => Condition::No,
            ConditionCode::b => Condition::B,
            ConditionCode::ae => Condition::Ae,
            ConditionCode::e => Condition::E,
            ConditionCode::ne => Condition::Ne,
            ConditionCode::be => Condition::Be,
            ConditionCode::a => Condition::A,
            ConditionCode::s => Condition::S,
            ConditionCode::ns => Condition::Ns,
            ConditionCode::p => Condition::P,
            ConditionCode::np => Condition::Np,
            ConditionCode::l => Condition::L,
            ConditionCode::ge => Condition::Ge,
            ConditionCode::le => Condition::Le,
            ConditionCode::g => Condition::G,
            _ => return None,
        })
    }

    /// The flags the condition reads.
    pub const fn reads(self) -> FlagSet {
        match self {
            Condition::O | Condition::No => FlagSet::of(&[Flag::Of]),
            Condition::B | Condition::Ae => FlagSet::of(&[Flag::Cf]),
            Condition::E | Condition::Ne => FlagSet::of(&[Flag::Zf]),
            Condition::Be | Condition::A => FlagSet::of(&[Flag::Cf, Flag::Zf]),
            Condition::S | Condition::Ns => FlagSet::of(&[Flag::Sf]),
            Condition::P | Condition::Np => FlagSet::of(&[Flag::Pf]),
            Condition::L | Condition::Ge => FlagSet::of(&[Flag::Sf, Flag::Of]),
            Condition::Le | Condition::G => FlagSet::of(&[Flag::Zf, Flag::Sf, Flag::Of]),
        }
    }

    /// Whether the condition compares as unsigned (or only for equality): it reads no SF/OF.
    pub const fn is_unsigned_or_equality(self) -> bool {
        !self.reads().contains(Flag::Sf)
            && !self.reads().contains(Flag::Of)
            && !self.reads().contains(Flag::Pf)
    }

    /// Whether the condition compares as signed: it reads SF and OF together.
    pub const fn is_signed(self) -> bool {
        matches!(
            self,
            Condition::L | Condition::Ge | Condition::Le | Condition::G
        )
    }

    /// Evaluates the condition on an RFLAGS value.
    pub const fn holds(self, rflags: u64) -> bool {
        let cf = rflags & 1 != 0;
        let pf = rflags & (1 << 2) != 0;
        let zf = rflags & (1 << 6) != 0;
        let sf = rflags & (1 << 7) != 0;
        let of = rflags & (1 << 11) != 0;
        match self {
            Condition::O => of,
            Condition::No => !of,
            Condition::B => cf,
            Condition::Ae => !cf,
            Condition::E => zf,
            Condition::Ne => !zf,
            Condition::Be => cf || zf,
            Condition::A => !cf && !zf,
            Condition::S => sf,
            Condition::Ns => !sf,
            Condition::P => pf,
            Condition::Np => !pf,
            Condition::L => sf != of,
            Condition::Ge => sf == of,
            Condition::Le => zf || sf != of,
            Condition::G => !zf && sf == of,
        }
    }
}

/// The operation whose flags are computed; the operand width comes with the operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagOp {
    /// `add a, b`.
    Add,
    /// `sub a, b` and `cmp a, b` (and `neg b` as `0 - b`).
    Sub,
    /// `and`/`or`/`xor`/`test` producing the result `a` (`b` is ignored).
    Logic,
    /// `inc a` (`b` is ignored): CF is left unchanged.
    Inc,
    /// `dec a` (`b` is ignored): CF is left unchanged.
    Dec,
    /// `shl a, b` with `b` the masked count.
    Shl,
    /// `shr a, b` with `b` the masked count.
    Shr,
    /// `sar a, b` with `b` the masked count.
    Sar,
    /// `imul` (every form): CF = OF = the signed product does not fit the width.
    Imul,
    /// one-operand `mul`: CF = OF = the high half is non-zero.
    Mul,
}

/// The flags an operation leaves: written (with values), undefined, or unchanged (the rest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlagOutcome {
    /// Flags the operation defines.
    pub written: FlagSet,
    /// Values of the written flags (bits outside `written` are zero).
    pub values: FlagSet,
    /// Flags the SDM leaves undefined for these operands.
    pub undefined: FlagSet,
}

impl FlagOutcome {
    /// The state of one flag after the operation.
    pub fn get(&self, flag: Flag) -> FlagState {
        if self.written.contains(flag) {
            FlagState::Value(self.values.contains(flag))
        } else if self.undefined.contains(flag) {
            FlagState::Undefined
        } else {
            FlagState::Unchanged
        }
    }
}

/// The state of one flag after an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagState {
    /// Written with this value.
    Value(bool),
    /// Left undefined by the SDM.
    Undefined,
    /// Not touched.
    Unchanged,
}

/// Even parity of the low byte: x86's PF.
pub const fn parity(result: u64) -> bool {
    (result as u8).count_ones().is_multiple_of(2)
}

/// The flags `op` leaves for operands `a`, `b` of width `width` (values are masked to it).
pub fn compute(op: FlagOp, width: Width, a: u64, b: u64) -> FlagOutcome {
    let mask = width.mask();
    let sign = width.sign_bit();
    let (a, b) = (a & mask, b & mask);
    let mut out = Outcome::default();
    match op {
        FlagOp::Add | FlagOp::Inc => {
            let b = if op == FlagOp::Inc { 1 } else { b };
            let r = a.wrapping_add(b) & mask;
            out.result(width, r);
            out.set(Flag::Af, (a ^ b ^ r) & 0x10 != 0);
            out.set(Flag::Of, (a ^ r) & (b ^ r) & sign != 0);
            if op == FlagOp::Add {
                out.set(Flag::Cf, r < a);
            }
        }
        FlagOp::Sub | FlagOp::Dec => {
            let b = if op == FlagOp::Dec { 1 } else { b };
            let r = a.wrapping_sub(b) & mask;
            out.result(width, r);
            out.set(Flag::Af, (a ^ b ^ r) & 0x10 != 0);
            out.set(Flag::Of, (a ^ b) & (a ^ r) & sign != 0);
            if op == FlagOp::Sub {
                out.set(Flag::Cf, a < b);
            }
        }
        FlagOp::Logic => {
            out.result(width, a);
            out.set(Flag::Cf, false);
            out.set(Flag::Of, false);
            out.undefined(Flag::Af);
        }
        FlagOp::Shl | FlagOp::Shr | FlagOp::Sar => {
            let count = b;
            if count == 0 {
                // A zero count leaves every flag unchanged.
                return out.finish();
            }
            let bits = u64::from(width.bits());
            let r = shift(op, width, a, count);
            out.result(width, r);
            out.undefined(Flag::Af);
            // CF is the last bit shifted out; from the width on (8/16-bit operands take
            // counts up to 31) the SDM leaves it undefined.
            if count < bits {
                let cf = match op {
                    FlagOp::Shl => (a >> (bits - count)) & 1 != 0,
                    _ => {
                        let sa = if op == FlagOp::Sar {
                            width.sign_extend(a) as u64
                        } else {
                            a
                        };
                        (sa >> (count - 1)) & 1 != 0
                    }
                };
                out.set(Flag::Cf, cf);
            } else {
                out.undefined(Flag::Cf);
            }
            if count == 1 {
                let of = match op {
                    FlagOp::Shl => (r & sign != 0) != ((a >> (bits - 1)) & 1 != 0),
                    FlagOp::Shr => a & sign != 0,
                    _ => false,
                };
                out.set(Flag::Of, of);
            } else {
                out.undefined(Flag::Of);
            }
        }
        FlagOp::Imul => {
            let full = i128::from(width.sign_extend(a)) * i128::from(width.sign_extend(b));
            let low = (full as u64) & mask;
            let overflow = i128::from(width.sign_extend(low)) != full;
            out.set(Flag::Cf, overflow);
            out.set(Flag::Of, overflow);
            for f in [Flag::Sf, Flag::Zf, Flag::Af, Flag::Pf] {
                out.undefined(f);
            }
        }
        FlagOp::Mul => {
            let full = u128::from(a) * u128::from(b);
            let high = (full >> width.bits()) as u64 & mask;
            out.set(Flag::Cf, high != 0);
            out.set(Flag::Of, high != 0);
            for f in [Flag::Sf, Flag::Zf, Flag::Af, Flag::Pf] {
                out.undefined(f);
            }
        }
    }
    out.finish()
}

/// x86 shift of a `width` value by an already-masked count (the result keeps the width).
pub fn shift(op: FlagOp, width: Width, a: u64, count: u64) -> u64 {
    let mask = width.mask();
    let a = a & mask;
    let r = match op {
        FlagOp::Shl => {
            if count >= 64 {
                0
            } else {
                a << count
            }
        }
        FlagOp::Shr => {
            if count >= 64 {
                0
            } else {
                a >> count
            }
        }
        _ => {
            let s = width.sign_extend(a);
            (s >> count.min(63)) as u64
        }
    };
    r & mask
}

#[derive(Default)]
struct Outcome {
    written: FlagSet,
    values: FlagSet,
    undefined: FlagSet,
}

impl Outcome {
    fn set(&mut self, flag: Flag, value: bool) {
        self.written = self.written.with(flag);
        if value {
            self.values = self.values.with(flag);
        }
    }

    fn undefined(&mut self, flag: Flag) {
        self.undefined = self.undefined.with(flag);
    }

    /// ZF, SF and PF of a result.
    fn result(&mut self, width: Width, r: u64) {
        self.set(Flag::Zf, r == 0);
        self.set(Flag::Sf, r & width.sign_bit() != 0);
        self.set(Flag::Pf, parity(r));
    }

    fn finish(self) -> FlagOutcome {
        FlagOutcome {
            written: self.written,
            values: self.values,
            undefined: self.undefined.difference(self.written),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmp_flags_match_the_sdm() {
        // cmp $0xffff, %ebp with ebp = 0xffff: equal.
        let o = compute(FlagOp::Sub, Width::W32, 0xffff, 0xffff);
        assert_eq!(o.get(Flag::Zf), FlagState::Value(true));
        assert_eq!(o.get(Flag::Cf), FlagState::Value(false));
        // 0 - 1 borrows and is negative, no signed overflow.
        let o = compute(FlagOp::Sub, Width::W8, 0, 1);
        assert_eq!(
            o.values,
            FlagSet::of(&[Flag::Cf, Flag::Sf, Flag::Pf, Flag::Af])
        );
        // 0x80 - 1 overflows as signed bytes.
        let o = compute(FlagOp::Sub, Width::W8, 0x80, 1);
        assert!(o.values.contains(Flag::Of));
        assert_eq!(o.written, FlagSet::ARITHMETIC);
    }

    #[test]
    fn shifts_leave_flags_by_count() {
        assert_eq!(
            compute(FlagOp::Shl, Width::W32, 5, 0).written,
            FlagSet::EMPTY
        );
        let o = compute(FlagOp::Shl, Width::W32, 0x8000_0001, 1);
        assert_eq!(o.get(Flag::Cf), FlagState::Value(true));
        assert_eq!(o.get(Flag::Of), FlagState::Value(true));
        let o = compute(FlagOp::Shr, Width::W64, 0b110, 2);
        assert_eq!(o.get(Flag::Cf), FlagState::Value(true));
        assert_eq!(o.get(Flag::Of), FlagState::Undefined);
        assert_eq!(
            compute(FlagOp::Shl, Width::W8, 1, 20).get(Flag::Cf),
            FlagState::Undefined
        );
        assert_eq!(
            compute(FlagOp::Shr, Width::W8, 0x80, 8).get(Flag::Cf),
            FlagState::Undefined
        );
        assert_eq!(shift(FlagOp::Sar, Width::W16, 0x8000, 15), 0xffff);
    }

    #[test]
    fn conditions_read_their_flags() {
        assert_eq!(Condition::Be.reads(), FlagSet::of(&[Flag::Cf, Flag::Zf]));
        assert!(Condition::A.is_unsigned_or_equality());
        assert!(!Condition::G.is_unsigned_or_equality());
        assert!(Condition::G.holds(0));
        assert!(!Condition::G.holds(1 << 6));
        assert_eq!(FlagSet::ARITHMETIC.to_string(), "CF|PF|AF|ZF|SF|OF");
    }
}
