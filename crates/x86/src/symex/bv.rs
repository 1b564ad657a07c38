//! Fixed-width bit-vectors: the values every x86 operand holds.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The width of a value: 1 bit (a condition or a flag) or an x86 operand size.
///
/// Serialized as the number of bits (`1`, `8`, `16`, `32`, `64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum Width {
    /// A single bit: conditions and flags.
    W1,
    /// A byte (`al`, `byte ptr`).
    W8,
    /// A word (`ax`, `word ptr`).
    W16,
    /// A doubleword (`eax`, `dword ptr`).
    W32,
    /// A quadword (`rax`, `qword ptr`).
    W64,
}

impl Width {
    /// The operand widths x86 instructions use, narrowest first.
    pub const OPERANDS: [Width; 4] = [Width::W8, Width::W16, Width::W32, Width::W64];

    /// Number of bits.
    pub const fn bits(self) -> u32 {
        match self {
            Width::W1 => 1,
            Width::W8 => 8,
            Width::W16 => 16,
            Width::W32 => 32,
            Width::W64 => 64,
        }
    }

    /// Number of bytes (a 1-bit value occupies one byte).
    pub const fn bytes(self) -> u32 {
        match self {
            Width::W1 | Width::W8 => 1,
            Width::W16 => 2,
            Width::W32 => 4,
            Width::W64 => 8,
        }
    }

    /// The mask of the bits this width holds.
    pub const fn mask(self) -> u64 {
        match self {
            Width::W64 => u64::MAX,
            w => (1u64 << w.bits()) - 1,
        }
    }

    /// The most significant bit of this width.
    pub const fn sign_bit(self) -> u64 {
        1u64 << (self.bits() - 1)
    }

    /// The width with this many bits, if x86 has it.
    pub const fn from_bits(bits: u32) -> Option<Width> {
        match bits {
            1 => Some(Width::W1),
            8 => Some(Width::W8),
            16 => Some(Width::W16),
            32 => Some(Width::W32),
            64 => Some(Width::W64),
            _ => None,
        }
    }

    /// The operand width with this many bytes.
    pub const fn from_bytes(bytes: usize) -> Option<Width> {
        match bytes {
            1 => Some(Width::W8),
            2 => Some(Width::W16),
            4 => Some(Width::W32),
            8 => Some(Width::W64),
            _ => None,
        }
    }

    /// The smallest value of this width read as two's complement.
    pub const fn signed_min(self) -> i128 {
        -(1i128 << (self.bits() - 1))
    }

    /// The largest value of this width read as two's complement.
    pub const fn signed_max(self) -> i128 {
        (1i128 << (self.bits() - 1)) - 1
    }

    /// The largest value of this width read as unsigned.
    pub const fn unsigned_max(self) -> i128 {
        (1i128 << self.bits()) - 1
    }

    /// Sign-extends the low `self` bits of `value` to 64 bits.
    pub const fn sign_extend(self, value: u64) -> i64 {
        let shift = 64 - self.bits();
        ((value << shift) as i64) >> shift
    }
}

impl From<Width> for u8 {
    fn from(w: Width) -> u8 {
        w.bits() as u8
    }
}

impl TryFrom<u8> for Width {
    type Error = String;

    fn try_from(bits: u8) -> Result<Width, String> {
        Width::from_bits(u32::from(bits))
            .ok_or_else(|| format!("{bits} is not a width in bits (1, 8, 16, 32 or 64)"))
    }
}

impl fmt::Display for Width {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-bit", self.bits())
    }
}

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

    #[test]
    fn width_serializes_as_bits() {
        assert_eq!(u8::from(Width::W32), 32);
        assert_eq!(Width::try_from(16u8), Ok(Width::W16));
        assert!(Width::try_from(12u8).is_err());
    }
}
