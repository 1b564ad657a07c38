//! The data-flow vocabulary that probe placement and Safe Span slicing share: a decoded
//! function with its CFG ([`FunctionCode`]), sets of machine locations ([`Locations`]), and what
//! one instruction reads and writes once the calling convention is added to iced's operands
//! (`Effects`, crate-private).
//!
//! iced reports an instruction's explicit and implicit operands, which is not enough at the
//! edges of a function: a `call` reads the argument registers and clobbers the caller-saved
//! ones, a `ret` hands `%rax`/`%rdx` to the caller, a tail call passes arguments. Those come
//! from the x86-64 System V ABI that the kernel uses, except for `__fentry__`, which saves
//! every register.

use iced_x86::{FlowControl, InstructionInfoFactory, OpAccess, Register};

use crate::cfg::Cfg;
use crate::decode::{DefUse, Insn, Target, index_at};
use crate::elf::{Function, ObjectFile, ReferentKind};

/// A decoded function with its CFG, as the analyses in [`crate::ProbeSites`] and
/// [`crate::slice_span`] take it. Everything is borrowed: decode once, build the CFG once, and
/// run as many analyses as needed.
#[derive(Debug, Clone, Copy)]
pub struct FunctionCode<'o, 'a> {
    /// The object the function belongs to (for relocations, tables and `.cold` parts).
    pub object: &'o ObjectFile<'a>,
    /// The function.
    pub function: &'o Function<'a>,
    /// Its instructions, from [`crate::Disassembler::decode`].
    pub insns: &'o [Insn],
    /// Its CFG, from [`Cfg::build`] over the same instructions.
    pub cfg: &'o Cfg,
}

impl<'o, 'a> FunctionCode<'o, 'a> {
    /// Bundles a function, its instructions and its CFG.
    pub fn new(
        object: &'o ObjectFile<'a>,
        function: &'o Function<'a>,
        insns: &'o [Insn],
        cfg: &'o Cfg,
    ) -> Self {
        Self {
            object,
            function,
            insns,
            cfg,
        }
    }

    /// The index of the instruction starting at `offset`, if one does.
    pub fn index_at(&self, offset: u32) -> Option<usize> {
        index_at(self.insns, offset)
    }

    /// The function's size in bytes.
    pub fn len(&self) -> u32 {
        self.function.bytes.len() as u32
    }

    /// Whether the function has no bytes.
    pub fn is_empty(&self) -> bool {
        self.function.bytes.is_empty()
    }

    /// Whether instruction `n` starts a basic block (the entry, a branch target, or the
    /// instruction after a control transfer).
    pub(crate) fn starts_block(&self, n: usize) -> bool {
        let block = &self.cfg.blocks()[self.cfg.block_of(n) as usize];
        block.insns.start == n
    }
}

/// Machine locations: general-purpose registers, status flags and memory. Probe placement
/// takes what an update recipe writes and reads as `Locations`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Locations {
    /// Registers, as full 64-bit registers (`Register::RAX` also stands for `%eax`, `%al`).
    /// Other registers (segment, RIP, vector) are ignored.
    pub regs: Vec<Register>,
    /// Status flags as EFLAGS bits: [`Locations::CF`], [`Locations::PF`], [`Locations::AF`],
    /// [`Locations::ZF`], [`Locations::SF`], [`Locations::OF`] (the layout recipes and
    /// `pt_regs->flags` use).
    pub flags: u32,
    /// Memory: any access to memory conflicts, since aliasing is not analysed. For a store the
    /// recipe recomputes, also list the address's registers in `regs` of what it reads.
    pub memory: bool,
}

impl Locations {
    /// EFLAGS carry flag.
    pub const CF: u32 = 1 << 0;
    /// EFLAGS parity flag.
    pub const PF: u32 = 1 << 2;
    /// EFLAGS auxiliary carry flag.
    pub const AF: u32 = 1 << 4;
    /// EFLAGS zero flag.
    pub const ZF: u32 = 1 << 6;
    /// EFLAGS sign flag.
    pub const SF: u32 = 1 << 7;
    /// EFLAGS overflow flag.
    pub const OF: u32 = 1 << 11;
    /// The six status flags.
    pub const STATUS_FLAGS: u32 = Self::CF | Self::PF | Self::AF | Self::ZF | Self::SF | Self::OF;

