//! Where a site's probes go: the post-probe after the critical span, and a pre-probe when the
//! recipe saves a value or the post-probe sits at a join point ("pre arms post": the post-probe
//! then updates only a task that passed the pre-probe, so other paths into it are untouched).
//!
//! Sites of one tunable in one function are placed together ([`place_function_probes`]): the
//! kernel jump-optimizes a probe only when no other probe lies inside the instructions its jump
//! replaces (`arch_check_optimized_kprobe`), so each site's verdict and choice must see the
//! other sites' probes.

use iced_x86::Register;
use kernelx_plan::{Place, ProbePlacement, Recipe};
use kernelx_x86::symex::GprExt as _;
use kernelx_x86::{Disassembler, Locations, Placement, ProbeBlocker, ProbeCheck, ProbeSites};
use kernelx_x86::{place_post_probe, place_pre_probe};

/// A site's probes, and what the user should know about them.
#[derive(Debug, Clone)]
pub struct Probes {
    /// For the plan.
    pub placement: ProbePlacement,
    /// Sentences for the plan's warnings.
    pub warnings: Vec<String>,
}

/// A probe another site of the same tunable puts in the same function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherProbe {
    /// Its offset in the function.
    pub offset: u32,
    /// The site that puts it there, for reasons.
    pub site: String,
}

/// How many times [`place_function_probes`] re-places every site before it gives up waiting
/// for the choices to settle (each round re-places a site against the others' latest probes).
const ROUNDS: usize = 4;

/// Places the probes of every site of one function, `(recipe, site id)` each, so that each
/// site's choice and verdict account for the other sites' probes: first in order (each site
/// seeing the ones before it), then in rounds over all of them until no probe moves. Errors
/// name the index of the site and are sentences.
pub fn place_function_probes(
    sites: &ProbeSites<'_, '_>,
    recipes: &[(&Recipe, &str)],
) -> Result<Vec<Probes>, (usize, String)> {
    let mut placed: Vec<Probes> = Vec::with_capacity(recipes.len());
    for (i, (recipe, id)) in recipes.iter().enumerate() {
        let others = others_of(&placed, recipes, i);
        placed.push(place_probes(sites, recipe, id, &others).map_err(|e| (i, e))?);
    }
    if recipes.len() < 2 {
        return Ok(placed);
    }
    for _ in 0..ROUNDS {
        let mut moved = false;
        for (i, (recipe, id)) in recipes.iter().enumerate() {
            let others = others_of(&placed, recipes, i);
            let p = place_probes(sites, recipe, id, &others).map_err(|e| (i, e))?;
            moved |= offsets(&p).ne(offsets(&placed[i]));
            placed[i] = p;
        }
        if !moved {
            // Every placement of this round saw the others' final probes.
            return Ok(placed);
        }
    }
    // Still moving: keep the last choices, but give each the kernel's verdict against the
    // others' final probes so the plan claims no optimization the kernel refuses.
    for i in 0..placed.len() {
        let others = others_of(&placed, recipes, i);
        let at: Vec<u32> = others.iter().map(|o| o.offset).collect();
        let post = placed[i].placement.post;
        let check = sites.check(post, &at).map_err(|e| (i, e.to_string()))?;
        placed[i].placement.jump_optimizable = check.is_optimized();
        placed[i].placement.reason = reason(&check, &others);
    }
    placed[0].warnings.push(format!(
        "{}: the probes of {} sites did not settle after {ROUNDS} rounds of placement; each \
         keeps its last choice, which may not be the best",
        sites.code().function.name,
        recipes.len()
    ));
    Ok(placed)
}

/// The probes of every placed site but the `i`th.
fn others_of(placed: &[Probes], recipes: &[(&Recipe, &str)], i: usize) -> Vec<OtherProbe> {
    placed
        .iter()
        .zip(recipes)
        .enumerate()
        .filter(|(j, _)| *j != i)
        .flat_map(|(_, (p, (_, id)))| {
            offsets(p).map(|offset| OtherProbe {
                offset,
                site: (*id).to_owned(),
            })
        })
        .collect()
}

/// A site's probe offsets: its pre-probe, if any, and its post-probe.
fn offsets(p: &Probes) -> impl Iterator<Item = u32> {
    p.placement.pre.into_iter().chain([p.placement.post])
}

