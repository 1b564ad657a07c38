//! AT&T (GAS) rendering of instructions for reports, with relocations shown as symbols.
//!
//! `mov pipe_max_size(%rip),%ebp` instead of iced's view of the `.o` bytes
//! (`mov 0x0(%rip),%ebp`), and intra-function branch targets as offsets from the function's
//! start (`jbe 0x7f`), the way `objdump -dr` reads.

use std::cell::RefCell;
use std::rc::Rc;

use iced_x86::{Formatter, GasFormatter, Instruction, OpKind, SymbolResolver, SymbolResult};

use crate::decode::{Insn, RelocField};
use crate::elf::{Function, ObjectFile, Referent};

/// Renders instructions in AT&T syntax.
pub struct AttFormatter {
    formatter: GasFormatter,
    state: Rc<RefCell<ResolverState>>,
}

impl std::fmt::Debug for AttFormatter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttFormatter").finish_non_exhaustive()
    }
}

/// What the resolver knows about the instruction being formatted.
#[derive(Default)]
struct ResolverState {
    function_start: u64,
    function_end: u64,
    refs: Vec<(RelocField, String)>,
}

struct Resolver(Rc<RefCell<ResolverState>>);

impl SymbolResolver for Resolver {
    fn symbol(
        &mut self,
        instruction: &Instruction,
        _operand: u32,
        instruction_operand: Option<u32>,
        address: u64,
        _address_size: u32,
    ) -> Option<SymbolResult<'_>> {
        let op = instruction_operand?;
        let field = match instruction.op_kind(op) {
            OpKind::Memory => RelocField::Displacement,
            OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
                RelocField::Branch
            }
            OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64 => RelocField::Immediate,
            _ => return None,
        };
        let state = self.0.borrow();
        if let Some((_, text)) = state.refs.iter().find(|(f, _)| *f == field) {
            return Some(SymbolResult::with_string(address, text.clone()));
        }
        let local = field == RelocField::Branch
            || (field == RelocField::Displacement && instruction.is_ip_rel_memory_operand());
        if local && (state.function_start..state.function_end).contains(&address) {
            let offset = address - state.function_start;
            return Some(SymbolResult::with_string(address, format!("{offset:#x}")));
        }
        None
    }
}

impl Default for AttFormatter {
    fn default() -> Self {
        Self::new()
    }
}

impl AttFormatter {
    /// A formatter with objdump-like options (lower-case hex, `0x` prefix).
    pub fn new() -> Self {
        let state = Rc::new(RefCell::new(ResolverState::default()));
        let mut formatter =
            GasFormatter::with_options(Some(Box::new(Resolver(Rc::clone(&state)))), None);
        let options = formatter.options_mut();
        options.set_uppercase_hex(false);
        options.set_hex_prefix("0x");
        options.set_hex_suffix("");
        options.set_branch_leading_zeros(false);
        options.set_show_symbol_address(false);
        options.set_rip_relative_addresses(true);
        options.set_small_hex_numbers_in_decimal(false);
        Self { formatter, state }
    }

    /// Renders one instruction of `function`, resolving its relocations through `object`.
    pub fn format(
        &mut self,
        object: &ObjectFile<'_>,
        function: &Function<'_>,
        insn: &Insn,
    ) -> String {
        {
            let mut state = self.state.borrow_mut();
            state.function_start = function.address;
            state.function_end = function.address + function.bytes.len() as u64;
            state.refs.clear();
            for r in insn.relocs.iter().flatten() {
                let referent = insn.reloc_referent(object, function, *r);
                state.refs.push((r.field, referent_text(&referent)));
            }
        }
        let mut out = String::new();
        if insn.is_invalid() {
            out.push_str("(bad)");
        } else {
            self.formatter.format(&insn.instruction, &mut out);
        }
        out
    }
}

/// `sym`, `sym+0x8`, `sym-0x4`, `.rodata.str1.1+0x23`.
pub fn referent_text(r: &Referent<'_>) -> String {
    let name = if r.name.is_empty() { "*ABS*" } else { r.name };
    match r.offset {
        0 => name.to_owned(),
        o if o < 0 => format!("{name}-{:#x}", o.unsigned_abs()),
        o => format!("{name}+{o:#x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Disassembler;
    use crate::elf::{Reloc, RelocTarget, SectionId, SymbolType};

    #[test]
    fn renders_relocations_as_symbols() {
        // mov pipe_max_size(%rip),%ebp; cmp $0xffff,%ebp; jbe +0; call __fentry__
        let bytes = [
            0x8b, 0x2d, 0, 0, 0, 0, //
            0x81, 0xfd, 0xff, 0xff, 0, 0, //
            0x76, 0x00, //
            0xe8, 0, 0, 0, 0,
        ];
        let sym = |offset, name| Reloc {
            offset,
            r_type: 2,
            width: 4,
            pc_relative: true,
            target: RelocTarget::Symbol {
                name,
                section: None,
                value: 0,
                ty: SymbolType::Other,
            },
            addend: -4,
        };
        let f = Function {
            name: "f",
            aliases: Vec::new(),
            global: true,
            section: SectionId(1),
            section_name: ".text",
            address: 0x100,
            bytes: &bytes,
            relocs: vec![sym(2, "pipe_max_size"), sym(15, "__fentry__")],
        };
        let object = ObjectFile::from_code("t", &[]);
        let insns = Disassembler::new().decode(&f);
        let mut fmt = AttFormatter::new();
        let text: Vec<_> = insns.iter().map(|i| fmt.format(&object, &f, i)).collect();
        assert_eq!(
            text,
            [
                "mov pipe_max_size(%rip),%ebp",
                "cmp $0xffff,%ebp",
                "jbe 0xe",
                "call __fentry__",
            ]
        );
    }
}
