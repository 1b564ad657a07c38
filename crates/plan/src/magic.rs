//! Division by a constant compiled to a multiply by a "magic" reciprocal.
//!
//! For `x / d` with `x` an n-bit unsigned value, compilers (GCC's `expand_divmod`, LLVM's
//! `UnsignedDivisionByConstantInfo`) use the Granlund-Montgomery construction (PLDI 1994, also
//! Hacker's Delight ch. 10): pick the smallest `l = ceil(log2 d)`, the multiplier
//! `m = floor((2^(n+l) + 2^(n+l-prec)) / d)` reduced while both bounds stay distinct, and
//! compute `q = mulhi(x, m) >> s`. When `m` needs n+1 bits, an even `d` is pre-shifted and an
//! odd one gets the add-fixup sequence. [`unsigned_division`] recomputes the shape and
//! constants for any `d`, [`signed_multiplier`] those of a signed `x / d` (the same
//! construction at n-1 bits of precision; a multiplier of n bits adds the dividend back);
//! [`check_form`] says whether a divisor keeps the exact instruction sequence a site was
//! compiled to, and gives the multiplier and shift a runtime writes for V';
//! [`same_division_shape`] is the rule KernelX picks probe values by. Recognising those sequences in machine code is the analysis' part (`kernelx-x86`).

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
    /// 64-bit `x / d`: `movabs $m,%rax ; [mov mem,%src] ; mul %src ; [mov %rdx,%dest] ;
    /// [shr $s,%dest]` (the dividend may be loaded between the multiplier and the `mul`).
    Mul {
        /// Whether the sequence ends with a shift (post-shift > 0).
        shifted: bool,
    },
    /// 32-bit `x / d` whose multiplier needs 33 bits (odd `d`): `imul $m,%src,%hi ;
    /// shr $32,%hi ; sub %hi32,%x32 ; shr %x32 ; add %hi32,%x32 ; shr $(s-1),%x32`, `m` the
    /// low 32 bits of the multiplier (below 2^31, a sign-extended imm32) and `%src`, `%x` both
    /// holding the dividend. With `into_high`, the sum goes to the high half's register
    /// instead: `add %x32,%hi32 ; shr $(s-1),%hi32`. (No such divisor has s = 1, so the last
    /// shift is always there.)
    ImulImmediateAdd {
        /// Whether the `add` (and the final shift) write `%hi` rather than `%x`.
        into_high: bool,
    },
    /// Signed 32-bit `x / d`, `d > 0`, whose multiplier needs 32 bits (it is negative as a
    /// signed imm32): `movslq %x32,%src ; imul $m,%src,%dest ; shr $32,%dest ;
    /// add %x32,%dest32 ; sar $31,%x32 ; sar $s,%dest32 ; sub %x32,%dest32` (the two `sar`
    /// in either order; such a multiplier needs d > 2, so s > 0).
    SignedImulAdd,
}

impl fmt::Display for MagicForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MagicForm::ImulImmediate => "imul $m; shr",
            MagicForm::ImulRegister => "mov $m; imul; shr",
            MagicForm::Mul { shifted: true } => "movabs $m; mul; shr",
            MagicForm::Mul { shifted: false } => "movabs $m; mul",
            MagicForm::ImulImmediateAdd { .. } => "imul $m; shr; sub; shr; add; shr",
            MagicForm::SignedImulAdd => "imul $m; shr; add; sar; sar; sub",
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
    /// The multiplier fits n bits: no add-fixup sequence.
    NoAddFixup,
    /// The multiplier does not fit the sign-extended 32-bit immediate.
    MultiplierTooWide,
    /// The multiplier would fit an immediate: the compiler would not load it into a register.
    MultiplierFitsImmediate,
    /// The post-shift would be zero (no `shr`) or non-zero (a `shr`), unlike the site.
    ShiftPresence,
    /// A negative divisor: signed division negates the quotient (other instructions).
    Negative,
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
            MagicMismatch::NoAddFixup => {
                "the multiplier fits n bits (no add-fixup sequence, unlike the site)"
            }
            MagicMismatch::MultiplierTooWide => "the multiplier does not fit a sign-extended imm32",
            MagicMismatch::MultiplierFitsImmediate => "the multiplier would be an imul immediate",
            MagicMismatch::ShiftPresence => "the final shift would appear or disappear",
            MagicMismatch::Negative => "a negative divisor compiles to a negated quotient",
        })
    }
}

