//! `analyze`: one tunable, from variant builds to a checked [`TunablePlan`].
//!
//! Step by step:
//!
//! 1. kbuild finds every affected unit ([`discover`]); units the user excludes must be among
//!    them. It builds each with V1, V2 and V3 ([`Discovery::build`]).
//! 2. Per unit, the three objects are diffed ([`diff_objects`]). Code effects SIE cannot
//!    express are collected across all units (all of them reported at once); data effects
//!    become `uncovered` entries and warnings. An excluded unit's sites and code effects
//!    become one `excluded_unit` entry: it keeps the compiled value.
//! 3. When the code effects are only changes of instruction form and KernelX picked the probe
//!    values itself, it drops the values that caused them for values closer to V1
//!    ([`closer_values`]) and goes back to 1, at most [`VALUE_RETRIES`] times; the plan's
//!    warnings say which pair was dropped and why. Otherwise code effects fail the tunable.
//!    Likewise when synthesis finds no relation because a picked value does not fit the
//!    operand the constant is encoded in (the compiler truncated it:
//!    [`SymexError::TruncatedValues`]).
//! 4. Per seed: the seed's basic block in each build goes to [`synthesize_with_live_out`],
//!    with the registers live after the V1 block ([`registers_live_after`]); the V1 function's
//!    probe sites give the probes, placed for all sites of a function together so that none
//!    claims an optimization another's probe prevents ([`place_function_probes`]); the slicer
//!    (or the spec's `[[safe_spans]]`) gives the safe span.
//! 5. The tunable's range is the intersection of the sites' ranges; an empty one fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use kernelx_kbuild::{
    ChangeSummary, Discovery, Progress, SourceTree, VariantOptions, VariantSet, closer_values,
    discover,
};
use kernelx_plan::{
    LineRange, Site, TunablePlan, TunableRange, TunableSource, UncoveredKind, magic,
};
use kernelx_spec::Tunable;
use kernelx_x86::symex::{
    Gpr, RegOperand, RegOperandExt, SeedContext, SeedVersion, SymexError, synthesize_with_live_out,
};
use kernelx_x86::{
    Cfg, Disassembler, FunctionCode, Insn, KernelProbeConfig, ObjectFile, ProbeSites, Seed,
    SymbolKind, diff_objects, index_at, registers_live_after,
};

use crate::classify::{describe_in_unit, is_code_effect, is_form_effect, plan_effect};
use crate::error::{AnalyzeError, UncoveredCode};
use crate::probes::{critical_span, place_function_probes};
use crate::seeds::{Window, seed_window, window_at};
use crate::spans::safe_span;

/// How many times KernelX replaces probe values it picked itself when they change the form of
/// code. Each retry compiles only the replaced values; the others come from the cache.
pub const VALUE_RETRIES: usize = 3;

/// How to analyse.
#[derive(Debug, Clone)]
pub struct AnalyzeOptions {
    /// Toolchain, jobs, cache and built units for the variant builds.
    pub variants: VariantOptions,
    /// The target kernel's kprobe configuration, for probe placement.
    pub probes: KernelProbeConfig,
    /// Units (relative to the tree: `kernel/trace/trace.c`) that keep the compiled value: they
    /// are still built and diffed, but their sites are not tuned and their code effects do not
    /// fail the tunable; the plan lists each as an [`UncoveredKind::ExcludedUnit`] effect. Each
    /// must be a unit the constant reaches.
    pub exclude_units: Vec<PathBuf>,
}

impl AnalyzeOptions {
    /// These variant options, for a kernel configured as Debian's 6.12
    /// ([`KernelProbeConfig::DEBIAN_6_12`], the kernel KernelX is developed against), with no
    /// unit excluded.
    pub fn new(variants: VariantOptions) -> Self {
        Self {
            variants,
            probes: KernelProbeConfig::DEBIAN_6_12,
            exclude_units: Vec::new(),
        }
    }
}

