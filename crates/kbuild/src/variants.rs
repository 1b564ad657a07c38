//! From a tunable to its three builds: discovery of every affected translation unit, then
//! variant compilation through the cache.
//!
//! ```text
//! tunable ─ scan tree ─► SourceChange (file, 3 texts)           [Stage::Scan]
//!   mentions of the identifier ─ reverse includes ─► candidate units
//!   ∩ units reaching the edited file ∩ units in the build       (DWARF of vmlinux)
//!   ─ make -n ─► kbuild compile commands                         [Stage::Commands]
//!   ─ gcc -E with V1 and V2 (overlay) ─► units whose text differs [Stage::Preprocess]
//!   = Discovery ─ build() ─► gcc -E V3, gcc -c ×3 ─► VariantSet   [Stage::Compile]
//! ```
//!
//! Every preprocessing result is memoised by its command, with the size and mtime of each
//! file gcc read (its dependency list), so a warm run runs no compiler at all. Objects are
//! stored by the hash of compiler, command and preprocessed text.

use std::collections::BTreeSet;
use std::fmt;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use kernelx_spec::Tunable;
use serde::{Deserialize, Serialize};

use crate::cache::{Cache, KeyHasher, Stamp, sha256};
use crate::change::{ChangeSummary, SourceChange, tunable_identifier};
use crate::compile::{CompileCommand, compile_commands};
use crate::index::{TreeIndex, is_unit, normalize};
use crate::jobs::run_parallel;
use crate::overlay::{Action, Overlay, bypassed, variant_command};
use crate::progress::{Event, Progress, Stage};
use crate::units::BuiltUnits;
use crate::{CommandLine, KbuildError, SourceTree, Toolchain};

/// How to build variants.
#[derive(Debug, Clone)]
pub struct VariantOptions {
    /// The compiler and make variables of the kernel's build.
    pub toolchain: Toolchain,
    /// Parallel compiler runs (and scanning threads).
    pub jobs: NonZeroUsize,
    /// Where objects, overlays and memos go.
    pub cache: Cache,
    /// Which units this kernel is built from. A module's units are its own
    /// ([`crate::ModuleTree::units`]); this applies to kernel trees only.
    pub built: BuiltUnits,
}

/// The three builds of every affected translation unit.
#[derive(Debug, Clone, Serialize)]
pub struct VariantSet {
    /// `[V1, V2, V3]`.
    pub values: [i64; 3],
    /// One entry per affected unit, sorted by source.
    pub units: Vec<VariantUnit>,
    /// What discovery found, stage by stage.
    pub discovery: DiscoveryReport,
    /// The edit and the values, with the reason for them.
    pub change: ChangeSummary,
    /// Cache use and time of the compile stage.
    pub stats: BuildStats,
}

/// One affected translation unit and its three objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VariantUnit {
    /// The source, relative to the tree: `fs/pipe.c`.
    pub source: PathBuf,
    /// The object kbuild builds from it, relative to the tree: `fs/pipe.o`.
    pub object: PathBuf,
    /// The objects for V1, V2 and V3, in the cache (read-only; never delete them).
    pub builds: [PathBuf; 3],
}

/// Cache use and time of [`Discovery::build`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BuildStats {
    /// Objects compiled in this run.
    pub compiled: usize,
    /// Objects found in the cache.
    pub cached: usize,
    /// Wall-clock seconds of the compile stage.
    pub seconds: f64,
}

