//! Errors of reading, writing and checking plans.

use std::io;
use std::path::{Path, PathBuf};

/// Why a plan could not be read, written or accepted.
///
/// Every variant names the file (where there is one) and the tunable, site or span at fault.
/// I/O and JSON errors are the [`source`](std::error::Error::source) of their variant, so an
/// error chain (anyhow's `{:#}`) prints what was done, then what failed.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Reading the file failed.
    #[error("cannot read plan {}", path.display())]
    Read {
        /// The plan file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Writing the file (its temporary copy, or renaming it into place) failed.
    #[error("cannot write plan {}", path.display())]
    Write {
        /// The plan file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The text is not JSON of the plan's shape.
    #[error("{}: not a valid plan", origin(.path.as_deref()))]
    Parse {
        /// The plan file, when the text came from one.
        path: Option<PathBuf>,
        /// What serde_json found (with line and column).
        source: serde_json::Error,
    },
    /// The plan could not be turned into JSON.
    #[error("cannot serialize the plan")]
    Serialize {
        /// What serde_json reported.
        source: serde_json::Error,
    },
    /// The file has a `format_version` this build of KernelX does not read.
    #[error(
        "{}: plan format version {found} is not supported: this KernelX reads format version \
         {supported} (rebuild the plan with `kernelx build`, or use the KernelX that wrote it)",
        origin(.path.as_deref())
    )]
    UnsupportedVersion {
        /// The plan file, when the text came from one.
        path: Option<PathBuf>,
        /// The version in the file.
        found: u64,
        /// The version this crate reads and writes ([`crate::FORMAT_VERSION`]).
        supported: u32,
    },
    /// Two tunables have the same name.
    #[error("the plan holds two tunables named `{name}`")]
    DuplicateTunable {
        /// The name.
        name: String,
    },
    /// Two sites or two safe spans of a tunable have the same id.
    #[error("tunable `{tunable}`: id `{id}` is used twice")]
    DuplicateId {
        /// The tunable.
        tunable: String,
        /// The id.
        id: String,
    },
    /// A site names a safe span the tunable does not have.
    #[error(
        "tunable `{tunable}`: site `{site}` refers to safe span `{span}`, which is not in the plan"
    )]
    UnknownSpan {
        /// The tunable.
        tunable: String,
        /// The site.
        site: String,
        /// The missing span id.
        span: String,
    },
    /// A site's expected bytes, mask and length disagree.
    #[error(
        "tunable `{tunable}`: site `{site}` is {len} bytes long but has {bytes} expected bytes and \
         {mask} mask bytes"
    )]
    ExpectedBytes {
        /// The tunable.
        tunable: String,
        /// The site.
        site: String,
        /// The site's `len`.
        len: u8,
        /// Number of expected bytes.
        bytes: usize,
        /// Number of mask bytes.
        mask: usize,
    },
    /// The default value is not V1, the value the running kernel was built with.
    #[error("tunable `{tunable}`: default {default} is not V1 = {v1} of its source")]
    DefaultNotV1 {
        /// The tunable.
        tunable: String,
        /// The default in the plan.
        default: i64,
        /// The first of the source values.
        v1: i64,
    },
    /// The tunable's range admits values one of its sites rejects.
    #[error(
        "tunable `{tunable}`: its range [{min}, {max}] admits values that site `{site}` rejects \
         ({site_range}); rebuild the plan"
    )]
    RangeExceedsSite {
        /// The tunable.
        tunable: String,
        /// The tunable's smallest value.
        min: i64,
        /// The tunable's largest value.
        max: i64,
        /// The site.
        site: String,
        /// The site's range, as text.
        site_range: String,
    },
    /// The plan store has no plan for this tunable.
    #[error(
        "no plan for `{name}` in {}; `kernelx build` writes one, `kernelx table list` shows \
         what there is",
        dir.display()
    )]
    NotInStore {
        /// The tunable asked for.
        name: String,
        /// The store's directory.
        dir: PathBuf,
    },
    /// Listing or deleting in the plan store failed.
    #[error("plan store {}", path.display())]
    Store {
        /// The directory or file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

fn origin(path: Option<&Path>) -> String {
    match path {
        Some(p) => p.display().to_string(),
        None => "plan".to_owned(),
    }
}
