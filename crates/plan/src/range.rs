//! The valid range of V' for a recipe, each bound with the reason that sets it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::magic::{self, MagicForm, MagicMismatch};
use crate::operand::Width;
use crate::relation::IvDomain;

/// Why a bound of V' is where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum BoundReason {
    /// Only the 64-bit source value limits this side.
    Unbounded,
    /// IV = f(V') must stay representable at the operand width with the signedness the builds
    /// show (otherwise the compiler's folded constant would wrap).
    IvOverflow {
        /// The operand width.
        width: Width,
        /// The admissible IV values.
        domain: IvDomain,
    },
    /// The instruction's immediate (or displacement) field holds a sign-extended value of this
    /// many bits; a larger IV needs a different instruction.
    ImmediateField {
        /// Field width in bits.
        bits: u8,
    },
    /// A shift count must be in 0..width-1 (C leaves larger shifts undefined).
    ShiftCount {
        /// Operand width.
        width: Width,
    },
    /// A shift by 0 leaves the flags unchanged, but they are read afterwards (or may be).
    ZeroShiftKeepsFlags,
    /// 2^V' must be an integer that fits 63 bits.
    Exponent,
    /// log2(V') needs V' >= 1.
    Logarithm,
    /// V' is a power of two only (IV = log2 V' is otherwise not an integer).
    NotPowerOfTwo,
    /// Division by zero.
    DivisionByZero,
    /// The compiler would not emit the same multiply sequence for this divisor.
    MagicShape {
        /// What would differ.
        mismatch: MagicMismatch,
    },
}

impl fmt::Display for BoundReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BoundReason::Unbounded => f.write_str("limit of a 64-bit source value"),
            BoundReason::IvOverflow { width, domain } => {
                write!(
                    f,
                    "IV = f(V') must fit the {width} operand as {domain} (the folded constant would wrap)"
                )
            }
            BoundReason::ImmediateField { bits } => {
                write!(
                    f,
                    "IV must fit the instruction's sign-extended {bits}-bit immediate field"
                )
            }
            BoundReason::ShiftCount { width } => {
                write!(
                    f,
                    "a shift count of a {width} operand must be in 0..{}",
                    width.bits() - 1
                )
            }
            BoundReason::ZeroShiftKeepsFlags => f.write_str(
                "a shift by 0 would leave the flags unchanged while they are read afterwards",
            ),
            BoundReason::Exponent => f.write_str("2^V' must be an integer that fits 63 bits"),
            BoundReason::Logarithm => f.write_str("log2(V') needs V' >= 1"),
            BoundReason::NotPowerOfTwo => {
                f.write_str("IV = log2(V') requires V' to be a power of two")
            }
            BoundReason::DivisionByZero => f.write_str("division by zero"),
            BoundReason::MagicShape { mismatch } => {
                write!(
                    f,
                    "the compiler would emit a different division sequence: {mismatch}"
                )
            }
        }
    }
}

/// A further condition on V' inside `[min, max]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "only", rename_all = "snake_case")]
pub enum Restriction {
    /// V' must be a power of two.
    PowerOfTwo,
    /// V' must be a divisor for which the compiler emits the same magic-multiply sequence
    /// (see [`magic::check_form`]). Named for the unsigned forms it was made for; the form
    /// says whether the division is signed ([`MagicForm::SignedImulAdd`]).
    UnsignedMagic {
        /// The division's width.
        width: Width,
        /// The sequence shape.
        form: MagicForm,
    },
}

impl Restriction {
    /// Accepts `v` or gives the reason it does not qualify.
    pub fn check(self, v: i64) -> Result<(), BoundReason> {
        match self {
            Restriction::PowerOfTwo => {
                if v > 0 && (v as u64).is_power_of_two() {
                    Ok(())
                } else {
                    Err(BoundReason::NotPowerOfTwo)
                }
            }
            Restriction::UnsignedMagic { width, form } => magic::check_form(v, width, form)
                .map(|_| ())
                .map_err(|mismatch| BoundReason::MagicShape { mismatch }),
        }
    }
}

/// The values of V' a recipe accepts: `[min, max]`, optionally further restricted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueRange {
    /// Smallest valid V'.
    pub min: i64,
    /// Largest valid V'.
    pub max: i64,
    /// Why not smaller.
    pub min_reason: BoundReason,
    /// Why not larger.
    pub max_reason: BoundReason,
    /// A condition besides the bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restriction: Option<Restriction>,
}