/// Builds the plan of one tunable: every site with its recipe, probes and safe span, or an
/// error naming the first seed that cannot be synthesized or every code effect SIE cannot
/// cover. Never a partial plan.
pub fn analyze<'t>(
    tree: impl Into<SourceTree<'t>>,
    tunable: &Tunable,
    options: &AnalyzeOptions,
    progress: &dyn Progress,
) -> Result<TunablePlan, AnalyzeError> {
    let tree = tree.into();
    let mut attempt = tunable.clone();
    let mut picked = None;
    let mut dropped: Vec<[i64; 3]> = Vec::new();
    let mut warnings = Vec::new();
    loop {
        let set = build(tree, &attempt, options, progress)?;
        if dropped.is_empty() {
            picked = set.change.picked;
        }
        let diffed = diff_units(&set, &options.exclude_units)?;
        let Some(first) = diffed.code_effects.first() else {
            let planned = finish(tunable, options, &set, diffed, warnings.clone());
            let truncated = planned
                .as_ref()
                .err()
                .and_then(|e| truncated_values(e, set.values));
            let closer = picked
                .filter(|_| dropped.len() < VALUE_RETRIES)
                .zip(truncated)
                .and_then(|(ty, (failed, why))| {
                    closer_values(ty, set.values, failed, &same_code_as(set.values[0]))
                        .map(|c| (c, why))
                });
            let Some(((values, how), why)) = closer else {
                return planned;
            };
            warnings.push(format!(
                "{}: the probe values {:?} KernelX picked were dropped: {why}; built with \
                 {values:?} instead ({how})",
                tunable.name, set.values
            ));
            dropped.push(set.values);
            attempt = with_values(tunable, values);
            continue;
        };
        let closer = picked
            .filter(|_| dropped.len() < VALUE_RETRIES && diffed.code_effects.iter().all(|e| e.form))
            .and_then(|ty| {
                closer_values(
                    ty,
                    set.values,
                    diffed.failed_builds(),
                    &same_code_as(set.values[0]),
                )
            });
        let Some((values, how)) = closer else {
            return Err(diffed.uncovered_code(tunable, set.values, dropped));
        };
        warnings.push(format!(
            "{}: the probe values {:?} KernelX picked were dropped: they change code SIE \
             cannot patch ({}); built with {values:?} instead ({how})",
            tunable.name,
            set.values,
            first.line()
        ));
        dropped.push(set.values);
        attempt = with_values(tunable, values);
    }
}

/// Whether V2 and V3 are among the values a seed's operand truncates, when that is why no
/// relation fits (values closer to V1 may fit it), and where.
fn truncated_values(error: &AnalyzeError, values: [i64; 3]) -> Option<([bool; 2], String)> {
    let AnalyzeError::Synthesis {
        unit,
        function,
        offset,
        asm,
        source,
        ..
    } = error
    else {
        return None;
    };
    let SymexError::TruncatedValues {
        width, truncated, ..
    } = source.as_ref()
    else {
        return None;
    };
    let failed = [values[1], values[2]].map(|v| truncated.contains(&v));
    let listed: Vec<String> = truncated.iter().map(i64::to_string).collect();
    Some((
        failed,
        format!(
            "{} {} not fit the {} bits the constant occupies in `{asm}` at \
             {unit}:{function}+{offset:#x}; the compiler truncates {}",
            listed.join(" and "),
            if listed.len() == 1 { "does" } else { "do" },
            width.bits(),
            if listed.len() == 1 { "it" } else { "them" },
        ),
    ))
}

/// Which replacement probe values can compile to V1's instructions: a divisor whose magic
/// multiplier needs the add fix-up keeps it only for values of the same shape (doubling and
/// halving always lose it); any value otherwise.
fn same_code_as(v1: i64) -> impl Fn(i64) -> bool {
    let division = magic::needs_add_fixup(v1);
    move |v| !division || magic::same_division_shape(v1, v)
}

