//! `kernelx doctor`: runs `kernelx-doctor`'s host checks and renders them.
//!
//! The JSON format (`--json`) is [`CheckReport`]'s serialization, documented on that type in
//! `kernelx-doctor`: `{"checks": [{"id", "title", "status", "detail", "fix"}]}`.

use std::io::{IsTerminal as _, Write};

use anyhow::Context as _;
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use kernelx_doctor::{CheckReport, CheckStatus, DoctorOptions, check_host};
use kernelx_runtime::host::HostView;

use crate::args::DoctorArgs;

/// Width of the table when stdout is not a terminal (a pipe or a file).
const PIPE_WIDTH: u16 = 110;

/// Runs the checks, writes the report to `out`, and returns whether every check passed (warnings
/// allowed). The summary line goes to `out` after a table, or to stderr after JSON, so that
/// stdout stays one JSON document.
pub fn run(args: &DoctorArgs, out: &mut impl Write) -> anyhow::Result<bool> {
    let options = DoctorOptions {
        kernel_dir: args.kernel_dir.kernel_dir.clone(),
    };
    let report = check_host(&HostView::system(), &options);
    let summary = summary(&report);
    if args.json {
        // Serialized first, so that a write error stays an io::Error (a closed pipe is not a
        // failure, see main).
        let json = serde_json::to_string_pretty(&report).context("serializing the report")?;
        writeln!(out, "{json}")?;
        out.flush()?;
        if !report.is_ok() {
            eprintln!("{summary}");
        }
    } else {
        let width = (!std::io::stdout().is_terminal()).then_some(PIPE_WIDTH);
        writeln!(out, "{}", render_table(&report, width))?;
        writeln!(out, "{summary}")?;
        out.flush()?;
    }
    Ok(report.is_ok())
}

/// The report as a table: check id, status, and what was found, with the fix under it.
fn render_table(report: &CheckReport, width: Option<u16>) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(["check", "status", "found"]);
    if let Some(width) = width {
        table.set_width(width);
    }
    for check in &report.checks {
        let mut found = check.detail.clone();
        if let Some(fix) = &check.fix {
            found.push_str("\nfix: ");
            found.push_str(fix);
        }
        let status = match check.status {
            CheckStatus::Pass => "ok",
            CheckStatus::Warn => "WARN",
            CheckStatus::Fail => "FAIL",
            CheckStatus::Skip => "skip",
        };
        table.add_row([check.id, status, found.as_str()]);
    }
    table
}

/// The last line: how many checks failed and what to do, or that KernelX can run.
fn summary(report: &CheckReport) -> String {
    let ids = |status| report.with_status(status).map(|c| c.id).collect::<Vec<_>>();
    let (failed, warned) = (ids(CheckStatus::Fail), ids(CheckStatus::Warn));
    let total = report.checks.len();
    if !failed.is_empty() {
        format!(
            "{} of {total} checks failed ({}): KernelX cannot tune this kernel until they are \
             fixed; apply each `fix:` above, then run `kernelx doctor` again",
            failed.len(),
            failed.join(", ")
        )
    } else if !warned.is_empty() {
        format!(
            "no check failed; {} warning{} ({}): KernelX can run, see the `fix:` lines to remove \
             them",
            warned.len(),
            if warned.len() == 1 { "" } else { "s" },
            warned.join(", ")
        )
    } else {
        "all checks passed: KernelX can tune this kernel".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use kernelx_doctor::Check;

    use super::*;

    fn report(statuses: &[(&'static str, CheckStatus)]) -> CheckReport {
        CheckReport {
            checks: statuses
                .iter()
                .map(|&(id, status)| Check {
                    id,
                    title: "title",
                    status,
                    detail: format!("{id} detail"),
                    fix: (status == CheckStatus::Fail).then(|| format!("fix {id}")),
                })
                .collect(),
        }
    }

    #[test]
    fn summary_counts_failures_and_says_what_to_do() {
        let r = report(&[
            ("root", CheckStatus::Pass),
            ("kprobes", CheckStatus::Fail),
            ("tracefs", CheckStatus::Warn),
            ("modules", CheckStatus::Fail),
        ]);
        assert_eq!(
            summary(&r),
            "2 of 4 checks failed (kprobes, modules): KernelX cannot tune this kernel until they \
             are fixed; apply each `fix:` above, then run `kernelx doctor` again"
        );
        let r = report(&[("root", CheckStatus::Pass), ("tracefs", CheckStatus::Warn)]);
        assert!(summary(&r).starts_with("no check failed; 1 warning (tracefs)"));
        let r = report(&[
            ("root", CheckStatus::Pass),
            ("source-tree", CheckStatus::Skip),
        ]);
        assert_eq!(
            summary(&r),
            "all checks passed: KernelX can tune this kernel"
        );
    }

    #[test]
    fn the_table_shows_status_detail_and_fix() {
        let r = report(&[("root", CheckStatus::Pass), ("kprobes", CheckStatus::Fail)]);
        let text = render_table(&r, Some(80)).to_string();
        assert!(text.contains("kprobes"), "{text}");
        assert!(text.contains("FAIL"), "{text}");
        assert!(text.contains("fix: fix kprobes"), "{text}");
    }
}