impl ValueRange {
    /// Every 64-bit value.
    pub const fn unbounded() -> ValueRange {
        ValueRange {
            min: i64::MIN,
            max: i64::MAX,
            min_reason: BoundReason::Unbounded,
            max_reason: BoundReason::Unbounded,
            restriction: None,
        }
    }

    /// Narrows to `[lo, hi]` (either side optional), keeping the reason of whichever side
    /// binds. Bounds are `i128` so callers need not clamp; the range may become empty.
    pub fn narrow(&mut self, lo: Option<i128>, hi: Option<i128>, reason: BoundReason) {
        if let Some(lo) = lo
            && lo > i128::from(self.min)
        {
            self.min = lo.min(i128::from(i64::MAX)) as i64;
            self.min_reason = reason;
            if lo > i128::from(i64::MAX) {
                self.max = i64::MIN;
                self.max_reason = reason;
            }
        }
        if let Some(hi) = hi
            && hi < i128::from(self.max)
        {
            self.max = hi.max(i128::from(i64::MIN)) as i64;
            self.max_reason = reason;
            if hi < i128::from(i64::MIN) {
                self.min = i64::MAX;
                self.min_reason = reason;
            }
        }
    }

    /// Whether no value is valid.
    pub const fn is_empty(&self) -> bool {
        self.min > self.max
    }

    /// Whether `v` is valid.
    pub fn contains(&self, v: i64) -> bool {
        self.check(v).is_ok()
    }

    /// Accepts `v` or names the bound that rejects it.
    pub fn check(&self, v: i64) -> Result<(), OutOfRange> {
        let out = |reason| OutOfRange {
            value: v,
            min: self.min,
            max: self.max,
            reason,
        };
        if v < self.min {
            return Err(out(self.min_reason));
        }
        if v > self.max {
            return Err(out(self.max_reason));
        }
        match self.restriction {
            None => Ok(()),
            Some(r) => r.check(v).map_err(out),
        }
    }
}

/// A value of V' outside a [`ValueRange`], with the bound that rejects it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("V' = {value} is outside the valid range [{min}, {max}]: {reason}")]
pub struct OutOfRange {
    /// The rejected value.
    pub value: i64,
    /// Smallest valid value.
    pub min: i64,
    /// Largest valid value.
    pub max: i64,
    /// The bound (or restriction) that rejects it.
    pub reason: BoundReason,
}

impl fmt::Display for ValueRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}, {}] (min: {}; max: {})",
            self.min, self.max, self.min_reason, self.max_reason
        )?;
        match self.restriction {
            Some(Restriction::PowerOfTwo) => f.write_str("; powers of two only"),
            Some(Restriction::UnsignedMagic { form, .. }) => {
                write!(f, "; only divisors compiled to the same {form} sequence")
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrowing_keeps_the_binding_reason() {
        let mut r = ValueRange::unbounded();
        r.narrow(
            Some(0),
            Some(31),
            BoundReason::ShiftCount { width: Width::W32 },
        );
        r.narrow(Some(1), None, BoundReason::ZeroShiftKeepsFlags);
        r.narrow(Some(-5), Some(100), BoundReason::Exponent);
        assert_eq!((r.min, r.max), (1, 31));
        assert_eq!(r.min_reason, BoundReason::ZeroShiftKeepsFlags);
        assert_eq!(r.max_reason, BoundReason::ShiftCount { width: Width::W32 });
        let err = r.check(32).unwrap_err();
        assert!(err.to_string().contains("0..31"), "{err}");
        assert!(r.check(0).unwrap_err().to_string().contains("shift by 0"));
    }

    #[test]
    fn out_of_i64_bounds_empty_the_range() {
        let mut r = ValueRange::unbounded();
        r.narrow(Some(i128::from(i64::MAX) + 1), None, BoundReason::Exponent);
        assert!(r.is_empty());
    }

    #[test]
    fn power_of_two_restriction() {
        let mut r = ValueRange::unbounded();
        r.narrow(Some(1), Some(1 << 40), BoundReason::Logarithm);
        r.restriction = Some(Restriction::PowerOfTwo);
        assert!(r.contains(64));
        assert!(matches!(
            r.check(48),
            Err(OutOfRange {
                reason: BoundReason::NotPowerOfTwo,
                ..
            })
        ));
    }
}
