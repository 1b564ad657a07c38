#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod align;
mod cfg;
mod decode;
mod diff;
mod elf;
mod error;
mod format;
mod pair;
mod report;
mod shape;

pub mod symex;

pub use align::{Alignment, Hunk};
pub use cfg::{Block, BlockId, Cfg, Exit, Successor};
pub use decode::{AttachedReloc, DefUse, Disassembler, Insn, RelocField, Target, index_at};
pub use diff::{diff_builds, diff_objects};
pub use elf::{
    DataSymbol, Function, ObjectFile, Referent, ReferentKind, Reloc, RelocTarget, Section,
    SectionId, SectionKind, SymbolType, normalize_name,
};
pub use error::X86Error;
pub use format::{AttFormatter, referent_text};
pub use pair::{Pairing, pair_by_key, pairing_key};
pub use report::{
    ChangedField, DiffStats, HexBytes, ObjectDiff, OperandChange, Seed, SeedInstance, SymbolKind,
    UncoveredEffect, UncoveredKind, UnmatchedSymbol,
};
pub use shape::{OpShape, Shape};