    /// Nothing.
    pub fn none() -> Self {
        Self::default()
    }

    /// These registers (any view of them), no flags, no memory.
    pub fn regs(regs: &[Register]) -> Self {
        Self {
            regs: regs.to_vec(),
            ..Self::default()
        }
    }

    /// Adds EFLAGS bits.
    #[must_use]
    pub fn with_flags(mut self, flags: u32) -> Self {
        self.flags |= flags;
        self
    }

    /// Adds memory.
    #[must_use]
    pub fn with_memory(mut self) -> Self {
        self.memory = true;
        self
    }

    /// What an instruction writes, from [`Disassembler::def_use`](crate::Disassembler::def_use)
    /// (e.g. the seed of an immediate load or combining span: what its recipe rewrites).
    pub fn written_by(du: &DefUse) -> Self {
        Self {
            regs: du.writes.iter().copied().filter(|r| r.is_gpr64()).collect(),
            flags: eflags_from_status(du.flags_written as u8 & STATUS),
            memory: du.writes_memory,
        }
    }

    /// What an instruction reads (registers, including a memory operand's address registers;
    /// flags; memory).
    pub fn read_by(du: &DefUse) -> Self {
        Self {
            regs: du.reads.iter().copied().filter(|r| r.is_gpr64()).collect(),
            flags: eflags_from_status(du.flags_read as u8 & STATUS),
            memory: du.reads_memory,
        }
    }

    /// Whether there is no location at all.
    pub fn is_empty(&self) -> bool {
        self.regs.is_empty() && self.flags & Self::STATUS_FLAGS == 0 && !self.memory
    }

    pub(crate) fn reg_set(&self) -> RegSet {
        self.regs.iter().copied().fold(RegSet::EMPTY, RegSet::with)
    }

    pub(crate) fn status(&self) -> u8 {
        status_from_eflags(self.flags)
    }
}

/// A set of the 16 general-purpose registers, by iced register number (RAX = 0 ... R15 = 15).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RegSet(pub u16);

impl RegSet {
    pub const EMPTY: RegSet = RegSet(0);

    /// `reg`'s full register added; registers that are not GPRs are ignored.
    pub fn with(self, reg: Register) -> RegSet {
        match gpr_number(reg) {
            Some(n) => RegSet(self.0 | 1 << n),
            None => self,
        }
    }

    pub fn of(regs: &[Register]) -> RegSet {
        regs.iter().copied().fold(RegSet::EMPTY, RegSet::with)
    }

    pub fn contains(self, reg: Register) -> bool {
        gpr_number(reg).is_some_and(|n| self.0 & (1 << n) != 0)
    }

    pub fn intersects(self, other: RegSet) -> bool {
        self.0 & other.0 != 0
    }

    pub fn and(self, other: RegSet) -> RegSet {
        RegSet(self.0 & other.0)
    }

    pub fn union(self, other: RegSet) -> RegSet {
        RegSet(self.0 | other.0)
    }

    pub fn minus(self, other: RegSet) -> RegSet {
        RegSet(self.0 & !other.0)
    }

    /// The full registers in the set, in iced number order.
    pub fn registers(self) -> Vec<Register> {
        GPRS.iter().copied().filter(|&r| self.contains(r)).collect()
    }
}

/// The 64-bit GPRs in iced number order.
pub(crate) const GPRS: [Register; 16] = [
    Register::RAX,
    Register::RCX,
    Register::RDX,
    Register::RBX,
    Register::RSP,
    Register::RBP,
    Register::RSI,
    Register::RDI,
    Register::R8,
    Register::R9,
    Register::R10,
    Register::R11,
    Register::R12,
    Register::R13,
    Register::R14,
    Register::R15,
];

/// Argument registers of the System V calling convention, in order.
pub(crate) const ARG_REGS: [Register; 6] = [
    Register::RDI,
    Register::RSI,
    Register::RDX,
    Register::RCX,
    Register::R8,
    Register::R9,
];

/// Registers a callee may clobber.
pub(crate) const CALLER_SAVED: [Register; 9] = [
    Register::RAX,
    Register::RCX,
    Register::RDX,
    Register::RSI,
    Register::RDI,
    Register::R8,
    Register::R9,
    Register::R10,
    Register::R11,
];

