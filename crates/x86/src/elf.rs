//! Reading x86-64 ELF relocatable objects: sections, functions, data symbols, relocations.
//!
//! Everything borrows from the object's bytes: a [`Function`]'s code is a `&'a [u8]` slice of
//! its section, names are `&'a str` slices of the string table.

use std::borrow::Cow;

use object::elf;
use object::read::elf::{ElfFile64, FileHeader as _};
use object::{
    Object, ObjectSection, ObjectSymbol, RelocationFlags, RelocationTarget as ObjRelocTarget,
    SectionFlags, SectionIndex, SymbolFlags, SymbolSection,
};

use crate::X86Error;

/// The index of a section in its object (the ELF section header index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SectionId(pub u32);

/// What a section holds, from its ELF type and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SectionKind {
    /// Allocated and executable (`.text`, `.text.unlikely`, `.init.text`, `.noinstr.text`, ...).
    Code,
    /// Allocated and writable, with contents (`.data`, `.data..percpu`, ...).
    Data,
    /// Allocated, read-only, with contents (`.rodata`, `.rodata.str1.1`, ...).
    ReadOnlyData,
    /// Allocated without contents (`SHT_NOBITS`: `.bss`, `.data..percpu` bss parts, ...).
    Bss,
    /// Not allocated (symbol tables, debug info, notes, `.discard.*` ...).
    Other,
}

/// One section of an object.
#[derive(Debug, Clone)]
pub struct Section<'a> {
    /// The section's name (`.text`, `.data`, ...).
    pub name: &'a str,
    /// What the section holds.
    pub kind: SectionKind,
    /// The section's size in bytes (also for `.bss`).
    pub size: u64,
    /// The section's contents; empty for [`SectionKind::Bss`].
    pub data: &'a [u8],
    /// The section's relocations, sorted by offset; offsets are relative to the section.
    pub relocs: Vec<Reloc<'a>>,
}

/// What a symbol that a relocation names is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SymbolType {
    /// `STT_FUNC` (or `STT_GNU_IFUNC`).
    Function,
    /// `STT_OBJECT`, `STT_COMMON` or `STT_TLS`.
    Data,
    /// Anything else, e.g. an undefined `STT_NOTYPE` symbol such as `__fentry__`.
    Other,
}

/// What a relocation refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelocTarget<'a> {
    /// A named symbol, defined in this object (`section` is `Some`) or not.
    Symbol {
        /// The symbol's name.
        name: &'a str,
        /// The symbol's section, `None` for undefined, absolute and common symbols.
        section: Option<SectionId>,
        /// The symbol's value (its offset in `section`).
        value: u64,
        /// The symbol's ELF type.
        ty: SymbolType,
    },
    /// A section symbol: the assembler turns references to local symbols into these, so the
    /// addend carries the offset (see [`ObjectFile::resolve`]).
    Section(SectionId),
    /// No symbol (`r_sym` 0).
    Absolute,
}

/// One relocation: bytes the linker will patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reloc<'a> {
    /// Offset of the patched field, relative to the owner (the section, or the function or data
    /// symbol the relocation was collected for).
    pub offset: u32,
    /// The ELF relocation type (`R_X86_64_*`).
    pub r_type: u32,
    /// Width of the patched field in bytes.
    pub width: u8,
    /// Whether the patched value is relative to the field's own address (`PC32`, `PLT32`, ...).
    pub pc_relative: bool,
    /// What the relocation refers to.
    pub target: RelocTarget<'a>,
    /// The explicit addend (`r_addend`).
    pub addend: i64,
}

/// A function: an `STT_FUNC` symbol with a size, in an executable section.
#[derive(Debug, Clone)]
pub struct Function<'a> {
    /// The symbol's name, e.g. `alloc_pipe_info` or `foo.constprop.0`.
    pub name: &'a str,
    /// Other function symbols at the same place (e.g. `foo.localalias`).
    pub aliases: Vec<&'a str>,
    /// Whether the symbol is global (or weak) rather than local (`static`).
    pub global: bool,
    /// The section the function lives in.
    pub section: SectionId,
    /// That section's name.
    pub section_name: &'a str,
    /// The function's offset in its section.
    pub address: u64,
    /// The function's code, borrowed from the object.
    pub bytes: &'a [u8],
    /// The relocations inside the function, sorted by offset; offsets are relative to the
    /// function's first byte.
    pub relocs: Vec<Reloc<'a>>,
}

