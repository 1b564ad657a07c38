//! Symbolic execution of critical spans and synthesis of SIE updates.
//!
//! Given a seed instruction (one whose encoding changes with the constant's value V) in three
//! builds, this module derives IV = f(V), checks it on every build, and synthesizes an update
//! [`Recipe`]: serde data a probe after the critical span executes to turn the state the
//! running (V1) code produced into the state a build with V' would have produced.
//!
//! The recipe and its vocabulary ([`Recipe`], [`ValueRange`], [`Relation`], [`Width`],
//! [`RegOperand`], ...) are plan data, defined in `kernelx_plan` so that the runtime reads them
//! without this crate; they are re-exported here under their old paths. What needs iced or the
//! symbolic machine is added by extension traits: [`RecipeSemantics`] (`capture`, `effects`,
//! `apply`), [`PlaceExt`], [`InputExt`], [`RegOperandExt`], [`AddressExt`], [`GprExt`] and
//! [`FlagSetExt`].
//!
//! # Overview
//!
//! In pipeline order:
//!
//! * [`bv`], [`expr`], [`flags`]: fixed-width bit-vectors, expressions over the machine state
//!   with a concrete evaluator ([`Expr::eval`]), and x86 flag semantics by width.
//! * [`state`]: registers with sub-register views ([`RegOperand`]), addresses, and a concrete
//!   [`MachineState`].
//! * [`sem`]: iced [`Instruction`](iced_x86::Instruction)s as [`Effect`]s; a concrete executor.
//! * [`relation`], [`magic`]: IV = f(V) (affine, powers of two, logarithms, magic division).
//! * [`synth`]: [`derive_relation`] and [`synthesize`] from a [`SeedContext`]
//!   ([`synthesize_with_live_out`] when the function's liveness at the block end is known);
//!   `narrow`: which low bits of a loaded register are read before it dies.
//! * [`recipe`], [`range`]: the [`Recipe`]'s reference semantics
//!   ([`RecipeSemantics::apply`]) and its [`ValueRange`] (the format is `kernelx_plan::recipe`).
//!
//! # Design
//!
//! ```text
//!  SeedContext ──► magic::match_around ──► divide_matches ──► Update::Divide ─┐
//!   (V1,V2,V3)  └─► changing operand ─► Fit ─► classify + inputs ─► Update ───┤
//!                                                                            ▼
//!                       consumers, ValueRange ─► Recipe ─► self-check (V2, V3 by sem::execute)
//! ```
//!
//! The self-check executes the other builds' own instructions; the native differential test
//! (`tests/symex_differential.rs`) executes real machine code.
//!
//! # Example
//!
//! ```
//! use iced_x86::{Decoder, DecoderOptions, Instruction};
//! use kernelx_x86::symex::{
//!     Gpr, MachineState, RecipeSemantics, Saved, SeedContext, SeedVersion, synthesize,
//! };
//!
//! // cmp $0xffff,%ebp ; jbe  (PIPE_DEF_BUFFERS = 16, 32, 4 -> IV = 4096*V - 1)
//! let decode = |bytes: &[u8]| -> Vec<Instruction> {
//!     Decoder::with_ip(64, bytes, 0x6b, DecoderOptions::NONE).into_iter().collect()
//! };
//! let v1 = decode(&[0x81, 0xfd, 0xff, 0xff, 0x00, 0x00, 0x76, 0x10]);
//! let v2 = decode(&[0x81, 0xfd, 0xff, 0xff, 0x01, 0x00, 0x76, 0x10]);
//! let v3 = decode(&[0x81, 0xfd, 0xff, 0x3f, 0x00, 0x00, 0x76, 0x10]);
//! let ctx = SeedContext {
//!     versions: [
//!         SeedVersion { value: 16, block: &v1, seed: 0 },
//!         SeedVersion { value: 32, block: &v2, seed: 0 },
//!         SeedVersion { value: 4, block: &v3, seed: 0 },
//!     ],
//! };
//! let recipe = synthesize(&ctx)?;
//! assert_eq!(recipe.relation.to_string(), "IV = 4096*V - 1");
//!
//! // After the cmp ran with V1 and %ebp = 0x10000 (above 0xffff), V' = 32 says "not above".
//! let mut state = MachineState::default();
//! state.set(Gpr::Rbp, 0x10000);
//! state.rflags = 0x2; // the flags `cmp $0xffff` left: CF = ZF = 0
//! recipe.apply(&mut state, Saved::default(), 32)?;
//! assert_eq!(state.rflags & 0x41, 0x1); // CF = 1: jbe is taken
//! # Ok::<(), kernelx_x86::symex::SymexError>(())
//! ```
#![deny(missing_docs)]

pub mod bv;
pub mod error;
pub mod expr;
pub mod flags;
pub mod magic;
mod narrow;
pub mod range;
pub mod recipe;
pub mod relation;
pub mod sem;
pub mod state;
pub mod synth;

pub use bv::{Bv, Width};
pub use error::SymexError;
pub use expr::{Env, EvalError, Expr, Var};
pub use flags::{Condition, Flag, FlagSet, FlagSetExt};
pub use range::{BoundReason, OutOfRange, Restriction, ValueRange};
pub use recipe::{
    Coverage, CriticalSpan, Input, InputExt, Place, PlaceExt, Recipe, RecipeSemantics, Saved,
    SynthesisKind, Update,
};
pub use relation::{IvDomain, Relation};
pub use sem::Effect;
pub use state::{
    Address, AddressExt, Gpr, GprExt, MachineState, Memory, RegOperand, RegOperandExt, Segment,
};
pub use synth::{SeedContext, SeedVersion, derive_relation, synthesize, synthesize_with_live_out};