/// Registers a callee must preserve (their values are live at a `ret`: the caller's).
pub(crate) const CALLEE_SAVED: [Register; 6] = [
    Register::RBX,
    Register::RBP,
    Register::R12,
    Register::R13,
    Register::R14,
    Register::R15,
];

/// The registers a `ret` hands to the caller: `%rax`, and `%rdx` for 128-bit and two-word
/// struct returns (conservative: most functions return only `%rax`).
pub(crate) const RETURN_REGS: [Register; 2] = [Register::RAX, Register::RDX];

fn gpr_number(reg: Register) -> Option<usize> {
    let full = reg.full_register();
    full.is_gpr64().then(|| full.number())
}

/// The six status flags in iced's `RflagsBits` layout (OF, SF, ZF, AF, CF, PF = bits 0-5).
pub(crate) const STATUS: u8 = 0x3f;

/// (iced bit, EFLAGS bit) for each status flag.
const FLAG_BITS: [(u8, u32); 6] = [
    (0x01, Locations::OF),
    (0x02, Locations::SF),
    (0x04, Locations::ZF),
    (0x08, Locations::AF),
    (0x10, Locations::CF),
    (0x20, Locations::PF),
];

fn eflags_from_status(status: u8) -> u32 {
    FLAG_BITS
        .iter()
        .filter(|(i, _)| status & i != 0)
        .fold(0, |acc, (_, e)| acc | e)
}

pub(crate) fn status_from_eflags(eflags: u32) -> u8 {
    FLAG_BITS
        .iter()
        .filter(|(_, e)| eflags & e != 0)
        .fold(0, |acc, (i, _)| acc | i)
}

/// How an instruction passes control beyond the function (or to a callee).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Transfer {
    /// Nothing beyond what iced reports (including intra-function branches).
    Plain,
    /// A call (direct, indirect, or through a retpoline thunk); `callee` names a direct one.
    Call { callee: Option<String> },
    /// `ret` or `jmp __x86_return_thunk`.
    Return,
    /// A direct `jmp`/`jcc` to another function.
    TailCall { target: String },
    /// A direct `jmp`/`jcc` into the function's `.cold` part, from the `.cold` part back into
    /// the function, or into unnamed code of another section: the same function, continued.
    Cold { target: String },
    /// `jmp *reg` / `jmp __x86_indirect_thunk_reg`: targets unknown.
    IndirectJump,
}

/// A memory operand of one instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemRef {
    pub base: Register,
    pub index: Register,
    pub displacement: i64,
    pub size: u32,
    pub read: bool,
    pub write: bool,
    /// A `%fs:`/`%gs:` override (per-CPU data): never the stack.
    pub segment: bool,
}

/// What one instruction reads and writes, with the calling convention applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Effects {
    /// Registers read.
    pub reads: RegSet,
    /// Registers written whole (a 32- or 64-bit write: the old value is gone).
    pub kills: RegSet,
    /// Registers written in part (8- or 16-bit writes keep the other bits).
    pub partial: RegSet,
    /// Status flags read (iced layout).
    pub flags_read: u8,
    /// Status flags written, cleared, set or left undefined (iced layout).
    pub flags_written: u8,
    /// Explicit and implicit memory operands (including `push`/`pop`).
    pub mem: Vec<MemRef>,
    /// Control beyond the function.
    pub transfer: Transfer,
}

impl Effects {
    pub fn reads_memory(&self) -> bool {
        self.mem.iter().any(|m| m.read) || matches!(self.transfer, Transfer::Call { .. })
    }

    pub fn writes_memory(&self) -> bool {
        self.mem.iter().any(|m| m.write) || matches!(self.transfer, Transfer::Call { .. })
    }

    /// Registers written whole or in part.
    pub fn writes(&self) -> RegSet {
        self.kills.union(self.partial)
    }
}

/// Computes [`Effects`] for every instruction of a function.
pub(crate) fn effects_of(code: &FunctionCode<'_, '_>) -> Vec<Effects> {
    let mut factory = InstructionInfoFactory::new();
    code.insns
        .iter()
        .map(|insn| effects(code, &mut factory, insn))
        .collect()
}

