//! Fixed-width bit-vectors: the values every x86 operand holds.

use std::fmt;

// Widths are plan data (recipes name them); the values of a width live here.
pub use kernelx_plan::Width;

/// A concrete value of a given width; the bits above the width are always zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Bv {
    width: Width,
    bits: u64,
}

impl Bv {
    /// The low `width` bits of `value`.
    pub const fn new(width: Width, value: u64) -> Bv {
        Bv {
            width,
            bits: value & width.mask(),
        }
    }

    /// A 1-bit value.
    pub const fn bit(value: bool) -> Bv {
        Bv {
            width: Width::W1,
            bits: value as u64,
        }
    }

    /// The width.
    pub const fn width(self) -> Width {
        self.width
    }

    /// The value read as unsigned (zero-extended to 64 bits).
    pub const fn unsigned(self) -> u64 {
        self.bits
    }

    /// The value read as two's complement (sign-extended to 64 bits).
    pub const fn signed(self) -> i64 {
        self.width.sign_extend(self.bits)
    }

    /// Whether the most significant bit is set.
    pub const fn msb(self) -> bool {
        self.bits & self.width.sign_bit() != 0
    }

    /// Whether the value is non-zero.
    pub const fn is_true(self) -> bool {
        self.bits != 0
    }
}

impl fmt::Display for Bv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}:{}", self.bits, self.width.bits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_and_extension_follow_the_width() {
        assert_eq!(Width::W8.mask(), 0xff);
        assert_eq!(Width::W64.mask(), u64::MAX);
        assert_eq!(Width::W16.sign_extend(0x8000), -0x8000);
        assert_eq!(Width::W32.sign_extend(0x7fff_ffff), 0x7fff_ffff);
        assert_eq!(Bv::new(Width::W8, 0x1ff).unsigned(), 0xff);
        assert_eq!(Bv::new(Width::W8, 0x80).signed(), -128);
        assert_eq!(Width::W32.signed_min(), -(1 << 31));
        assert_eq!(Width::W64.unsigned_max(), u64::MAX as i128);
    }
}
