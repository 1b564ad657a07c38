//! Decoding a function once into iced-x86 instructions, with its relocations attached.
//!
//! In a `.o`, every relocated field decodes as zero (`call __fentry__` looks like a call to the
//! next instruction, `mov pipe_max_size(%rip),%ebp` like a load from the next instruction).
//! [`Insn::relocs`] says which field of the instruction each relocation patches, so later
//! stages treat those fields as symbol references, never as values.

use iced_x86::{
    ConstantOffsets, Decoder, DecoderOptions, Instruction, InstructionInfoFactory, OpAccess,
    OpKind, Register,
};

use crate::elf::{Function, ObjectFile, Referent, ReferentKind};

/// Which field of an instruction a relocation patches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelocField {
    /// The memory operand's displacement (`sym(%rip)`, `sym(,%rax,8)`).
    Displacement,
    /// The (first) immediate (`mov $sym,%rdi`).
    Immediate,
    /// The relative target of a `call`/`jmp`/`jcc`.
    Branch,
    /// Any other bytes (a relocation that does not line up with a field).
    Other,
}

/// A relocation attached to an instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttachedReloc {
    /// Index into the function's [`Function::relocs`].
    pub index: u32,
    /// The field it patches.
    pub field: RelocField,
}

/// One decoded instruction of a function.
#[derive(Debug, Clone, Copy)]
pub struct Insn {
    /// The decoded instruction; its `ip()` is its offset in the section.
    pub instruction: Instruction,
    /// Offset of the instruction from the function's first byte.
    pub offset: u32,
    /// Where the displacement and immediates sit in the instruction's bytes.
    pub constants: ConstantOffsets,
    /// Up to two relocations patching this instruction (e.g. `movq $sym,sym2(%rip)`).
    pub relocs: [Option<AttachedReloc>; 2],
}

impl Insn {
    /// The instruction's length in bytes.
    pub fn len(&self) -> usize {
        self.instruction.len()
    }

    /// Whether the instruction has no bytes (never true for decoded instructions).
    pub fn is_empty(&self) -> bool {
        self.instruction.len() == 0
    }

    /// Offset just past the instruction, from the function's first byte.
    pub fn end(&self) -> u32 {
        self.offset + self.len() as u32
    }

    /// Whether iced could not decode these bytes.
    pub fn is_invalid(&self) -> bool {
        self.instruction.is_invalid()
    }

    /// The instruction's bytes, borrowed from the function.
    pub fn bytes<'a>(&self, function: &Function<'a>) -> &'a [u8] {
        &function.bytes[self.offset as usize..self.end() as usize]
    }

    /// The relocation patching `field`, if any.
    pub fn reloc(&self, field: RelocField) -> Option<AttachedReloc> {
        self.relocs
            .iter()
            .flatten()
            .copied()
            .find(|r| r.field == field)
    }

    /// Whether any relocation patches this instruction.
    pub fn has_relocs(&self) -> bool {
        self.relocs[0].is_some()
    }

    /// What an attached relocation refers to: a PC-relative field refers to
    /// `S + A + (end of instruction - field)`, an absolute one to `S + A`.
    pub fn reloc_referent<'a>(
        &self,
        object: &ObjectFile<'a>,
        function: &Function<'a>,
        reloc: AttachedReloc,
    ) -> Referent<'a> {
        let r = function.relocs[reloc.index as usize];
        let bias = if r.pc_relative {
            i64::from(self.end()) - i64::from(r.offset)
        } else {
            0
        };
        object.resolve(r.target, r.addend.wrapping_add(bias))
    }
}

/// Where a branch or a RIP-relative operand leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target<'a> {
    /// Into the same function, at this offset from its start.
    Internal(u32),
    /// Somewhere else: another function (a tail call, a `.cold` part), data, or a symbol of
    /// another object.
    External(Referent<'a>),
}

impl Insn {
    /// Where a relative `jmp`/`jcc`/`call`/`loop` leads; `None` for other instructions.
    pub fn branch_target<'a>(
        &self,
        object: &ObjectFile<'a>,
        function: &Function<'a>,
    ) -> Option<Target<'a>> {
        let i = &self.instruction;
        let is_branch = (0..i.op_count()).any(|n| {
            matches!(
                i.op_kind(n),
                OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
            )
        });
        if !is_branch {
            return None;
        }
        if let Some(r) = self.reloc(RelocField::Branch) {
            return Some(internalize(
                function,
                self.reloc_referent(object, function, r),
            ));
        }
        Some(self.address_target(object, function, i.near_branch_target()))
    }

    /// Where a RIP-relative memory operand points; `None` if there is none.
    pub fn rip_target<'a>(
        &self,
        object: &ObjectFile<'a>,
        function: &Function<'a>,
    ) -> Option<Target<'a>> {
        if !self.instruction.is_ip_rel_memory_operand() {
            return None;
        }
        if let Some(r) = self.reloc(RelocField::Displacement) {
            return Some(internalize(
                function,
                self.reloc_referent(object, function, r),
            ));
        }
        Some(self.address_target(object, function, self.instruction.ip_rel_memory_address()))
    }

    /// A section offset computed by iced (branch target or RIP-relative address).
    fn address_target<'a>(
        &self,
        object: &ObjectFile<'a>,
        function: &Function<'a>,
        address: u64,
    ) -> Target<'a> {
        let start = function.address;
        match address.checked_sub(start) {
            Some(off) if off < function.bytes.len() as u64 => Target::Internal(off as u32),
            _ => Target::External(object.symbolize(function.section, address as i64)),
        }
    }
}