impl Function<'_> {
    /// Whether ftrace can hook the function: gcc put its `call __fentry__` in it (-mfentry).
    /// One without (`notrace`, `noinstr`) takes no kprobe either: the kernel refuses probe
    /// events in functions without an ftrace location (unless built with
    /// CONFIG_KPROBE_EVENTS_ON_NOTRACE).
    pub fn calls_fentry(&self) -> bool {
        self.relocs
            .iter()
            .any(|r| matches!(r.target, RelocTarget::Symbol { name, .. } if name == "__fentry__"))
    }

    /// The function's size in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the function has no bytes (never true for functions read from an object).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// One byte per code byte: `0xff` where the object's byte is final, `0x00` where a
    /// relocation will patch it.
    pub fn reloc_mask(&self) -> Vec<u8> {
        reloc_mask(self.bytes.len(), &self.relocs)
    }
}

/// A data symbol: an `STT_OBJECT` (or `STT_TLS`) symbol with a size, in an allocated,
/// non-executable section.
#[derive(Debug, Clone)]
pub struct DataSymbol<'a> {
    /// The symbol's name, e.g. `pipe_user_pages_soft`.
    pub name: &'a str,
    /// Other data symbols at the same place and of the same size.
    pub aliases: Vec<&'a str>,
    /// Whether the symbol is global (or weak).
    pub global: bool,
    /// The section the symbol lives in.
    pub section: SectionId,
    /// That section's name.
    pub section_name: &'a str,
    /// The symbol's offset in its section.
    pub address: u64,
    /// The symbol's size in bytes.
    pub size: u64,
    /// The initial bytes, `None` in a `.bss`-like section.
    pub bytes: Option<&'a [u8]>,
    /// The relocations inside the symbol; offsets are relative to its first byte.
    pub relocs: Vec<Reloc<'a>>,
}

impl DataSymbol<'_> {
    /// Like [`Function::reloc_mask`], for the initial bytes (empty for `.bss`).
    pub fn reloc_mask(&self) -> Vec<u8> {
        self.bytes
            .map_or_else(Vec::new, |b| reloc_mask(b.len(), &self.relocs))
    }
}

/// What [`ObjectFile::resolve`] found at a referenced address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Referent<'a> {
    /// A symbol name, or a section name for [`ReferentKind::Anonymous`].
    pub name: &'a str,
    /// Offset from the start of `name`.
    pub offset: i64,
    /// What kind of thing `name` is.
    pub kind: ReferentKind,
    /// The section `name` is in, `None` for symbols not defined in this object.
    pub section: Option<SectionId>,
}

/// What kind of thing a [`Referent`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReferentKind {
    /// A function of this object.
    Function,
    /// A data symbol of this object.
    Data,
    /// A symbol not defined here (`__fentry__`, `kmalloc`, ...), or not a function or data.
    External,
    /// Bytes of a section that no symbol covers (string literals, local labels).
    Anonymous,
}

/// A symbol's extent in its section, for address lookups.
#[derive(Debug, Clone, Copy)]
struct Extent {
    start: u64,
    end: u64,
    function: bool,
    index: usize,
}

/// A parsed x86-64 ELF relocatable object.
///
/// Functions and data symbols are listed in (section, address) order. Symbols that share an
/// address and size (e.g. `foo` and `foo.localalias`) are listed once, the others as aliases.
#[derive(Debug, Clone)]
pub struct ObjectFile<'a> {
    label: String,
    sections: Vec<Section<'a>>,
    functions: Vec<Function<'a>>,
    data: Vec<DataSymbol<'a>>,
    /// Per section (same index as `sections`), the symbols sorted by start.
    extents: Vec<Vec<Extent>>,
}

