//! `analyze`: one tunable, from variant builds to a checked [`TunablePlan`].
//!
//! Step by step:
//!
//! 1. kbuild builds every affected unit with V1, V2 and V3 ([`build_variants`]).
//! 2. Per unit, the three objects are diffed ([`diff_objects`]). Code effects SIE cannot
//!    express are collected across all units and fail the tunable at the end of this step
//!    (all of them reported at once); data effects become `uncovered` entries and warnings.
//! 3. Per seed: the seed's basic block in each build goes to [`synthesize`]; the V1 function's
//!    probe sites give the probes ([`place_probes`]); the slicer (or the spec's
//!    `[[safe_spans]]`) gives the safe span.
//! 4. The tunable's range is the intersection of the sites' ranges; an empty one fails.

use std::collections::BTreeMap;
use std::path::Path;

use kernelx_kbuild::{ChangeSummary, Progress, SourceTree, VariantOptions, build_variants};
use kernelx_plan::{LineRange, Site, TunablePlan, TunableRange, TunableSource};
use kernelx_spec::Tunable;
use kernelx_x86::symex::{SeedContext, SeedVersion, synthesize};
use kernelx_x86::{
    Cfg, Disassembler, FunctionCode, Insn, KernelProbeConfig, ObjectFile, ProbeSites, Seed,
    SymbolKind, diff_objects,
};

use crate::classify::{describe, is_code_effect, plan_effect};
use crate::error::AnalyzeError;
use crate::probes::{critical_span, place_probes};
use crate::seeds::{Window, window_at};
use crate::spans::safe_span;

/// How to analyse.
#[derive(Debug, Clone)]
pub struct AnalyzeOptions {
    /// Toolchain, jobs, cache and built units for the variant builds.
    pub variants: VariantOptions,
    /// The target kernel's kprobe configuration, for probe placement.
    pub probes: KernelProbeConfig,
}

impl AnalyzeOptions {
    /// These variant options, for a kernel configured as Debian's 6.12
    /// ([`KernelProbeConfig::DEBIAN_6_12`], the kernel KernelX is developed against).
    pub fn new(variants: VariantOptions) -> Self {
        Self {
            variants,
            probes: KernelProbeConfig::DEBIAN_6_12,
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
    let set = build_variants(tree, tunable, &options.variants, progress).map_err(|source| {
        AnalyzeError::Kbuild {
            tunable: tunable.name.clone(),
            source: Box::new(source),
        }
    })?;
    let mut sites = Vec::new();
    let mut spans = Vec::new();
    let mut uncovered = Vec::new();
    let mut warnings = Vec::new();
    let mut code_effects = Vec::new();
    let mut units: Vec<_> = set.units.iter().collect();
    units.sort_by(|a, b| a.source.cmp(&b.source));
    // Objects are read for all units first so that code effects of every unit are reported
    // together, before any synthesis error.
    let mut found = Vec::new();
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
        for effect in &diff.uncovered {
            if is_code_effect(effect.kind, &effect.section) {
                code_effects.push(describe(&name, effect));
            } else {
                uncovered.push(plan_effect(&name, effect));
            }
        }
        for u in &diff.unmatched {
            let line = format!(
                "{name}: {} ({}) exists only in builds {:?}",
                u.name, u.section, u.present_in
            );
            match u.kind {
                SymbolKind::Function => code_effects.push(line),
                SymbolKind::Data => warnings.push(line),
            }
        }
        if code_effects.is_empty() {
            found.push((name, bytes, diff.seeds, unit.builds.clone()));
        }
    }
    if !code_effects.is_empty() {
        return Err(AnalyzeError::UncoveredCode {
            tunable: tunable.name.clone(),
            effects: code_effects,
        });
    }
    for (unit, bytes, seeds, paths) in &found {
        let objects = parse_objects(unit, bytes, set.values, paths)?;
        let mut by_function: BTreeMap<&str, Vec<&Seed>> = BTreeMap::new();
        for seed in seeds {
            by_function.entry(&seed.function).or_default().push(seed);
        }
        for (function, seeds) in by_function {
            let ctx = UnitCtx {
                tunable,
                unit,
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
        uncovered,
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
        for seed in seeds {
            let windows = self.windows(seed, func, &insns, &cfg, &mut others, &mut dis)?;
            let ctx = SeedContext {
                versions: [0, 1, 2].map(|k| SeedVersion {
                    value: self.values[k],
                    block: &windows[k].block,
                    seed: windows[k].seed,
                }),
            };
            let recipe = synthesize(&ctx).map_err(|source| AnalyzeError::Synthesis {
                tunable: self.tunable.name.clone(),
                unit: self.unit.to_owned(),
                function: function.to_owned(),
                offset: seed.offset,
                asm: seed.asm.clone(),
                source: Box::new(source),
            })?;
            let id = format!("{}:{function}+{:#x}", self.unit, seed.offset);
            let probes =
                place_probes(&probe_sites, &recipe, &id).map_err(|detail| AnalyzeError::Probe {
                    unit: self.unit.to_owned(),
                    function: function.to_owned(),
                    offset: seed.offset,
                    detail,
                })?;
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
