#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod error;
pub mod flags;
pub mod format;
mod hex;
pub mod magic;
pub mod operand;
pub mod range;
pub mod recipe;
pub mod relation;
mod store;

pub use error::PlanError;
pub use flags::{Flag, FlagSet};
pub use format::{
    CodeRange, ExitKind, FORMAT_VERSION, KernelIdentity, LineRange, ModuleIdentity, Plan,
    ProbePlacement, SafeSpan, Site, SiteBound, SiteRestriction, SpanExit, SpanOrigin,
    TunableOutOfRange, TunablePlan, TunableRange, TunableSource, UncoveredEffect, UncoveredKind,
};
pub use hex::HexBytes;
pub use magic::{MagicForm, MagicMismatch};
pub use operand::{Address, Gpr, RegOperand, Segment, Width};
pub use range::{BoundReason, OutOfRange, Restriction, ValueRange};
pub use recipe::{
    CombineOp, CompareOp, Coverage, CriticalSpan, Input, Place, Recipe, SynthesisKind, UndoOp,
    Update,
};
pub use relation::{IvDomain, MagicPart, Relation};
pub use store::PlanStore;