/// What each stage of discovery kept. Every list is sorted; its length is the stage's count.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DiscoveryReport {
    /// Source files read by the scan.
    pub scanned_files: usize,
    /// Their total size.
    pub scanned_bytes: u64,
    /// The identifier searched for, if any.
    pub identifier: Option<String>,
    /// Files whose uses of the identifier can reach code (mentions outside the edited
    /// definition), or the edited file itself when there is no identifier.
    pub mentions: Vec<PathBuf>,
    /// Units that reach one of `mentions` and the edited file through `#include`s.
    pub candidates: Vec<PathBuf>,
    /// Where the list of built units came from.
    pub built_origin: String,
    /// Candidates this kernel is built from.
    pub built: Vec<PathBuf>,
    /// Built candidates whose V1 preprocessing reads the edited file.
    pub including: Vec<PathBuf>,
    /// Those whose preprocessed text (line markers aside) differs between V1 and V2: the
    /// units to build.
    pub affected: Vec<PathBuf>,
    /// Seconds spent per stage (the compile stage is in [`BuildStats`]).
    pub timings: Vec<(Stage, f64)>,
    /// How many preprocessing results came from the cache, of how many.
    pub preprocess_cached: (usize, usize),
}

impl fmt::Display for DiscoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |paths: &[PathBuf]| -> String {
            const SHOWN: usize = 8;
            let mut names: Vec<String> = paths
                .iter()
                .take(SHOWN)
                .map(|p| p.display().to_string())
                .collect();
            if paths.len() > SHOWN {
                names.push(format!("... {} more", paths.len() - SHOWN));
            }
            names.join(", ")
        };
        writeln!(
            f,
            "scanned      {} files ({} MB){}",
            self.scanned_files,
            self.scanned_bytes / 1_000_000,
            self.identifier
                .as_deref()
                .map(|i| format!(" for {i}"))
                .unwrap_or_default()
        )?;
        for (label, paths) in [
            ("mentions", &self.mentions),
            ("candidates", &self.candidates),
            ("built", &self.built),
            ("including", &self.including),
            ("affected", &self.affected),
        ] {
            writeln!(f, "{label:<12} {:>4}  {}", paths.len(), list(paths))?;
        }
        write!(f, "built units: {}", self.built_origin)
    }
}

/// The outcome of discovery: the change, its overlays and the affected units with their
/// commands. [`Discovery::build`] compiles them.
#[derive(Debug)]
pub struct Discovery {
    tree: PathBuf,
    change: SourceChange,
    overlays: [Overlay; 2],
    commands: Vec<CompileCommand>,
    /// Preprocessing results of the affected units for V1 and V2, in `commands` order.
    preprocessed: Vec<[Preprocessed; 2]>,
    report: DiscoveryReport,
}

impl Discovery {
    /// What each stage found.
    pub fn report(&self) -> &DiscoveryReport {
        &self.report
    }

    /// The edit and its three texts.
    pub fn change(&self) -> &SourceChange {
        &self.change
    }

    /// The overlays of V2 and V3.
    pub fn overlays(&self) -> &[Overlay; 2] {
        &self.overlays
    }

    /// kbuild's compile commands of the affected units.
    pub fn commands(&self) -> &[CompileCommand] {
        &self.commands
    }
}

/// Discovers and builds: [`discover`], then [`Discovery::build`].
///
/// # Errors
///
/// Those of both steps.
pub fn build_variants<'t>(
    tree: impl Into<SourceTree<'t>>,
    tunable: &Tunable,
    options: &VariantOptions,
    progress: &dyn Progress,
) -> Result<VariantSet, KbuildError> {
    discover(tree, tunable, options, progress)?.build(options, progress)
}

