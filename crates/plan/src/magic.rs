//! Unsigned division by a constant compiled to a multiply by a "magic" reciprocal.
//!
//! For `x / d` with `x` an n-bit unsigned value, compilers (GCC's `expand_divmod`, LLVM's
//! `UnsignedDivisionByConstantInfo`) use the Granlund-Montgomery construction (PLDI 1994, also
//! Hacker's Delight ch. 10): pick the smallest `l = ceil(log2 d)`, the multiplier
//! `m = floor((2^(n+l) + 2^(n+l-prec)) / d)` reduced while both bounds stay distinct, and
//! compute `q = mulhi(x, m) >> s`. When `m` needs n+1 bits, an even `d` is pre-shifted and an
//! odd one gets the add-fixup sequence. [`unsigned_division`] recomputes the shape and
//! constants for any `d`; [`check_form`] says whether a divisor keeps the exact instruction
//! sequence a site was compiled to, and gives the multiplier and shift a runtime writes for
//! V'. Recognising those sequences in machine code is the analysis' part (`kernelx-x86`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::operand::Width;

/// The shape of the code for an unsigned n-bit `x / d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnsignedDivision {
    /// `d == 1`: no code.
    Identity,
    /// `d = 2^shift`: a shift.
    Shift {
        /// log2 d.
        shift: u32,
    },
    /// `d >= 2^(n-1)`: the quotient is 0 or 1, a compare.
    Compare,
    /// `q = mulhi(x >> pre_shift, multiplier) >> post_shift` with an n-bit multiplier.
    Multiply {
        /// Shift of the dividend first (even divisors whose multiplier would need n+1 bits).
        pre_shift: u32,
        /// The n-bit multiplier.
        multiplier: u64,
        /// Shift of the high half.
        post_shift: u32,
    },
    /// `t = mulhi(x, multiplier); q = (t + ((x - t) >> 1)) >> (post_shift - 1)`.
    MultiplyAdd {
        /// The low n bits of the (n+1)-bit multiplier.
        multiplier: u64,
        /// The shift of the construction (the code shifts by one less after the fixup).
        post_shift: u32,
    },
}

/// The multiplier (up to n+1 bits) and post-shift for `d` at `precision` bits of dividend.
///
/// `d >= 2`, `n` is 8..=64 and `precision <= n`.
pub fn choose_multiplier(d: u64, n: u32, precision: u32) -> (u128, u32) {
    debug_assert!(d >= 2 && precision <= n && precision > 0);
    let lgup = 64 - (d - 1).leading_zeros();
    let pow = n + lgup;
    let pow2 = pow - precision;
    let d128 = u128::from(d);
    // floor(2^pow / d) and its remainder; 2^128 itself does not fit in u128.
    let (q, r) = if pow < 128 {
        ((1u128 << pow) / d128, (1u128 << pow) % d128)
    } else {
        let (q, r) = (u128::MAX / d128, u128::MAX % d128 + 1);
        if r == d128 { (q + 1, 0) } else { (q, r) }
    };
    let mut low = q;
    let mut high = q + (r + (1u128 << pow2)) / d128;
    let mut post_shift = lgup;
    while post_shift > 0 && (low >> 1) < (high >> 1) {
        low >>= 1;
        high >>= 1;
        post_shift -= 1;
    }
    (high, post_shift)
}

/// The code shape for an unsigned `x / d` at `width` (8 to 64 bits); `None` for `d == 0`.
pub fn unsigned_division(d: u64, width: Width) -> Option<UnsignedDivision> {
    let n = width.bits();
    if d == 0 || width == Width::W1 || d > width.mask() {
        return None;
    }
    if d == 1 {
        return Some(UnsignedDivision::Identity);
    }
    if d.is_power_of_two() {
        return Some(UnsignedDivision::Shift {
            shift: d.trailing_zeros(),
        });
    }
    if d >= width.sign_bit() {
        return Some(UnsignedDivision::Compare);
    }
    let limit = 1u128 << n;
    let (m, post_shift) = choose_multiplier(d, n, n);
    if m < limit {
        return Some(UnsignedDivision::Multiply {
            pre_shift: 0,
            multiplier: m as u64,
            post_shift,
        });
    }
    if d.is_multiple_of(2) {
        let pre_shift = d.trailing_zeros();
        let (m, post_shift) = choose_multiplier(d >> pre_shift, n, n - pre_shift);
        debug_assert!(m < limit, "a pre-shifted multiplier fits n bits");
        return Some(UnsignedDivision::Multiply {
            pre_shift,
            multiplier: m as u64,
            post_shift,
        });
    }
    Some(UnsignedDivision::MultiplyAdd {
        multiplier: (m & (limit - 1)) as u64,
        post_shift,
    })
}

