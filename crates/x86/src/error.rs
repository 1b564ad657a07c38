//! The crate's error type.

/// What can go wrong while reading objects or diffing them.
///
/// Every variant names the object (the label given to [`ObjectFile::parse`]) and, where there is
/// one, the section, symbol and offset at fault.
///
/// [`ObjectFile::parse`]: crate::ObjectFile::parse
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum X86Error {
    /// The bytes are not a readable ELF file.
    #[error("{file}: cannot read as ELF: {source}")]
    Elf {
        /// The object's label.
        file: String,
        /// What the ELF reader said.
        source: object::Error,
    },
    /// The ELF file is not an x86-64 relocatable object (`.o`).
    #[error(
        "{file}: not an x86-64 ELF relocatable object ({found}); give the `.o` that kbuild \
         compiled, not a linked image"
    )]
    NotRelocatableX86_64 {
        /// The object's label.
        file: String,
        /// What was found instead, e.g. `e_machine 183` or `ET_EXEC`.
        found: String,
    },
    /// A section or symbol name, or a section's contents, could not be read.
    #[error("{file}: {what}: {source}")]
    Malformed {
        /// The object's label.
        file: String,
        /// What was being read, e.g. `name of section 12`.
        what: String,
        /// What the ELF reader said.
        source: object::Error,
    },
    /// A function or data symbol extends past the end of its section.
    #[error(
        "{file}: symbol {symbol} at {section}+{offset:#x} (size {size:#x}) extends past the \
         end of its section ({section_size:#x} bytes)"
    )]
    SymbolOutOfBounds {
        /// The object's label.
        file: String,
        /// The symbol's name.
        symbol: String,
        /// The section's name.
        section: String,
        /// The symbol's offset in its section.
        offset: u64,
        /// The symbol's size.
        size: u64,
        /// The section's size.
        section_size: u64,
    },
    /// A relocation this crate does not know how to mask or resolve.
    #[error(
        "{file}: relocation type {r_type} at {section}+{offset:#x} is not supported by the \
         x86 analysis; please report it with the object"
    )]
    UnsupportedRelocation {
        /// The object's label.
        file: String,
        /// The section the relocation patches.
        section: String,
        /// The patched offset in that section.
        offset: u64,
        /// The ELF `r_type`.
        r_type: u32,
    },
    /// A relocation patches bytes outside its section.
    #[error("{file}: relocation at {section}+{offset:#x} ({width} bytes) lies outside the section")]
    RelocationOutOfBounds {
        /// The object's label.
        file: String,
        /// The section the relocation patches.
        section: String,
        /// The patched offset in that section.
        offset: u64,
        /// The width of the patched field in bytes.
        width: u8,
    },
    /// The values given to a diff do not fit the objects.
    #[error("diff of {objects:?}: {reason}")]
    BadValues {
        /// The labels of the objects.
        objects: Vec<String>,
        /// Why the values were refused.
        reason: String,
    },
}