/// The multiplier and total shift count a divisor gives in `form`, or why the compiler
/// would emit something else.
///
/// For the 32-bit plain forms the shift count is `32 + post_shift` (the shift of the 64-bit
/// product); for [`MagicForm::Mul`] it is the post-shift; for [`MagicForm::ImulImmediateAdd`]
/// it is `post_shift - 1` (the shift after the fix-up) and the multiplier is the low 32 bits.
pub fn check_form(d: i64, width: Width, form: MagicForm) -> Result<(u64, u32), MagicMismatch> {
    let wanted = match form {
        MagicForm::ImulImmediate
        | MagicForm::ImulRegister
        | MagicForm::ImulImmediateAdd { .. }
        | MagicForm::SignedImulAdd => Width::W32,
        MagicForm::Mul { .. } => Width::W64,
    };
    if width != wanted {
        return Err(MagicMismatch::NotADivisor);
    }
    if form == MagicForm::SignedImulAdd {
        return check_signed_add(d, width);
    }
    let d = u64::try_from(d).map_err(|_| MagicMismatch::NotADivisor)?;
    match unsigned_division(d, width).ok_or(MagicMismatch::NotADivisor)? {
        UnsignedDivision::MultiplyAdd {
            multiplier,
            post_shift,
        } => match form {
            MagicForm::ImulImmediateAdd { .. } if multiplier >= 1 << 31 => {
                Err(MagicMismatch::MultiplierTooWide)
            }
            MagicForm::ImulImmediateAdd { .. } => Ok((multiplier, post_shift - 1)),
            _ => Err(MagicMismatch::AddFixup),
        },
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
            MagicForm::ImulImmediateAdd { .. } | MagicForm::SignedImulAdd => {
                Err(MagicMismatch::NoAddFixup)
            }
        },
        other => Err(plain_mismatch(other)),
    }
}

/// The multiplier (n bits) and post-shift of a signed n-bit `x / d`, for `d` in 3..2^(n-1)
/// not a power of two (GCC's `expand_divmod`: `choose_multiplier(d, n, n - 1)`). A
/// multiplier of 2^(n-1) or more is negative as a signed n-bit value: the code adds the
/// dividend to the high half of the product.
pub fn signed_multiplier(d: u64, width: Width) -> Option<(u64, u32)> {
    let n = width.bits();
    if d < 3 || d.is_power_of_two() || d >= width.sign_bit() {
        return None;
    }
    let (m, post_shift) = choose_multiplier(d, n, n - 1);
    Some((u64::try_from(m).ok()? & width.mask(), post_shift))
}

fn check_signed_add(d: i64, width: Width) -> Result<(u64, u32), MagicMismatch> {
    match d {
        ..0 => return Err(MagicMismatch::Negative),
        0 => return Err(MagicMismatch::NotADivisor),
        1 => return Err(MagicMismatch::One),
        _ => {}
    }
    let d = d as u64;
    if d.is_power_of_two() {
        return Err(MagicMismatch::PowerOfTwo);
    }
    if d >= width.sign_bit() {
        return Err(MagicMismatch::Compare);
    }
    let (m, post_shift) = signed_multiplier(d, width).ok_or(MagicMismatch::NotADivisor)?;
    if m < width.sign_bit() {
        Err(MagicMismatch::NoAddFixup)
    } else {
        Ok((m, post_shift))
    }
}

/// Why a divisor without a multiply (1, a power of two, a compare) does not fit a magic form.
fn plain_mismatch(shape: UnsignedDivision) -> MagicMismatch {
    match shape {
        UnsignedDivision::Identity => MagicMismatch::One,
        UnsignedDivision::Shift { .. } => MagicMismatch::PowerOfTwo,
        _ => MagicMismatch::Compare,
    }
}