/// The instruction sequence a magic division site was compiled to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "shape", rename_all = "snake_case")]
pub enum MagicForm {
    /// 32-bit `x / d`: `imul $m,%src,%dest ; shr $(32+s),%dest` (64-bit registers holding
    /// the zero-extended dividend; `m < 2^31` fits the sign-extended immediate).
    ImulImmediate,
    /// 32-bit `x / d`: `mov $m,%temp32 ; imul %temp,%dest ; shr $(32+s),%dest`
    /// (`m >= 2^31` does not fit a sign-extended imm32).
    ImulRegister,
    /// 64-bit `x / d`: `movabs $m,%rax ; mul %src ; [mov %rdx,%dest] ; [shr $s,%dest]`.
    Mul {
        /// Whether the sequence ends with a shift (post-shift > 0).
        shifted: bool,
    },
}

impl fmt::Display for MagicForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MagicForm::ImulImmediate => "imul $m; shr",
            MagicForm::ImulRegister => "mov $m; imul; shr",
            MagicForm::Mul { shifted: true } => "movabs $m; mul; shr",
            MagicForm::Mul { shifted: false } => "movabs $m; mul",
        })
    }
}

/// Why a divisor does not compile to a given magic sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MagicMismatch {
    /// Zero or negative, or too wide for the division.
    NotADivisor,
    /// 1: no code at all.
    One,
    /// A power of two: a plain shift.
    PowerOfTwo,
    /// At least 2^(n-1): a compare.
    Compare,
    /// The multiplier needs n+1 bits and the dividend is pre-shifted first.
    PreShift,
    /// The multiplier needs n+1 bits: the add-fixup sequence.
    AddFixup,
    /// The multiplier does not fit the sign-extended 32-bit immediate.
    MultiplierTooWide,
    /// The multiplier would fit an immediate: the compiler would not load it into a register.
    MultiplierFitsImmediate,
    /// The post-shift would be zero (no `shr`) or non-zero (a `shr`), unlike the site.
    ShiftPresence,
}

impl fmt::Display for MagicMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MagicMismatch::NotADivisor => "not a divisor of this width",
            MagicMismatch::One => "division by 1 needs no code",
            MagicMismatch::PowerOfTwo => "a power of two compiles to a shift",
            MagicMismatch::Compare => "a divisor of at least 2^(n-1) compiles to a compare",
            MagicMismatch::PreShift => "the multiplier needs a pre-shift of the dividend",
            MagicMismatch::AddFixup => "the multiplier needs n+1 bits (add-fixup sequence)",
            MagicMismatch::MultiplierTooWide => "the multiplier does not fit a sign-extended imm32",
            MagicMismatch::MultiplierFitsImmediate => "the multiplier would be an imul immediate",
            MagicMismatch::ShiftPresence => "the final shift would appear or disappear",
        })
    }
}

