//! How many low bits of a loaded register the code after the load reads.
//!
//! gcc stores a 16-bit constant through a 32-bit register (`mov $0xffffbeef,%ecx; mov
//! %cx,mem`): the immediate is V sign-extended, and only its low 16 bits matter. When no
//! relation fits the whole immediate, synthesis may fit one to the bits that are read, provided
//! the rest are dead. This module proves that for one pattern only: an immediate loaded into a
//! register whose every read before it dies is of a narrower view (a store or compare of
//! `%cx`), where it dies by a 32/64-bit redefinition, by a `call` that clobbers it (not an
//! argument register), by a `ret` that does not return it, or at the end of the block when the
//! caller says it is dead there. Anything else (a read through a wider view, an address
//! register, an instruction iced cannot describe) keeps the whole register live.

use iced_x86::{FlowControl, Instruction, InstructionInfoFactory, OpAccess};

use super::bv::Width;
use super::state::{Gpr, RegOperand, RegOperandExt};

/// Registers a `call` reads (System V arguments).
const ARGS: [Gpr; 6] = [Gpr::Rdi, Gpr::Rsi, Gpr::Rdx, Gpr::Rcx, Gpr::R8, Gpr::R9];
/// Registers a `call` clobbers without reading them.
const CLOBBERED: [Gpr; 3] = [Gpr::Rax, Gpr::R10, Gpr::R11];
/// Registers live at a `ret`: the return value, the callee-saved ones and `%rsp`.
const LIVE_AT_RET: [Gpr; 9] = [
    Gpr::Rax,
    Gpr::Rdx,
    Gpr::Rbx,
    Gpr::Rsp,
    Gpr::Rbp,
    Gpr::R12,
    Gpr::R13,
    Gpr::R14,
    Gpr::R15,
];

/// The widest view of `gpr` read after `block[seed]` (which loads it) before the value dies,
/// if that is narrower than 32 bits and the value provably dies; `None` otherwise (also when
/// it is never read). `live_after_block` lists the registers that may be live after the
/// block's last instruction.
pub(crate) fn consumed_width(
    block: &[Instruction],
    seed: usize,
    gpr: Gpr,
    live_after_block: &[Gpr],
) -> Option<Width> {
    let mut info = InstructionInfoFactory::new();
    let mut widest: Option<Width> = None;
    for insn in &block[seed + 1..] {
        let mut killed = false;
        for used in info.info(insn).used_registers() {
            let Some(reg) = RegOperand::from_iced(used.register()) else {
                continue;
            };
            if reg.gpr != gpr {
                continue;
            }
            match used.access() {
                OpAccess::Write if reg.width >= Width::W32 => killed = true,
                OpAccess::Write | OpAccess::CondWrite => {}
                OpAccess::Read | OpAccess::CondRead | OpAccess::ReadWrite => {
                    let w = if reg.high8 { Width::W16 } else { reg.width };
                    widest = Some(widest.map_or(w, |o| o.max(w)));
                }
                _ => return None,
            }
        }
        match insn.flow_control() {
            FlowControl::Call if ARGS.contains(&gpr) => return None,
            FlowControl::Call if CLOBBERED.contains(&gpr) => killed = true,
            FlowControl::Return if LIVE_AT_RET.contains(&gpr) => return None,
            FlowControl::Return => killed = true,
            // Other instructions go on; a jump ends the block, where `live_after_block` says.
            _ => {}
        }
        if killed {
            return widest.filter(|w| *w < Width::W32);
        }
    }
    if live_after_block.contains(&gpr) {
        return None;
    }
    widest.filter(|w| *w < Width::W32)
}

#[cfg(test)]
mod tests {
    use iced_x86::code_asm::*;
    use iced_x86::{Decoder, DecoderOptions};

    use super::*;

    fn block(f: impl Fn(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<Instruction> {
        let mut a = CodeAssembler::new(64).unwrap();
        f(&mut a).unwrap();
        let bytes = a.assemble(0).unwrap();
        Decoder::with_ip(64, &bytes, 0, DecoderOptions::NONE)
            .into_iter()
            .collect()
    }

    #[test]
    fn a_narrow_store_then_a_redefinition_reads_16_bits() {
        let b = block(|a| {
            a.mov(ecx, 0xffff_beefu32 as i32)?;
            a.and(eax, 7)?;
            a.mov(word_ptr(rdx + rax * 2), cx)?;
            a.mov(ecx, edi)
        });
        assert_eq!(consumed_width(&b, 0, Gpr::Rcx, &Gpr::ALL), Some(Width::W16));
        // %ch counts as the low 16 bits.
        let b = block(|a| {
            a.mov(ecx, 0x1234)?;
            a.mov(byte_ptr(rdx), ch)?;
            a.mov(byte_ptr(rdx + 1), cl)?;
            a.ret()
        });
        assert_eq!(consumed_width(&b, 0, Gpr::Rcx, &[]), Some(Width::W16));
    }

    #[test]
    fn the_block_end_follows_the_callers_liveness() {
        let b = block(|a| {
            a.mov(ecx, 0xffff_beefu32 as i32)?;
            a.mov(word_ptr(rdx), cx)
        });
        assert_eq!(
            consumed_width(&b, 0, Gpr::Rcx, &[Gpr::Rax]),
            Some(Width::W16)
        );
        assert_eq!(consumed_width(&b, 0, Gpr::Rcx, &[Gpr::Rcx]), None);
    }

    #[test]
    fn wider_reads_and_live_returns_keep_the_register() {
        // The 32-bit value is read.
        let b = block(|a| {
            a.mov(ecx, 0xffff_beefu32 as i32)?;
            a.mov(word_ptr(rdx), cx)?;
            a.add(eax, ecx)?;
            a.ret()
        });
        assert_eq!(consumed_width(&b, 0, Gpr::Rcx, &[]), None);
        // Used as an address register.
        let b = block(|a| {
            a.mov(ecx, 0x10)?;
            a.mov(word_ptr(rcx), ax)?;
            a.ret()
        });
        assert_eq!(consumed_width(&b, 0, Gpr::Rcx, &[]), None);
        // %eax is returned.
        let b = block(|a| {
            a.mov(eax, 0xffff_beefu32 as i32)?;
            a.mov(word_ptr(rdx), ax)?;
            a.ret()
        });
        assert_eq!(consumed_width(&b, 0, Gpr::Rax, &[]), None);
        // %ecx is an argument of the call.
        let b = block(|a| {
            a.mov(ecx, 0xffff_beefu32 as i32)?;
            a.mov(word_ptr(rdx), cx)?;
            a.call(0x1000)
        });
        assert_eq!(consumed_width(&b, 0, Gpr::Rcx, &[]), None);
        // A 16-bit write keeps the dead bits in place, and the 32-bit read sees them.
        let b = block(|a| {
            a.mov(ecx, 0xffff_beefu32 as i32)?;
            a.mov(cx, word_ptr(rdx))?;
            a.mov(dword_ptr(rdx), ecx)?;
            a.ret()
        });
        assert_eq!(consumed_width(&b, 0, Gpr::Rcx, &[]), None);
        // Never read: nothing to narrow.
        let b = block(|a| {
            a.mov(ecx, 0xffff_beefu32 as i32)?;
            a.ret()
        });
        assert_eq!(consumed_width(&b, 0, Gpr::Rcx, &[]), None);
    }
}
