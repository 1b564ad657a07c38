//! Where a site's probes go: the post-probe after the critical span, and a pre-probe when the
//! recipe saves a value or the post-probe sits at a join point ("pre arms post": the post-probe
//! then updates only a task that passed the pre-probe, so other paths into it are untouched).

use iced_x86::Register;
use kernelx_plan::{Place, ProbePlacement, Recipe};
use kernelx_x86::symex::GprExt as _;
use kernelx_x86::{Disassembler, Locations, Placement, ProbeCheck, ProbeSites};
use kernelx_x86::{place_post_probe, place_pre_probe};

/// A site's probes, and what the user should know about them.
#[derive(Debug, Clone)]
pub struct Probes {
    /// For the plan.
    pub placement: ProbePlacement,
    /// Sentences for the plan's warnings.
    pub warnings: Vec<String>,
}

/// Places the probes of `recipe` in the function `sites` describes. `site` names the site in
/// messages. Errors are sentences.
pub fn place_probes(
    sites: &ProbeSites<'_, '_>,
    recipe: &Recipe,
    site: &str,
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
    let post = place_post_probe(sites, cs.end, &writes, &reads, &[]).map_err(|e| e.to_string())?;
    let chosen = post
        .chosen()
        .ok_or_else(|| format!("no probe can be attached after the critical span: {post}"))?
        .clone();
    let mut warnings = Vec::new();
    let joins = !post.also_reached_from.is_empty();
    let pre = if recipe.save.is_some() || joins {
        let saved = recipe.save.map_or_else(Locations::none, saved_locations);
        let pre = place_pre_probe(sites, cs.start, &saved, &[chosen.offset])
            .map_err(|e| e.to_string())?;
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
            reason: reason(&chosen),
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

fn reason(c: &ProbeCheck) -> String {
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
            .map(ToString::to_string)
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