/// Places the probes of `recipe` in the function `sites` describes, where `others` are the
/// probes of the function's other sites. `site` names the site in messages. Errors are
/// sentences.
pub fn place_probes(
    sites: &ProbeSites<'_, '_>,
    recipe: &Recipe,
    site: &str,
    others: &[OtherProbe],
) -> Result<Probes, String> {
    let code = sites.code();
    let cs = critical_span(recipe);
    let mut dis = Disassembler::new();
    let (mut writes, mut reads) = (Locations::none(), Locations::none());
    for insn in code.insns.iter().filter(|i| cs.contains(&i.offset)) {
        let du = dis.def_use(&insn.instruction);
        union(&mut writes, &Locations::written_by(&du));
        union(&mut reads, &Locations::read_by(&du));
    }
    let mut at: Vec<u32> = others.iter().map(|o| o.offset).collect();
    let post = place_post_probe(sites, cs.end, &writes, &reads, &at).map_err(|e| e.to_string())?;
    let chosen = post
        .chosen()
        .ok_or_else(|| format!("no probe can be attached after the critical span: {post}"))?
        .clone();
    let mut warnings = Vec::new();
    let joins = !post.also_reached_from.is_empty();
    let pre = if recipe.save.is_some() || joins {
        let saved = recipe.save.map_or_else(Locations::none, saved_locations);
        at.push(chosen.offset);
        let pre = place_pre_probe(sites, cs.start, &saved, &at).map_err(|e| e.to_string())?;
        let at = pre.offset().ok_or_else(|| {
            format!("no pre-probe can be attached before the critical span: {pre}")
        })?;
        if joins {
            let from: Vec<String> = post
                .also_reached_from
                .iter()
                .map(|j| format!("+{j}"))
                .collect();
            warnings.push(format!(
                "{site}: the post-probe at +{:#x} is also reached from {}; the update applies \
                 only in a task that passed the pre-probe at +{at:#x}",
                chosen.offset,
                from.join(", ")
            ));
        }
        Some(at)
    } else {
        None
    };
    Ok(Probes {
        placement: ProbePlacement {
            pre,
            post: chosen.offset,
            alternatives: alternatives(&post),
            jump_optimizable: chosen.is_optimized(),
            reason: reason(&chosen, others),
        },
        warnings,
    })
}

/// The other usable offsets, optimized ones first, then nearest first.
fn alternatives(p: &Placement) -> Vec<u32> {
    let mut rest: Vec<&ProbeCheck> = p
        .candidates
        .iter()
        .enumerate()
        .filter(|(i, c)| Some(*i) != p.chosen && c.is_usable())
        .map(|(_, c)| c)
        .collect();
    rest.sort_by_key(|c| !c.is_optimized());
    rest.into_iter().map(|c| c.offset).collect()
}