/// Finds every translation unit of the build whose preprocessed text changes with the
/// tunable's value, and kbuild's command for each.
///
/// # Errors
///
/// The edit cannot be resolved ([`SourceChange::resolve`]'s errors), the edited unit is not
/// built ([`KbuildError::NotBuilt`]), nothing changes ([`KbuildError::NoAffectedUnits`]), the
/// overlay is bypassed ([`KbuildError::OverlayBypassed`]), or make/gcc fail (their command and
/// stderr).
pub fn discover<'t>(
    tree: impl Into<SourceTree<'t>>,
    tunable: &Tunable,
    options: &VariantOptions,
    progress: &dyn Progress,
) -> Result<Discovery, KbuildError> {
    let tree = tree.into();
    let root = tree.path();
    let built_units = tree.built(options);
    let mut report = DiscoveryReport {
        built_origin: built_units.origin(),
        ..DiscoveryReport::default()
    };
    let identifier = tunable_identifier(tunable);
    let what = identifier
        .clone()
        .unwrap_or_else(|| format!("the pattern of {}", tunable.name));

    let (index, change, overlays) = timed(progress, Stage::Scan, 0, &mut report, |report| {
        // When the tunable names a unit, it is almost surely a candidate: ask kbuild for its
        // command (a second or two of make) while the scan runs. The answer lands in the
        // command memo, where the Commands stage finds it; a failure here is reported there.
        let speculative = tunable
            .file()
            .filter(|f| is_unit(f) && built_units.contains(f))
            .map(Path::to_path_buf);
        let index = std::thread::scope(|scope| {
            if let (Some(unit), SourceTree::Kernel(kernel)) = (speculative, tree) {
                scope.spawn(move || {
                    let _ = compile_commands(kernel, &options.toolchain, &[unit], &options.cache);
                });
            }
            TreeIndex::scan(
                root,
                &options.toolchain.arch,
                identifier.as_deref(),
                built_units,
                options.jobs,
            )
        })?;
        let change = SourceChange::resolve(tunable, &index)?;
        find_candidates(&index, &change, built_units, report);
        let edited = &change.file;
        if report.built.is_empty() {
            if is_unit(edited) && !built_units.contains(edited) {
                return Err(KbuildError::NotBuilt {
                    file: edited.clone(),
                    origin: built_units.origin(),
                });
            }
            return Err(KbuildError::NoAffectedUnits {
                what: what.clone(),
                file: edited.clone(),
                candidates: 0,
            });
        }
        let overlays = [
            Overlay::create(&options.cache, &index, edited, &change.texts[1])?,
            Overlay::create(&options.cache, &index, edited, &change.texts[2])?,
        ];
        Ok((index, change, overlays))
    })?;
    drop(index);
    let edited = change.file.clone();

    let built = report.built.clone();
    let commands = timed(progress, Stage::Commands, 0, &mut report, |_| {
        tree.compile_commands(&options.toolchain, &built, &options.cache)
    })?;

    let total = 2 * commands.len();
    let (commands, preprocessed) =
        timed(progress, Stage::Preprocess, total, &mut report, |report| {
            let scratch = options.cache.scratch()?;
            let jobs: Vec<(usize, usize)> =
                (0..commands.len()).flat_map(|u| [(u, 0), (u, 1)]).collect();
            // A unit that fails to preprocess does not stop the others: the error lists them
            // all, so that one fix (usually: build the tree once) covers every one.
            let results = run_parallel(&jobs, options.jobs, |&(u, variant)| {
                let overlay = (variant > 0).then(|| &overlays[variant - 1]);
                let work = scratch.path().join(format!("{u}-{variant}"));
                let outcome =
                    preprocess(&commands[u], overlay, &options.cache, &work).map_err(|e| {
                        unit_failed(e, &commands[u], variant, change.values[variant], true)
                    });
                progress.event(Event::Step {
                    stage: Stage::Preprocess,
                    item: &commands[u].source,
                    variant: Some(variant),
                    cached: outcome.as_ref().is_ok_and(|o| o.1),
                });
                match outcome {
                    Err(e @ KbuildError::UnitFailed { .. }) => Ok(Err(e)),
                    other => other.map(Ok),
                }
            })?;
            report.preprocess_cached = (
                results
                    .iter()
                    .filter(|r| r.as_ref().is_ok_and(|r| r.1))
                    .count(),
                results.len(),
            );
            let mut failed = Vec::new();
            let mut kept = (Vec::new(), Vec::new());
            let mut results = results.into_iter();
            for command in commands {
                let v1 = results.next().expect("two results per unit");
                let v2 = results.next().expect("two results per unit");
                let (v1, v2) = match (v1, v2) {
                    (Ok(v1), Ok(v2)) => (v1.0, v2.0),
                    (Err(e), _) | (_, Err(e)) => {
                        failed.push(e);
                        continue;
                    }
                };
                // Candidates come from an over-approximate include graph; gcc's list is exact.
                if !reads(&v1, root, &edited) {
                    continue;
                }
                report.including.push(command.source.clone());
                if reads(&v2, root, &edited) {
                    return Err(KbuildError::OverlayBypassed {
                        unit: command.source,
                        file: edited.clone(),
                        value: change.values[1],
                    });
                }
                if v1.text != v2.text {
                    report.affected.push(command.source.clone());
                    kept.0.push(command);
                    kept.1.push([v1, v2]);
                }
            }
            if !failed.is_empty() {
                return Err(KbuildError::UnitsFailed {
                    units: failed
                        .iter()
                        .filter_map(|e| match e {
                            KbuildError::UnitFailed { unit, .. } => Some(unit.clone()),
                            _ => None,
                        })
                        .collect(),
                    first: Box::new(failed.swap_remove(0)),
                });
            }
            Ok(kept)
        })?;
    if commands.is_empty() {
        return Err(KbuildError::NoAffectedUnits {
            what,
            file: edited,
            candidates: report.built.len(),
        });
    }
    Ok(Discovery {
        tree: root.to_owned(),
        change,
        overlays,
        commands,
        preprocessed,
        report,
    })
}

