//! The human report of a plan: one table row per site, then warnings and uncovered effects.

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use kernelx_plan::{SafeSpan, Site, SynthesisKind, TunablePlan};

/// The report `kernelx build` and `kernelx table query` print for one tunable: a summary line,
/// the site table, then the uncovered effects and the warnings, one `warning:` line each.
pub fn render_report(plan: &TunablePlan) -> String {
    let [v1, v2, v3] = plan.source.values();
    let mut out = format!(
        "{}: {} site(s) in {}; default {v1} (built with {v1}, {v2}, {v3}); valid {}..={}\n",
        plan.name,
        plan.sites.len(),
        plan.source.file(),
        plan.range.min,
        plan.range.max,
    );
    if !plan.sites.is_empty() {
        out.push_str(&sites_table(plan).to_string());
        out.push('\n');
    }
    for u in &plan.uncovered {
        let at = u.offset.map_or_else(String::new, |o| format!("+{o:#x}"));
        // An excluded unit's effect is about the whole unit: it has no symbol.
        let place = if u.symbol.is_empty() {
            String::new()
        } else {
            format!(" {}{at} ({}):", u.symbol, u.section)
        };
        out.push_str(&format!(
            "warning: uncovered {}: {}:{place} {}\n",
            u.kind, u.unit, u.detail
        ));
    }
    for warning in &plan.warnings {
        out.push_str(&format!("warning: {warning}\n"));
    }
    out
}

/// The site table: id, unit, function+offset, asm, relation, synthesis, probes, span.
pub fn sites_table(plan: &TunablePlan) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header([
            "site",
            "unit",
            "function",
            "asm",
            "relation",
            "synthesis",
            "probes",
            "safe span",
        ]);
    for (n, site) in plan.sites.iter().enumerate() {
        table.add_row([
            n.to_string(),
            site.unit.clone(),
            format!("{}+{:#x}", site.function, site.offset),
            site.asm.clone(),
            site.recipe.relation.to_string(),
            kind(site.recipe.kind).to_owned(),
            probes(site),
            plan.safe_span(&site.safe_span)
                .map_or_else(|| "?".to_owned(), ranges),
        ]);
    }
    table
}

/// `post +0x71 int3`, `pre +0x77, post +0x81 opt`.
pub fn probes(site: &Site) -> String {
    let p = &site.probes;
    let post = format!(
        "post +{:#x} {}",
        p.post,
        if p.jump_optimizable { "opt" } else { "int3" }
    );
    match p.pre {
        Some(pre) => format!("pre +{pre:#x}, {post}"),
        None => post,
    }
}

/// `0x6b..0x1a6 0x1c3..0x1f6 (2 exits, 20 extensions)`.
pub fn ranges(span: &SafeSpan) -> String {
    let r: Vec<String> = span
        .ranges
        .iter()
        .map(|r| format!("{:#x}..{:#x}", r.start, r.end))
        .collect();
    let origin = match span.origin {
        kernelx_plan::SpanOrigin::Derived => "",
        kernelx_plan::SpanOrigin::Spec => " spec",
    };
    format!(
        "{}{origin} ({} exit(s), {} extension(s))",
        r.join(" "),
        span.exits.len(),
        span.conservative.len()
    )
}

fn kind(k: SynthesisKind) -> &'static str {
    match k {
        SynthesisKind::ImmediateLoad => "immediate_load",
        SynthesisKind::Combine => "combine",
        SynthesisKind::Compare => "compare",
        SynthesisKind::Folded => "folded",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> TunablePlan {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../plan/testdata/example.plan.json"
        );
        let plan = kernelx_plan::Plan::read(path).expect("the plan crate's example");
        plan.tunables.into_iter().next().expect("one tunable")
    }

    #[test]
    fn the_report_has_one_row_per_site_and_the_warnings() {
        let text = render_report(&example());
        assert!(
            text.starts_with(
                "PIPE_DEF_BUFFERS: 3 site(s) in include/linux/pipe_fs_i.h; default 16 (built with \
             16, 32, 64); valid 1..=1048576\n"
            ),
            "{text}"
        );
        for row in [
            "alloc_pipe_info+0x6b ┆ cmp $0xffff,%ebp ┆ IV = 4096*V - 1 ┆ compare",
            "alloc_pipe_info+0x7c ┆ mov $0x10,%ebp   ┆ IV = 1*V",
            "pre +0x77, post +0x81 opt",
            "post +0x71 int3",
            "0x6b..0x1f6 (1 exit(s), 20 extension(s))",
        ] {
            assert!(text.contains(row), "{row:?} missing in\n{text}");
        }
        assert!(text.contains("warning: fs/pipe.c:alloc_pipe_info+0x7c: the post-probe"));
        assert!(text.contains(
            "warning: uncovered data_value: fs/pipe.c: pipe_user_pages_soft+0x0 (.data): initial \
             value 0x4000"
        ), "{text}");
    }

    #[test]
    fn an_excluded_unit_is_reported_as_a_whole() {
        let mut plan = example();
        plan.uncovered = vec![kernelx_plan::UncoveredEffect {
            kind: kernelx_plan::UncoveredKind::ExcludedUnit,
            unit: "kernel/trace/trace.c".to_owned(),
            symbol: String::new(),
            section: String::new(),
            offset: None,
            builds: vec![1, 2],
            detail: "excluded from the tunable: kernel/trace/trace.c keeps 16".to_owned(),
            values: None,
        }];
        let text = render_report(&plan);
        assert!(
            text.contains(
                "warning: uncovered excluded_unit: kernel/trace/trace.c: excluded from the \
                 tunable: kernel/trace/trace.c keeps 16\n"
            ),
            "{text}"
        );
    }
}