impl<'a> ObjectFile<'a> {
    /// Parses an x86-64 ELF relocatable object. `label` names it in errors and reports (a path,
    /// or e.g. `fs/pipe.o [V=32]`).
    pub fn parse(label: impl Into<String>, bytes: &'a [u8]) -> Result<Self, X86Error> {
        let label = label.into();
        let file =
            ElfFile64::<object::Endianness>::parse(bytes).map_err(|source| X86Error::Elf {
                file: label.clone(),
                source,
            })?;
        let endian = file.endian();
        let header = file.elf_header();
        let machine = header.e_machine(endian);
        let e_type = header.e_type(endian);
        if machine != elf::EM_X86_64 || e_type != elf::ET_REL {
            return Err(X86Error::NotRelocatableX86_64 {
                file: label,
                found: format!("e_machine {}, e_type {}", machine.0, e_type.0),
            });
        }
        let malformed = |what: String, source| X86Error::Malformed {
            file: label.clone(),
            what,
            source,
        };

        // Sections first (relocations need their names), indexed by ELF section index.
        let count = file.sections().map(|s| s.index().0 + 1).max().unwrap_or(1);
        let mut sections: Vec<Section<'a>> = (0..count)
            .map(|_| Section {
                name: "",
                kind: SectionKind::Other,
                size: 0,
                data: &[],
                relocs: Vec::new(),
            })
            .collect();
        for s in file.sections() {
            let index = s.index().0;
            let name = s
                .name()
                .map_err(|e| malformed(format!("name of section {index}"), e))?;
            let SectionFlags::Elf { sh_flags, sh_type } = s.flags() else {
                continue;
            };
            let kind = if !sh_flags.contains(elf::SHF_ALLOC) {
                SectionKind::Other
            } else if sh_flags.contains(elf::SHF_EXECINSTR) {
                SectionKind::Code
            } else if sh_type == elf::SHT_NOBITS {
                SectionKind::Bss
            } else if sh_flags.contains(elf::SHF_WRITE) {
                SectionKind::Data
            } else {
                SectionKind::ReadOnlyData
            };
            let data = if sh_type == elf::SHT_NOBITS {
                &[][..]
            } else {
                s.data()
                    .map_err(|e| malformed(format!("contents of section {name}"), e))?
            };
            sections[index] = Section {
                name,
                kind,
                size: s.size(),
                data,
                relocs: Vec::new(),
            };
        }

        // Relocations, per patched section.
        for s in file.sections() {
            let index = s.index().0;
            let mut relocs = Vec::new();
            for (offset, r) in s.relocations() {
                let RelocationFlags::Elf { r_type } = r.flags() else {
                    continue;
                };
                if r_type == elf::R_X86_64_NONE {
                    continue;
                }
                let section_name = sections[index].name;
                let Some((width, pc_relative)) = reloc_shape(r_type) else {
                    return Err(X86Error::UnsupportedRelocation {
                        file: label,
                        section: section_name.to_owned(),
                        offset,
                        r_type: r_type.0,
                    });
                };
                let in_bounds = offset
                    .checked_add(u64::from(width))
                    .is_some_and(|end| end <= sections[index].size);
                if !in_bounds || offset > u64::from(u32::MAX) {
                    return Err(X86Error::RelocationOutOfBounds {
                        file: label,
                        section: section_name.to_owned(),
                        offset,
                        width,
                    });
                }
                let target = match r.target() {
                    ObjRelocTarget::Symbol(sym_index) => {
                        let sym = file.symbol_by_index(sym_index).map_err(|e| {
                            malformed(format!("symbol {} of a relocation", sym_index.0), e)
                        })?;
                        if sym.kind() == object::SymbolKind::Section {
                            match sym.section() {
                                SymbolSection::Section(SectionIndex(i)) => {
                                    RelocTarget::Section(SectionId(i as u32))
                                }
                                _ => RelocTarget::Absolute,
                            }
                        } else {
                            let name = sym.name().map_err(|e| {
                                malformed(format!("name of symbol {}", sym_index.0), e)
                            })?;
                            RelocTarget::Symbol {
                                name,
                                section: match sym.section() {
                                    SymbolSection::Section(SectionIndex(i)) => {
                                        Some(SectionId(i as u32))
                                    }
                                    _ => None,
                                },
                                value: sym.address(),
                                ty: symbol_type(sym.flags()),
                            }
                        }
                    }
                    ObjRelocTarget::Section(SectionIndex(i)) => {
                        RelocTarget::Section(SectionId(i as u32))
                    }
                    _ => RelocTarget::Absolute,
                };
                relocs.push(Reloc {
                    offset: offset as u32,
                    r_type: r_type.0,
                    width,
                    pc_relative,
                    target,
                    addend: r.addend(),
                });
            }
            relocs.sort_by_key(|r| r.offset);
            // A relocation section may patch a section we listed; merge if several do.
            sections[index].relocs.extend(relocs);
            sections[index].relocs.sort_by_key(|r| r.offset);
        }

        // Symbols.
        let mut functions = Vec::new();
        let mut data = Vec::new();
        for sym in file.symbols() {
            let SymbolSection::Section(SectionIndex(si)) = sym.section() else {
                continue;
            };
            let ty = symbol_type(sym.flags());
            let size = sym.size();
            if size == 0 || ty == SymbolType::Other || si >= sections.len() {
                continue;
            }
            let section = &sections[si];
            let is_function = match (ty, section.kind) {
                (SymbolType::Function, SectionKind::Code) => true,
                (SymbolType::Data, SectionKind::Data | SectionKind::ReadOnlyData)
                | (SymbolType::Data, SectionKind::Bss) => false,
                _ => continue,
            };
            let name = sym
                .name()
                .map_err(|e| malformed(format!("name of symbol {}", sym.index().0), e))?;
            let address = sym.address();
            let end = address.checked_add(size);
            let limit = if section.kind == SectionKind::Bss {
                section.size
            } else {
                section.data.len() as u64
            };
            if end.is_none_or(|end| end > limit) {
                return Err(X86Error::SymbolOutOfBounds {
                    file: label,
                    symbol: name.to_owned(),
                    section: section.name.to_owned(),
                    offset: address,
                    size,
                    section_size: section.size,
                });
            }
            let relocs = relocs_in(&section.relocs, address, size);
            let global = sym.is_global();
            if is_function {
                functions.push(Function {
                    name,
                    aliases: Vec::new(),
                    global,
                    section: SectionId(si as u32),
                    section_name: section.name,
                    address,
                    bytes: &section.data[address as usize..(address + size) as usize],
                    relocs,
                });
            } else {
                let bytes = (section.kind != SectionKind::Bss)
                    .then(|| &section.data[address as usize..(address + size) as usize]);
                data.push(DataSymbol {
                    name,
                    aliases: Vec::new(),
                    global,
                    section: SectionId(si as u32),
                    section_name: section.name,
                    address,
                    size,
                    bytes,
                    relocs,
                });
            }
        }
        let functions = merge_aliases(functions);
        let data = merge_aliases(data);
        Ok(Self::assemble(label, sections, functions, data))
    }

