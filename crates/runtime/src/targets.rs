//! Where each probe of a tunable's SIE program goes: the addresses [`verify`](crate::verify)
//! resolved, never a lookup by name (which picks the first of same-named static functions).

use crate::sie::{ProbeRole, SieProgram};
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
}

/// The verified address of every probe of `program`, in the program's probe order.
pub fn verified_addresses(
    program: &SieProgram,
    verified: &VerifiedTunable<'_>,
) -> Result<Vec<u64>, TargetError> {
    addresses_in(program, &verified.sites)
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