/// Discovers the affected units, checks the exclusions against them, and builds.
fn build(
    tree: SourceTree<'_>,
    tunable: &Tunable,
    options: &AnalyzeOptions,
    progress: &dyn Progress,
) -> Result<VariantSet, AnalyzeError> {
    let kbuild = |source| AnalyzeError::Kbuild {
        tunable: tunable.name.clone(),
        source: Box::new(source),
    };
    let discovery: Discovery =
        discover(tree, tunable, &options.variants, progress).map_err(kbuild)?;
    let affected = &discovery.report().affected;
    if let Some(unit) = options.exclude_units.iter().find(|u| !affected.contains(u)) {
        return Err(AnalyzeError::ExcludedUnitNotReached {
            tunable: tunable.name.clone(),
            unit: unit.display().to_string(),
            reached: affected.iter().map(|u| u.display().to_string()).collect(),
        });
    }
    discovery.build(&options.variants, progress).map_err(kbuild)
}

/// `tunable` (the macro form) with these values, as if its author had given them.
fn with_values(tunable: &Tunable, chosen: [i64; 3]) -> Tunable {
    let mut retry = tunable.clone();
    if let kernelx_spec::TunableSource::Macro { values, .. } = &mut retry.source {
        *values = Some(chosen);
    }
    retry
}

/// A unit whose builds have no code effects, ready for synthesis.
struct DiffedUnit {
    name: String,
    bytes: Vec<Vec<u8>>,
    seeds: Vec<Seed>,
    paths: [PathBuf; 3],
}

/// A code effect of a unit.
struct CodeEffect {
    unit: String,
    /// `symbol+0xoff (section): kind: detail`.
    what: String,
    /// The builds (1, 2) that differ from V1 there.
    builds: Vec<usize>,
    /// A change of instruction form, which closer values may avoid ([`is_form_effect`]).
    form: bool,
}

impl CodeEffect {
    /// `unit: symbol+0xoff (section): kind: detail`.
    fn line(&self) -> String {
        format!("{}: {}", self.unit, self.what)
    }
}

/// What the diffs of every unit found.
struct Diffed {
    units: Vec<DiffedUnit>,
    uncovered: Vec<kernelx_plan::UncoveredEffect>,
    warnings: Vec<String>,
    code_effects: Vec<CodeEffect>,
}

impl Diffed {
    /// Whether V2 and V3 caused code effects.
    fn failed_builds(&self) -> [bool; 2] {
        [1, 2].map(|b| self.code_effects.iter().any(|e| e.builds.contains(&b)))
    }

    fn uncovered_code(
        &self,
        tunable: &Tunable,
        values: [i64; 3],
        dropped: Vec<[i64; 3]>,
    ) -> AnalyzeError {
        let mut with_effects: Vec<String> =
            self.code_effects.iter().map(|e| e.unit.clone()).collect();
        with_effects.dedup();
        AnalyzeError::UncoveredCode(Box::new(UncoveredCode {
            tunable: tunable.name.clone(),
            effects: self.code_effects.iter().map(CodeEffect::line).collect(),
            values,
            dropped,
            units: with_effects,
            tunable_units: self.units.iter().map(|u| u.name.clone()).collect(),
        }))
    }
}

