//! The coverage report: per catalog entry, what the plan holds (sites, synthesis kinds,
//! relations, safe-span size, probes the kernel can jump-optimize), how it fared in the lab
//! (load, probe hits, `[OPTIMIZED]`, the effect), and whether it counts as tuned end to end,
//! with the reason when not. Rendered as markdown; saved as JSON.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use kernelx_plan::{SynthesisKind, TunablePlan};
use serde::{Deserialize, Serialize};

use super::guest::{LabResult, Step};

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct EntryReport {
    pub name: String,
    pub subsystem: String,
    pub value: i64,
    pub build_seconds: f64,
    /// Why `kernelx build` made no plan (its message).
    pub build_error: Option<String>,
    pub plan: Option<PlanFacts>,
    /// `None` when the entry was not run in the lab.
    pub lab: Option<LabResult>,
}

/// What one tunable's plan holds.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct PlanFacts {
    pub description: String,
    pub default: i64,
    pub sites: usize,
    pub functions: Vec<String>,
    pub kinds: Vec<String>,
    pub relations: Vec<String>,
    /// Bytes of code inside the safe spans, over all spans.
    pub span_bytes: u64,
    /// Sites whose probes the kernel can jump-optimize (optprobe rules).
    pub optimizable_sites: usize,
    /// Effects SIE leaves at the compiled value (initial data, excluded units).
    pub uncovered: usize,
}

impl PlanFacts {
    pub fn of(plan: &TunablePlan) -> PlanFacts {
        let distinct = |items: Vec<String>| -> Vec<String> {
            items
                .into_iter()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        PlanFacts {
            description: plan.description.clone(),
            default: plan.default,
            sites: plan.sites.len(),
            functions: distinct(plan.sites.iter().map(|s| s.function.clone()).collect()),
            kinds: distinct(
                plan.sites
                    .iter()
                    .map(|s| kind_name(s.recipe.kind).to_owned())
                    .collect(),
            ),
            relations: distinct(
                plan.sites
                    .iter()
                    .map(|s| s.recipe.relation.to_string())
                    .collect(),
            ),
            span_bytes: plan
                .safe_spans
                .iter()
                .flat_map(|s| &s.ranges)
                .map(|r| u64::from(r.end.saturating_sub(r.start)))
                .sum(),
            optimizable_sites: plan
                .sites
                .iter()
                .filter(|s| s.probes.jump_optimizable)
                .count(),
            uncovered: plan.uncovered.len(),
        }
    }
}

fn kind_name(kind: SynthesisKind) -> &'static str {
    match kind {
        SynthesisKind::ImmediateLoad => "immediate",
        SynthesisKind::Combine => "combine",
        SynthesisKind::Compare => "compare",
        SynthesisKind::Folded => "folded",
    }
}