fn reason(c: &ProbeCheck, others: &[OtherProbe]) -> String {
    if c.is_optimized() {
        match &c.region {
            Some(r) => format!(
                "+{:#x}..+{:#x} holds whole instructions the kernel can copy, and no jump lands \
                 inside the 5-byte jump",
                r.start, r.end
            ),
            None => "the kernel jump-optimizes this probe".to_owned(),
        }
    } else if c.blockers.is_empty() {
        format!("{} probe", c.kind)
    } else {
        c.blockers
            .iter()
            .map(|b| match (b, &c.region) {
                (ProbeBlocker::OtherProbeInRegion { probe }, Some(r)) => {
                    let by: Vec<&str> = others
                        .iter()
                        .filter(|o| o.offset == *probe)
                        .map(|o| o.site.as_str())
                        .collect();
                    format!(
                        "the probe at +{probe:#x} (site {}) lies inside the 5-byte jump's copied \
                         instructions +{:#x}..+{:#x} [{}]",
                        by.join(", "),
                        r.start,
                        r.end,
                        b.kernel_rule()
                    )
                }
                _ => b.to_string(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn union(into: &mut Locations, other: &Locations) {
    for r in &other.regs {
        if !into.regs.contains(r) {
            into.regs.push(*r);
        }
    }
    into.flags |= other.flags;
    into.memory |= other.memory;
}

/// What a pre-probe saving `place` must not be moved across a writer of.
fn saved_locations(place: Place) -> Locations {
    let full = |g: kernelx_plan::Gpr| g.iced(kernelx_plan::Width::W64);
    match place {
        Place::Reg { reg } => {
            Locations::regs(&full(reg.gpr).into_iter().collect::<Vec<Register>>())
        }
        Place::Mem { addr, .. } => {
            let regs: Vec<Register> = [addr.base, addr.index]
                .into_iter()
                .flatten()
                .filter_map(full)
                .collect();
            Locations::regs(&regs).with_memory()
        }
    }
}

/// The recipe's critical span as function offsets (functions are far below 4 GiB).
pub(crate) fn critical_span(recipe: &Recipe) -> std::ops::Range<u32> {
    let offset = |o: u64| u32::try_from(o).unwrap_or(u32::MAX);
    offset(recipe.span.start)..offset(recipe.span.end)
}

#[cfg(test)]
mod tests {
    use kernelx_plan::{CriticalSpan, Plan};
    use kernelx_x86::{Cfg, FunctionCode, KernelProbeConfig, ObjectFile};

    use super::*;

    fn with_sites<R>(bytes: &[u8], f: impl FnOnce(&ProbeSites<'_, '_>) -> R) -> R {
        let object = ObjectFile::from_code("t", &[("f", bytes)]);
        let func = &object.functions()[0];
        let insns = Disassembler::new().decode(func);
        let cfg = Cfg::build(&object, func, &insns);
        let code = FunctionCode::new(&object, func, &insns, &cfg);
        f(&ProbeSites::new(code, KernelProbeConfig::default()))
    }

    /// A recipe whose critical span is `start..end` and that saves nothing: placement reads
    /// only the span (what its instructions touch) and whether a value is saved.
    fn spanning(start: u64, end: u64) -> Recipe {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../plan/testdata/example.plan.json"
        );
        let plan = Plan::read(path).expect("the plan crate's example");
        let mut recipe = plan.tunables[0].sites[0].recipe.clone();
        recipe.span = CriticalSpan { start, end };
        recipe.save = None;
        recipe
    }

    #[test]
    fn a_probe_inside_another_sites_jump_keeps_it_unoptimized() {
        // 0: mov %edi,%eax; 2: and $0xffffffe0,%eax (site A); 5: add $0x40,%eax (site B);
        // 8: mov %eax,%esi; a: nopl 0x0(%rax,%rax,1); f: ret
        let bytes = [
            0x89, 0xf8, 0x83, 0xe0, 0xe0, 0x83, 0xc0, 0x40, 0x89, 0xc6, 0x0f, 0x1f, 0x44, 0, 0,
            0xc3,
        ];
        with_sites(&bytes, |sites| {
            let (a, b) = (spanning(2, 5), spanning(5, 8));
            // Alone, A's post-probe at 5 is optimized: 5..a holds the add and the mov.
            let alone = place_probes(sites, &a, "t.c:f+0x2", &[]).unwrap();
            assert!(alone.placement.jump_optimizable, "{:?}", alone.placement);
            let placed =
                place_function_probes(sites, &[(&a, "t.c:f+0x2"), (&b, "t.c:f+0x5")]).unwrap();
            let [a, b] = [&placed[0].placement, &placed[1].placement];
            // Each has a single candidate: the next instruction reads %eax.
            assert_eq!((a.post, b.post), (5, 8));
            assert!(!a.jump_optimizable, "{a:?}");
            assert_eq!(
                a.reason,
                "the probe at +0x8 (site t.c:f+0x5) lies inside the 5-byte jump's copied \
                 instructions +0x5..+0xa [arch/x86/kernel/kprobes/opt.c: \
                 arch_check_optimized_kprobe]"
            );
            // B's own jump (8..f) holds no other probe.
            assert!(b.jump_optimizable, "{b:?}");
            assert!(placed.iter().all(|p| p.warnings.is_empty()));
        });
    }

    #[test]
    fn a_site_moves_to_an_offset_another_sites_probe_leaves_optimizable() {
        // 0: and $0xffffffe0,%eax (site A); 3: mov %ebx,%ecx (site B); 5: mov %ecx,%edx;
        // 7: nopl 0x0(%rax,%rax,1); c: mov %eax,%esi; e: nopl 0x0(%rax,%rax,1); 13: ret
        let bytes = [
            0x83, 0xe0, 0xe0, 0x89, 0xd9, 0x89, 0xca, 0x0f, 0x1f, 0x44, 0, 0, 0x89, 0xc6, 0x0f,
            0x1f, 0x44, 0, 0, 0xc3,
        ];
        with_sites(&bytes, |sites| {
            let (a, b) = (spanning(0, 3), spanning(3, 5));
            // Alone, A takes the earliest offset, 3, whose jump copies 3..c.
            let alone = place_probes(sites, &a, "t.c:f+0x0", &[]).unwrap();
            assert_eq!(alone.placement.post, 3);
            assert!(alone.placement.jump_optimizable);
            let placed =
                place_function_probes(sites, &[(&a, "t.c:f+0x0"), (&b, "t.c:f+0x3")]).unwrap();
            let [a, b] = [&placed[0].placement, &placed[1].placement];
            // B can only sit at 5 (the mov reads %ecx), inside A's jump at 3; A shares 5 with
            // it (one kprobe per address), which the kernel still optimizes.
            assert_eq!(b.post, 5);
            assert_eq!(a.post, 5, "{a:?}");
            assert!(a.jump_optimizable && b.jump_optimizable, "{a:?} {b:?}");
            // 3 is still equivalent, but last: B's probe keeps it an INT3 probe.
            assert_eq!(a.alternatives.last(), Some(&3), "{a:?}");
        });
    }
}
