#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod btf;
pub mod global;
pub mod host;
pub mod identity;
pub mod kallsyms;
pub mod kcore;
pub mod kmod;
pub mod kprobes;
pub mod lock;
pub mod patching;
pub mod policy;
pub mod sie;
pub mod state;
pub mod targets;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod verify;

#[cfg(test)]
mod fake_host;
