//! `kernelx table`: the plan store, listed, queried and pruned. JSON output is the plan's own
//! format (crates/plan/src/format.rs): `list` prints `[{name, description, path, release,
//! build_id, sites, default, min, max}]`, `query` a tunable, `cs` its `sites`, `ss` its `safe_spans`.

use std::io::Write;

use anyhow::Context as _;
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use kernelx_analyze::{render_report, render_span, sites_table};
use kernelx_plan::{PlanStore, TunablePlan};

use crate::args::TableCommand;

/// The plan store, from `KERNELX_PLANS`, `XDG_DATA_HOME` or `HOME`.
pub fn plan_store() -> anyhow::Result<PlanStore> {
    let dir = PlanStore::default_dir(
        std::env::var_os("KERNELX_PLANS"),
        std::env::var_os("XDG_DATA_HOME"),
        std::env::var_os("HOME"),
    )
    .context("no plan store: set KERNELX_PLANS (or HOME)")?;
    Ok(PlanStore::new(dir))
}

/// Runs a `kernelx table` subcommand.
pub fn run(command: &TableCommand, out: &mut impl Write) -> anyhow::Result<()> {
    let store = plan_store()?;
    let load = |name: &str| -> anyhow::Result<TunablePlan> {
        let plan = store.load(name)?;
        plan.tunables
            .into_iter()
            .find(|t| t.name == name)
            .with_context(|| format!("{} does not hold {name}", store.path_of(name).display()))
    };
    match command {
        TableCommand::List { json } => {
            let names = store.list()?;
            let mut rows = Vec::new();
            for name in &names {
                let plan = store.load(name)?;
                for t in &plan.tunables {
                    rows.push(serde_json::json!({
                        "name": t.name,
                        "description": t.description,
                        "path": store.path_of(name),
                        "release": plan.kernel.release,
                        "build_id": plan.kernel.build_id,
                        "sites": t.sites.len(),
                        "default": t.default,
                        "min": t.range.min,
                        "max": t.range.max,
                    }));
                }
            }
            if *json {
                writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
            } else if rows.is_empty() {
                writeln!(
                    out,
                    "no plans in {} (`kernelx build` writes them)",
                    store.dir().display()
                )?;
            } else {
                let mut table = Table::new();
                // Descriptions wrap so a catalog's list fits the terminal.
                table
                    .load_preset(UTF8_FULL_CONDENSED)
                    .set_content_arrangement(ContentArrangement::Dynamic)
                    .set_header([
                        "tunable",
                        "sites",
                        "default",
                        "range",
                        "kernel",
                        "description",
                    ]);
                for r in &rows {
                    table.add_row([
                        r["name"].as_str().unwrap_or("").to_owned(),
                        r["sites"].to_string(),
                        r["default"].to_string(),
                        format!("{}..={}", r["min"], r["max"]),
                        r["release"].as_str().unwrap_or("").to_owned(),
                        r["description"].as_str().unwrap_or("").to_owned(),
                    ]);
                }
                writeln!(out, "{table}")?;
            }
        }
        TableCommand::Query { tunable, json } => {
            let t = load(tunable)?;
            if *json {
                writeln!(out, "{}", serde_json::to_string_pretty(&t)?)?;
            } else {
                write!(out, "{}", render_report(&t))?;
            }
        }
        TableCommand::Cs { tunable, json } => {
            let t = load(tunable)?;
            if *json {
                writeln!(out, "{}", serde_json::to_string_pretty(&t.sites)?)?;
            } else {
                writeln!(out, "{}", sites_table(&t))?;
            }
        }
        TableCommand::Ss { tunable, json } => {
            let t = load(tunable)?;
            if *json {
                writeln!(out, "{}", serde_json::to_string_pretty(&t.safe_spans)?)?;
            } else {
                let mut table = Table::new();
                table
                    .load_preset(UTF8_FULL_CONDENSED)
                    .set_header(["span", "function", "ranges", "origin"]);
                for s in &t.safe_spans {
                    table.add_row([
                        s.id.clone(),
                        s.function.clone(),
                        render_span(s),
                        format!("{:?}", s.origin).to_lowercase(),
                    ]);
                }
                writeln!(out, "{table}")?;
            }
        }
        TableCommand::Delete { tunable } => {
            let path = store.delete(tunable)?;
            writeln!(out, "deleted {}", path.display())?;
        }
    }
    Ok(())
}
