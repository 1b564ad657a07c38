//! Where each probe of a tunable's SIE program goes: the addresses [`verify`](crate::verify)
//! resolved, never a lookup by name (which picks the first of same-named static functions).

use crate::sie::{ProbeRole, SieProgram, SpanAddress};
use crate::verify::{VerifiedSite, VerifiedTunable};

/// A probe the verification did not place.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// The verification has no address for a probe of the program.
    #[error(
        "tunable '{tunable}': the verification resolved no {role:?}-probe address for site \
         {site}; nothing was loaded"
    )]
    Unverified {
        /// The tunable.
        tunable: String,
        /// The site.
        site: String,
        /// Pre or post.
        role: ProbeRole,
    },
    /// No verified site lies in the function of a safe span.
    #[error(
        "tunable '{tunable}': safe span {span} is in {function}, where the verification \
         resolved no site; nothing was loaded"
    )]
    UnverifiedSpan {
        /// The tunable.
        tunable: String,
        /// The span's id.
        span: String,
        /// Its function.
        function: String,
    },
}

/// The verified address of every probe of `program`, in the program's probe order.
pub fn verified_addresses(
    program: &SieProgram,
    verified: &VerifiedTunable<'_>,
) -> Result<Vec<u64>, TargetError> {
    addresses_in(program, &verified.sites)
}

/// The address ranges of every safe span of `program`, in the function the verification
/// resolved for the sites of that span.
pub fn verified_spans(
    program: &SieProgram,
    verified: &VerifiedTunable<'_>,
) -> Result<Vec<SpanAddress>, TargetError> {
    spans_in(program, &verified.sites)
}

fn spans_in(
    program: &SieProgram,
    sites: &[VerifiedSite<'_>],
) -> Result<Vec<SpanAddress>, TargetError> {
    let mut addresses = Vec::new();
    for (index, span) in program.spans().iter().enumerate() {
        let function = sites
            .iter()
            .find(|s| s.site.safe_span == span.id && s.site.function == span.function)
            .map(|s| s.function_address)
            .ok_or_else(|| TargetError::UnverifiedSpan {
                tunable: program.tunable().to_owned(),
                span: span.id.clone(),
                function: span.function.clone(),
            })?;
        // A task at the first byte of a critical span of this span's sites (a probe there, or
        // a frame returning there) has not run it: the value the span carries does not exist
        // yet. Such a range begins one byte in, so that task counts as outside, and a probe
        // of another site placed there may hand it a new value.
        let critical_starts: Vec<u64> = sites
            .iter()
            .filter(|s| s.site.safe_span == span.id)
            .map(|s| s.site.recipe.span.start)
            .collect();
        addresses.extend(span.ranges.iter().map(|r| SpanAddress {
            span: index,
            start: function
                + u64::from(r.start)
                + u64::from(critical_starts.contains(&u64::from(r.start))),
            end: function + u64::from(r.end),
        }));
    }
    Ok(addresses)
}

fn addresses_in(program: &SieProgram, sites: &[VerifiedSite<'_>]) -> Result<Vec<u64>, TargetError> {
    program
        .probes()
        .iter()
        .map(|probe| {
            let site = sites.iter().find(|s| s.site.id == probe.site());
            let address = site.and_then(|s| match probe.role() {
                ProbeRole::Pre => s.pre_probe,
                ProbeRole::Post => Some(s.post_probe),
            });
            address.ok_or_else(|| TargetError::Unverified {
                tunable: program.tunable().to_owned(),
                site: probe.site().to_owned(),
                role: probe.role(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use kernelx_plan::Plan;

    use super::*;

    const PLAN: &str = include_str!("../../analyze/testdata/golden/pipe_def_buffers_fs.plan.json");
    const FUNCTION: u64 = 0xffff_ffff_8130_0000;

    fn verified(plan: &Plan) -> Vec<VerifiedSite<'_>> {
        plan.tunables[0]
            .sites
            .iter()
            .map(|site| VerifiedSite {
                site,
                module: None,
                function_address: FUNCTION,
                candidates: 1,
                seed_address: FUNCTION + u64::from(site.offset),
                pre_probe: site.probes.pre.map(|p| FUNCTION + u64::from(p)),
                post_probe: FUNCTION + u64::from(site.probes.post),
            })
            .collect()
    }

    #[test]
    fn every_probe_gets_its_sites_verified_address() {
        let plan: Plan = serde_json::from_str(PLAN).unwrap();
        let program = SieProgram::from_plan(&plan.tunables[0]).unwrap();
        let addresses = addresses_in(&program, &verified(&plan)).unwrap();
        let expected: Vec<u64> = program
            .probes()
            .iter()
            .map(|p| FUNCTION + u64::from(p.offset()))
            .collect();
        assert_eq!(addresses, expected);
        assert_eq!(addresses.len(), 4, "three post-probes and one pre-probe");
    }

    #[test]
    fn spans_are_placed_in_their_sites_function() {
        let plan: Plan = serde_json::from_str(PLAN).unwrap();
        let program = SieProgram::from_plan(&plan.tunables[0]).unwrap();
        let spans = spans_in(&program, &verified(&plan)).unwrap();
        // alloc_pipe_info/0 has one range, /1 and /2 two each (golden plan).
        assert_eq!(
            spans.iter().map(|s| s.span).collect::<Vec<_>>(),
            [0, 1, 1, 2, 2]
        );
        // The plan's range 107..502 begins at the critical span of the site at +0x6b: a task
        // at 107 has not run it, so the range starts at 108. Later ranges keep their start.
        assert_eq!(
            (spans[0].start, spans[0].end),
            (FUNCTION + 108, FUNCTION + 502)
        );
        let plan_ranges: Vec<_> = program.spans().iter().flat_map(|s| &s.ranges).collect();
        for (placed, planned) in spans.iter().zip(&plan_ranges) {
            let starts_critical_span = plan.tunables[0]
                .sites
                .iter()
                .any(|s| s.recipe.span.start == u64::from(planned.start));
            assert_eq!(
                placed.start,
                FUNCTION + u64::from(planned.start) + u64::from(starts_critical_span),
                "{planned:?}"
            );
            assert_eq!(placed.end, FUNCTION + u64::from(planned.end));
        }
        assert!(
            spans
                .iter()
                .zip(&plan_ranges)
                .any(|(placed, planned)| placed.start == FUNCTION + u64::from(planned.start)),
            "some range of the golden plan begins elsewhere than a critical span"
        );
        let mut sites = verified(&plan);
        sites.retain(|s| s.site.safe_span != program.spans()[2].id);
        let err = spans_in(&program, &sites).unwrap_err().to_string();
        assert!(
            err.contains("safe span fs/pipe.c:alloc_pipe_info/2"),
            "{err}"
        );
    }

    #[test]
    fn a_probe_without_a_verified_site_is_refused() {
        let plan: Plan = serde_json::from_str(PLAN).unwrap();
        let program = SieProgram::from_plan(&plan.tunables[0]).unwrap();
        let mut sites = verified(&plan);
        sites.retain(|s| s.site.probes.pre.is_none());
        let err = addresses_in(&program, &sites).unwrap_err().to_string();
        assert!(
            err.contains("no Pre-probe address for site fs/pipe.c:alloc_pipe_info+0x7c"),
            "{err}"
        );
    }
}