fn effects(
    code: &FunctionCode<'_, '_>,
    factory: &mut InstructionInfoFactory,
    insn: &Insn,
) -> Effects {
    let i = &insn.instruction;
    let mut e = Effects {
        reads: RegSet::EMPTY,
        kills: RegSet::EMPTY,
        partial: RegSet::EMPTY,
        flags_read: (i.rflags_read() as u8) & STATUS,
        flags_written: (i.rflags_modified() as u8) & STATUS,
        mem: Vec::new(),
        transfer: Transfer::Plain,
    };
    if insn.is_invalid() {
        return e;
    }
    let info = factory.info(i);
    for used in info.used_registers() {
        let reg = used.register();
        let (read, write) = access(used.access());
        if read {
            e.reads = e.reads.with(reg);
        }
        if write {
            // 32-bit writes zero-extend: the whole register is new.
            if reg.size() >= 4 {
                e.kills = e.kills.with(reg);
            } else {
                e.partial = e.partial.with(reg);
            }
        }
    }
    // A conditional write (cmov) may leave the old value: not a kill.
    for used in info.used_registers() {
        if matches!(used.access(), OpAccess::CondWrite | OpAccess::ReadCondWrite) {
            let full = RegSet::EMPTY.with(used.register());
            e.kills = e.kills.minus(full);
            e.partial = e.partial.union(full);
        }
    }
    for m in info.used_memory() {
        let (read, write) = access(m.access());
        if !read && !write {
            continue; // lea, nop with a memory operand
        }
        e.mem.push(MemRef {
            base: m.base(),
            index: m.index(),
            displacement: m.displacement() as i64,
            size: m.memory_size().size() as u32,
            read,
            write,
            segment: matches!(m.segment(), Register::FS | Register::GS),
        });
    }
    let external = || match insn.branch_target(code.object, code.function) {
        Some(Target::External(r)) => Some(r),
        _ => None,
    };
    match i.flow_control() {
        FlowControl::Call | FlowControl::IndirectCall => {
            let callee = external().map(|r| r.name);
            if callee == Some("__fentry__") {
                // ftrace's entry saves and restores every register.
                return e;
            }
            e.reads = e.reads.union(RegSet::of(&ARG_REGS)).with(Register::RSP);
            if let Some(reg) = callee.and_then(thunk_register) {
                e.reads = e.reads.with(reg);
            }
            if callee.is_some_and(|c| c.starts_with("__get_user") || c.starts_with("__put_user")) {
                // Custom calling conventions: arguments and results in %rax/%rcx/%rdx/%rbx.
                let custom = [Register::RAX, Register::RCX, Register::RDX, Register::RBX];
                e.reads = e.reads.union(RegSet::of(&custom));
                e.kills = e.kills.union(RegSet::of(&custom));
            }
            e.kills = e.kills.union(RegSet::of(&CALLER_SAVED));
            e.partial = e.partial.minus(e.kills);
            e.flags_written = STATUS;
            e.transfer = Transfer::Call {
                callee: callee.map(str::to_owned),
            };
        }
        FlowControl::Return => {
            e.reads = e.reads.union(RegSet::of(&RETURN_REGS));
            e.transfer = Transfer::Return;
        }
        FlowControl::IndirectBranch => e.transfer = Transfer::IndirectJump,
        FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch => {
            if let Some(r) = external() {
                e.transfer = if r.name == "__x86_return_thunk" {
                    e.reads = e.reads.union(RegSet::of(&RETURN_REGS));
                    Transfer::Return
                } else if let Some(reg) = thunk_register(r.name) {
                    e.reads = e.reads.with(reg);
                    Transfer::IndirectJump
                } else if is_cold(r.name)
                    || r.kind == ReferentKind::Anonymous
                    || (r.name != code.function.name
                        && base_name(r.name) == base_name(code.function.name))
                {
                    // The function's other part: `foo` -> `foo.cold`, or back.
                    Transfer::Cold {
                        target: crate::format::referent_text(&r),
                    }
                } else {
                    e.reads = e.reads.union(RegSet::of(&ARG_REGS)).with(Register::RSP);
                    Transfer::TailCall {
                        target: crate::format::referent_text(&r),
                    }
                };
            }
        }
        _ => {}
    }
    e
}

fn access(a: OpAccess) -> (bool, bool) {
    match a {
        OpAccess::Read | OpAccess::CondRead => (true, false),
        OpAccess::Write | OpAccess::CondWrite => (false, true),
        OpAccess::ReadWrite | OpAccess::ReadCondWrite => (true, true),
        _ => (false, false),
    }
}