    /// Builds an object from hand-made functions, for tests and hand-written vectors: each
    /// function gets its own code section named `.text.<name>`, and has no relocations.
    pub fn from_code(label: impl Into<String>, functions: &[(&'a str, &'a [u8])]) -> Self {
        let mut sections = vec![Section {
            name: "",
            kind: SectionKind::Other,
            size: 0,
            data: &[],
            relocs: Vec::new(),
        }];
        let mut funcs = Vec::new();
        for (i, &(name, bytes)) in functions.iter().enumerate() {
            sections.push(Section {
                name: ".text",
                kind: SectionKind::Code,
                size: bytes.len() as u64,
                data: bytes,
                relocs: Vec::new(),
            });
            funcs.push(Function {
                name,
                aliases: Vec::new(),
                global: true,
                section: SectionId(i as u32 + 1),
                section_name: ".text",
                address: 0,
                bytes,
                relocs: Vec::new(),
            });
        }
        Self::assemble(label.into(), sections, funcs, Vec::new())
    }

    fn assemble(
        label: String,
        sections: Vec<Section<'a>>,
        mut functions: Vec<Function<'a>>,
        mut data: Vec<DataSymbol<'a>>,
    ) -> Self {
        functions.sort_by_key(|f| (f.section, f.address));
        data.sort_by_key(|d| (d.section, d.address));
        let mut extents = vec![Vec::new(); sections.len()];
        for (index, f) in functions.iter().enumerate() {
            extents[f.section.0 as usize].push(Extent {
                start: f.address,
                end: f.address + f.bytes.len() as u64,
                function: true,
                index,
            });
        }
        for (index, d) in data.iter().enumerate() {
            extents[d.section.0 as usize].push(Extent {
                start: d.address,
                end: d.address + d.size,
                function: false,
                index,
            });
        }
        for e in &mut extents {
            e.sort_by_key(|x| (x.start, x.end));
        }
        Self {
            label,
            sections,
            functions,
            data,
            extents,
        }
    }