/// A referent inside `function` itself becomes an internal target.
fn internalize<'a>(function: &Function<'a>, r: Referent<'a>) -> Target<'a> {
    let inside = r.kind == ReferentKind::Function
        && r.section == Some(function.section)
        && (r.name == function.name || function.aliases.contains(&r.name))
        && (0..function.bytes.len() as i64).contains(&r.offset);
    if inside {
        Target::Internal(r.offset as u32)
    } else {
        Target::External(r)
    }
}

/// The index of the instruction starting at `offset`, if one does.
pub fn index_at(insns: &[Insn], offset: u32) -> Option<usize> {
    insns.binary_search_by_key(&offset, |i| i.offset).ok()
}

/// Decodes functions and answers questions about instructions, reusing iced's scratch state.
///
/// One per thread. iced's `Decoder` borrows a function's bytes and costs nothing to set up, so
/// each [`Disassembler::decode`] makes one; what is worth reusing is iced's
/// [`InstructionInfoFactory`], so that def-use queries during data-flow analysis do not
/// allocate.
pub struct Disassembler {
    info: InstructionInfoFactory,
}

impl std::fmt::Debug for Disassembler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Disassembler").finish_non_exhaustive()
    }
}

/// Registers and flags one instruction reads and writes, for data-flow slicing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DefUse {
    /// Registers read (full registers, e.g. `RAX` for a read of `%eax`).
    pub reads: Vec<Register>,
    /// Registers written (full registers).
    pub writes: Vec<Register>,
    /// `RflagsBits` read.
    pub flags_read: u32,
    /// `RflagsBits` written, set, cleared or left undefined.
    pub flags_written: u32,
    /// Whether memory is read.
    pub reads_memory: bool,
    /// Whether memory is written.
    pub writes_memory: bool,
}

impl Default for Disassembler {
    fn default() -> Self {
        Self::new()
    }
}

impl Disassembler {
    /// A new disassembler.
    pub fn new() -> Self {
        Self {
            info: InstructionInfoFactory::new(),
        }
    }

    /// Decodes a whole function, attaching its relocations to the instructions they patch.
    ///
    /// Bytes iced cannot decode become `INVALID` instructions (at least one byte each), so the
    /// result always covers the function exactly.
    pub fn decode(&mut self, function: &Function<'_>) -> Vec<Insn> {
        let bytes = function.bytes;
        let mut decoder = Decoder::with_ip(64, bytes, function.address, DecoderOptions::NONE);
        let mut out = Vec::with_capacity(bytes.len() / 4 + 1);
        let mut instruction = Instruction::default();
        let mut next_reloc = 0;
        while decoder.can_decode() {
            let offset = decoder.position();
            decoder.decode_out(&mut instruction);
            let constants = decoder.get_constant_offsets(&instruction);
            let end = offset + instruction.len();
            let mut relocs = [None; 2];
            let mut slot = 0;
            // Relocations are sorted; skip any that start before this instruction (they
            // straddle from a previous one, which already took them).
            while next_reloc < function.relocs.len()
                && (function.relocs[next_reloc].offset as usize) < end
            {
                let r = function.relocs[next_reloc];
                if r.offset as usize >= offset && slot < relocs.len() {
                    relocs[slot] = Some(AttachedReloc {
                        index: next_reloc as u32,
                        field: field_at(&instruction, &constants, r.offset as usize - offset),
                    });
                    slot += 1;
                }
                next_reloc += 1;
            }
            out.push(Insn {
                instruction,
                offset: offset as u32,
                constants,
                relocs,
            });
        }
        out
    }

    /// Registers, flags and memory an instruction reads and writes.
    pub fn def_use(&mut self, instruction: &Instruction) -> DefUse {
        let info = self.info.info(instruction);
        let mut du = DefUse {
            flags_read: instruction.rflags_read(),
            flags_written: instruction.rflags_modified(),
            ..DefUse::default()
        };
        for used in info.used_registers() {
            let reg = used.register().full_register();
            let (read, write) = access(used.access());
            if read && !du.reads.contains(&reg) {
                du.reads.push(reg);
            }
            if write && !du.writes.contains(&reg) {
                du.writes.push(reg);
            }
        }
        for mem in info.used_memory() {
            let (read, write) = access(mem.access());
            du.reads_memory |= read;
            du.writes_memory |= write;
        }
        du
    }
}