/// Whether the compiler gives `b` the same division code as `a` wherever `a` needs an add
/// fix-up (unsigned or signed division, 32 or 64 bits): the same kind of sequence, the
/// multiplier as wide and the same shifts present. Doubling or halving always loses the
/// unsigned fix-up (even divisors are pre-shifted instead), so KernelX picks its probe values
/// by this rule for such `a` ([`needs_add_fixup`]).
pub fn same_division_shape(a: i64, b: i64) -> bool {
    [Width::W32, Width::W64].into_iter().all(|w| {
        [unsigned_shape(a, w), signed_shape(a, w)]
            .into_iter()
            .zip([unsigned_shape(b, w), signed_shape(b, w)])
            .all(|(sa, sb)| !sa.as_ref().is_some_and(Shape::has_fixup) || sa == sb)
    })
}

/// Whether `d` needs the unsigned add fix-up (a multiplier of n+1 bits) at 32 or 64 bits.
pub fn needs_add_fixup(d: i64) -> bool {
    [Width::W32, Width::W64]
        .into_iter()
        .any(|w| matches!(unsigned_shape(d, w), Some(Shape::MultiplyAdd { .. })))
}

/// What of a division's code shape decides its instructions.
#[derive(PartialEq, Eq)]
enum Shape {
    Identity,
    Shift,
    Compare,
    Multiply {
        fits_imm32: bool,
        pre_shifted: bool,
        post_shifted: bool,
    },
    MultiplyAdd {
        fits_imm32: bool,
        post_shifted: bool,
    },
    Signed {
        add: bool,
        post_shifted: bool,
    },
}

impl Shape {
    fn has_fixup(&self) -> bool {
        matches!(
            self,
            Shape::MultiplyAdd { .. } | Shape::Signed { add: true, .. }
        )
    }
}

fn unsigned_shape(d: i64, width: Width) -> Option<Shape> {
    let shape = unsigned_division(u64::try_from(d).ok()?, width)?;
    let fits = |m: u64| m < 1 << 31;
    Some(match shape {
        UnsignedDivision::Identity => Shape::Identity,
        UnsignedDivision::Shift { .. } => Shape::Shift,
        UnsignedDivision::Compare => Shape::Compare,
        UnsignedDivision::Multiply {
            pre_shift,
            multiplier,
            post_shift,
        } => Shape::Multiply {
            fits_imm32: fits(multiplier),
            pre_shifted: pre_shift > 0,
            post_shifted: post_shift > 0,
        },
        UnsignedDivision::MultiplyAdd {
            multiplier,
            post_shift,
        } => Shape::MultiplyAdd {
            fits_imm32: fits(multiplier),
            post_shifted: post_shift > 1,
        },
    })
}

