#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod btf;
pub mod host;
pub mod sie;
