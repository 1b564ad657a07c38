//! `kernelx status`, and the rendering of a loaded tunable that `load` prints too. JSON:
//! `{"tunables": [TunableStatus]}`, the fields of `kernelx_runtime::state::TunableStatus`
//! (listed in `kernelx status --help`).

use std::io::Write;

use anyhow::Context as _;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use kernelx_runtime::host::HostView;
use kernelx_runtime::kprobes::Kprobes;
use kernelx_runtime::sie::{ProbeRole, SieRuntime, TransitionStateCode};
use kernelx_runtime::state::{self, PolicyStatus, StateDir, TunableStatus};

use crate::args::StatusArgs;

/// Runs `kernelx status`.
pub fn run(args: &StatusArgs, out: &mut impl Write) -> anyhow::Result<()> {
    // Without the state lock: status only looks, and never makes a concurrent `set` fail.
    let statuses = read(args.tunable.as_deref(), false)?;
    if args.json {
        write_json(&statuses, out)
    } else if statuses.is_empty() {
        writeln!(
            out,
            "no tunables loaded (nothing pinned under {})",
            SieRuntime::system().root().display()
        )?;
        Ok(())
    } else {
        statuses.iter().try_for_each(|s| render(s, out))
    }
}

/// The status of every loaded tunable, or of `only`, from the kernel; `locked`: the caller
/// holds the state lock.
pub fn read(only: Option<&str>, locked: bool) -> anyhow::Result<Vec<TunableStatus>> {
    let kprobes = Kprobes::read(&HostView::system()).context("reading the kernel's kprobes")?;
    state::status(
        &SieRuntime::system(),
        &StateDir::system(),
        kprobes.as_ref(),
        only,
        locked,
    )
    .context("reading the loaded tunables")
}

/// `{"tunables": [...]}`.
pub fn write_json(statuses: &[TunableStatus], out: &mut impl Write) -> anyhow::Result<()> {
    let json = serde_json::json!({ "tunables": statuses });
    writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?;
    Ok(())
}

/// One tunable for people: a summary line and a table of its probes.
pub fn render(status: &TunableStatus, out: &mut impl Write) -> anyhow::Result<()> {
    if let Some(why) = &status.incomplete {
        writeln!(
            out,
            "{}: incomplete, {} probe link(s) pinned under {}: {why}",
            status.name,
            status.links,
            status.pin_dir.display()
        )?;
        return Ok(());
    }
    let value = status
        .value
        .map_or("the built-in value".to_owned(), |v| v.to_string());
    let default = status.default.map_or("?".to_owned(), |v| v.to_string());
    let mode = status.mode.map_or("?", |m| m.name());
    let value = match (&status.policy, status.value) {
        (Some(_), Some(_)) => format!("value chosen by a policy (default {value}, built-in"),
        _ => format!("value {value} (built-in"),
    };
    writeln!(
        out,
        "{}: {value} {default}), mode {mode}, {} probes pinned under {}",
        status.name,
        status.probes.len(),
        status.pin_dir.display()
    )?;
    if let Some(t) = &status.transition {
        let latency = t.latency.map_or(String::new(), |l| {
            format!(" in {:.3} ms", l.as_secs_f64() * 1e3)
        });
        match t.state {
            TransitionStateCode::Done => {
                writeln!(out, "  last transition: done{latency}")?;
            }
            TransitionStateCode::Aborted => writeln!(
                out,
                "  last transition: aborted{latency}; {} stays",
                t.previous
            )?,
            TransitionStateCode::Pending => writeln!(
                out,
                "  transition pending: {} task(s) inside a safe span still use {} (pids {})",
                t.inside.len(),
                t.previous,
                t.inside
                    .iter()
                    .map(|i| i.pid.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )?,
        }
    }
    if let Some(p) = &status.policy {
        render_policy(p, out)?;
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "site",
        "probe",
        "at",
        "address",
        "optimizable",
        "kernel",
        "hits",
        "errors",
    ]);
    for p in &status.probes {
        table.add_row([
            p.site.clone(),
            match p.role {
                ProbeRole::Pre => "pre".to_owned(),
                ProbeRole::Post => "post".to_owned(),
            },
            format!("{}+{:#x}", p.function, p.offset),
            format!("{:#x}", p.address),
            if p.optimizable { "yes" } else { "no" }.to_owned(),
            match p.optimized {
                Some(true) => "[OPTIMIZED]".to_owned(),
                Some(false) => "int3".to_owned(),
                None => "? (no debugfs)".to_owned(),
            },
            p.hits.to_string(),
            p.errors.to_string(),
        ]);
    }
    writeln!(out, "{table}")?;
    Ok(())
}

