//! The relation IV = f(V) between a constant's source value and what the compiler encoded.
//!
//! A relation is accepted only if it reproduces every observed version exactly. Observed IVs
//! are bit patterns of the operand width; they are read both as signed and as unsigned
//! integers, and the reading(s) that fit decide the [`IvDomain`] a new IV must stay in.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::magic::{UnsignedDivision, signed_multiplier, unsigned_division};
use crate::operand::Width;

/// IV = f(V).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "form", rename_all = "snake_case")]
pub enum Relation {
    /// IV = a*V + b (`PIPE_DEF_BUFFERS*PAGE_SIZE - 1` is a = 4096, b = -1; `(V << k) - 1` is
    /// a = 2^k, b = -1).
    Affine {
        /// Slope.
        a: i64,
        /// Offset.
        b: i64,
    },
    /// IV = k * 2^V + b (`1 << V`, `(1 << V) - 1`, `-(1 << V)`, `PAGE_SIZE << V`).
    Exp2 {
        /// Factor.
        k: i64,
        /// Offset.
        b: i64,
    },
    /// IV = a * log2(V) + b for V a power of two (`x / V` or `x * V` compiled to a shift).
    Log2 {
        /// Slope.
        a: i64,
        /// Offset.
        b: i64,
    },
    /// IV is a constant of the magic-multiply sequence for an unsigned `x / V`.
    UnsignedDivision {
        /// The division's width.
        width: Width,
        /// Which constant of the sequence.
        part: MagicPart,
    },
    /// IV is a constant of the magic-multiply sequence for a signed `x / V`, V > 0.
    SignedDivision {
        /// The division's width.
        width: Width,
        /// Which constant of the sequence.
        part: MagicPart,
    },
}

/// A constant of a magic division sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MagicPart {
    /// The multiplier.
    Multiplier,
    /// The shift count (for 32-bit divisions, 32 + the post-shift).
    Shift,
}

impl fmt::Display for MagicPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MagicPart::Multiplier => "multiplier",
            MagicPart::Shift => "shift",
        })
    }
}

impl Relation {
    /// The exact integer IV for `v`, or `None` where f is undefined (negative exponent, a
    /// logarithm of a non-power of two, a divisor without a plain magic multiplier).
    pub fn eval(&self, v: i64) -> Option<i128> {
        let v128 = i128::from(v);
        match *self {
            Relation::Affine { a, b } => Some(i128::from(a) * v128 + i128::from(b)),
            Relation::Exp2 { k, b } => (0..=62)
                .contains(&v)
                .then(|| i128::from(k) * (1i128 << v) + i128::from(b)),
            Relation::Log2 { a, b } => (v > 0 && (v as u64).is_power_of_two())
                .then(|| i128::from(a) * i128::from(v.trailing_zeros()) + i128::from(b)),
            Relation::UnsignedDivision { width, part } => {
                // The shape of V itself decides which constants the code holds; the site's
                // range admits only V' of the shape it was compiled to.
                let (multiplier, shift) = match unsigned_division(u64::try_from(v).ok()?, width)? {
                    UnsignedDivision::Multiply {
                        pre_shift: 0,
                        multiplier,
                        post_shift,
                    } if width == Width::W32 => (multiplier, 32 + post_shift),
                    UnsignedDivision::Multiply {
                        pre_shift: 0,
                        multiplier,
                        post_shift,
                    } => (multiplier, post_shift),
                    // The 33-bit multiplier's low half; the 32-bit shift after the fix-up.
                    UnsignedDivision::MultiplyAdd {
                        multiplier,
                        post_shift,
                    } => (multiplier, post_shift - 1),
                    _ => return None,
                };
                Some(i128::from(match part {
                    MagicPart::Multiplier => multiplier,
                    MagicPart::Shift => u64::from(shift),
                }))
            }
            Relation::SignedDivision { width, part } => {
                let (multiplier, shift) =
                    signed_multiplier(u64::try_from(v).ok().filter(|&v| v > 0)?, width)?;
                Some(i128::from(match part {
                    MagicPart::Multiplier => multiplier,
                    MagicPart::Shift => u64::from(shift),
                }))
            }
        }
    }