impl<'t> SourceTree<'t> {
    /// The units this tree is built from: the kernel's from `options`, a module's own.
    fn built<'a>(&'a self, options: &'a VariantOptions) -> &'a BuiltUnits {
        match self {
            SourceTree::Kernel(_) => &options.built,
            SourceTree::Module(module) => module.units(),
        }
    }

    /// kbuild's commands for `sources`: `make -n` in a kernel tree (memoised), the module's
    /// commands found when it was opened.
    fn compile_commands(
        &self,
        toolchain: &Toolchain,
        sources: &[PathBuf],
        cache: &Cache,
    ) -> Result<Vec<CompileCommand>, KbuildError> {
        match self {
            SourceTree::Kernel(tree) => compile_commands(tree, toolchain, sources, cache),
            SourceTree::Module(module) => module.compile_commands(sources),
        }
    }
}

/// Runs one stage of discovery: reports its start and end, and records its duration.
fn timed<T>(
    progress: &dyn Progress,
    stage: Stage,
    total: usize,
    report: &mut DiscoveryReport,
    f: impl FnOnce(&mut DiscoveryReport) -> Result<T, KbuildError>,
) -> Result<T, KbuildError> {
    let started = Instant::now();
    progress.event(Event::Started { stage, total });
    let result = f(report)?;
    progress.event(Event::Finished { stage });
    report
        .timings
        .push((stage, started.elapsed().as_secs_f64()));
    Ok(result)
}

/// Fills the report's `mentions`, `candidates` and `built`.
///
/// A unit is a candidate when its includes reach both a use of the identifier (a mention not
/// on an edited line, which is the definition itself) and the edited file. Without an
/// identifier, the edited file is the only "use".
fn find_candidates(
    index: &TreeIndex,
    change: &SourceChange,
    built: &BuiltUnits,
    report: &mut DiscoveryReport,
) {
    let edited = &change.file;
    report.scanned_files = index.file_count();
    report.scanned_bytes = index.bytes();
    report.identifier = index.identifier().map(str::to_owned);
    report.mentions = match index.identifier() {
        Some(_) => index
            .mentions()
            .into_iter()
            .filter(|(path, lines)| {
                *path != edited || lines.iter().any(|l| !change.summary.lines.contains(l))
            })
            .map(|(path, _)| path.to_owned())
            .collect(),
        None => vec![edited.clone()],
    };
    let seeds: Vec<&Path> = report.mentions.iter().map(PathBuf::as_path).collect();
    let reaching_edit: BTreeSet<PathBuf> = index
        .units_reaching(&[edited.as_path()])
        .into_iter()
        .collect();
    report.candidates = index
        .units_reaching(&seeds)
        .into_iter()
        .filter(|u| reaching_edit.contains(u))
        .collect();
    report.built = report
        .candidates
        .iter()
        .filter(|u| built.contains(u))
        .cloned()
        .collect();
}