/// Reads and diffs every unit's three objects. Objects are read for all units first so that
/// code effects of every unit are reported together, before any synthesis error.
fn diff_units(set: &VariantSet, excluded: &[PathBuf]) -> Result<Diffed, AnalyzeError> {
    let mut diffed = Diffed {
        units: Vec::new(),
        uncovered: Vec::new(),
        warnings: Vec::new(),
        code_effects: Vec::new(),
    };
    let mut units: Vec<_> = set.units.iter().collect();
    units.sort_by(|a, b| a.source.cmp(&b.source));
    for unit in units {
        let name = unit.source.display().to_string();
        let bytes = unit
            .builds
            .iter()
            .map(|p| std::fs::read(p).map_err(|source| read_error(p, source)))
            .collect::<Result<Vec<_>, _>>()?;
        let objects = parse_objects(&name, &bytes, set.values, &unit.builds)?;
        let diff = diff_objects([&objects[0], &objects[1], &objects[2]], set.values).map_err(
            |source| AnalyzeError::Diff {
                unit: name.clone(),
                source,
            },
        )?;
        let mut code = Vec::new();
        for effect in &diff.uncovered {
            if is_code_effect(effect.kind, &effect.section) {
                code.push(CodeEffect {
                    unit: name.clone(),
                    what: describe_in_unit(effect),
                    builds: effect.builds.clone(),
                    form: is_form_effect(effect.kind),
                });
            } else {
                diffed.uncovered.push(plan_effect(&name, effect));
            }
        }
        for u in &diff.unmatched {
            let what = format!(
                "{} ({}) exists only in builds {:?}",
                u.name, u.section, u.present_in
            );
            match u.kind {
                // Other values may well keep the function (inlining and cloning decisions).
                SymbolKind::Function => code.push(CodeEffect {
                    unit: name.clone(),
                    what,
                    builds: (1..3)
                        .filter(|b| u.present_in.contains(b) != u.present_in.contains(&0))
                        .collect(),
                    form: true,
                }),
                SymbolKind::Data => diffed.warnings.push(format!("{name}: {what}")),
            }
        }
        drop(objects);
        if excluded.contains(&unit.source) {
            diffed
                .uncovered
                .push(excluded_unit(&name, set.values[0], &diff.seeds, &code));
        } else if code.is_empty() {
            diffed.units.push(DiffedUnit {
                name,
                bytes,
                seeds: diff.seeds,
                paths: unit.builds.clone(),
            });
        } else {
            diffed.code_effects.extend(code);
        }
    }
    Ok(diffed)
}

/// The one effect that records an excluded unit: what the constant reaches there, which
/// keeps the compiled value.
fn excluded_unit(
    unit: &str,
    v1: i64,
    seeds: &[Seed],
    code: &[CodeEffect],
) -> kernelx_plan::UncoveredEffect {
    let mut builds: BTreeSet<usize> = code.iter().flat_map(|c| c.builds.clone()).collect();
    if !seeds.is_empty() {
        builds.extend([1, 2]);
    }
    let sites: Vec<String> = seeds
        .iter()
        .map(|s| format!("{}+{:#x} `{}`", s.function, s.offset, s.asm))
        .collect();
    let mut detail = format!(
        "excluded from the tunable: {unit} keeps the compiled value {v1} whatever the tunable \
         is set to, so no tuned site may guard its code; the constant reaches {} site(s) \
         there{}",
        sites.len(),
        if sites.is_empty() {
            String::new()
        } else {
            format!(" ({})", sites.join(", "))
        }
    );
    if code.is_empty() {
        detail.push_str(" and changes no code SIE cannot patch");
    } else {
        let lines: Vec<&str> = code.iter().map(|c| c.what.as_str()).collect();
        detail.push_str(&format!(
            " and changes code SIE cannot patch in {} place(s): {}",
            code.len(),
            lines.join("; ")
        ));
    }
    kernelx_plan::UncoveredEffect {
        kind: UncoveredKind::ExcludedUnit,
        unit: unit.to_owned(),
        symbol: String::new(),
        section: String::new(),
        offset: None,
        builds: builds.into_iter().collect(),
        detail,
        values: None,
    }
}