/// The policy lines of a tunable loaded with one.
fn render_policy(p: &PolicyStatus, out: &mut impl Write) -> anyhow::Result<()> {
    let last = p
        .last_value
        .map_or(String::new(), |v| format!(", last value {v}"));
    writeln!(
        out,
        "  policy {} (sha256 {}): {} decisions{last}",
        p.source.display(),
        &p.source_hash[..p.source_hash.len().min(12)],
        p.decisions
    )?;
    if let Some((value, at)) = &p.last_out_of_range {
        writeln!(
            out,
            "  out of range ({}): {} rejected, {} clamped; last {value} at {at}",
            p.out_of_range.name(),
            p.rejected,
            p.clamped
        )?;
    }
    if !p.params.is_empty() {
        let params: Vec<String> = p.params.iter().map(ToString::to_string).collect();
        writeln!(out, "  parameters: {}", params.join(" "))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use std::time::Duration;

    use kernelx_runtime::sie::{Setting, TaskInside, TransitionState};
    use kernelx_runtime::state::{Mode, ProbeStatus};

    use super::*;

    fn loaded() -> TunableStatus {
        TunableStatus {
            name: "PIPE_DEF_BUFFERS".to_owned(),
            pin_dir: PathBuf::from("/sys/fs/bpf/kernelx/PIPE_DEF_BUFFERS"),
            links: 1,
            incomplete: None,
            mode: Some(Mode::Immediate),
            value: Some(32),
            transition: Some(TransitionState {
                mode: Mode::Immediate,
                target: Setting::Value(32),
                previous: Setting::Value(32),
                state: TransitionStateCode::Done,
                latency: Some(Duration::from_micros(15)),
                inside: Vec::new(),
            }),
            default: Some(16),
            probes: vec![ProbeStatus {
                site: "fs/pipe.c:alloc_pipe_info+0x7c".to_owned(),
                role: ProbeRole::Post,
                function: "alloc_pipe_info".to_owned(),
                offset: 0x81,
                address: 0xffff_ffff_8130_0081,
                optimizable: true,
                optimized: Some(true),
                hits: 7,
                errors: 0,
            }],
            policy: None,
        }
    }

    fn text(status: &TunableStatus) -> String {
        let mut out = Vec::new();
        render(status, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_loaded_tunable_shows_value_mode_and_each_probe() {
        let text = text(&loaded());
        assert!(
            text.starts_with(
                "PIPE_DEF_BUFFERS: value 32 (built-in 16), mode immediate, 1 probes pinned under \
                 /sys/fs/bpf/kernelx/PIPE_DEF_BUFFERS\n"
            ),
            "{text}"
        );
        let row = text
            .lines()
            .find(|l| l.contains("alloc_pipe_info+0x81"))
            .unwrap_or_else(|| panic!("no probe row:\n{text}"));
        for cell in ["post", "0xffffffff81300081", "yes", "[OPTIMIZED]", " 7 "] {
            assert!(row.contains(cell), "{cell} missing in {row}");
        }
    }

    #[test]
    fn transitions_show_their_state() {
        assert!(
            text(&loaded()).contains("\n  last transition: done in 0.015 ms\n"),
            "{}",
            text(&loaded())
        );
        let pending = TunableStatus {
            mode: Some(Mode::PerTask),
            transition: Some(TransitionState {
                mode: Mode::PerTask,
                target: Setting::Value(64),
                previous: Setting::Value(32),
                state: TransitionStateCode::Pending,
                latency: None,
                inside: vec![TaskInside {
                    pid: 99,
                    address: None,
                }],
            }),
            ..loaded()
        };
        assert!(
            text(&pending).contains(
                "  transition pending: 1 task(s) inside a safe span still use 32 (pids 99)"
            ),
            "{}",
            text(&pending)
        );
        let aborted = TunableStatus {
            mode: Some(Mode::Global),
            transition: Some(TransitionState {
                mode: Mode::Global,
                target: Setting::Value(32),
                previous: Setting::Value(32),
                state: TransitionStateCode::Aborted,
                latency: Some(Duration::from_secs(2)),
                inside: Vec::new(),
            }),
            ..loaded()
        };
        assert!(
            text(&aborted).contains("  last transition: aborted in 2000.000 ms; 32 stays"),
            "{}",
            text(&aborted)
        );
    }

    #[test]
    fn a_policy_shows_its_file_choices_refusals_and_parameters() {
        let status = TunableStatus {
            policy: Some(PolicyStatus {
                source: PathBuf::from("examples/policies/cgroup_hint.bpf.c"),
                source_hash: "0123456789abcdef0123".to_owned(),
                out_of_range: kernelx_runtime::sie::PolicyBound::Reject,
                decisions: 12,
                rejected: 2,
                clamped: 0,
                last_out_of_range: Some((0, "alloc_pipe_info+0x71".to_owned())),
                last_value: Some(64),
                params: vec![kernelx_runtime::policy::ParamValue {
                    name: "cgroup".to_owned(),
                    size: 8,
                    bits: 4242,
                }],
            }),
            ..loaded()
        };
        let text = text(&status);
        for line in [
            "PIPE_DEF_BUFFERS: value chosen by a policy (default 32, built-in 16), mode immediate",
            "  policy examples/policies/cgroup_hint.bpf.c (sha256 0123456789ab): 12 decisions, \
             last value 64\n",
            "  out of range (reject): 2 rejected, 0 clamped; last 0 at alloc_pipe_info+0x71\n",
            "  parameters: cgroup=4242\n",
        ] {
            assert!(text.contains(line), "{line:?} missing in\n{text}");
        }
    }

    #[test]
    fn an_interrupted_load_says_how_to_clean_up() {
        let status = TunableStatus {
            incomplete: Some("no load record: `kernelx unload --all` removes it".to_owned()),
            probes: Vec::new(),
            ..loaded()
        };
        let text = text(&status);
        assert!(
            text.starts_with("PIPE_DEF_BUFFERS: incomplete, 1 probe link(s) pinned under"),
            "{text}"
        );
        assert!(text.contains("kernelx unload --all"), "{text}");
    }

    #[test]
    fn json_wraps_the_statuses() {
        let mut out = Vec::new();
        write_json(&[loaded()], &mut out).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let t = &json["tunables"][0];
        assert_eq!(t["value"], 32);
        assert_eq!(t["mode"], "immediate");
        assert_eq!(t["probes"][0]["role"], "post");
        assert_eq!(t["probes"][0]["optimized"], true);
        assert_eq!(t["probes"][0]["address"], "0xffffffff81300081");
    }
}
