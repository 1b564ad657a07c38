//! Operands as recipes name them: widths, registers (with sub-register views) and addresses.
//!
//! These are the x86-64 facts a runtime needs to read or write the state a probe sees
//! (`pt_regs` and the memory just stored). Turning them into iced registers or symbolic
//! expressions is the analysis' business (`kernelx-x86`).

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

/// A 64-bit general-purpose register, numbered as the hardware encodes it (`rax` = 0).
///
/// Serialized by its 64-bit name in lower case (`"rbp"`, `"r13"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[expect(missing_docs, reason = "the variants are the register names")]
pub enum Gpr {
    Rax,
    Rcx,
    Rdx,
    Rbx,
    Rsp,
    Rbp,
    Rsi,
    Rdi,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
}

impl Gpr {
    /// All sixteen, in hardware order.
    pub const ALL: [Gpr; 16] = [
        Gpr::Rax,
        Gpr::Rcx,
        Gpr::Rdx,
        Gpr::Rbx,
        Gpr::Rsp,
        Gpr::Rbp,
        Gpr::Rsi,
        Gpr::Rdi,
        Gpr::R8,
        Gpr::R9,
        Gpr::R10,
        Gpr::R11,
        Gpr::R12,
        Gpr::R13,
        Gpr::R14,
        Gpr::R15,
    ];

    /// The hardware number (0..16), the index of the register in a state that stores the
    /// sixteen in hardware order.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The 64-bit name (`rax`).
    pub const fn name(self) -> &'static str {
        [
            "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11",
            "r12", "r13", "r14", "r15",
        ][self as usize]
    }
}

impl fmt::Display for Gpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.name())
    }
}

/// A segment register with a base in 64-bit mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Segment {
    /// `%fs` (user TLS; unused by the kernel).
    Fs,
    /// `%gs`: the kernel's per-CPU area.
    Gs,
}

/// A register operand: a GPR viewed at a width (`al`, `ax`, `eax`, `rax`, or `ah`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RegOperand {
    /// The underlying 64-bit register.
    pub gpr: Gpr,
    /// The width of the view.
    pub width: Width,
    /// `ah`/`ch`/`dh`/`bh`: bits 8..16 of `rax`..`rbx`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub high8: bool,
}

impl RegOperand {
    /// The full 64-bit register.
    pub const fn full(gpr: Gpr) -> RegOperand {
        RegOperand {
            gpr,
            width: Width::W64,
            high8: false,
        }
    }

    /// `gpr` viewed at `width`.
    pub const fn new(gpr: Gpr, width: Width) -> RegOperand {
        RegOperand {
            gpr,
            width,
            high8: false,
        }
    }

    /// The view's value in a full 64-bit register value (zero-extended).
    pub const fn read(self, full: u64) -> u64 {
        if self.high8 {
            (full >> 8) & 0xff
        } else {
            full & self.width.mask()
        }
    }

    /// The full register after writing `value` to the view: 32-bit writes zero the upper
    /// half, 8/16-bit writes keep the other bits.
    pub const fn write(self, full: u64, value: u64) -> u64 {
        if self.high8 {
            return (full & !0xff00) | ((value & 0xff) << 8);
        }
        match self.width {
            Width::W64 => value,
            Width::W32 => value & 0xffff_ffff,
            w => (full & !w.mask()) | (value & w.mask()),
        }
    }
}

impl fmt::Display for RegOperand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.gpr.name();
        let i = self.gpr.index();
        match self.width {
            _ if self.high8 => write!(f, "%{}h", &name[1..2]),
            Width::W64 => write!(f, "%{name}"),
            Width::W32 if i >= 8 => write!(f, "%{name}d"),
            Width::W16 if i >= 8 => write!(f, "%{name}w"),
            Width::W8 if i >= 8 => write!(f, "%{name}b"),
            Width::W32 => write!(f, "%e{}", &name[1..]),
            Width::W16 => write!(f, "%{}", &name[1..]),
            Width::W8 if i < 4 => write!(f, "%{}l", &name[1..2]),
            Width::W8 => write!(f, "%{}l", &name[1..]),
            Width::W1 => write!(f, "%{name}:1"),
        }
    }
}

/// A memory address as an instruction computes it: `seg:disp(base,index,scale)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Address {
    /// `%fs:`/`%gs:` override (`None` for flat addressing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<Segment>,
    /// Base register.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<Gpr>,
    /// Index register.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<Gpr>,
    /// Scale of the index: 1, 2, 4 or 8.
    pub scale: u8,
    /// Displacement. For a RIP-relative address it is relative to the start of the critical
    /// span (see [`Address::rip_relative`]).
    pub disp: i64,
    /// RIP-relative: the address is `span start + disp`, whatever instruction used it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rip_relative: bool,
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = self.segment {
            write!(f, "%{}:", format!("{s:?}").to_lowercase())?;
        }
        if self.disp < 0 {
            write!(f, "-{:#x}", self.disp.unsigned_abs())?;
        } else {
            write!(f, "{:#x}", self.disp)?;
        }
        if self.rip_relative {
            return f.write_str("(span start)");
        }
        if self.base.is_some() || self.index.is_some() {
            f.write_str("(")?;
            if let Some(b) = self.base {
                write!(f, "{b}")?;
            }
            if let Some(i) = self.index {
                write!(f, ",{i},{}", self.scale)?;
            }
            f.write_str(")")?;
        }
        Ok(())
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
        assert_eq!(Width::W32.signed_min(), -(1 << 31));
        assert_eq!(Width::W64.unsigned_max(), u64::MAX as i128);
    }

    #[test]
    fn width_serializes_as_bits() {
        assert_eq!(u8::from(Width::W32), 32);
        assert_eq!(Width::try_from(16u8), Ok(Width::W16));
        assert!(Width::try_from(12u8).is_err());
    }

    #[test]
    fn sub_register_views_follow_x86() {
        let al = RegOperand::new(Gpr::Rax, Width::W8);
        let ah = RegOperand { high8: true, ..al };
        let full = 0x1122_3344_5566_7788;
        assert_eq!(al.write(full, 0xff), 0x1122_3344_5566_77ff);
        assert_eq!(ah.write(full, 0xaa), 0x1122_3344_5566_aa88);
        assert_eq!(ah.read(full), 0x77);
        assert_eq!(
            RegOperand::new(Gpr::Rax, Width::W32).write(full, 0xdead_beef),
            0xdead_beef
        );
        for (reg, text) in [
            (ah, "%ah"),
            (al, "%al"),
            (RegOperand::new(Gpr::Rsi, Width::W8), "%sil"),
            (RegOperand::new(Gpr::R9, Width::W16), "%r9w"),
            (RegOperand::new(Gpr::R13, Width::W8), "%r13b"),
            (RegOperand::new(Gpr::Rbp, Width::W32), "%ebp"),
            (RegOperand::full(Gpr::Rsp), "%rsp"),
        ] {
            assert_eq!(reg.to_string(), text);
        }
    }

    #[test]
    fn addresses_print_as_att() {
        let a = Address {
            segment: Some(Segment::Gs),
            base: Some(Gpr::Rbx),
            index: Some(Gpr::R13),
            scale: 8,
            disp: -0x10,
            rip_relative: false,
        };
        assert_eq!(a.to_string(), "%gs:-0x10(%rbx,%r13,8)");
        let rip = Address {
            segment: None,
            base: None,
            index: None,
            scale: 1,
            disp: 0x40,
            rip_relative: true,
        };
        assert_eq!(rip.to_string(), "0x40(span start)");
    }
}