/// Synthesizes every seed of the units without code effects and assembles the plan.
fn finish(
    tunable: &Tunable,
    options: &AnalyzeOptions,
    set: &VariantSet,
    diffed: Diffed,
    mut warnings: Vec<String>,
) -> Result<TunablePlan, AnalyzeError> {
    warnings.extend(diffed.warnings);
    let mut sites = Vec::new();
    let mut spans = Vec::new();
    for unit in &diffed.units {
        let objects = parse_objects(&unit.name, &unit.bytes, set.values, &unit.paths)?;
        let mut by_function: BTreeMap<&str, Vec<&Seed>> = BTreeMap::new();
        for seed in &unit.seeds {
            by_function.entry(&seed.function).or_default().push(seed);
        }
        for (function, seeds) in by_function {
            let ctx = UnitCtx {
                tunable,
                unit: &unit.name,
                objects: &objects,
                values: set.values,
                probes: options.probes,
            };
            ctx.function_sites(function, &seeds, &mut sites, &mut spans, &mut warnings)?;
        }
    }
    sites.sort_by(|a, b| (&a.unit, &a.function, a.offset).cmp(&(&b.unit, &b.function, b.offset)));
    let range = tunable_range(&tunable.name, &sites)?;
    if sites.is_empty() {
        warnings.push(format!(
            "{}: no instruction depends on the value; the plan has no sites",
            tunable.name
        ));
    }
    let plan = TunablePlan {
        name: tunable.name.clone(),
        description: tunable.description.clone(),
        source: plan_source(tunable, &set.change),
        default: set.values[0],
        range,
        sites,
        safe_spans: spans,
        uncovered: diffed.uncovered,
        warnings,
    };
    kernelx_plan::Plan::new(
        kernelx_plan::KernelIdentity {
            release: String::new(),
            build_id: None,
            module: None,
        },
        vec![plan.clone()],
    )
    .validate()
    .map_err(|source| AnalyzeError::Plan {
        tunable: tunable.name.clone(),
        source,
    })?;
    Ok(plan)
}

/// The values every site accepts: the intersection of their ranges, or an error naming the
/// sites whose bounds cross.
pub fn tunable_range(tunable: &str, sites: &[Site]) -> Result<TunableRange, AnalyzeError> {
    let range = TunableRange::of_sites(sites);
    if range.is_empty() {
        return Err(AnalyzeError::EmptyRange {
            tunable: tunable.to_owned(),
            detail: format!(
                "min {} from {}, max {} from {}",
                range.min,
                range.min_reason.site.as_deref().unwrap_or("-"),
                range.max,
                range.max_reason.site.as_deref().unwrap_or("-")
            ),
        });
    }
    Ok(range)
}

fn read_error(path: &Path, source: std::io::Error) -> AnalyzeError {
    AnalyzeError::Read {
        path: path.to_owned(),
        source,
    }
}

fn parse_objects<'a>(
    unit: &str,
    bytes: &'a [Vec<u8>],
    values: [i64; 3],
    paths: &[std::path::PathBuf; 3],
) -> Result<Vec<ObjectFile<'a>>, AnalyzeError> {
    bytes
        .iter()
        .zip(values)
        .zip(paths)
        .map(|((b, v), path)| {
            ObjectFile::parse(format!("{unit} [V={v}]"), b).map_err(|e| AnalyzeError::Elf {
                path: path.clone(),
                detail: e.to_string(),
            })
        })
        .collect()
}

/// What the sites of one unit share.
struct UnitCtx<'u, 'o, 'a> {
    tunable: &'u Tunable,
    unit: &'u str,
    objects: &'o [ObjectFile<'a>],
    values: [i64; 3],
    probes: KernelProbeConfig,
}