    /// The relation of a supported form through three points, if one fits all of them
    /// exactly (tried in order: affine, k*2^V+b, a*log2(V)+b). Division relations are found
    /// from code, not from points.
    pub fn fit(points: [(i64, i128); 3]) -> Option<Relation> {
        let [p0, p1, p2] = points;
        if p0.0 == p1.0 || p0.0 == p2.0 || p1.0 == p2.0 {
            return None;
        }
        let fits = |r: Relation| points.iter().all(|&(v, iv)| r.eval(v) == Some(iv));
        // Affine: a from the first two points, checked on all three.
        let affine = (|| {
            let (dv, div) = (i128::from(p1.0) - i128::from(p0.0), p1.1 - p0.1);
            if div % dv != 0 {
                return None;
            }
            let a = div / dv;
            let b = p0.1 - a * i128::from(p0.0);
            let r = Relation::Affine {
                a: i64::try_from(a).ok()?,
                b: i64::try_from(b).ok()?,
            };
            (a != 0 && fits(r)).then_some(r)
        })();
        if affine.is_some() {
            return affine;
        }
        let exp2 = (|| {
            if points.iter().any(|&(v, _)| !(0..=62).contains(&v)) {
                return None;
            }
            let dp = (1i128 << p1.0) - (1i128 << p0.0);
            let div = p1.1 - p0.1;
            if div % dp != 0 {
                return None;
            }
            let k = div / dp;
            let b = p0.1 - k * (1i128 << p0.0);
            let r = Relation::Exp2 {
                k: i64::try_from(k).ok()?,
                b: i64::try_from(b).ok()?,
            };
            (k != 0 && fits(r)).then_some(r)
        })();
        if exp2.is_some() {
            return exp2;
        }
        (|| {
            if points
                .iter()
                .any(|&(v, _)| v <= 0 || !(v as u64).is_power_of_two())
            {
                return None;
            }
            let l = |v: i64| i128::from(v.trailing_zeros());
            let (dl, div) = (l(p1.0) - l(p0.0), p1.1 - p0.1);
            if div % dl != 0 {
                return None;
            }
            let a = div / dl;
            let b = p0.1 - a * l(p0.0);
            let r = Relation::Log2 {
                a: i64::try_from(a).ok()?,
                b: i64::try_from(b).ok()?,
            };
            (a != 0 && fits(r)).then_some(r)
        })()
    }

    /// The V interval in which `iv_lo <= f(V) <= iv_hi` (for the monotone forms), `None` for
    /// magic divisions (restricted by shape instead) or when no V qualifies. Powers of two are
    /// the only candidates for [`Relation::Log2`], `0..=62` for [`Relation::Exp2`].
    pub fn v_interval(&self, iv_lo: i128, iv_hi: i128) -> Option<(i128, i128)> {
        match *self {
            Relation::Affine { a, b } => {
                let (a, b) = (i128::from(a), i128::from(b));
                let (lo, hi) = if a > 0 {
                    (div_ceil(iv_lo - b, a), div_floor(iv_hi - b, a))
                } else {
                    (div_ceil(iv_hi - b, a), div_floor(iv_lo - b, a))
                };
                (lo <= hi).then_some((lo, hi))
            }
            Relation::Exp2 { .. } => scan(self, (0..=62).collect(), iv_lo, iv_hi),
            Relation::Log2 { .. } => {
                scan(self, (0..=62).map(|j| 1i64 << j).collect(), iv_lo, iv_hi)
            }
            Relation::UnsignedDivision { .. } | Relation::SignedDivision { .. } => None,
        }
    }
}

/// The smallest and largest candidate whose IV is in range (the forms are monotone, so the
/// qualifying candidates are contiguous).
fn scan(r: &Relation, candidates: Vec<i64>, lo: i128, hi: i128) -> Option<(i128, i128)> {
    let ok: Vec<i64> = candidates
        .into_iter()
        .filter(|&v| r.eval(v).is_some_and(|iv| (lo..=hi).contains(&iv)))
        .collect();
    Some((i128::from(*ok.first()?), i128::from(*ok.last()?)))
}

fn div_floor(n: i128, d: i128) -> i128 {
    let q = n / d;
    if (n % d != 0) && ((n < 0) != (d < 0)) {
        q - 1
    } else {
        q
    }
}

fn div_ceil(n: i128, d: i128) -> i128 {
    let q = n / d;
    if (n % d != 0) && ((n < 0) == (d < 0)) {
        q + 1
    } else {
        q
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = |b: i64| match b {
            0 => String::new(),
            b if b < 0 => format!(" - {}", b.unsigned_abs()),
            b => format!(" + {b}"),
        };
        match *self {
            Relation::Affine { a, b } => write!(f, "IV = {a}*V{}", sign(b)),
            Relation::Exp2 { k, b } => write!(f, "IV = {k}*2^V{}", sign(b)),
            Relation::Log2 { a, b } => write!(f, "IV = {a}*log2(V){}", sign(b)),
            Relation::UnsignedDivision { width, part } => {
                write!(
                    f,
                    "IV = {part} of the magic multiply for {}-bit unsigned x / V",
                    width.bits()
                )
            }
            Relation::SignedDivision { width, part } => {
                write!(
                    f,
                    "IV = {part} of the magic multiply for {}-bit signed x / V",
                    width.bits()
                )
            }
        }
    }
}

