//! The crate's one error type.

use std::path::PathBuf;

/// Why a tunable has no plan. Every variant names the unit, function and offset at fault
/// where there is one: a plan is all or nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnalyzeError {
    /// The variant builds failed.
    #[error("building the variants of {tunable}")]
    Kbuild {
        /// The tunable.
        tunable: String,
        /// What kbuild reported (boxed: it is large, and this path is cold).
        #[source]
        source: Box<kernelx_kbuild::KbuildError>,
    },
    /// A file could not be read.
    #[error("reading {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An object (or the debug vmlinux) is not a readable ELF file.
    #[error("{}: {detail}", path.display())]
    Elf {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The diff of a unit's objects failed.
    #[error("{unit}: diffing the variant objects")]
    Diff {
        /// The unit.
        unit: String,
        /// What the diff reported.
        #[source]
        source: kernelx_x86::X86Error,
    },
    /// A seed could not be turned into an update recipe.
    #[error(
        "{unit}: {function}+{offset:#x} `{asm}`: no update recipe ({source}); KernelX builds \
         all sites of a tunable or none, so {tunable} has no plan"
    )]
    Synthesis {
        /// The tunable.
        tunable: String,
        /// The unit.
        unit: String,
        /// The V1 function.
        function: String,
        /// The seed's offset.
        offset: u32,
        /// The seed (AT&T).
        asm: String,
        /// What synthesis reported (boxed: it is large, and this path is cold).
        #[source]
        source: Box<kernelx_x86::symex::SymexError>,
    },
    /// The constant changes code in a way no site-local update can express.
    #[error("{tunable} changes code that KernelX cannot patch at run time, so it has no plan:\n{}",
        .effects.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    UncoveredCode {
        /// The tunable.
        tunable: String,
        /// Every code effect, one line each (`unit: function+0xoff: kind: detail`).
        effects: Vec<String>,
    },
    /// A seed's function could not be found or decoded consistently in some build.
    #[error("{unit}: {function}+{offset:#x}: {detail}")]
    Seed {
        /// The unit.
        unit: String,
        /// The function.
        function: String,
        /// The seed's offset.
        offset: u32,
        /// What is wrong.
        detail: String,
    },
    /// No probe can be attached where the update must run.
    #[error("{unit}: {function}+{offset:#x}: {detail}")]
    Probe {
        /// The unit.
        unit: String,
        /// The function.
        function: String,
        /// The seed's offset.
        offset: u32,
        /// What is wrong.
        detail: String,
    },
    /// The safe span could not be derived.
    #[error("{unit}: {function}+{offset:#x}: safe span: {detail}")]
    Span {
        /// The unit.
        unit: String,
        /// The function.
        function: String,
        /// The seed's offset.
        offset: u32,
        /// What is wrong.
        detail: String,
    },
    /// The sites' ranges have no value in common.
    #[error("{tunable}: no value satisfies every site ({detail})")]
    EmptyRange {
        /// The tunable.
        tunable: String,
        /// The bounds.
        detail: String,
    },
    /// The plan failed its own checks (a bug in this crate).
    #[error("{tunable}: the plan is inconsistent")]
    Plan {
        /// The tunable.
        tunable: String,
        /// What the plan crate found.
        #[source]
        source: kernelx_plan::PlanError,
    },
}