impl EntryReport {
    /// `Ok` when the entry was tuned end to end: built, loaded, at least one probe fired under
    /// the workload, no probe failed its update, the effect (where there is one) changed with
    /// the value and came back on unload, and unload succeeded. Otherwise why not.
    pub fn verdict(&self) -> Result<(), String> {
        if let Some(error) = &self.build_error {
            return Err(format!("build: {}", first_line(error)));
        }
        let lab = self.lab.as_ref().ok_or("not run in the lab")?;
        if let Some(failure) = &lab.failure {
            // kernelx says what is wrong first; a shell command's last words say it (a
            // Python traceback ends with the exception).
            let message = match failure.step {
                Step::Load | Step::Status | Step::Unload | Step::Gen | Step::Set => {
                    first_line(&failure.message)
                }
                Step::Setup | Step::Effect | Step::Workload => last_line(&failure.message),
            };
            return Err(format!("{}: {message}", failure.step.as_str()));
        }
        if lab.probes.iter().all(|p| p.hits == 0) {
            return Err("no probe fired under the workload".into());
        }
        if let Some(p) = lab.probes.iter().find(|p| p.errors > 0) {
            return Err(format!(
                "{} update(s) failed at {}+{:#x}",
                p.errors, p.function, p.offset
            ));
        }
        if let Some(effect) = &lab.effect {
            match (effect.tuned, effect.restored) {
                (Some(tuned), _) if tuned == effect.default => {
                    return Err(format!("effect unchanged: {tuned} at both values"));
                }
                (_, Some(restored)) if restored != effect.default => {
                    return Err(format!(
                        "effect not restored by unload: {restored}, default {}",
                        effect.default
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// How the `kernelx gen` stub fared as a policy: `None` when it was not tried, else
    /// `Ok` with what it did or `Err` with why it failed.
    pub fn policy_verdict(&self) -> Option<Result<String, String>> {
        let lab = self.lab.as_ref()?;
        let policy = lab.policy.as_ref()?;
        if let Some(refused) = &policy.refused {
            return Some(Ok(format!("not offered: {}", first_line(refused))));
        }
        if let Some(failure) = &policy.failure {
            return Some(Err(format!(
                "{}: {}",
                failure.step.as_str(),
                first_line(&failure.message)
            )));
        }
        if policy.decisions == 0 {
            return Some(Err(if policy.hits == 0 {
                "no probe fired under the workload".into()
            } else {
                format!(
                    "never asked: its {} trigger(s) all came inside a safe span",
                    policy.hits
                )
            }));
        }
        let by_value = lab.effect.as_ref().and_then(|e| e.tuned);
        if let (Some(with_policy), Some(by_value)) = (policy.effect, by_value)
            && with_policy != by_value
        {
            return Some(Err(format!(
                "effect {with_policy}, but {by_value} with the value loaded"
            )));
        }
        Some(Ok(format!("{} decisions", policy.decisions)))
    }

    /// Sites with at least one probe hit, of all sites.
    fn sites_hit(&self) -> Option<(usize, usize)> {
        let lab = self.lab.as_ref()?;
        let sites: BTreeSet<&str> = lab.probes.iter().map(|p| p.site.as_str()).collect();
        let hit: BTreeSet<&str> = lab
            .probes
            .iter()
            .filter(|p| p.hits > 0)
            .map(|p| p.site.as_str())
            .collect();
        (!sites.is_empty()).then_some((hit.len(), sites.len()))
    }
}

/// The summary line's numbers.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Summary {
    pub entries: usize,
    pub built: usize,
    pub tuned: usize,
    pub sites: usize,
    /// Sites the plans place jump-optimizable probes at.
    pub optimizable_sites: usize,
    /// Sites with probes attached in the lab, and of those, the ones whose every probe the
    /// kernel listed `[OPTIMIZED]`.
    pub lab_sites: usize,
    pub optimized_sites: usize,
    /// `kernelx gen` stubs loaded as policies that were asked (with `--policies`), of those
    /// tried (tunables that divide by the value are not offered a policy).
    pub policies_ok: usize,
    pub policies_tried: usize,
}

impl Summary {
    pub fn of(entries: &[EntryReport]) -> Summary {
        let plans = entries.iter().filter_map(|e| e.plan.as_ref());
        let mut lab_sites = 0;
        let mut optimized_sites = 0;
        for lab in entries.iter().filter_map(|e| e.lab.as_ref()) {
            let sites: BTreeSet<&str> = lab.probes.iter().map(|p| p.site.as_str()).collect();
            lab_sites += sites.len();
            optimized_sites += sites
                .iter()
                .filter(|site| {
                    lab.probes
                        .iter()
                        .filter(|p| p.site == **site)
                        .all(|p| p.optimized == Some(true))
                })
                .count();
        }
        Summary {
            entries: entries.len(),
            built: entries.iter().filter(|e| e.plan.is_some()).count(),
            tuned: entries.iter().filter(|e| e.verdict().is_ok()).count(),
            sites: plans.clone().map(|p| p.sites).sum(),
            optimizable_sites: plans.map(|p| p.optimizable_sites).sum(),
            lab_sites,
            optimized_sites,
            policies_ok: entries
                .iter()
                .filter_map(EntryReport::policy_verdict)
                .filter(Result::is_ok)
                .count(),
            policies_tried: entries
                .iter()
                .filter_map(EntryReport::policy_verdict)
                .count(),
        }
    }

    pub fn line(&self) -> String {
        let policies = if self.policies_tried == 0 {
            String::new()
        } else {
            format!(
                "; `kernelx gen` stubs as policies: {} of {} work",
                self.policies_ok, self.policies_tried
            )
        };
        format!(
            "{} tuned / {} total ({}), {} built; {} sites, {} jump-optimizable by the plans \
             ({}); in the lab {} of {} attached sites [OPTIMIZED] ({}){policies}",
            self.tuned,
            self.entries,
            percent(self.tuned, self.entries),
            self.built,
            self.sites,
            self.optimizable_sites,
            percent(self.optimizable_sites, self.sites),
            self.optimized_sites,
            self.lab_sites,
            percent(self.optimized_sites, self.lab_sites),
        )
    }
}

fn percent(part: usize, whole: usize) -> String {
    if whole == 0 {
        return "-".into();
    }
    #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    let share = 100.0 * part as f64 / whole as f64;
    format!("{share:.1}%")
}

fn first_line(text: &str) -> &str {
    text.trim().lines().next().unwrap_or("")
}

fn last_line(text: &str) -> &str {
    text.trim().lines().last().unwrap_or("")
}

/// The report as a markdown table and the summary line; the policy column only when
/// `--policies` tried some.
pub fn markdown(kernel: &str, entries: &[EntryReport]) -> String {
    let with_policies = entries.iter().any(|e| e.policy_verdict().is_some());
    let mut header = vec![
        "tunable",
        "subsystem",
        "default -> lab",
        "sites",
        "synthesis",
        "relation",
        "SS bytes",
        "opt. sites",
        "[OPTIMIZED] probes",
        "build s",
        "load ms",
        "sites hit",
        "effect",
        "result",
    ];
    if with_policies {
        header.push("gen stub as policy");
    }
    let mut out = format!(
        "Catalog evaluation on {kernel} (lab VM under QEMU TCG; `cargo xtask eval`)\n\n| {} |\n|{}\n",
        header.join(" | "),
        header
            .iter()
            .map(|h| if is_numeric(h) { " ---: |" } else { " --- |" })
            .collect::<String>()
    );
    for e in entries {
        let mut cells = row(e);
        if with_policies {
            cells.push(match e.policy_verdict() {
                None => "-".to_owned(),
                Some(Ok(what)) => what,
                Some(Err(reason)) => format!("no: {reason}"),
            });
        }
        let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    let _ = writeln!(out, "\n{}", Summary::of(entries).line());
    out
}

fn is_numeric(column: &str) -> bool {
    matches!(
        column,
        "sites"
            | "SS bytes"
            | "opt. sites"
            | "[OPTIMIZED] probes"
            | "build s"
            | "load ms"
            | "sites hit"
    )
}

/// One entry's cells, in the order of the header.
fn row(e: &EntryReport) -> Vec<String> {
    let plan = e.plan.as_ref();
    let lab = e.lab.as_ref();
    let dash = || "-".to_owned();
    let optimized = lab.filter(|l| !l.probes.is_empty()).map_or_else(dash, |l| {
        let on = l
            .probes
            .iter()
            .filter(|p| p.optimized == Some(true))
            .count();
        format!("{on}/{}", l.probes.len())
    });
    let effect = lab.and_then(|l| l.effect.as_ref()).map_or_else(dash, |v| {
        let show = |x: Option<i64>| x.map_or_else(|| "?".to_owned(), |x| x.to_string());
        format!("{} -> {} -> {}", v.default, show(v.tuned), show(v.restored))
    });
    vec![
        e.name.clone(),
        e.subsystem.clone(),
        format!(
            "{} -> {}",
            plan.map_or_else(dash, |p| p.default.to_string()),
            e.value
        ),
        plan.map_or_else(dash, |p| p.sites.to_string()),
        plan.map_or_else(dash, |p| p.kinds.join(", ")),
        plan.map_or_else(dash, |p| p.relations.join(", ")),
        plan.map_or_else(dash, |p| p.span_bytes.to_string()),
        plan.map_or_else(dash, |p| p.optimizable_sites.to_string()),
        optimized,
        format!("{:.1}", e.build_seconds),
        lab.and_then(|l| l.load_ms)
            .map_or_else(dash, |ms| ms.to_string()),
        e.sites_hit()
            .map_or_else(dash, |(hit, all)| format!("{hit}/{all}")),
        effect,
        match e.verdict() {
            Ok(()) => "tuned".to_owned(),
            Err(reason) => format!("no: {reason}"),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::super::guest::{EffectValues, Failure, ProbeHits};
    use super::*;

    fn probe(site: &str, hits: u64, optimized: bool) -> ProbeHits {
        ProbeHits {
            site: site.into(),
            function: "f".into(),
            offset: 0x10,
            optimizable: true,
            optimized: Some(optimized),
            hits,
            errors: 0,
        }
    }

    fn entry(lab: Option<LabResult>) -> EntryReport {
        EntryReport {
            name: "T".into(),
            subsystem: "mm".into(),
            value: 64,
            build_seconds: 1.5,
            build_error: None,
            plan: Some(PlanFacts {
                description: String::new(),
                default: 128,
                sites: 2,
                functions: vec!["f".into()],
                kinds: vec!["compare".into()],
                relations: vec!["IV = 1*V".into()],
                span_bytes: 40,
                optimizable_sites: 1,
                uncovered: 0,
            }),
            lab,
        }
    }

    fn lab(probes: Vec<ProbeHits>, effect: Option<EffectValues>) -> Option<LabResult> {
        Some(LabResult {
            name: "T".into(),
            failure: None,
            load_ms: Some(300),
            probes,
            effect,
            policy: None,
        })
    }

    #[test]
    fn tuned_needs_a_hit_and_an_effect_that_follows_the_value() {
        let fired = vec![probe("s0", 3, true), probe("s1", 0, false)];
        assert_eq!(entry(lab(fired.clone(), None)).verdict(), Ok(()));
        let silent = vec![probe("s0", 0, true)];
        assert_eq!(
            entry(lab(silent, None)).verdict().unwrap_err(),
            "no probe fired under the workload"
        );
        let effect = |tuned, restored| {
            Some(EffectValues {
                default: 32,
                tuned: Some(tuned),
                restored: Some(restored),
            })
        };
        assert_eq!(entry(lab(fired.clone(), effect(8, 32))).verdict(), Ok(()));
        assert!(
            entry(lab(fired.clone(), effect(32, 32)))
                .verdict()
                .unwrap_err()
                .contains("unchanged")
        );
        assert!(
            entry(lab(fired, effect(8, 8)))
                .verdict()
                .unwrap_err()
                .contains("not restored")
        );
    }

    #[test]
    fn failures_carry_their_step_and_first_line() {
        let mut failed = entry(lab(vec![], None));
        failed.lab.as_mut().unwrap().failure = Some(Failure {
            step: Step::Load,
            message: "error: alloc_pipe_info+0x6b holds other bytes\nmore".into(),
        });
        assert_eq!(
            failed.verdict().unwrap_err(),
            "load: error: alloc_pipe_info+0x6b holds other bytes"
        );
        failed.lab.as_mut().unwrap().failure = Some(Failure {
            step: Step::Workload,
            message: "Traceback (most recent call last):\n  ...\nConnectionRefusedError: x\n"
                .into(),
        });
        assert_eq!(
            failed.verdict().unwrap_err(),
            "workload: ConnectionRefusedError: x"
        );
        let mut unbuilt = entry(None);
        unbuilt.plan = None;
        unbuilt.build_error = Some("refused: sizes an array".into());
        assert_eq!(
            unbuilt.verdict().unwrap_err(),
            "build: refused: sizes an array"
        );
        assert_eq!(entry(None).verdict().unwrap_err(), "not run in the lab");
    }

    #[test]
    fn a_policy_works_when_asked_and_its_effect_matches_the_value() {
        use super::super::guest::PolicyResult;
        let effect = Some(EffectValues {
            default: 32,
            tuned: Some(8),
            restored: Some(32),
        });
        let with_policy = |policy: PolicyResult| {
            let mut e = entry(lab(vec![probe("s0", 3, true)], effect.clone()));
            e.lab.as_mut().unwrap().policy = Some(policy);
            e.policy_verdict()
        };
        let asked = PolicyResult {
            decisions: 5,
            effect: Some(8),
            ..PolicyResult::default()
        };
        assert_eq!(with_policy(asked.clone()), Some(Ok("5 decisions".into())));
        let wrong = PolicyResult {
            effect: Some(32),
            ..asked.clone()
        };
        assert!(
            with_policy(wrong)
                .unwrap()
                .unwrap_err()
                .contains("effect 32, but 8")
        );
        let inside = PolicyResult {
            decisions: 0,
            hits: 7,
            ..asked.clone()
        };
        assert_eq!(
            with_policy(inside),
            Some(Err(
                "never asked: its 7 trigger(s) all came inside a safe span".into()
            ))
        );
        let silent = PolicyResult {
            decisions: 0,
            hits: 0,
            ..asked
        };
        assert_eq!(
            with_policy(silent),
            Some(Err("no probe fired under the workload".into()))
        );
        let refused = PolicyResult {
            refused: Some("error: KX_TARGET_DIV divides by the value at f+0x10".into()),
            ..PolicyResult::default()
        };
        assert!(
            with_policy(refused)
                .unwrap()
                .unwrap()
                .starts_with("not offered")
        );
        assert_eq!(entry(lab(vec![], None)).policy_verdict(), None);
    }

    #[test]
    fn summary_counts_tuned_entries_and_optimized_probes() {
        let entries = vec![
            entry(lab(vec![probe("s0", 3, true), probe("s1", 1, false)], None)),
            entry(lab(vec![probe("s0", 0, true)], None)),
        ];
        let summary = Summary::of(&entries);
        assert_eq!((summary.tuned, summary.entries, summary.sites), (1, 2, 4));
        // s0 and s1 of the first, s0 of the second; s1 has a probe left as INT3.
        assert_eq!((summary.optimized_sites, summary.lab_sites), (2, 3));
        assert!(
            summary.line().starts_with("1 tuned / 2 total (50.0%)"),
            "{}",
            summary.line()
        );
        let table = markdown("6.12", &entries);
        assert!(table.contains("| T | mm | 128 -> 64 | 2 |"), "{table}");
        assert!(table.contains("no: no probe fired"), "{table}");
        assert!(!table.contains("gen stub as policy"), "{table}");
        let mut with_policy = entries;
        with_policy[0].lab.as_mut().unwrap().policy = Some(super::super::guest::PolicyResult {
            decisions: 2,
            ..Default::default()
        });
        let table = markdown("6.12", &with_policy);
        assert!(table.contains("| gen stub as policy |"), "{table}");
        assert!(table.contains("| tuned | 2 decisions |"), "{table}");
        // Every row has as many cells as the header.
        let widths: Vec<usize> = table
            .lines()
            .filter(|l| l.starts_with('|'))
            .map(|l| l.matches(" | ").count())
            .collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "{table}");
    }
}
