#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod align;
mod cfg;
mod dataflow;
mod decode;
mod diff;
mod elf;
mod error;
mod format;
mod optprobe;
mod pair;
mod placement;
mod report;
mod shape;
mod slice;

pub mod symex;

pub use align::{Alignment, Hunk};
pub use cfg::{Block, BlockId, Cfg, Exit, Successor};
pub use dataflow::{FunctionCode, Locations};
pub use decode::{AttachedReloc, DefUse, Disassembler, Insn, RelocField, Target, index_at};
pub use diff::{diff_builds, diff_objects};
pub use elf::{
    DataSymbol, Function, ObjectFile, Referent, ReferentKind, Reloc, RelocTarget, Section,
    SectionId, SectionKind, SymbolType, normalize_name,
};
pub use error::X86Error;
pub use format::{AttFormatter, referent_text};
pub use optprobe::{
    JUMP_SIZE, KernelProbeConfig, ProbeBlocker, ProbeCheck, ProbeKind, ProbeNote, ProbeSites,
    ReservedBy,
};
pub use pair::{Pairing, pair_by_key, pairing_key};
pub use placement::{
    JoinFrom, Placement, PlacementError, ScanStop, place_post_probe, place_pre_probe,
};
pub use report::{
    ChangedField, DiffStats, HexBytes, ObjectDiff, OperandChange, Seed, SeedInstance, SymbolKind,
    UncoveredEffect, UncoveredKind, UnmatchedSymbol,
};
pub use shape::{OpShape, Shape};
pub use slice::{
    ExitKind, Extension, ExtensionReason, SafeSpanSlice, SliceError, SliceOptions,
    registers_live_after, slice_span, slice_span_with_arity,
};
