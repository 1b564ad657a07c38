#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod command;
mod config;
mod error;
mod tree;

pub use command::{CommandLine, Toolchain, make_args, make_command, shell_quote};
pub use config::{
    BUILD_MACHINE_OPTIONS, ConfigComparison, ConfigDifference, ConfigValue, KernelConfig,
    Tolerance, ToleratedDifference,
};
pub use error::KbuildError;
pub use tree::{KernelTree, KernelVersion};
