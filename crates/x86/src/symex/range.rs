//! The valid range of V' for a recipe, each bound with the reason that sets it.
//!
//! Plan data (the runtime checks V' against it without the analysis); synthesis computes it
//! (`synth`) and wraps its [`OutOfRange`] in [`SymexError::OutOfRange`](super::SymexError).

pub use kernelx_plan::range::{BoundReason, OutOfRange, Restriction, ValueRange};
