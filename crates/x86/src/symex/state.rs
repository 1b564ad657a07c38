//! The register file with its sub-registers, addresses, and a concrete machine state.

use std::fmt;

use iced_x86::Register;
use serde::{Deserialize, Serialize};

use super::bv::Width;
use super::expr::{BinOp, Env, EvalError, Expr, Var};
use super::flags::{Flag, FlagSet};

/// A 64-bit general-purpose register, numbered as the hardware encodes it (`rax` = 0).
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

    /// The hardware number (0..16), also the index in [`MachineState::gpr`].
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

    /// The iced register of this GPR at `width` (`None` for [`Width::W1`]).
    pub fn iced(self, width: Width) -> Option<Register> {
        let base = match width {
            Width::W1 => return None,
            Width::W8 => {
                // iced numbers AL..BL, AH..BH, SPL..DIL, R8L..R15L.
                return Some(match self.index() {
                    i @ 0..=3 => Register::AL + i as u32,
                    i @ 4..=7 => Register::SPL + (i as u32 - 4),
                    i => Register::R8L + (i as u32 - 8),
                });
            }
            Width::W16 => Register::AX,
            Width::W32 => Register::EAX,
            Width::W64 => Register::RAX,
        };
        Some(base + self.index() as u32)
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

    /// The operand of an iced general-purpose register (`None` for other registers).
    pub fn from_iced(reg: Register) -> Option<RegOperand> {
        if !reg.is_gpr() {
            return None;
        }
        let high8 = matches!(
            reg,
            Register::AH | Register::CH | Register::DH | Register::BH
        );
        let full = reg.full_register();
        let idx = full.number().checked_sub(Register::RAX.number())?;
        let gpr = *Gpr::ALL.get(idx)?;
        let width = Width::from_bytes(reg.size())?;
        Some(RegOperand { gpr, width, high8 })
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

    /// The view as an expression over the full register.
    pub fn expr(self) -> Expr {
        let full = Expr::reg(self.gpr);
        if self.high8 {
            Expr::binary(BinOp::Shr, full, Expr::constant(Width::W8, 8)).trunc(Width::W8)
        } else {
            full.trunc(self.width)
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

impl Address {
    /// The address as a 64-bit expression. RIP-relative addresses use [`Var::SpanStart`].
    pub fn expr(&self) -> Expr {
        let mut e = Expr::constant(Width::W64, self.disp as u64);
        if self.rip_relative {
            e = Expr::binary(BinOp::Add, Expr::Var(Var::SpanStart), e);
        }
        if let Some(base) = self.base {
            e = Expr::binary(BinOp::Add, Expr::reg(base), e);
        }
        if let Some(index) = self.index {
            let scaled = Expr::binary(
                BinOp::MulLo,
                Expr::reg(index),
                Expr::constant(Width::W64, u64::from(self.scale)),
            );
            e = Expr::binary(BinOp::Add, e, scaled);
        }
        if let Some(segment) = self.segment {
            e = Expr::binary(BinOp::Add, Expr::Var(Var::SegmentBase { segment }), e);
        }
        e
    }
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

/// Byte-addressed memory made of mapped regions; anything else is unmapped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    regions: Vec<(u64, Vec<u8>)>,
}

impl Memory {
    /// Maps `bytes` at `addr`, replacing any region that starts there.
    pub fn map(&mut self, addr: u64, bytes: Vec<u8>) {
        self.regions.retain(|(a, _)| *a != addr);
        self.regions.push((addr, bytes));
    }

    /// The bytes of the region starting at `addr`.
    pub fn region(&self, addr: u64) -> Option<&[u8]> {
        self.regions
            .iter()
            .find(|(a, _)| *a == addr)
            .map(|(_, b)| b.as_slice())
    }

    fn locate(&self, addr: u64, len: usize) -> Option<(usize, usize)> {
        self.regions
            .iter()
            .enumerate()
            .find_map(|(i, (start, bytes))| {
                let off = addr.checked_sub(*start)?;
                let end = off.checked_add(len as u64)?;
                (end <= bytes.len() as u64).then_some((i, off as usize))
            })
    }

    /// Little-endian read of `width` (only from inside one region).
    pub fn read(&self, addr: u64, width: Width) -> Result<u64, EvalError> {
        let len = width.bytes() as usize;
        let (i, off) = self
            .locate(addr, len)
            .ok_or(EvalError::Unmapped { addr, width })?;
        let mut buf = [0u8; 8];
        buf[..len].copy_from_slice(&self.regions[i].1[off..off + len]);
        Ok(u64::from_le_bytes(buf))
    }

    /// Little-endian write of the low `width` bits of `value`.
    pub fn write(&mut self, addr: u64, width: Width, value: u64) -> Result<(), EvalError> {
        let len = width.bytes() as usize;
        let (i, off) = self
            .locate(addr, len)
            .ok_or(EvalError::Unmapped { addr, width })?;
        self.regions[i].1[off..off + len].copy_from_slice(&value.to_le_bytes()[..len]);
        Ok(())
    }
}

/// Concrete architectural state: what a kprobe sees in `pt_regs`, plus memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MachineState {
    /// GPRs indexed by [`Gpr::index`].
    pub gpr: [u64; 16],
    /// RFLAGS.
    pub rflags: u64,
    /// The instruction pointer. At a probe it is the probe's address (for recipes: the end of
    /// the critical span after it, its start before it).
    pub rip: u64,
    /// `%fs` base.
    pub fs_base: u64,
    /// `%gs` base (the per-CPU offset in the kernel).
    pub gs_base: u64,
    /// Memory.
    pub memory: Memory,
}

impl MachineState {
    /// A full register.
    pub fn get(&self, gpr: Gpr) -> u64 {
        self.gpr[gpr.index()]
    }

    /// Sets a full register.
    pub fn set(&mut self, gpr: Gpr, value: u64) {
        self.gpr[gpr.index()] = value;
    }

    /// Reads a register view (zero-extended).
    pub fn read_reg(&self, reg: RegOperand) -> u64 {
        reg.read(self.get(reg.gpr))
    }

    /// Writes a register view with x86's rules (32-bit writes zero the upper half).
    pub fn write_reg(&mut self, reg: RegOperand, value: u64) {
        let full = reg.write(self.get(reg.gpr), value);
        self.set(reg.gpr, full);
    }

    /// One flag.
    pub fn flag(&self, flag: Flag) -> bool {
        self.rflags & (1 << flag.bit()) != 0
    }

    /// Sets one flag.
    pub fn set_flag(&mut self, flag: Flag, value: bool) {
        if value {
            self.rflags |= 1 << flag.bit();
        } else {
            self.rflags &= !(1 << flag.bit());
        }
    }

    /// The arithmetic flags that differ between two states.
    pub fn flag_difference(&self, other: &MachineState) -> FlagSet {
        FlagSet::from_rflags(self.rflags ^ other.rflags)
    }
}

impl Env for MachineState {
    fn var(&self, var: Var) -> Result<u64, EvalError> {
        match var {
            Var::Reg { gpr } => Ok(self.get(gpr)),
            Var::Flag { flag } => Ok(u64::from(self.flag(flag))),
            Var::SegmentBase {
                segment: Segment::Fs,
            } => Ok(self.fs_base),
            Var::SegmentBase {
                segment: Segment::Gs,
            } => Ok(self.gs_base),
            other => Err(EvalError::Unbound(other)),
        }
    }

    fn load(&self, addr: u64, width: Width) -> Result<u64, EvalError> {
        self.memory.read(addr, width)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_register_writes_follow_x86() {
        let mut s = MachineState::default();
        s.set(Gpr::Rax, 0x1122_3344_5566_7788);
        s.write_reg(RegOperand::from_iced(Register::AL).unwrap(), 0xff);
        assert_eq!(s.get(Gpr::Rax), 0x1122_3344_5566_77ff);
        s.write_reg(RegOperand::from_iced(Register::AH).unwrap(), 0xaa);
        assert_eq!(s.get(Gpr::Rax), 0x1122_3344_5566_aaff);
        s.write_reg(RegOperand::from_iced(Register::AX).unwrap(), 0x1234);
        assert_eq!(s.get(Gpr::Rax), 0x1122_3344_5566_1234);
        s.write_reg(RegOperand::from_iced(Register::EAX).unwrap(), 0xdead_beef);
        assert_eq!(s.get(Gpr::Rax), 0xdead_beef);
        assert_eq!(
            s.read_reg(RegOperand::from_iced(Register::AH).unwrap()),
            0xbe
        );
        let r13b = RegOperand::from_iced(Register::R13L).unwrap();
        assert_eq!((r13b.gpr, r13b.width), (Gpr::R13, Width::W8));
        assert_eq!(Gpr::Rsi.iced(Width::W8), Some(Register::SIL));
        assert_eq!(Gpr::R9.iced(Width::W16), Some(Register::R9W));
        assert_eq!(RegOperand::from_iced(Register::RIP), None);
        for (r, text) in [
            (Register::AH, "%ah"),
            (Register::AL, "%al"),
            (Register::SIL, "%sil"),
            (Register::R9W, "%r9w"),
            (Register::R13L, "%r13b"),
            (Register::EBP, "%ebp"),
            (Register::R10D, "%r10d"),
            (Register::CX, "%cx"),
            (Register::RSP, "%rsp"),
        ] {
            assert_eq!(RegOperand::from_iced(r).unwrap().to_string(), text);
        }
    }

    #[test]
    fn memory_reads_stay_inside_regions() {
        let mut m = Memory::default();
        m.map(0x1000, vec![1, 2, 3, 4]);
        assert_eq!(m.read(0x1000, Width::W32), Ok(0x0403_0201));
        assert!(m.read(0x1002, Width::W32).is_err());
        m.write(0x1002, Width::W16, 0xbbaa).unwrap();
        assert_eq!(m.region(0x1000), Some(&[1, 2, 0xaa, 0xbb][..]));
    }
}