    /// The label given to [`ObjectFile::parse`].
    pub fn label(&self) -> &str {
        &self.label
    }

    /// All sections, indexed by [`SectionId`] (index 0 is ELF's null section).
    pub fn sections(&self) -> &[Section<'a>] {
        &self.sections
    }

    /// The section with this id.
    ///
    /// # Panics
    ///
    /// If `id` is not a section of this object.
    pub fn section(&self, id: SectionId) -> &Section<'a> {
        &self.sections[id.0 as usize]
    }

    /// The functions, in (section, address) order.
    pub fn functions(&self) -> &[Function<'a>] {
        &self.functions
    }

    /// The data symbols, in (section, address) order.
    pub fn data_symbols(&self) -> &[DataSymbol<'a>] {
        &self.data
    }

    /// The first function named `name` (or with `name` as an alias).
    pub fn function(&self, name: &str) -> Option<&Function<'a>> {
        self.functions
            .iter()
            .find(|f| f.name == name || f.aliases.contains(&name))
    }

    /// The function named `name` in the section named `section`: what a [`Seed`] names,
    /// exact even when static functions share a name.
    ///
    /// [`Seed`]: crate::Seed
    pub fn find_function(&self, name: &str, section: &str) -> Option<&Function<'a>> {
        self.functions
            .iter()
            .find(|f| f.section_name == section && (f.name == name || f.aliases.contains(&name)))
    }

    /// The function or data symbol covering `offset` in `section` (or ending just before it),
    /// as a [`Referent`]; bytes no symbol covers give [`ReferentKind::Anonymous`] with the
    /// section's name.
    pub fn symbolize(&self, section: SectionId, offset: i64) -> Referent<'a> {
        let index = section.0 as usize;
        let name = self.sections.get(index).map_or("", |s| s.name);
        let anonymous = Referent {
            name,
            offset,
            kind: ReferentKind::Anonymous,
            section: Some(section),
        };
        let (Some(extents), Ok(off)) = (self.extents.get(index), u64::try_from(offset)) else {
            return anonymous;
        };
        // The last extent starting at or before `off` that still covers it; extents may nest
        // (a data symbol inside another), so look back a little.
        let upper = extents.partition_point(|e| e.start <= off);
        // Else one past the end of a symbol (`buf + sizeof(buf)`), if no symbol starts there.
        let hit = extents[..upper]
            .iter()
            .rev()
            .find(|e| off < e.end)
            .or_else(|| extents[..upper].iter().rev().find(|e| off == e.end));
        match hit {
            Some(e) if e.function => Referent {
                name: self.functions[e.index].name,
                offset: (off - e.start) as i64,
                kind: ReferentKind::Function,
                section: Some(section),
            },
            Some(e) => Referent {
                name: self.data[e.index].name,
                offset: (off - e.start) as i64,
                kind: ReferentKind::Data,
                section: Some(section),
            },
            None => anonymous,
        }
    }

    /// What a relocation refers to, `offset` bytes past its target symbol or section.
    ///
    /// For a relocation in an instruction, `offset` is the addend plus the distance from the
    /// patched field to the end of the instruction when the relocation is PC-relative (what
    /// [`Insn::reloc_referent`](crate::Insn::reloc_referent) computes); for data it is the
    /// addend. References to local symbols, which the assembler rewrites as section+offset,
    /// are mapped back to the function or data symbol covering that offset.
    pub fn resolve(&self, target: RelocTarget<'a>, offset: i64) -> Referent<'a> {
        match target {
            // A defined symbol without a type (an assembler label): whatever covers it.
            RelocTarget::Symbol {
                ty: SymbolType::Other,
                section: Some(section),
                value,
                ..
            } => self.symbolize(section, (value as i64).wrapping_add(offset)),
            RelocTarget::Symbol {
                name, ty, section, ..
            } => Referent {
                name,
                offset,
                section,
                kind: match ty {
                    SymbolType::Function => ReferentKind::Function,
                    SymbolType::Data => ReferentKind::Data,
                    SymbolType::Other => ReferentKind::External,
                },
            },
            RelocTarget::Section(section) => self.symbolize(section, offset),
            RelocTarget::Absolute => Referent {
                name: "",
                offset,
                kind: ReferentKind::External,
                section: None,
            },
        }
    }
}