/// Positive divisors only (negative ones negate the quotient).
fn signed_shape(d: i64, width: Width) -> Option<Shape> {
    let d = u64::try_from(d).ok().filter(|&d| d > 0)?;
    Some(match d {
        1 => Shape::Identity,
        d if d.is_power_of_two() => Shape::Shift,
        d if d >= width.sign_bit() => Shape::Compare,
        d => {
            let (m, post_shift) = signed_multiplier(d, width)?;
            Shape::Signed {
                add: m >= width.sign_bit(),
                post_shifted: post_shift > 0,
            }
        }
    })
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

    /// gcc-12 -O2, `(u32)x % 1009` (the target module): `imul $0x3ce4585,%rcx,%rcx; shr
    /// $0x20,%rcx; sub %ecx,%edx; shr %edx; add %ecx,%edx; shr $0x9,%edx`.
    #[test]
    fn add_fixup_form() {
        let form = MagicForm::ImulImmediateAdd { into_high: false };
        assert_eq!(check_form(1009, Width::W32, form), Ok((0x03ce_4585, 9)));
        assert_eq!(check_form(7, Width::W32, form), Ok((0x2492_4925, 2)));
        assert_eq!(
            check_form(2018, Width::W32, form),
            Err(MagicMismatch::PreShift)
        );
        assert_eq!(
            check_form(10, Width::W32, form),
            Err(MagicMismatch::NoAddFixup)
        );
        assert_eq!(
            check_form(1024, Width::W32, form),
            Err(MagicMismatch::PowerOfTwo)
        );
        assert_eq!(
            check_form(1009, Width::W64, form),
            Err(MagicMismatch::NotADivisor)
        );
        assert_eq!(
            check_form(1009, Width::W32, MagicForm::ImulImmediate),
            Err(MagicMismatch::AddFixup)
        );
        // The fix-up's formula divides exactly for every divisor of this form.
        for d in (3..5000).filter(|&d| check_form(d, Width::W32, form).is_ok()) {
            let (m, s) = check_form(d, Width::W32, form).unwrap();
            for x in [
                0u32,
                1,
                d as u32 - 1,
                d as u32,
                u32::MAX,
                0x8000_0000,
                123_456_789,
            ] {
                let t = ((u64::from(x) * m) >> 32) as u32;
                let q = (t + ((x - t) >> 1)) >> s;
                assert_eq!(q, x / d as u32, "{x} / {d}");
            }
        }
    }

    #[test]
    fn probe_values_keep_the_shape() {
        assert!(needs_add_fixup(1009));
        assert!(needs_add_fixup(7));
        assert!(!needs_add_fixup(13 * 2));
        assert!(!needs_add_fixup(1024));
        // Doubling and halving lose the fix-up (even divisors are pre-shifted instead).
        assert!(!same_division_shape(1009, 2018));
        assert!(!same_division_shape(1009, 504));
        // 7 keeps the signed fix-up at 14 but loses the unsigned one; 31 keeps both.
        assert!(!same_division_shape(7, 14));
        assert!(same_division_shape(7, 31));
        let same: Vec<i64> = (1000..1100)
            .filter(|&v| same_division_shape(1009, v))
            .collect();
        assert!(same.contains(&1009), "{same:?}");
        let form = MagicForm::ImulImmediateAdd { into_high: false };
        for v in same {
            assert!(check_form(v, Width::W32, form).is_ok(), "{v}");
        }
    }

    /// gcc-12 -O2, `(s32)x / 7` (the target module): `movslq %edx,%rax; imul
    /// $-0x6db6db6d,%rax,%rax; shr $0x20,%rax; add %edx,%eax; sar $0x1f,%edx; sar $0x2,%eax;
    /// sub %edx,%eax`.
    #[test]
    fn signed_add_form() {
        let form = MagicForm::SignedImulAdd;
        assert_eq!(check_form(7, Width::W32, form), Ok((0x9249_2493, 2)));
        assert_eq!(
            check_form(3, Width::W32, form),
            Err(MagicMismatch::NoAddFixup)
        );
        assert_eq!(
            check_form(-7, Width::W32, form),
            Err(MagicMismatch::Negative)
        );
        assert_eq!(
            check_form(8, Width::W32, form),
            Err(MagicMismatch::PowerOfTwo)
        );
        assert_eq!(
            check_form((1 << 31) + 1, Width::W32, form),
            Err(MagicMismatch::Compare)
        );
        assert_eq!(
            check_form(7, Width::W32, MagicForm::ImulImmediate),
            Err(MagicMismatch::AddFixup)
        );
        // The sequence divides exactly (rounding toward zero) for every divisor of the form.
        for d in (3..5000).filter(|&d| check_form(d, Width::W32, form).is_ok()) {
            let (m, s) = check_form(d, Width::W32, form).unwrap();
            for x in [
                0i32,
                1,
                -1,
                d as i32,
                -(d as i32),
                i32::MAX,
                i32::MIN,
                -123_456_789,
            ] {
                let product = i64::from(x).wrapping_mul(i64::from(m as u32 as i32));
                let high = (product >> 32) as i32;
                let q = (high.wrapping_add(x) >> s) - (x >> 31);
                assert_eq!(q, x / d as i32, "{x} / {d}");
            }
        }
    }

    /// The forms with a fix-up have no variant without the final shift: every divisor whose
    /// multiplier needs the fix-up has a post-shift of at least 2 (unsigned) or 1 (signed).
    #[test]
    fn fixup_forms_always_shift() {
        for d in 3u64..200_000 {
            if let Some(UnsignedDivision::MultiplyAdd { post_shift, .. }) =
                unsigned_division(d, Width::W32)
            {
                assert!(post_shift >= 2, "{d}");
            }
            if let Some((m, post_shift)) = signed_multiplier(d, Width::W32)
                && m >= 1 << 31
            {
                assert!(post_shift >= 1, "{d}");
            }
        }
    }
}