/// Whether a symbol is a function's cold part (`foo.cold`, `foo.part.0.cold`, `foo.cold.12`).
pub(crate) fn is_cold(name: &str) -> bool {
    name.ends_with(".cold") || name.contains(".cold.")
}

/// The register a retpoline thunk jumps through: `__x86_indirect_thunk_rax` -> `RAX`.
fn thunk_register(name: &str) -> Option<Register> {
    let reg = name
        .strip_prefix("__x86_indirect_thunk_")
        .or_else(|| name.strip_prefix("__x86_indirect_call_thunk_"))
        .or_else(|| name.strip_prefix("__x86_indirect_jump_thunk_"))?;
    GPRS.iter()
        .copied()
        .find(|r| format!("{r:?}").eq_ignore_ascii_case(reg))
}

/// The function's name without clone and part suffixes: `foo` for `foo.cold`,
/// `foo.part.0`, `foo.isra.0.cold`.
fn base_name(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

/// Direct jumps (`jmp`, `jcc`, `loop`, `jcxz`) from the function's other parts (`foo.cold`,
/// other symbols sharing its base name) into it: (`symbol+offset` of the jump, target offset).
/// The function's own CFG does not see these entries.
pub(crate) fn jumps_from_other_parts(
    object: &ObjectFile<'_>,
    function: &Function<'_>,
) -> Vec<(String, u32)> {
    let base = base_name(function.name);
    let mut out = Vec::new();
    let mut disassembler = crate::decode::Disassembler::new();
    for other in object.functions() {
        let same = other.section == function.section && other.address == function.address;
        if same || base_name(other.name) != base {
            continue;
        }
        for insn in disassembler.decode(other) {
            let jumps = matches!(
                insn.instruction.flow_control(),
                FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch
            );
            if !jumps {
                continue;
            }
            if let Some(Target::External(r)) = insn.branch_target(object, other) {
                let named = r.name == function.name || function.aliases.contains(&r.name);
                if named && r.kind == ReferentKind::Function && r.offset >= 0 {
                    out.push((
                        format!("{}+{:#x}", other.name, insn.offset),
                        r.offset as u32,
                    ));
                }
            }
        }
    }
    out.sort_by_key(|(_, t)| *t);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Disassembler;

    fn effects_of_bytes(bytes: &[u8]) -> Vec<Effects> {
        let object = ObjectFile::from_code("t", &[("f", bytes)]);
        let f = &object.functions()[0];
        let insns = Disassembler::new().decode(f);
        let cfg = Cfg::build(&object, f, &insns);
        effects_of(&FunctionCode::new(&object, f, &insns, &cfg))
    }

    #[test]
    fn partial_and_whole_writes() {
        // mov $1,%al; mov %ecx,%eax; cmove %ecx,%eax; xor %eax,%eax
        let e = effects_of_bytes(&[0xb0, 1, 0x89, 0xc8, 0x0f, 0x44, 0xc1, 0x31, 0xc0]);
        let rax = RegSet::EMPTY.with(Register::RAX);
        assert_eq!((e[0].kills, e[0].partial), (RegSet::EMPTY, rax));
        assert_eq!((e[1].kills, e[1].partial), (rax, RegSet::EMPTY));
        assert_eq!(e[2].flags_read, 0x04);
        assert_eq!(e[3].reads, RegSet::EMPTY, "zeroing idiom reads nothing");
    }

    #[test]
    fn calls_follow_the_abi() {
        // call 0 (unrelocated: internal); ret
        let e = effects_of_bytes(&[0xe8, 0, 0, 0, 0, 0xc3]);
        assert!(matches!(e[0].transfer, Transfer::Call { .. }));
        assert!(e[0].reads.contains(Register::RDI) && e[0].reads.contains(Register::R9));
        assert!(e[0].kills.contains(Register::R11) && !e[0].kills.contains(Register::RBX));
        assert_eq!(e[1].transfer, Transfer::Return);
        assert!(e[1].reads.contains(Register::RAX));
    }

    #[test]
    fn converts_flag_layouts() {
        assert_eq!(status_from_eflags(Locations::CF | Locations::ZF), 0x14);
        assert_eq!(eflags_from_status(0x14), Locations::CF | Locations::ZF);
        assert_eq!(
            thunk_register("__x86_indirect_thunk_r11"),
            Some(Register::R11)
        );
    }
}