/// The integers an IV may take at its operand width, as the builds show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IvDomain {
    /// Two's complement: `[-2^(w-1), 2^(w-1) - 1]`.
    Signed,
    /// Unsigned: `[0, 2^w - 1]`.
    Unsigned,
    /// Both readings fit (all observed IVs have the top bit clear): `[0, 2^(w-1) - 1]`.
    NonNegative,
    /// Both readings fit with the top bit set in all: `[-2^(w-1), -1]` (signed reading).
    Negative,
}

impl IvDomain {
    /// The admissible IV integers at `width`.
    pub fn window(self, width: Width) -> (i128, i128) {
        match self {
            IvDomain::Signed => (width.signed_min(), width.signed_max()),
            IvDomain::Unsigned => (0, width.unsigned_max()),
            IvDomain::NonNegative => (0, width.signed_max()),
            IvDomain::Negative => (width.signed_min(), -1),
        }
    }
}

impl fmt::Display for IvDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IvDomain::Signed => "a signed value",
            IvDomain::Unsigned => "an unsigned value",
            IvDomain::NonNegative => "a value that is the same signed and unsigned (top bit clear)",
            IvDomain::Negative => "a negative value (top bit set)",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_power_of_two_forms() {
        assert_eq!(
            Relation::fit([(4, 16), (5, 32), (7, 128)]),
            Some(Relation::Exp2 { k: 1, b: 0 })
        );
        assert_eq!(
            Relation::fit([(4, 15), (5, 31), (7, 127)]),
            Some(Relation::Exp2 { k: 1, b: -1 })
        );
        assert_eq!(
            Relation::fit([(2, -16384), (3, -32768), (0, -4096)]),
            Some(Relation::Exp2 { k: -4096, b: 0 })
        );
        assert_eq!(
            Relation::fit([(16, 4), (32, 5), (64, 6)]),
            Some(Relation::Log2 { a: 1, b: 0 })
        );
        // (V << 3) - 1 is affine.
        assert_eq!(
            Relation::fit([(1, 7), (2, 15), (5, 39)]),
            Some(Relation::Affine { a: 8, b: -1 })
        );
        // Nothing fits a quadratic.
        assert_eq!(Relation::fit([(1, 1), (2, 4), (3, 9)]), None);
    }

    #[test]
    fn intervals_invert_the_relation() {
        let r = Relation::Affine { a: 4096, b: -1 };
        // IV must fit 0..=0x7fffffff.
        assert_eq!(r.v_interval(0, 0x7fff_ffff), Some((1, 524_288)));
        let r = Relation::Affine { a: -3, b: 10 };
        assert_eq!(r.v_interval(-128, 127), Some((-39, 46)));
        let r = Relation::Exp2 { k: 1, b: -1 };
        assert_eq!(r.v_interval(0, 255), Some((0, 8)));
        let r = Relation::Log2 { a: 1, b: 0 };
        assert_eq!(r.v_interval(0, 31), Some((1, 1 << 31)));
        assert_eq!(Relation::Affine { a: 2, b: 0 }.v_interval(3, 3), None);
    }

    #[test]
    fn division_parts_follow_the_algorithm() {
        let m = Relation::UnsignedDivision {
            width: Width::W32,
            part: MagicPart::Multiplier,
        };
        let s = Relation::UnsignedDivision {
            width: Width::W32,
            part: MagicPart::Shift,
        };
        assert_eq!((m.eval(10), s.eval(10)), (Some(0xcccc_cccd), Some(35)));
        assert_eq!((m.eval(20), s.eval(20)), (Some(0xcccc_cccd), Some(36)));
        // 33-bit multipliers (the add fix-up): the low half, and the shift after the fix-up.
        assert_eq!((m.eval(7), s.eval(7)), (Some(0x2492_4925), Some(2)));
        assert_eq!((m.eval(1009), s.eval(1009)), (Some(0x03ce_4585), Some(9)));
        // 14 pre-shifts the dividend: no sequence of either kind.
        assert_eq!(m.eval(14), None);
        assert_eq!(m.eval(-3), None);
        let signed = |part| Relation::SignedDivision {
            width: Width::W32,
            part,
        };
        assert_eq!(signed(MagicPart::Multiplier).eval(7), Some(0x9249_2493));
        assert_eq!(signed(MagicPart::Shift).eval(7), Some(2));
        assert_eq!(signed(MagicPart::Multiplier).eval(-7), None);
    }
}