/// The multiplier and total shift count a divisor gives in `form`, or why the compiler
/// would emit something else.
///
/// For the 32-bit forms the shift count is `32 + post_shift` (the shift of the 64-bit
/// product); for [`MagicForm::Mul`] it is the post-shift.
pub fn check_form(d: i64, width: Width, form: MagicForm) -> Result<(u64, u32), MagicMismatch> {
    let d = u64::try_from(d).map_err(|_| MagicMismatch::NotADivisor)?;
    let wanted = match form {
        MagicForm::ImulImmediate | MagicForm::ImulRegister => Width::W32,
        MagicForm::Mul { .. } => Width::W64,
    };
    if width != wanted {
        return Err(MagicMismatch::NotADivisor);
    }
    match unsigned_division(d, width).ok_or(MagicMismatch::NotADivisor)? {
        UnsignedDivision::Identity => Err(MagicMismatch::One),
        UnsignedDivision::Shift { .. } => Err(MagicMismatch::PowerOfTwo),
        UnsignedDivision::Compare => Err(MagicMismatch::Compare),
        UnsignedDivision::MultiplyAdd { .. } => Err(MagicMismatch::AddFixup),
        UnsignedDivision::Multiply { pre_shift, .. } if pre_shift != 0 => {
            Err(MagicMismatch::PreShift)
        }
        UnsignedDivision::Multiply {
            multiplier,
            post_shift,
            ..
        } => match form {
            MagicForm::ImulImmediate if multiplier >= 1 << 31 => {
                Err(MagicMismatch::MultiplierTooWide)
            }
            MagicForm::ImulRegister if multiplier < 1 << 31 => {
                Err(MagicMismatch::MultiplierFitsImmediate)
            }
            MagicForm::ImulImmediate | MagicForm::ImulRegister => Ok((multiplier, 32 + post_shift)),
            MagicForm::Mul { shifted } if shifted != (post_shift > 0) => {
                Err(MagicMismatch::ShiftPresence)
            }
            MagicForm::Mul { .. } => Ok((multiplier, post_shift)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Constants read from gcc-12 -O2 output (see kernelx-x86's
    /// tests/symex_differential.rs for the sequences themselves).
    #[test]
    fn reproduces_gcc_constants() {
        let mul = |d, w| match unsigned_division(d, w).unwrap() {
            UnsignedDivision::Multiply {
                pre_shift,
                multiplier,
                post_shift,
            } => (pre_shift, multiplier, post_shift),
            other => panic!("{d}: {other:?}"),
        };
        assert_eq!(mul(10, Width::W32), (0, 0xcccc_cccd, 3));
        assert_eq!(mul(1000, Width::W32), (0, 0x1062_4dd3, 6));
        assert_eq!(mul(12, Width::W32), (0, 0xaaaa_aaab, 3));
        assert_eq!(mul(60, Width::W32), (0, 0x8888_8889, 5));
        assert_eq!(mul(10, Width::W64), (0, 0xcccc_cccc_cccc_cccd, 3));
        assert_eq!(mul(3, Width::W64), (0, 0xaaaa_aaaa_aaaa_aaab, 1));
        assert_eq!(mul(1000, Width::W64), (3, 0x20c4_9ba5_e353_f7cf, 4));
        assert_eq!(mul(100, Width::W64), (2, 0x28f5_c28f_5c28_f5c3, 2));
        assert_eq!(
            unsigned_division(7, Width::W32),
            Some(UnsignedDivision::MultiplyAdd {
                multiplier: 0x2492_4925,
                post_shift: 3
            })
        );
        assert_eq!(
            unsigned_division(7, Width::W64),
            Some(UnsignedDivision::MultiplyAdd {
                multiplier: 0x2492_4924_9249_2493,
                post_shift: 3
            })
        );
        assert_eq!(
            unsigned_division(1024, Width::W32),
            Some(UnsignedDivision::Shift { shift: 10 })
        );
        assert_eq!(
            unsigned_division(0x8000_0001, Width::W32),
            Some(UnsignedDivision::Compare)
        );
        assert_eq!(unsigned_division(0, Width::W32), None);
    }

    #[test]
    fn multipliers_divide_exactly() {
        // Exhaustive over divisors, sampled over dividends incl. the edges.
        for d in 2u64..3000 {
            for (w, xs) in [
                (
                    Width::W32,
                    [
                        0u64,
                        1,
                        d - 1,
                        d,
                        d + 1,
                        0xffff_ffff,
                        0xffff_fffe,
                        0x8000_0000,
                        123_456_789,
                    ],
                ),
                (
                    Width::W64,
                    [
                        0,
                        1,
                        d - 1,
                        d,
                        u64::MAX,
                        u64::MAX - 1,
                        1 << 63,
                        0x1234_5678_9abc_def0,
                        99,
                    ],
                ),
            ] {
                let Some(UnsignedDivision::Multiply {
                    pre_shift,
                    multiplier,
                    post_shift,
                }) = unsigned_division(d, w)
                else {
                    continue;
                };
                for x in xs {
                    let t = u128::from(x >> pre_shift) * u128::from(multiplier);
                    let q = ((t >> w.bits()) as u64) >> post_shift;
                    assert_eq!(q, x / d, "{x} / {d} at {w}");
                }
            }
        }
    }

    #[test]
    fn forms_restrict_divisors() {
        assert_eq!(
            check_form(1000, Width::W32, MagicForm::ImulImmediate),
            Ok((0x1062_4dd3, 38))
        );
        assert_eq!(
            check_form(10, Width::W32, MagicForm::ImulImmediate),
            Err(MagicMismatch::MultiplierTooWide)
        );
        assert_eq!(
            check_form(10, Width::W32, MagicForm::ImulRegister),
            Ok((0xcccc_cccd, 35))
        );
        assert_eq!(
            check_form(7, Width::W32, MagicForm::ImulRegister),
            Err(MagicMismatch::AddFixup)
        );
        assert_eq!(
            check_form(64, Width::W32, MagicForm::ImulRegister),
            Err(MagicMismatch::PowerOfTwo)
        );
        assert_eq!(
            check_form(0, Width::W64, MagicForm::Mul { shifted: true }),
            Err(MagicMismatch::NotADivisor)
        );
        assert_eq!(
            check_form(1000, Width::W64, MagicForm::Mul { shifted: true }),
            Err(MagicMismatch::PreShift)
        );
        assert_eq!(
            check_form(10, Width::W64, MagicForm::Mul { shifted: true }),
            Ok((0xcccc_cccc_cccc_cccd, 3))
        );
    }
}