impl Discovery {
    /// Compiles every affected unit for V1, V2 and V3 (V1 with kbuild's command unchanged but
    /// for its output paths), `options.jobs` at a time, largest sources first. Objects already
    /// in the cache are not rebuilt.
    ///
    /// # Errors
    ///
    /// A compiler failure names the command and shows its stderr; cache write errors.
    pub fn build(
        self,
        options: &VariantOptions,
        progress: &dyn Progress,
    ) -> Result<VariantSet, KbuildError> {
        let started = Instant::now();
        let scratch = options.cache.scratch()?;
        // Largest first, so the long compiles do not end up alone at the end.
        let mut order: Vec<usize> = (0..self.commands.len()).collect();
        let size = |u: usize| {
            std::fs::metadata(self.tree.join(&self.commands[u].source)).map_or(0, |m| m.len())
        };
        order.sort_by_key(|&u| std::cmp::Reverse(size(u)));
        // V3's preprocessing goes first: it is short, and a V3 compile needs its result for the
        // cache key. Queued ahead of the compiles, it runs while the first ones start.
        let mut jobs: Vec<Job> = order.iter().map(|&u| Job::PreprocessV3(u)).collect();
        jobs.extend(
            order
                .iter()
                .flat_map(|&u| (0..3).map(move |v| Job::Compile(u, v))),
        );
        let v3: Vec<Mutex<Option<Preprocessed>>> =
            self.commands.iter().map(|_| Mutex::new(None)).collect();
        let preprocess_v3 = |u: usize| -> Result<Preprocessed, KbuildError> {
            let mut slot = v3[u].lock().expect("no panics while locked");
            if let Some(pp) = &*slot {
                return Ok(pp.clone());
            }
            let command = &self.commands[u];
            let work = scratch.path().join(format!("{u}-2-pp"));
            let pp = preprocess(command, Some(&self.overlays[1]), &options.cache, &work)
                .map_err(|e| unit_failed(e, command, 2, self.change.values[2], true))?
                .0;
            if let Some(file) = bypassed(&self.overlays[1], &self.tree, &pp.deps) {
                return Err(KbuildError::OverlayBypassed {
                    unit: command.source.clone(),
                    file,
                    value: self.change.values[2],
                });
            }
            *slot = Some(pp.clone());
            Ok(pp)
        };
        let total = jobs.len() - order.len();
        progress.event(Event::Started {
            stage: Stage::Compile,
            total,
        });
        let built = run_parallel(&jobs, options.jobs, |job| {
            let (u, variant) = match *job {
                Job::PreprocessV3(u) => {
                    preprocess_v3(u)?;
                    return Ok(None);
                }
                Job::Compile(u, variant) => (u, variant),
            };
            let command = &self.commands[u];
            let overlay = (variant > 0).then(|| &self.overlays[variant - 1]);
            let work = scratch.path().join(format!("{u}-{variant}"));
            let pp = match variant {
                0 | 1 => self.preprocessed[u][variant].clone(),
                _ => preprocess_v3(u)?,
            };
            let (path, cached) =
                compile(command, overlay, &pp, &options.cache, &work).map_err(|e| {
                    unit_failed(e, command, variant, self.change.values[variant], false)
                })?;
            progress.event(Event::Step {
                stage: Stage::Compile,
                item: &command.source,
                variant: Some(variant),
                cached,
            });
            Ok::<_, KbuildError>(Some((u, variant, path, cached)))
        })?;
        let built: Vec<(usize, usize, PathBuf, bool)> = built.into_iter().flatten().collect();
        progress.event(Event::Finished {
            stage: Stage::Compile,
        });
        let cached = built.iter().filter(|b| b.3).count();
        let mut builds: Vec<[Option<PathBuf>; 3]> = vec![Default::default(); self.commands.len()];
        for (u, variant, path, _) in built {
            builds[u][variant] = Some(path);
        }
        let mut units: Vec<VariantUnit> = self
            .commands
            .iter()
            .zip(builds)
            .map(|(c, b)| VariantUnit {
                source: c.source.clone(),
                object: c.object.clone(),
                builds: b.map(|p| p.expect("every variant was built")),
            })
            .collect();
        units.sort_by(|a, b| a.source.cmp(&b.source));
        Ok(VariantSet {
            values: self.change.values,
            units,
            discovery: self.report,
            change: self.change.summary,
            stats: BuildStats {
                compiled: total - cached,
                cached,
                seconds: started.elapsed().as_secs_f64(),
            },
        })
    }
}

