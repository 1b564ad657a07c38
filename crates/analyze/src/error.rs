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
    #[error("{0}")]
    UncoveredCode(Box<UncoveredCode>),
    /// A unit to exclude is not one the constant reaches.
    #[error(
        "{tunable}: cannot exclude {unit}: the constant does not reach it; it reaches {}",
        .reached.join(", ")
    )]
    ExcludedUnitNotReached {
        /// The tunable.
        tunable: String,
        /// The unit given.
        unit: String,
        /// The units whose preprocessed text the constant changes, relative to the tree.
        reached: Vec<String>,
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

/// What [`AnalyzeError::UncoveredCode`] reports (boxed there: it is large, and this path is
/// cold). Its text lists the effects, the values they were found with, and how to tune the
/// constant in the other units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UncoveredCode {
    /// The tunable.
    pub tunable: String,
    /// Every code effect, one line each (`unit: function+0xoff: kind: detail`).
    pub effects: Vec<String>,
    /// The values of the builds the effects were found in.
    pub values: [i64; 3],
    /// Probe values KernelX picked before and dropped, because they changed code too.
    pub dropped: Vec<[i64; 3]>,
    /// The units with code effects.
    pub units: Vec<String>,
    /// The other units the constant reaches (not excluded, no code effects).
    pub tunable_units: Vec<String>,
}

impl std::fmt::Display for UncoveredCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tunable = &self.tunable;
        write!(
            f,
            "{tunable} changes code that KernelX cannot patch at run time (built with {:?}), so \
             it has no plan:",
            self.values
        )?;
        for e in &self.effects {
            write!(f, "\n  {e}")?;
        }
        if !self.dropped.is_empty() {
            let pairs: Vec<String> = self.dropped.iter().map(|v| format!("{v:?}")).collect();
            write!(
                f,
                "\nKernelX picked {} first; they changed code too",
                pairs.join(", then ")
            )?;
        }
        if !self.tunable_units.is_empty() {
            let flags: Vec<String> = self
                .units
                .iter()
                .map(|u| format!("--exclude-unit {u}"))
                .collect();
            write!(
                f,
                "\nhint: to tune {tunable} in {} only, build with `{}`: an excluded unit is still \
                 built and diffed but keeps the compiled value ({}), and the plan lists what it \
                 leaves untuned there. Excluding splits the constant in two: only do it when no \
                 tuned site guards code of an excluded unit (e.g. a size check elsewhere that \
                 decides whether an array the excluded unit sizes with the constant is big \
                 enough); exclude such units too",
                self.tunable_units.join(", "),
                flags.join(" "),
                self.values[0]
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(tunable_units: &[&str], dropped: Vec<[i64; 3]>) -> String {
        UncoveredCode {
            tunable: "T".to_owned(),
            effects: vec!["a.c: f+0x1 (.text): frame_layout: frame".to_owned()],
            values: [16, 32, 8],
            dropped,
            units: vec!["a.c".to_owned()],
            tunable_units: tunable_units.iter().map(|u| (*u).to_owned()).collect(),
        }
        .to_string()
    }

    #[test]
    fn the_refusal_suggests_excluding_the_units_at_fault() {
        assert_eq!(
            refusal(&["b.c", "c.c"], vec![]),
            "T changes code that KernelX cannot patch at run time (built with [16, 32, 8]), so it \
             has no plan:\n  a.c: f+0x1 (.text): frame_layout: frame\nhint: to tune T in b.c, \
             c.c only, build with `--exclude-unit a.c`: an excluded unit is still built and \
             diffed but keeps the compiled value (16), and the plan lists what it leaves \
             untuned there. Excluding splits the constant in two: only do it when no tuned site \
             guards code of an excluded unit (e.g. a size check elsewhere that decides whether \
             an array the excluded unit sizes with the constant is big enough); exclude such \
             units too"
        );
        // Nothing would be left to tune: no hint.
        let alone = refusal(&[], vec![[16, 64, 8]]);
        assert!(!alone.contains("hint"), "{alone}");
        assert!(
            alone.ends_with("\nKernelX picked [16, 64, 8] first; they changed code too"),
            "{alone}"
        );
    }
}