fn access(a: OpAccess) -> (bool, bool) {
    match a {
        OpAccess::Read | OpAccess::CondRead => (true, false),
        OpAccess::Write | OpAccess::CondWrite => (false, true),
        OpAccess::ReadWrite | OpAccess::ReadCondWrite => (true, true),
        _ => (false, false),
    }
}

/// Which field starts at byte `at` of the instruction.
fn field_at(instruction: &Instruction, c: &ConstantOffsets, at: usize) -> RelocField {
    if c.has_displacement() && c.displacement_offset() == at {
        RelocField::Displacement
    } else if c.has_immediate() && c.immediate_offset() == at {
        let branch = (0..instruction.op_count()).any(|i| {
            matches!(
                instruction.op_kind(i),
                OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
            )
        });
        if branch {
            RelocField::Branch
        } else {
            RelocField::Immediate
        }
    } else {
        RelocField::Other
    }
}

/// Whether an operand is an immediate of any encoding (imm8/16/32/64, sign-extended or not).
pub(crate) fn is_immediate(kind: OpKind) -> bool {
    matches!(
        kind,
        OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::{Reloc, RelocTarget, SectionId, SymbolType};

    fn function<'a>(bytes: &'a [u8], relocs: Vec<Reloc<'a>>) -> Function<'a> {
        Function {
            name: "f",
            aliases: Vec::new(),
            global: true,
            section: SectionId(1),
            section_name: ".text",
            address: 0x40,
            bytes,
            relocs,
        }
    }

    fn reloc(offset: u32, name: &'static str, pc: bool, addend: i64) -> Reloc<'static> {
        Reloc {
            offset,
            r_type: if pc { 2 } else { 11 },
            width: 4,
            pc_relative: pc,
            target: RelocTarget::Symbol {
                name,
                section: None,
                value: 0,
                ty: SymbolType::Other,
            },
            addend,
        }
    }

    #[test]
    fn a_function_takes_kprobes_when_it_calls_fentry() {
        // call __fentry__; mov pipe_max_size(%rip),%ebp
        let bytes = [0xe8, 0, 0, 0, 0, 0x8b, 0x2d, 0, 0, 0, 0];
        let traced = function(
            &bytes,
            vec![
                reloc(1, "__fentry__", true, -4),
                reloc(7, "pipe_max_size", true, -4),
            ],
        );
        assert!(traced.calls_fentry());
        // A notrace function: the same code without the ftrace call.
        let notrace = function(&bytes[5..], vec![reloc(2, "pipe_max_size", true, -4)]);
        assert!(!notrace.calls_fentry());
    }

    #[test]
    fn attaches_relocations_to_fields() {
        // call __fentry__; mov pipe_max_size(%rip),%ebp; movb $0xa,g8(%rip); mov $sym,%rdi
        let bytes = [
            0xe8, 0, 0, 0, 0, //
            0x8b, 0x2d, 0, 0, 0, 0, //
            0xc6, 0x05, 0, 0, 0, 0, 0x0a, //
            0x48, 0xc7, 0xc7, 0, 0, 0, 0,
        ];
        let f = function(
            &bytes,
            vec![
                reloc(1, "__fentry__", true, -4),
                reloc(7, "pipe_max_size", true, -4),
                reloc(13, "g8", true, -5),
                reloc(21, "sym", false, 8),
            ],
        );
        let insns = Disassembler::new().decode(&f);
        let fields: Vec<_> = insns.iter().map(|i| i.relocs[0].map(|r| r.field)).collect();
        assert_eq!(
            fields,
            [
                Some(RelocField::Branch),
                Some(RelocField::Displacement),
                Some(RelocField::Displacement),
                Some(RelocField::Immediate),
            ]
        );
        let object = ObjectFile::from_code("t", &[]);
        for (insn, want) in insns.iter().zip([0, 0, 0, 8]) {
            let r = insn.reloc_referent(&object, &f, insn.relocs[0].unwrap());
            assert_eq!(r.offset, want, "{:?}", insn.instruction);
        }
    }

    #[test]
    fn covers_undecodable_bytes() {
        let bytes = [0x0f, 0x0b, 0x0f, 0xff, 0xc3, 0x0f];
        let insns = Disassembler::new().decode(&function(&bytes, Vec::new()));
        let total: usize = insns.iter().map(Insn::len).sum();
        assert_eq!(total, bytes.len());
        assert!(insns.last().unwrap().is_invalid());
    }

    #[test]
    fn reports_def_use() {
        // add %edi,%eax
        let bytes = [0x01, 0xf8];
        let insns = Disassembler::new().decode(&function(&bytes, Vec::new()));
        let du = Disassembler::new().def_use(&insns[0].instruction);
        assert!(du.reads.contains(&Register::RAX) && du.reads.contains(&Register::RDI));
        assert_eq!(du.writes, [Register::RAX]);
        assert_ne!(du.flags_written, 0);
    }
}
