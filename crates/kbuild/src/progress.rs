//! Progress of long runs, reported through a trait so the library prints nothing.

use std::path::Path;

/// The phases of [`build_variants`](crate::build_variants), in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Reading the tree's sources for mentions and includes.
    Scan,
    /// Asking kbuild for compile commands (`make -n`).
    Commands,
    /// Preprocessing candidate units with V1, then V2 (`gcc -E`).
    Preprocess,
    /// Compiling the affected units for V1, V2 and V3.
    Compile,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Scan => "scanning sources",
            Stage::Commands => "asking kbuild for compile commands",
            Stage::Preprocess => "preprocessing candidates",
            Stage::Compile => "compiling variants",
        })
    }
}

/// One thing that happened.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A stage starts with `total` steps (0 when unknown, e.g. a single make run).
    Started {
        /// The stage.
        stage: Stage,
        /// How many steps it will report.
        total: usize,
    },
    /// One step of a stage finished.
    Step {
        /// The stage.
        stage: Stage,
        /// The unit (or file) it concerned, relative to the tree.
        item: &'a Path,
        /// Which value (0 = V1, 1 = V2, 2 = V3), where it applies.
        variant: Option<usize>,
        /// Served from the cache rather than run.
        cached: bool,
    },
    /// A stage ended.
    Finished {
        /// The stage.
        stage: Stage,
    },
}

/// Receives [`Event`]s, from several threads at once. The CLI renders them with indicatif.
pub trait Progress: Sync {
    /// Called for every event; must be cheap.
    fn event(&self, event: Event<'_>);
}

/// Ignores every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _: Event<'_>) {}
}

impl<F: Fn(Event<'_>) + Sync> Progress for F {
    fn event(&self, event: Event<'_>) {
        self(event)
    }
}
