//! Instruction shapes: what an instruction does, with its constants abstracted away.
//!
//! Two builds of a function align on shapes: `cmp $0xffff,%ebp` and `cmp $0x1ffff,%ebp` have
//! the same shape (mnemonic, operand kinds, registers, memory form and size), as do
//! `mov 0x10(%rdi),%eax` and `mov 0x18(%rdi),%eax`, `jbe` to different targets, and
//! `call foo` and `call bar`. Values, displacements, targets and relocated fields are compared
//! after alignment.

use iced_x86::{Instruction, MemorySize, Mnemonic, OpKind, Register};

use crate::decode::Insn;

/// The shape of an instruction; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    mnemonic: Mnemonic,
    /// Bit 0 lock, 1 rep, 2 repne.
    prefixes: u8,
    op_count: u8,
    ops: [OpShape; 5],
    /// For undecodable bytes: the first byte and the length, so that only similar garbage
    /// aligns.
    invalid: u16,
}

/// The shape of one operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpShape {
    /// No operand.
    None,
    /// A register.
    Register(Register),
    /// A memory operand; the displacement is not part of the shape.
    Memory {
        /// Effective segment (`%gs` for per-CPU accesses).
        segment: Register,
        /// Base register (`RIP` for RIP-relative).
        base: Register,
        /// Index register.
        index: Register,
        /// Index scale (1, 2, 4, 8).
        scale: u8,
        /// Size of the access.
        size: MemorySize,
    },
    /// An immediate of any encoding width.
    Immediate,
    /// A relative branch target.
    Branch,
    /// Anything else (far branches, implicit operands).
    Other(OpKind),
}

impl Shape {
    /// The shape of a decoded instruction.
    pub fn of(insn: &Insn) -> Self {
        let i = &insn.instruction;
        let mut shape = Shape {
            mnemonic: i.mnemonic(),
            prefixes: u8::from(i.has_lock_prefix())
                | u8::from(i.has_rep_prefix()) << 1
                | u8::from(i.has_repne_prefix()) << 2,
            op_count: i.op_count() as u8,
            ops: [OpShape::None; 5],
            invalid: 0,
        };
        if i.is_invalid() {
            // The first byte is not available from the instruction; the length is enough to
            // keep garbage from aligning with garbage of another size.
            shape.invalid = 0x100 | i.len() as u16;
            return shape;
        }
        // `add $-128,%rsp` and `sub $0x80,%rsp` are one operation: compilers pick whichever
        // immediate encodes shorter, so the choice can flip with the value.
        if i.mnemonic() == Mnemonic::Sub && is_add_sub_immediate(i) {
            shape.mnemonic = Mnemonic::Add;
        }
        for (n, slot) in shape.ops.iter_mut().enumerate().take(i.op_count() as usize) {
            *slot = match i.op_kind(n as u32) {
                OpKind::Register => OpShape::Register(i.op_register(n as u32)),
                OpKind::Memory => OpShape::Memory {
                    segment: i.memory_segment(),
                    base: i.memory_base(),
                    index: i.memory_index(),
                    scale: i.memory_index_scale() as u8,
                    size: i.memory_size(),
                },
                OpKind::Immediate8
                | OpKind::Immediate8_2nd
                | OpKind::Immediate16
                | OpKind::Immediate32
                | OpKind::Immediate64
                | OpKind::Immediate8to16
                | OpKind::Immediate8to32
                | OpKind::Immediate8to64
                | OpKind::Immediate32to64 => OpShape::Immediate,
                OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
                    OpShape::Branch
                }
                other => OpShape::Other(other),
            };
        }
        shape
    }

    /// The instruction's mnemonic.
    pub fn mnemonic(&self) -> Mnemonic {
        self.mnemonic
    }

    /// The operands' shapes (Intel operand order, as iced numbers them).
    pub fn operands(&self) -> &[OpShape] {
        &self.ops[..usize::from(self.op_count)]
    }
}

/// `add`/`sub` of an immediate to a register or memory (two operands, the second an
/// immediate).
pub(crate) fn is_add_sub_immediate(i: &Instruction) -> bool {
    matches!(i.mnemonic(), Mnemonic::Add | Mnemonic::Sub)
        && i.op_count() == 2
        && matches!(
            i.op1_kind(),
            OpKind::Immediate8
                | OpKind::Immediate16
                | OpKind::Immediate32
                | OpKind::Immediate8to16
                | OpKind::Immediate8to32
                | OpKind::Immediate8to64
                | OpKind::Immediate32to64
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Disassembler;
    use crate::elf::ObjectFile;

    fn shapes(bytes: &[u8]) -> Vec<Shape> {
        let object = ObjectFile::from_code("t", &[("f", bytes)]);
        Disassembler::new()
            .decode(&object.functions()[0])
            .iter()
            .map(Shape::of)
            .collect()
    }

    #[test]
    fn abstracts_constants_but_not_registers() {
        // cmp $0x7f,%ebp (imm8) | cmp $0xffff,%ebp (imm32) | cmp $0xffff,%eax
        let s = shapes(&[
            0x83, 0xfd, 0x7f, 0x81, 0xfd, 0xff, 0xff, 0, 0, 0x3d, 0xff, 0xff, 0, 0,
        ]);
        assert_eq!(s[0], s[1]);
        assert_ne!(s[1], s[2]);
        // mov 0x10(%rdi),%eax | mov 0x18(%rdi),%eax | mov 0x10(%rsi),%eax | movzbl 0x10(%rdi),%eax
        let s = shapes(&[
            0x8b, 0x47, 0x10, 0x8b, 0x47, 0x18, 0x8b, 0x46, 0x10, 0x0f, 0xb6, 0x47, 0x10,
        ]);
        assert_eq!(s[0], s[1]);
        assert_ne!(s[0], s[2]);
        assert_ne!(s[0], s[3]);
        // add $-0x80,%rsp | sub $0x100,%rsp | sub %rax,%rsp
        let s = shapes(&[
            0x48, 0x83, 0xc4, 0x80, 0x48, 0x81, 0xec, 0, 1, 0, 0, 0x48, 0x29, 0xc4,
        ]);
        assert_eq!(s[0], s[1]);
        assert_ne!(s[1], s[2]);
        // jbe short | jbe near | ja short
        let s = shapes(&[0x76, 0x05, 0x0f, 0x86, 0, 1, 0, 0, 0x77, 0x05]);
        assert_eq!(s[0], s[1]);
        assert_ne!(s[0], s[2]);
    }
}