/// Names the unit and value of a failed compiler run; other errors pass unchanged.
fn unit_failed(
    error: KbuildError,
    command: &CompileCommand,
    variant: usize,
    value: i64,
    preprocessing: bool,
) -> KbuildError {
    match error {
        KbuildError::CommandFailed { .. } | KbuildError::Spawn { .. } => KbuildError::UnitFailed {
            unit: command.source.clone(),
            variant,
            value,
            preprocessing,
            source: Box::new(error),
        },
        other => other,
    }
}

/// One task of the compile stage.
#[derive(Debug, Clone, Copy)]
enum Job {
    /// Preprocess unit `u` for V3 (V1 and V2 were done by discovery).
    PreprocessV3(usize),
    /// Compile unit `u` for variant `v` (0-based).
    Compile(usize, usize),
}

/// Whether a preprocessing read the tree's copy of `file`.
fn reads(pp: &Preprocessed, tree: &Path, file: &Path) -> bool {
    pp.deps.iter().any(|d| {
        d.strip_prefix(tree)
            .ok()
            .and_then(normalize)
            .is_some_and(|d| d == file)
    })
}

/// What identifies the compiler beyond its command line: its resolved path, size and mtime,
/// and the environment variables gcc reads.
#[derive(Debug, Clone)]
struct CompilerId(String);

impl CompilerId {
    fn of(command: &CommandLine) -> CompilerId {
        let program = Path::new(&command.program);
        let resolved = if program.components().count() > 1 {
            Some(
                command
                    .dir
                    .as_deref()
                    .unwrap_or(Path::new("."))
                    .join(program),
            )
        } else {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(program))
                    .find(|p| p.is_file())
            })
        };
        let mut h = KeyHasher::new("compiler");
        h.str(&command.program);
        if let Some(path) = resolved {
            let real = path.canonicalize().unwrap_or(path);
            h.str(&real);
            if let Some(stamp) = Stamp::of(&real) {
                h.str(format!("{}:{}", stamp.size, stamp.mtime_ns));
            }
        }
        for var in [
            "GCC_EXEC_PREFIX",
            "COMPILER_PATH",
            "CPATH",
            "C_INCLUDE_PATH",
        ] {
            h.str(var).str(std::env::var_os(var).unwrap_or_default());
        }
        CompilerId(h.finish())
    }
}

/// The result of preprocessing one unit for one value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Preprocessed {
    /// sha256 of the whole output.
    full: String,
    /// sha256 of the output without line markers: equal texts compile to equal code.
    text: String,
    /// Every file gcc read, absolute.
    deps: Vec<PathBuf>,
}

/// The memo of a preprocessing: its result and the stamps of the files it read.
#[derive(Debug, Serialize, Deserialize)]
struct PreprocessMemo {
    result: Preprocessed,
    stamps: Vec<Option<Stamp>>,
}

const PREPROCESS_MEMO: &str = "preprocess";

