#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod classify;
mod error;
mod identity;
mod pipeline;
mod probes;
mod report;
mod seeds;
mod spans;

pub use classify::is_code_effect;
pub use error::{AnalyzeError, UncoveredCode};
pub use identity::{default_vmlinux, kernel_identity, read_build_id};
pub use pipeline::{AnalyzeOptions, VALUE_RETRIES, analyze, plan_source, tunable_range};
pub use probes::{OtherProbe, Probes, place_function_probes, place_probes};
pub use report::{probes as render_probes, ranges as render_span, render_report, sites_table};
pub use seeds::{Window, decode_window, seed_window, window_at};
pub use spans::safe_span;
