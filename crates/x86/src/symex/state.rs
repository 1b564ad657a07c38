//! The register file with its sub-registers, addresses, and a concrete machine state.

use iced_x86::Register;

use super::bv::Width;
use super::expr::{BinOp, Env, EvalError, Expr, Var};
use super::flags::{Flag, FlagSet};

// Registers and addresses are plan data (recipes name them); how iced names them and what
// they mean as expressions lives here.
pub use kernelx_plan::{Address, Gpr, RegOperand, Segment};

/// [`Gpr`] as iced names it.
pub trait GprExt {
    /// The iced register of this GPR at `width` (`None` for [`Width::W1`]).
    fn iced(self, width: Width) -> Option<Register>;
}

impl GprExt for Gpr {
    fn iced(self, width: Width) -> Option<Register> {
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

/// [`RegOperand`] from iced, and as an expression.
pub trait RegOperandExt: Sized {
    /// The operand of an iced general-purpose register (`None` for other registers).
    fn from_iced(reg: Register) -> Option<Self>;

    /// The view as an expression over the full register.
    fn expr(self) -> Expr;
}

impl RegOperandExt for RegOperand {
    fn from_iced(reg: Register) -> Option<RegOperand> {
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

    fn expr(self) -> Expr {
        let full = Expr::reg(self.gpr);
        if self.high8 {
            Expr::binary(BinOp::Shr, full, Expr::constant(Width::W8, 8)).trunc(Width::W8)
        } else {
            full.trunc(self.width)
        }
    }
}

/// [`Address`] as an expression.
pub trait AddressExt {
    /// The address as a 64-bit expression. RIP-relative addresses use [`Var::SpanStart`].
    fn expr(&self) -> Expr;
}

impl AddressExt for Address {
    fn expr(&self) -> Expr {
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