/// Width in bytes and PC-relativity of the x86-64 relocation types an object can hold.
fn reloc_shape(r_type: elf::RelocationType) -> Option<(u8, bool)> {
    Some(match r_type {
        elf::R_X86_64_64 | elf::R_X86_64_GOTOFF64 | elf::R_X86_64_SIZE64 => (8, false),
        elf::R_X86_64_PC64 | elf::R_X86_64_GOTPC64 | elf::R_X86_64_GOTPCREL64 => (8, true),
        elf::R_X86_64_32
        | elf::R_X86_64_32S
        | elf::R_X86_64_GOT32
        | elf::R_X86_64_SIZE32
        | elf::R_X86_64_DTPOFF32
        | elf::R_X86_64_TPOFF32 => (4, false),
        elf::R_X86_64_PC32
        | elf::R_X86_64_PLT32
        | elf::R_X86_64_GOTPCREL
        | elf::R_X86_64_GOTPCRELX
        | elf::R_X86_64_REX_GOTPCRELX
        | elf::R_X86_64_GOTPC32
        | elf::R_X86_64_TLSGD
        | elf::R_X86_64_TLSLD
        | elf::R_X86_64_GOTTPOFF => (4, true),
        elf::R_X86_64_16 => (2, false),
        elf::R_X86_64_PC16 => (2, true),
        elf::R_X86_64_8 => (1, false),
        elf::R_X86_64_PC8 => (1, true),
        _ => return None,
    })
}

fn symbol_type(flags: SymbolFlags<SectionIndex, object::SymbolIndex>) -> SymbolType {
    let SymbolFlags::Elf { st_info, .. } = flags else {
        return SymbolType::Other;
    };
    match st_info.st_type() {
        elf::STT_FUNC | elf::STT_GNU_IFUNC => SymbolType::Function,
        elf::STT_OBJECT | elf::STT_COMMON | elf::STT_TLS => SymbolType::Data,
        _ => SymbolType::Other,
    }
}

/// The relocations whose field starts in `[start, start + size)`, rebased to `start`.
fn relocs_in<'a>(relocs: &[Reloc<'a>], start: u64, size: u64) -> Vec<Reloc<'a>> {
    let lo = relocs.partition_point(|r| u64::from(r.offset) < start);
    let hi = relocs.partition_point(|r| u64::from(r.offset) < start + size);
    relocs[lo..hi]
        .iter()
        .map(|r| Reloc {
            offset: r.offset - start as u32,
            ..*r
        })
        .collect()
}

