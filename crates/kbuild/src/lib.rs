#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod cache;
mod cexpr;
mod change;
mod command;
mod compile;
mod config;
mod error;
mod index;
mod jobs;
mod module;
mod overlay;
mod progress;
mod shell;
mod tree;
mod units;
mod variants;

pub use cache::Cache;
pub use cexpr::{IntType, IntValue, evaluate, rewrite_value};
pub use change::{
    Applied, ChangeSummary, MacroDefinition, SourceChange, apply_pattern, closer_values,
    pick_values, tunable_identifier,
};
pub use command::{CommandLine, Toolchain, make_args, make_command, shell_quote};
pub use compile::{CompileCommand, compile_commands, dry_run_command, object_for, parse_dry_run};
pub use config::{
    BUILD_MACHINE_OPTIONS, ConfigComparison, ConfigDifference, ConfigValue, KernelConfig,
    Tolerance, ToleratedDifference,
};
pub use error::KbuildError;
pub use index::{Include, IncludeKind, TreeIndex, Via};
pub use module::{BuiltModule, ModuleTree};
pub use overlay::{Action, Overlay, variant_command};
pub use progress::{Event, NoProgress, Progress, Stage};
pub use tree::{KernelTree, KernelVersion, SourceTree};
pub use units::BuiltUnits;
pub use variants::{
    BuildStats, Discovery, DiscoveryReport, VariantOptions, VariantSet, VariantUnit,
    build_variants, discover,
};
