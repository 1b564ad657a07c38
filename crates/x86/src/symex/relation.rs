//! Fitting the relation IV = f(V) between a constant's source value and what the compiler
//! encoded ([`Relation`], plan data) to the builds.
//!
//! A relation is accepted only if it reproduces every observed version exactly. Observed IVs
//! are bit patterns of the operand width; they are read both as signed and as unsigned
//! integers, and the reading(s) that fit decide the [`IvDomain`] a new IV must stay in.

use super::bv::Width;

// Relations are plan data (recipes carry them, a runtime evaluates them); fitting them to the
// builds is analysis and lives here.
pub use kernelx_plan::{IvDomain, MagicPart, Relation};

/// The relations that fit the observed bit patterns under each reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fit {
    /// Fit of the two's complement reading.
    pub signed: Option<Relation>,
    /// Fit of the unsigned reading.
    pub unsigned: Option<Relation>,
}

impl Fit {
    /// Fits `ivs` (bit patterns at `width`) against `values`.
    pub fn of(values: [i64; 3], ivs: [u64; 3], width: Width) -> Fit {
        let points = |f: &dyn Fn(u64) -> i128| {
            [
                (values[0], f(ivs[0])),
                (values[1], f(ivs[1])),
                (values[2], f(ivs[2])),
            ]
        };
        Fit {
            signed: Relation::fit(points(&|iv| i128::from(width.sign_extend(iv)))),
            unsigned: Relation::fit(points(&|iv| i128::from(iv & width.mask()))),
        }
    }

    /// The relation and domain to use, where neither reading is preferred: the intersection
    /// when both fit.
    pub fn neutral(&self) -> Option<(Relation, IvDomain)> {
        match (self.signed, self.unsigned) {
            (Some(s), Some(u)) if s == u => Some((s, IvDomain::NonNegative)),
            (Some(s), Some(_)) => Some((s, IvDomain::Negative)),
            (Some(s), None) => Some((s, IvDomain::Signed)),
            (None, Some(u)) => Some((u, IvDomain::Unsigned)),
            (None, None) => None,
        }
    }

    /// The relation and domain when the consumers compare unsigned (`true`) or signed
    /// (`false`): that reading wins if it fits.
    pub fn prefer(&self, unsigned: bool) -> Option<(Relation, IvDomain)> {
        match (unsigned, self.signed, self.unsigned) {
            (true, _, Some(u)) => Some((u, IvDomain::Unsigned)),
            (false, Some(s), _) => Some((s, IvDomain::Signed)),
            _ => self.neutral(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_affine_and_rejects_near_misses() {
        // cmp $0xffff / $0x1ffff / $0x3fff: PIPE_DEF_BUFFERS 16 / 32 / 4.
        let fit = Fit::of([16, 32, 4], [0xffff, 0x1ffff, 0x3fff], Width::W32);
        assert_eq!(
            fit.neutral(),
            Some((Relation::Affine { a: 4096, b: -1 }, IvDomain::NonNegative))
        );
        // One point off by one: no relation.
        assert_eq!(
            Relation::fit([(16, 0xffff), (32, 0x1ffff), (4, 0x4000)]),
            None
        );
        // Non-integer slope.
        assert_eq!(Relation::fit([(1, 0), (3, 1), (5, 2)]), None);
        // Repeated V.
        assert_eq!(Relation::fit([(1, 0), (1, 0), (5, 2)]), None);
    }

    #[test]
    fn sign_extended_immediates_pick_the_reading_that_fits() {
        // and $0xfffff000 etc.: IV = -V as 32-bit masks (both readings fit, top bit set).
        let fit = Fit::of(
            [4096, 8192, 65536],
            [0xffff_f000, 0xffff_e000, 0xffff_0000],
            Width::W32,
        );
        assert_eq!(
            fit.neutral(),
            Some((Relation::Affine { a: -1, b: 0 }, IvDomain::Negative))
        );
        // cmp $-1 (imm8) / $15 / $31 at 64 bits: only the signed reading is affine.
        let fit = Fit::of([0, 16, 32], [u64::MAX, 15, 31], Width::W64);
        assert_eq!(
            fit.neutral(),
            Some((Relation::Affine { a: 1, b: -1 }, IvDomain::Signed))
        );
        // 0x7f, 0x80, 0x81 at 8 bits only fit unsigned.
        let fit = Fit::of([0, 1, 2], [0x7f, 0x80, 0x81], Width::W8);
        assert_eq!(
            fit.neutral(),
            Some((Relation::Affine { a: 1, b: 0x7f }, IvDomain::Unsigned))
        );
    }
}