impl UnitCtx<'_, '_, '_> {
    fn function_sites(
        &self,
        function: &str,
        seeds: &[&Seed],
        sites: &mut Vec<Site>,
        spans: &mut Vec<kernelx_plan::SafeSpan>,
        warnings: &mut Vec<String>,
    ) -> Result<(), AnalyzeError> {
        let first = seeds[0];
        let v1 = &self.objects[0];
        let func = v1
            .find_function(function, &first.section)
            .ok_or_else(|| self.seed_error(first, "the function is not in the V1 object"))?;
        if !func.calls_fentry() {
            return Err(AnalyzeError::Probe {
                unit: self.unit.to_owned(),
                function: function.to_owned(),
                offset: first.offset,
                detail: format!(
                    "{function} is notrace (it has no `call __fentry__`), and the kernel refuses \
                     kprobes in such functions; leave {} at the compiled value with \
                     `exclude_units` in the spec (or --exclude-unit)",
                    self.unit
                ),
            });
        }
        let mut dis = Disassembler::new();
        let insns = dis.decode(func);
        let cfg = Cfg::build(v1, func, &insns);
        let code = FunctionCode::new(v1, func, &insns, &cfg);
        let probe_sites = ProbeSites::new(code, self.probes);
        let overrides: Vec<(u32, u32)> = self
            .tunable
            .safe_spans
            .iter()
            .filter(|s| s.function == function)
            .map(|s| (s.start_offset, s.end_offset))
            .collect();
        // Other builds' functions, decoded once each.
        let mut others: Vec<Option<(String, Vec<Insn>, Cfg)>> = vec![None, None];
        let mut synthesized = Vec::with_capacity(seeds.len());
        for seed in seeds {
            let windows = self.windows(seed, func, &insns, &cfg, &mut others, &mut dis)?;
            let ctx = SeedContext {
                versions: [0, 1, 2].map(|k| SeedVersion {
                    value: self.values[k],
                    block: &windows[k].block,
                    seed: windows[k].seed,
                }),
            };
            let live = live_after_window(&code, seed.offset);
            let recipe = synthesize_with_live_out(&ctx, &live).map_err(|source| {
                AnalyzeError::Synthesis {
                    tunable: self.tunable.name.clone(),
                    unit: self.unit.to_owned(),
                    function: function.to_owned(),
                    offset: seed.offset,
                    asm: seed.asm.clone(),
                    source: Box::new(source),
                }
            })?;
            let id = format!("{}:{function}+{:#x}", self.unit, seed.offset);
            synthesized.push((recipe, id));
        }
        // Placed together: one site's probe can keep another's from being jump-optimized.
        let recipes: Vec<(&kernelx_plan::Recipe, &str)> =
            synthesized.iter().map(|(r, id)| (r, id.as_str())).collect();
        let placed = place_function_probes(&probe_sites, &recipes).map_err(|(i, detail)| {
            AnalyzeError::Probe {
                unit: self.unit.to_owned(),
                function: function.to_owned(),
                offset: seeds[i].offset,
                detail,
            }
        })?;
        for ((seed, (recipe, id)), probes) in seeds.iter().zip(synthesized).zip(placed) {
            warnings.extend(probes.warnings);
            let span_id = format!(
                "{}:{function}/{}",
                self.unit,
                spans
                    .iter()
                    .filter(|s: &&kernelx_plan::SafeSpan| s
                        .id
                        .starts_with(&format!("{}:{function}/", self.unit)))
                    .count()
            );
            let span = safe_span(&code, critical_span(&recipe), &overrides, span_id.clone())
                .map_err(|detail| AnalyzeError::Span {
                    unit: self.unit.to_owned(),
                    function: function.to_owned(),
                    offset: seed.offset,
                    detail,
                })?;
            spans.push(span);
            sites.push(Site {
                id,
                unit: self.unit.to_owned(),
                function: function.to_owned(),
                section: seed.section.clone(),
                offset: seed.offset,
                len: seed.len,
                bytes: kernelx_plan::HexBytes(seed.bytes.0.clone()),
                mask: kernelx_plan::HexBytes(seed.mask.0.clone()),
                asm: seed.asm.clone(),
                recipe,
                probes: probes.placement,
                safe_span: span_id,
            });
        }
        Ok(())
    }

    /// The seed's window in V1, V2 and V3.
    fn windows(
        &self,
        seed: &Seed,
        func: &kernelx_x86::Function<'_>,
        insns: &[Insn],
        cfg: &Cfg,
        others: &mut [Option<(String, Vec<Insn>, Cfg)>],
        dis: &mut Disassembler,
    ) -> Result<[Window; 3], AnalyzeError> {
        let v1 = window_at(func, insns, cfg, seed.offset)
            .ok_or_else(|| self.seed_error(seed, "no V1 instruction starts there"))?;
        let mut out = vec![v1];
        for k in 1..3 {
            let instance = seed
                .instances
                .get(k)
                .ok_or_else(|| self.seed_error(seed, &format!("no instance in build {k}")))?;
            let object = &self.objects[k];
            let f = object.function(&instance.function).ok_or_else(|| {
                self.seed_error(
                    seed,
                    &format!("no function {} in build {k}", instance.function),
                )
            })?;
            let slot = &mut others[k - 1];
            if slot
                .as_ref()
                .is_none_or(|(name, _, _)| *name != instance.function)
            {
                let insns = dis.decode(f);
                let cfg = Cfg::build(object, f, &insns);
                *slot = Some((instance.function.clone(), insns, cfg));
            }
            let (_, insns, cfg) = slot.as_ref().expect("decoded just above");
            let w = window_at(f, insns, cfg, instance.offset).ok_or_else(|| {
                self.seed_error(
                    seed,
                    &format!(
                        "no instruction at {}+{:#x} in build {k}",
                        instance.function, instance.offset
                    ),
                )
            })?;
            out.push(w);
        }
        Ok(out.try_into().expect("three windows"))
    }

    fn seed_error(&self, seed: &Seed, detail: &str) -> AnalyzeError {
        AnalyzeError::Seed {
            unit: self.unit.to_owned(),
            function: seed.function.clone(),
            offset: seed.offset,
            detail: detail.to_owned(),
        }
    }
}