fn reloc_mask(len: usize, relocs: &[Reloc<'_>]) -> Vec<u8> {
    let mut mask = vec![0xff; len];
    for r in relocs {
        let start = (r.offset as usize).min(len);
        let end = (r.offset as usize + usize::from(r.width)).min(len);
        mask[start..end].fill(0);
    }
    mask
}

/// Keeps one symbol per (section, address, size); the others become its aliases. The kept one
/// is the global one if any, else the one whose name sorts first (so `foo` beats
/// `foo.localalias`).
fn merge_aliases<'a, T: Symbolic<'a>>(mut items: Vec<T>) -> Vec<T> {
    items.sort_by(|a, b| {
        a.place().cmp(&b.place()).then_with(|| {
            b.global().cmp(&a.global()).then_with(|| {
                alias_rank(a.name())
                    .cmp(&alias_rank(b.name()))
                    .then_with(|| a.name().cmp(b.name()))
            })
        })
    });
    let mut out: Vec<T> = Vec::with_capacity(items.len());
    for item in items {
        match out.last_mut() {
            Some(last) if last.place() == item.place() => last.aliases_mut().push(item.name()),
            _ => out.push(item),
        }
    }
    out
}

fn alias_rank(name: &str) -> u8 {
    u8::from(name.ends_with(".localalias"))
}

/// What [`merge_aliases`] needs of a function or data symbol.
trait Symbolic<'a> {
    fn place(&self) -> (SectionId, u64, u64);
    fn global(&self) -> bool;
    fn name(&self) -> &'a str;
    fn aliases_mut(&mut self) -> &mut Vec<&'a str>;
}

impl<'a> Symbolic<'a> for Function<'a> {
    fn place(&self) -> (SectionId, u64, u64) {
        (self.section, self.address, self.bytes.len() as u64)
    }
    fn global(&self) -> bool {
        self.global
    }
    fn name(&self) -> &'a str {
        self.name
    }
    fn aliases_mut(&mut self) -> &mut Vec<&'a str> {
        &mut self.aliases
    }
}

impl<'a> Symbolic<'a> for DataSymbol<'a> {
    fn place(&self) -> (SectionId, u64, u64) {
        (self.section, self.address, self.size)
    }
    fn global(&self) -> bool {
        self.global
    }
    fn name(&self) -> &'a str {
        self.name
    }
    fn aliases_mut(&mut self) -> &mut Vec<&'a str> {
        &mut self.aliases
    }
}

/// A name with gcc's clone and uniquifier numbers removed, for pairing symbols across builds:
/// `foo.isra.0` → `foo.isra`, `foo.constprop.3.cold` → `foo.constprop.cold`,
/// `__func__.12` → `__func__`, `.text.unlikely.bar.part.0` → `.text.unlikely.bar.part`.
pub fn normalize_name(name: &str) -> Cow<'_, str> {
    let numeric = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    // Merge sections carry their entry size, not a uniquifier (`.rodata.str1.1`, `.rodata.cst16`).
    if name.starts_with(".rodata.str") || name.starts_with(".rodata.cst") {
        return Cow::Borrowed(name);
    }
    let mut parts = name.split('.');
    // The first part is never a suffix (a leading `.` gives an empty first part).
    let first = parts.next().unwrap_or("");
    if !name.split('.').skip(1).any(numeric) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len());
    out.push_str(first);
    for part in parts {
        if !numeric(part) {
            out.push('.');
            out.push_str(part);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_clone_suffixes() {
        for (name, want) in [
            ("foo", "foo"),
            ("foo.isra.0", "foo.isra"),
            ("foo.constprop.12", "foo.constprop"),
            ("foo.part.0.cold", "foo.part.cold"),
            ("foo.cold", "foo.cold"),
            ("__func__.7", "__func__"),
            (".text.unlikely.foo.isra.0", ".text.unlikely.foo.isra"),
            (".rodata.str1.1", ".rodata.str1.1"),
            ("a.b", "a.b"),
        ] {
            assert_eq!(normalize_name(name), want, "{name}");
        }
    }

    #[test]
    fn masks_relocated_bytes() {
        let r = Reloc {
            offset: 1,
            r_type: elf::R_X86_64_PLT32.0,
            width: 4,
            pc_relative: true,
            target: RelocTarget::Absolute,
            addend: -4,
        };
        assert_eq!(reloc_mask(6, &[r]), [0xff, 0, 0, 0, 0, 0xff]);
        assert_eq!(reloc_mask(3, &[r]), [0xff, 0, 0]);
    }

    #[test]
    fn rejects_non_elf() {
        let err = ObjectFile::parse("junk.o", b"not an object").unwrap_err();
        assert!(err.to_string().starts_with("junk.o: "), "{err}");
    }
}