/// Placeholders for the scratch paths, so keys do not depend on where a run's scratch is.
fn key_command(cmd: &CompileCommand, overlay: Option<&Overlay>, preprocess: bool) -> String {
    let (output, depfile) = (Path::new("@out"), Path::new("@dep"));
    let action = if preprocess {
        Action::Preprocess { output, depfile }
    } else {
        Action::Compile { output, depfile }
    };
    variant_command(cmd, overlay, action).to_string()
}

/// Runs (or recalls) `gcc -E` for one unit and value; `work` is a scratch path prefix.
/// Returns the result and whether it came from the memo.
fn preprocess(
    cmd: &CompileCommand,
    overlay: Option<&Overlay>,
    cache: &Cache,
    work: &Path,
) -> Result<(Preprocessed, bool), KbuildError> {
    let key = KeyHasher::new(PREPROCESS_MEMO)
        .str(CompilerId::of(&cmd.command).0)
        .str(key_command(cmd, overlay, true))
        .finish();
    if let Some(memo) = cache.read_memo::<PreprocessMemo>(PREPROCESS_MEMO, &key)
        && memo.stamps.len() == memo.result.deps.len()
        && memo
            .result
            .deps
            .iter()
            .zip(&memo.stamps)
            .all(|(d, s)| Stamp::of(d) == *s)
    {
        return Ok((memo.result, true));
    }
    let output = work.with_extension("i");
    let depfile = work.with_extension("i.d");
    let command = variant_command(
        cmd,
        overlay,
        Action::Preprocess {
            output: &output,
            depfile: &depfile,
        },
    );
    command.run()?;
    let text = std::fs::read(&output).map_err(|source| KbuildError::Read {
        path: output.clone(),
        source,
    })?;
    let deps = read_depfile(&depfile, &command)?;
    let _ = std::fs::remove_file(&output);
    let _ = std::fs::remove_file(&depfile);
    let tree = cmd.command.dir.as_deref().unwrap_or(Path::new("."));
    let deps: Vec<PathBuf> = deps.into_iter().map(|d| tree.join(d)).collect();
    let result = Preprocessed {
        full: sha256(&text),
        text: sha256(&without_line_markers(&text)),
        deps,
    };
    let stamps = result.deps.iter().map(|d| Stamp::of(d)).collect();
    cache.write_memo(
        PREPROCESS_MEMO,
        &key,
        &PreprocessMemo {
            result: result.clone(),
            stamps,
        },
    )?;
    Ok((result, false))
}

/// Compiles (or finds) the object for one unit and value. Returns its cache path and
/// whether it was found.
fn compile(
    cmd: &CompileCommand,
    overlay: Option<&Overlay>,
    pp: &Preprocessed,
    cache: &Cache,
    work: &Path,
) -> Result<(PathBuf, bool), KbuildError> {
    let mut key = KeyHasher::new("object");
    key.str(CompilerId::of(&cmd.command).0)
        .str(key_command(cmd, overlay, false))
        .str(&pp.full);
    for post in &cmd.post {
        key.str(post.to_string());
    }
    let key = key.finish();
    let path = cache.object_path(&key);
    if path.is_file() {
        return Ok((path, true));
    }
    let output = work.with_extension("o");
    let depfile = work.with_extension("o.d");
    let command = variant_command(
        cmd,
        overlay,
        Action::Compile {
            output: &output,
            depfile: &depfile,
        },
    );
    command.run()?;
    for post in &cmd.post {
        let mut step = post.clone();
        for arg in &mut step.args {
            // A kernel tree's object is named relative to it, a module's by absolute path.
            if Path::new(arg) == cmd.object || Path::new(arg) == cmd.tree.join(&cmd.object) {
                *arg = output.clone().into_os_string();
            }
        }
        step.run()?;
    }
    let _ = std::fs::remove_file(&depfile);
    Ok((cache.store_object(&key, &output)?, false))
}

/// The preprocessed text without gcc's `# <line> "<file>"` markers, whose paths differ
/// between the tree and an overlay.
fn without_line_markers(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for line in text.split_inclusive(|&b| b == b'\n') {
        let marker = line.starts_with(b"# ") && line.get(2).is_some_and(u8::is_ascii_digit);
        if !marker {
            out.extend_from_slice(line);
        }
    }
    out
}