/// The registers that may be live after the last instruction of the V1 window of the seed at
/// `offset` (all of them when it is not an instruction: synthesis then proves nothing dead).
fn live_after_window(code: &FunctionCode<'_, '_>, offset: u32) -> Vec<Gpr> {
    let Some(n) = index_at(code.insns, offset) else {
        return Gpr::ALL.to_vec();
    };
    let last = seed_window(code.cfg, n).end - 1;
    registers_live_after(code, last)
        .into_iter()
        .filter_map(|r| RegOperand::from_iced(r).map(|r| r.gpr))
        .collect()
}

/// The plan's record of where the constant is: the spec's form, completed by what kbuild
/// found (the macro's file, the values).
pub fn plan_source(tunable: &Tunable, change: &ChangeSummary) -> TunableSource {
    match &tunable.source {
        kernelx_spec::TunableSource::Macro { macro_name, .. } => TunableSource::Macro {
            macro_name: macro_name.clone(),
            file: change.file.display().to_string(),
            values: change.values,
        },
        kernelx_spec::TunableSource::Pattern {
            file,
            original,
            modified,
            lines,
            ..
        } => TunableSource::Pattern {
            file: file.display().to_string(),
            original: original.clone(),
            modified: modified.clone(),
            values: change.values,
            lines: lines.as_ref().map(|l| {
                l.iter()
                    .map(|s| LineRange {
                        first: s.first,
                        last: s.last,
                    })
                    .collect()
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn effect(unit: &str, what: &str, builds: &[usize], form: bool) -> CodeEffect {
        CodeEffect {
            unit: unit.to_owned(),
            what: what.to_owned(),
            builds: builds.to_vec(),
            form,
        }
    }

    #[test]
    fn an_excluded_unit_is_one_effect_that_says_what_it_keeps() {
        let code = [
            effect("t.c", "f+0x23 (.text): frame_layout: frame", &[1, 2], false),
            effect("t.c", "g (.text) exists only in builds [0, 1]", &[2], true),
        ];
        let e = excluded_unit("t.c", 16, &[], &code);
        assert_eq!(
            (
                e.kind,
                e.unit.as_str(),
                e.symbol.as_str(),
                e.offset,
                e.builds
            ),
            (UncoveredKind::ExcludedUnit, "t.c", "", None, vec![1, 2])
        );
        assert_eq!(
            e.detail,
            "excluded from the tunable: t.c keeps the compiled value 16 whatever the tunable is \
             set to, so no tuned site may guard its code; the constant reaches 0 site(s) there \
             and changes code SIE cannot patch in 2 place(s): f+0x23 (.text): frame_layout: \
             frame; g (.text) exists only in builds [0, 1]"
        );
        let quiet = excluded_unit("t.c", 16, &[], &[]);
        assert!(
            quiet
                .detail
                .ends_with("reaches 0 site(s) there and changes no code SIE cannot patch")
        );
        assert!(quiet.builds.is_empty());
    }

    #[test]
    fn failed_builds_follow_the_effects() {
        let diffed = |code_effects| Diffed {
            units: Vec::new(),
            uncovered: Vec::new(),
            warnings: Vec::new(),
            code_effects,
        };
        assert_eq!(
            diffed(vec![effect("a.c", "x", &[1], true)]).failed_builds(),
            [true, false]
        );
        assert_eq!(
            diffed(vec![
                effect("a.c", "x", &[2], true),
                effect("b.c", "y", &[1, 2], true)
            ])
            .failed_builds(),
            [true, true]
        );
    }

    #[test]
    fn truncated_values_name_the_builds_to_replace() {
        let synthesis = |source| AnalyzeError::Synthesis {
            tunable: "KX_TARGET_STORE8".to_owned(),
            unit: "kx_target.c".to_owned(),
            function: "kx_target_store8".to_owned(),
            offset: 0xf,
            asm: "movb $0xa7,kx_target_bytes(%rax)".to_owned(),
            source: Box::new(source),
        };
        let truncated = synthesis(SymexError::TruncatedValues {
            text: "movb $0xA7,(%rax)".to_owned(),
            points: String::new(),
            width: kernelx_plan::Width::W8,
            truncated: vec![334],
        });
        let (failed, why) = truncated_values(&truncated, [167, 334, 83]).unwrap();
        assert_eq!(failed, [true, false]);
        assert_eq!(
            why,
            "334 does not fit the 8 bits the constant occupies in `movb \
             $0xa7,kx_target_bytes(%rax)` at kx_target.c:kx_target_store8+0xf; the compiler \
             truncates it"
        );
        // Any other synthesis error is not the values' fault.
        let other = synthesis(SymexError::NoRelation {
            text: String::new(),
            points: String::new(),
        });
        assert_eq!(truncated_values(&other, [167, 334, 83]), None);
    }

    fn example_sites() -> Vec<Site> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../plan/testdata/example.plan.json"
        );
        let plan = kernelx_plan::Plan::read(path).expect("the plan crate's example");
        plan.tunables.into_iter().next().expect("one tunable").sites
    }

    #[test]
    fn the_range_is_the_intersection_of_the_sites() {
        let mut sites = example_sites();
        let range = tunable_range("T", &sites).unwrap();
        // The cmp (4096*V - 1 in 32 bits) bounds both sides; the movs allow 0..=2^31-1.
        assert_eq!((range.min, range.max), (1, 1 << 20));
        assert_eq!(
            range.max_reason.site.as_deref(),
            Some("fs/pipe.c:alloc_pipe_info+0x6b")
        );
        sites[1].recipe.range.max = 100;
        let range = tunable_range("T", &sites).unwrap();
        assert_eq!((range.min, range.max), (1, 100));
        assert_eq!(
            range.max_reason.site.as_deref(),
            Some("fs/pipe.c:alloc_pipe_info+0x77")
        );
        assert_eq!(tunable_range("T", &[]).unwrap(), TunableRange::unbounded());
    }

    #[test]
    fn disjoint_site_ranges_fail_naming_both_sites() {
        let mut sites = example_sites();
        sites[2].recipe.range.min = 1 << 21;
        let err = tunable_range("PIPE_DEF_BUFFERS", &sites)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "PIPE_DEF_BUFFERS: no value satisfies every site (min 2097152 from \
             fs/pipe.c:alloc_pipe_info+0x7c, max 1048576 from fs/pipe.c:alloc_pipe_info+0x6b)"
        );
    }
}
