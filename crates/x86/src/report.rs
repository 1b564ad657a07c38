//! What a diff of builds finds: seeds, effects SIE cannot cover, unmatched symbols.
//!
//! These types are serde data (JSON via `serde_json`); every per-build list is indexed like
//! the objects given to [`diff_objects`](crate::diff_objects): index 0 is V1, the build that
//! matches the running kernel.

use serde::{Deserialize, Serialize};

/// The result of diffing several builds of one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectDiff {
    /// The objects' labels, per build.
    pub objects: Vec<String>,
    /// The constant's source value, per build.
    pub values: Vec<i64>,
    /// Instructions whose constants depend on the value, in V1 address order.
    pub seeds: Vec<Seed>,
    /// Everything else the value changes, which SIE cannot express.
    pub uncovered: Vec<UncoveredEffect>,
    /// Functions and data symbols that are not present in every build.
    pub unmatched: Vec<UnmatchedSymbol>,
    /// Counts, for reports.
    pub stats: DiffStats,
}

/// Counts of what a diff looked at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffStats {
    /// Functions present in every build and compared.
    pub functions: usize,
    /// Of those, functions with at least one seed or uncovered effect.
    pub functions_changed: usize,
    /// V1 instructions compared.
    pub instructions: usize,
    /// Data symbols present in every build and compared.
    pub data_symbols: usize,
}

/// A seed instruction: aligned in every build, same operation and registers, but an
/// immediate, a displacement or a symbol offset differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seed {
    /// The V1 function's symbol name.
    pub function: String,
    /// The V1 function's section.
    pub section: String,
    /// Offset of the instruction from the V1 function's start.
    pub offset: u32,
    /// Length of the V1 instruction.
    pub len: u8,
    /// The V1 instruction's bytes as in the object (relocated fields are zero).
    pub bytes: HexBytes,
    /// Per byte of `bytes`: `ff` fixed, `00` patched by a relocation.
    pub mask: HexBytes,
    /// The V1 instruction in AT&T syntax.
    pub asm: String,
    /// What changed; at least one entry.
    pub changes: Vec<OperandChange>,
    /// The instruction in each build (index 0 is V1).
    pub instances: Vec<SeedInstance>,
    /// The change resizes or moves the stack frame (`sub $N,%rsp`, or an `%rsp`-based
    /// displacement): also reported as [`UncoveredKind::FrameLayout`].
    pub frame_layout: bool,
    /// The builds encode the instruction differently (e.g. `imm8` vs `imm32` form), not just
    /// with a different value.
    pub encoding_changed: bool,
}

/// A seed instruction as one build has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedInstance {
    /// The function's name in this build (clone numbers may differ).
    pub function: String,
    /// Offset of the instruction in that function.
    pub offset: u32,
    /// The instruction's bytes.
    pub bytes: HexBytes,
    /// The instruction in AT&T syntax.
    pub asm: String,
}

/// One changed field of a seed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperandChange {
    /// The operand, numbered as iced does (Intel order: in `cmp $0xffff,%ebp` the immediate
    /// is operand 1).
    pub operand: u8,
    /// Which field of the operand.
    pub field: ChangedField,
    /// Width of the field as encoded, in bits (8 for `imm8`, 32 for `disp32`, ...).
    pub bits: u8,
    /// The field's value per build. Immediates are extended to the operand size the
    /// instruction uses them at and shown unsigned (`and $-16,%eax` gives `0xfffffff0`);
    /// displacements and symbol offsets are 64-bit two's complement.
    pub values: Vec<u64>,
}

/// Which field of an operand changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChangedField {
    /// The immediate.
    Immediate,
    /// The immediate of an `add` or `sub` that is an `add` in some builds and a `sub` in
    /// others (`add $-0x80,%rsp` vs `sub $0x100,%rsp`): the values are the effective addend
    /// at the operand size (`sub $N` counts as `add $-N`). The flags differ between the two
    /// forms (carry vs borrow).
    Addend,
    /// The memory displacement (not RIP-relative, not relocated).
    Displacement,
    /// The offset into a symbol that a relocated field refers to (`table+0x40(%rip)` vs
    /// `table+0x80(%rip)`): the value reaches the code through a relocation addend.
    SymbolOffset {
        /// The symbol's name (V1).
        symbol: String,
    },
}

/// An effect of the value that SIE cannot express.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UncoveredEffect {
    /// What kind of effect.
    pub kind: UncoveredKind,
    /// The V1 function or variable (or, for [`UncoveredKind::SectionData`], the section).
    pub symbol: String,
    /// The V1 section.
    pub section: String,
    /// Offset in `symbol` (V1) where the effect starts, if it has a place.
    pub offset: Option<u32>,
    /// The builds (indices > 0) that differ from V1 here.
    pub builds: Vec<usize>,
    /// What differs and why SIE cannot express it, for people.
    pub detail: String,
    /// Per build, the value of a changed scalar variable (up to 8 bytes, little endian) or the
    /// sizes of a resized one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<u64>>,
}

/// Kinds of [`UncoveredEffect`]: the plan's vocabulary, so a diff's effects go into a plan as
/// they are.
pub use kernelx_plan::UncoveredKind;

/// A function or data symbol not present in every build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmatchedSymbol {
    /// Function or data.
    pub kind: SymbolKind,
    /// Its name in the first build that has it.
    pub name: String,
    /// Its section there.
    pub section: String,
    /// The builds that have it.
    pub present_in: Vec<usize>,
}

/// Function or data, for [`UnmatchedSymbol`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SymbolKind {
    /// A function.
    Function,
    /// A data symbol.
    Data,
}

/// Bytes, serialized as a lower-case hex string (`"81fdffff0000"`): the plan's type, so
/// seeds' bytes and masks go into a plan as they are.
pub use kernelx_plan::HexBytes;