/// The prerequisites of a make-syntax dependency file (`target: dep dep \` ...).
fn read_depfile(path: &Path, command: &CommandLine) -> Result<Vec<PathBuf>, KbuildError> {
    let text = std::fs::read_to_string(path).map_err(|source| KbuildError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_depfile(&text).ok_or_else(|| KbuildError::DepFile {
        path: path.to_owned(),
        command: command.clone(),
    })
}

fn parse_depfile(text: &str) -> Option<Vec<PathBuf>> {
    let joined = text.replace("\\\n", " ");
    let (_, rest) = joined.split_once(": ")?;
    // Only the first rule: gcc lists every prerequisite there (-MP phony rules follow).
    let rest = rest.lines().next().unwrap_or("");
    let mut deps = Vec::new();
    let mut word = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => {
                word.push(' ');
                chars.next();
            }
            '$' if chars.peek() == Some(&'$') => {
                word.push('$');
                chars.next();
            }
            ' ' | '\t' => {
                if !word.is_empty() {
                    deps.push(PathBuf::from(std::mem::take(&mut word)));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        deps.push(PathBuf::from(word));
    }
    Some(deps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_markers_are_ignored_when_comparing() {
        let a = b"# 1 \"fs/pipe.c\"\nint x = 16;\n# 12 \"./include/linux/pipe_fs_i.h\" 1\n#pragma once\n";
        let b = b"# 1 \"/c/ov/fs/pipe.c\"\nint x = 16;\n# 12 \"/c/ov/include/linux/pipe_fs_i.h\" 1\n#pragma once\n";
        assert_eq!(without_line_markers(a), without_line_markers(b));
        assert_eq!(without_line_markers(a), b"int x = 16;\n#pragma once\n");
    }

    #[test]
    fn parses_gcc_dependency_files() {
        let text = "/s/1.o: fs/pipe.c ./include/linux/kconfig.h \\\n  include/generated/autoconf.h /c/ov/a\\ b.h \\\n  x$$y.h\n\nphony.h:\n";
        assert_eq!(
            parse_depfile(text).unwrap(),
            [
                PathBuf::from("fs/pipe.c"),
                "./include/linux/kconfig.h".into(),
                "include/generated/autoconf.h".into(),
                "/c/ov/a b.h".into(),
                "x$y.h".into(),
            ]
        );
        assert_eq!(parse_depfile("garbage"), None);
    }

    #[test]
    fn reads_matches_the_tree_copy_only() {
        let pp = Preprocessed {
            full: String::new(),
            text: String::new(),
            deps: vec![
                PathBuf::from("/tree/fs/pipe.c"),
                PathBuf::from("/tree/./include/linux/pipe_fs_i.h"),
                PathBuf::from("/c/ov/include/linux/splice.h"),
            ],
        };
        assert!(reads(
            &pp,
            Path::new("/tree"),
            Path::new("include/linux/pipe_fs_i.h")
        ));
        assert!(!reads(
            &pp,
            Path::new("/tree"),
            Path::new("include/linux/splice.h")
        ));
    }

    #[test]
    fn report_lists_counts_per_stage() {
        let report = DiscoveryReport {
            scanned_files: 2,
            identifier: Some("X".into()),
            mentions: vec!["a.c".into()],
            candidates: vec!["a.c".into()],
            built: vec!["a.c".into()],
            including: vec!["a.c".into()],
            affected: (0..10).map(|i| PathBuf::from(format!("u{i}.c"))).collect(),
            built_origin: "test".into(),
            ..Default::default()
        };
        let text = report.to_string();
        assert!(text.contains("mentions        1  a.c"), "{text}");
        assert!(text.contains("affected       10  u0.c"), "{text}");
        assert!(text.contains("... 2 more"), "{text}");
    }
}
