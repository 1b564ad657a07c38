//! Verification before attach: proving that the running kernel holds the code a plan expects.
//!
//! [`verify`] turns a tunable of a [`Plan`] into a [`VerifiedTunable`], the only way to get
//! one, in these steps:
//!
//! 1. Identity: the running kernel's release and build-id (and the module's, when the sites are
//!    in a module) must be the plan's ([`crate::identity`]).
//! 2. Resolution: the sites are grouped by function (unit and name). Every function of that
//!    name in kallsyms, in vmlinux or in the given module, is a candidate; the candidate whose
//!    live code (read through `/proc/kcore`) matches the plan's bytes under the mask at every
//!    site of the group is the function. Exactly one must match: none is a mismatch (each site
//!    reported with what each candidate holds), several are ambiguous. A duplicate static name
//!    is resolved by this check, never by "the first in kallsyms".
//! 3. Placement: no seed and no probe may lie in the function's entry patch area (`endbr64`,
//!    ftrace's call), and no probe address may already hold a kprobe (the debugfs list, when it
//!    is mounted, names it) or an `int3`.
//!
//! Every problem of every site is collected before refusing, so one run shows them all. What
//! the verifier does about code the kernel patches at run time is in [`crate::patching`].
//! Nothing here changes the kernel.

use std::fmt;

use kernelx_plan::{HexBytes, Plan, Site, TunablePlan};
use serde::{Serialize, Serializer};

use crate::host::HostView;
use crate::identity::{IdentityError, LiveIdentity, VerifiedIdentity};
use crate::kallsyms::{Kallsyms, KallsymsError, KernelSymbol};
use crate::kcore::{Kcore, KcoreError};
use crate::kprobes::{Kprobes, KprobesError};
use crate::patching::{ENTRY_HEAD_LEN, entry_patch_area, explain_mismatch};

const INT3: u8 = 0xcc;

/// Why a tunable cannot be attached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The running kernel is not the plan's build, or its identity cannot be read.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The symbol table cannot be read.
    #[error(transparent)]
    Kallsyms(#[from] KallsymsError),
    /// Kernel memory cannot be read.
    #[error(transparent)]
    Kcore(#[from] KcoreError),
    /// The list of registered kprobes cannot be read.
    #[error(transparent)]
    Kprobes(#[from] KprobesError),
    /// The plan has no tunable of that name.
    #[error("the plan has no tunable named `{name}`")]
    UnknownTunable {
        /// The name asked for.
        name: String,
    },
    /// Sites do not fit the running kernel.
    #[error("{}", sites_message(tunable, problems))]
    Sites {
        /// The tunable.
        tunable: String,
        /// Every problem found, in the plan's site order.
        problems: Vec<SiteProblem>,
    },
}

fn sites_message(tunable: &str, problems: &[SiteProblem]) -> String {
    let mut text = format!(
        "tunable `{tunable}` does not fit the running kernel ({} problem{}); nothing was \
         attached:",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for problem in problems {
        text.push_str(&format!("\n  - {problem}"));
    }
    text
}

/// One reason a site cannot be attached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SiteProblem {
    /// No function of that name in kallsyms.
    FunctionNotFound {
        /// The function.
        function: String,
        /// Where it was looked for (`None`: vmlinux).
        module: Option<String>,
        /// The sites in it.
        sites: Vec<String>,
    },
    /// The live code at the seed is not the plan's.
    Mismatch {
        /// The site's id.
        site: String,
        /// The function.
        function: String,
        /// The seed's offset.
        offset: u32,
        /// The plan's bytes.
        expected: HexBytes,
        /// The plan's mask.
        mask: HexBytes,
        /// What each candidate function holds there.
        found: Vec<FoundCode>,
    },
    /// Several functions of that name hold the plan's code at every site.
    Ambiguous {
        /// The function.
        function: String,
        /// The sites in it.
        sites: Vec<String>,
        /// The matching functions' addresses.
        addresses: Vec<u64>,
    },
    /// A seed or probe is where the kernel patches a function's entry.
    EntryPatchArea {
        /// The site's id.
        site: String,
        /// The function.
        function: String,
        /// The offset of the seed or probe.
        offset: u32,
        /// `seed`, `pre-probe` or `post-probe`.
        what: &'static str,
        /// The end of the entry patch area (it starts at +0).
        area_end: u32,
    },
    /// A probe address is already probed.
    ProbeOccupied {
        /// The site's id.
        site: String,
        /// The function.
        function: String,
        /// The probe's offset.
        offset: u32,
        /// The probe's address.
        address: u64,
        /// `pre-probe` or `post-probe`.
        what: &'static str,
        /// Who holds it, for people.
        holder: String,
    },
}

/// What one candidate function holds at a seed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundCode {
    /// The seed's address in this candidate.
    pub address: u64,
    /// The live bytes, when they could be read.
    pub bytes: Option<HexBytes>,
    /// Why they could not.
    pub error: Option<String>,
    /// Whether they match the plan's bytes under the mask.
    pub matches: bool,
    /// What probably patched them, when they do not match.
    pub hint: Option<&'static str>,
    /// Who holds a kprobe on these bytes, when one does.
    pub kprobe: Option<String>,
}

impl fmt::Display for SiteProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SiteProblem::FunctionNotFound {
                function,
                module,
                sites,
            } => {
                let place = match module {
                    Some(m) => format!("module {m}"),
                    None => "vmlinux".to_owned(),
                };
                write!(
                    f,
                    "{function}: no function of this name in {place} (/proc/kallsyms), needed \
                     by site{} {}",
                    if sites.len() == 1 { "" } else { "s" },
                    sites.join(", ")
                )
            }
            SiteProblem::Mismatch {
                site,
                function,
                offset,
                expected,
                mask,
                found,
            } => {
                write!(
                    f,
                    "{function}+{offset:#x} (site {site}): expected {expected} (mask {mask}), found"
                )?;
                for (i, code) in found.iter().enumerate() {
                    let sep = if i == 0 { " " } else { "; " };
                    match (&code.bytes, &code.error) {
                        (Some(bytes), _) => write!(f, "{sep}{bytes} at {:#x}", code.address)?,
                        (None, error) => write!(
                            f,
                            "{sep}nothing readable at {:#x} ({})",
                            code.address,
                            error.as_deref().unwrap_or("unknown error")
                        )?,
                    }
                    if found.len() > 1 && code.matches {
                        write!(f, " (matches)")?;
                    }
                    if let Some(hint) = code.hint {
                        write!(f, ": {hint}")?;
                    }
                    if let Some(holder) = &code.kprobe {
                        write!(f, " (held by {holder})")?;
                    }
                }
                if found.len() > 1 {
                    write!(
                        f,
                        " ({} functions of this name; none matches every site)",
                        found.len()
                    )?;
                }
                Ok(())
            }
            SiteProblem::Ambiguous {
                function,
                sites,
                addresses,
            } => {
                let at: Vec<String> = addresses.iter().map(|a| format!("{a:#x}")).collect();
                write!(
                    f,
                    "{function}: {} functions of this name hold the plan's code at every site \
                     ({}), at {}: KernelX cannot tell which one the plan means and refuses",
                    addresses.len(),
                    sites.join(", "),
                    at.join(", ")
                )
            }
            SiteProblem::EntryPatchArea {
                site,
                function,
                offset,
                what,
                area_end,
            } => write!(
                f,
                "{function}+{offset:#x} (the {what} of site {site}) is in the function's entry \
                 +0x0..{area_end:#x} (endbr64 and ftrace's call), which the kernel rewrites at \
                 run time: the plan is wrong here; rebuild it with `kernelx build`"
            ),
            SiteProblem::ProbeOccupied {
                site,
                function,
                offset,
                address,
                what,
                holder,
            } => write!(
                f,
                "{function}+{offset:#x} (the {what} of site {site}, at {address:#x}) is already \
                 probed by {holder}: remove that probe first"
            ),
        }
    }
}

/// The running kernel as the verifier reads it: identity, symbols and memory. Open it once
/// and verify any number of tunables; the registered kprobes, which change, are read by each
/// [`verify`].
#[derive(Debug)]
pub struct LiveKernel {
    host: HostView,
    identity: LiveIdentity,
    kallsyms: Kallsyms,
    kcore: Kcore,
}

impl LiveKernel {
    /// Reads the host's kernel identity, `/proc/kallsyms` and the headers of `/proc/kcore`.
    /// Needs root. (A module loaded later is not in this symbol table: open it again.)
    pub fn open(host: HostView) -> Result<LiveKernel, VerifyError> {
        Ok(LiveKernel {
            identity: LiveIdentity::read(&host)?,
            kallsyms: Kallsyms::read(&host)?,
            kcore: Kcore::open(&host)?,
            host,
        })
    }

    /// The host.
    pub fn host(&self) -> &HostView {
        &self.host
    }

    /// The running kernel's release and build-id.
    pub fn identity(&self) -> &LiveIdentity {
        &self.identity
    }

    /// The symbol table.
    pub fn kallsyms(&self) -> &Kallsyms {
        &self.kallsyms
    }

    /// Kernel memory.
    pub fn kcore(&self) -> &Kcore {
        &self.kcore
    }
}

/// The live kernel and the kprobes registered when a verification started.
struct Snapshot<'a> {
    kernel: &'a LiveKernel,
    /// `None` when debugfs does not list them.
    kprobes: Option<Kprobes>,
}

impl Snapshot<'_> {
    /// Who holds a kprobe at an address in `start..end`, when one does.
    fn kprobe_holder(&self, start: u64, end: u64) -> Option<String> {
        let probe = self.kprobes.as_ref()?.within(start..end).next()?;
        Some(probe.holder())
    }

    fn read(&self, address: u64, len: usize) -> Result<Vec<u8>, KcoreError> {
        self.kernel.kcore.read(address, len)
    }
}

/// A tunable whose every site the running kernel was shown to hold.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct VerifiedTunable<'p> {
    /// The tunable, from the plan.
    #[serde(serialize_with = "tunable_name")]
    pub tunable: &'p TunablePlan,
    /// The identity checks passed.
    pub identity: VerifiedIdentity,
    /// Every site, in the plan's order.
    pub sites: Vec<VerifiedSite<'p>>,
    /// Whether the kernel's kprobe list was read (`false`: debugfs is not mounted, and only
    /// the bytes at the probe addresses were checked for an `int3`).
    pub kprobe_list_checked: bool,
}

/// A site resolved to addresses in the running kernel.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct VerifiedSite<'p> {
    /// The site, from the plan.
    #[serde(serialize_with = "site_id")]
    pub site: &'p Site,
    /// The module the function is in (`None`: vmlinux).
    pub module: Option<String>,
    /// The function's address.
    pub function_address: u64,
    /// How many functions of that name kallsyms lists (the others did not match).
    pub candidates: usize,
    /// The seed's address.
    pub seed_address: u64,
    /// The pre-probe's address, when the site has one.
    pub pre_probe: Option<u64>,
    /// The post-probe's address.
    pub post_probe: u64,
}

fn tunable_name<S: Serializer>(tunable: &&TunablePlan, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&tunable.name)
}

fn site_id<S: Serializer>(site: &&Site, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&site.id)
}

/// Verifies tunable `name` of `plan` against the running kernel; the sites are in the module
/// the plan's identity names (`kernel.module`), else in vmlinux. See the module doc for the
/// steps.
pub fn verify<'p>(
    live: &LiveKernel,
    plan: &'p Plan,
    name: &str,
) -> Result<VerifiedTunable<'p>, VerifyError> {
    let identity = crate::identity::verify_identity(&live.host, &plan.kernel, &live.identity)?;
    let tunable = plan
        .tunable(name)
        .ok_or_else(|| VerifyError::UnknownTunable {
            name: name.to_owned(),
        })?;
    let module = plan.kernel.module.as_ref().map(|m| m.name.as_str());
    let snapshot = Snapshot {
        kernel: live,
        kprobes: Kprobes::read(&live.host)?,
    };
    let mut problems = Vec::new();
    let mut resolved = Vec::new();
    for group in function_groups(&tunable.sites) {
        let candidates: Vec<&KernelSymbol> = live
            .kallsyms
            .functions(&group[0].function, module)
            .collect();
        match resolve(&snapshot, &group, &candidates, module) {
            Ok(symbol) => resolved.push((group, symbol, candidates.len())),
            Err(mut found) => {
                problems.append(&mut found);
                // With one candidate the function is known: report its probes' problems too.
                if let [symbol] = candidates[..] {
                    for site in &group {
                        problems.extend(check_placement(&snapshot, &group, site, symbol)?);
                    }
                }
            }
        }
    }
    let mut sites = Vec::new();
    for (group, symbol, candidates) in &resolved {
        for site in group {
            problems.extend(check_placement(&snapshot, group, site, symbol)?);
            let at = |offset: u32| symbol.address + u64::from(offset);
            sites.push(VerifiedSite {
                site,
                module: symbol.module.clone(),
                function_address: symbol.address,
                candidates: *candidates,
                seed_address: at(site.offset),
                pre_probe: site.probes.pre.map(at),
                post_probe: at(site.probes.post),
            });
        }
    }
    if !problems.is_empty() {
        // Report in the plan's site order, whatever the grouping.
        let position = |problem: &SiteProblem| {
            let id = match problem {
                SiteProblem::FunctionNotFound { sites, .. }
                | SiteProblem::Ambiguous { sites, .. } => &sites[0],
                SiteProblem::Mismatch { site, .. }
                | SiteProblem::EntryPatchArea { site, .. }
                | SiteProblem::ProbeOccupied { site, .. } => site,
            };
            tunable.sites.iter().position(|s| &s.id == id)
        };
        problems.sort_by_key(position);
        return Err(VerifyError::Sites {
            tunable: tunable.name.clone(),
            problems,
        });
    }
    sites.sort_by_key(|v| tunable.sites.iter().position(|s| s.id == v.site.id));
    Ok(VerifiedTunable {
        tunable,
        identity,
        sites,
        kprobe_list_checked: snapshot.kprobes.is_some(),
    })
}

/// The sites grouped by function (unit and name), groups in order of first appearance.
fn function_groups(sites: &[Site]) -> Vec<Vec<&Site>> {
    let mut groups: Vec<Vec<&Site>> = Vec::new();
    for site in sites {
        let same = |g: &&mut Vec<&Site>| g[0].function == site.function && g[0].unit == site.unit;
        match groups.iter_mut().find(|g| same(g)) {
            Some(group) => group.push(site),
            None => groups.push(vec![site]),
        }
    }
    groups
}

/// The one candidate whose code matches every site of `group`.
fn resolve<'k>(
    live: &Snapshot<'_>,
    group: &[&Site],
    candidates: &[&'k KernelSymbol],
    module: Option<&str>,
) -> Result<&'k KernelSymbol, Vec<SiteProblem>> {
    let function = &group[0].function;
    let ids = || group.iter().map(|s| s.id.clone()).collect::<Vec<_>>();
    if candidates.is_empty() {
        return Err(vec![SiteProblem::FunctionNotFound {
            function: function.clone(),
            module: module.map(str::to_owned),
            sites: ids(),
        }]);
    }
    // found[c][s]: what candidate c holds at site s.
    let found: Vec<Vec<FoundCode>> = candidates
        .iter()
        .map(|c| group.iter().map(|s| read_seed(live, c, s)).collect())
        .collect();
    let matching: Vec<usize> = (0..candidates.len())
        .filter(|&c| found[c].iter().all(|code| code.matches))
        .collect();
    match matching[..] {
        [one] => Ok(candidates[one]),
        [] => Err(group
            .iter()
            .enumerate()
            .filter(|&(s, _)| found.iter().any(|per_site| !per_site[s].matches))
            .map(|(s, site)| SiteProblem::Mismatch {
                site: site.id.clone(),
                function: function.clone(),
                offset: site.offset,
                expected: site.bytes.clone(),
                mask: site.mask.clone(),
                found: found.iter().map(|per_site| per_site[s].clone()).collect(),
            })
            .collect()),
        _ => Err(vec![SiteProblem::Ambiguous {
            function: function.clone(),
            sites: ids(),
            addresses: matching.iter().map(|&c| candidates[c].address).collect(),
        }]),
    }
}

/// Reads candidate `function`'s live bytes at `site`'s seed and compares them with the plan's.
fn read_seed(live: &Snapshot<'_>, function: &KernelSymbol, site: &Site) -> FoundCode {
    let address = function.address + u64::from(site.offset);
    let len = usize::from(site.len);
    let kprobe = live.kprobe_holder(address, address + len as u64);
    match live.read(address, len) {
        Ok(bytes) => {
            let matches = site.matches(&bytes);
            FoundCode {
                address,
                hint: (!matches)
                    .then(|| explain_mismatch(site.bytes.as_bytes(), &bytes))
                    .flatten(),
                bytes: Some(HexBytes(bytes)),
                error: None,
                matches,
                kprobe,
            }
        }
        Err(e) => FoundCode {
            address,
            bytes: None,
            error: Some(e.to_string()),
            matches: false,
            hint: None,
            kprobe,
        },
    }
}

/// The problems of a resolved site's seed and probes: the entry patch area, and probe
/// addresses already probed.
fn check_placement(
    live: &Snapshot<'_>,
    group: &[&Site],
    site: &Site,
    function: &KernelSymbol,
) -> Result<Vec<SiteProblem>, VerifyError> {
    let head = live.read(function.address, ENTRY_HEAD_LEN)?;
    let entry_end = entry_patch_area(&head).map_or(0, |area| area.end);
    let mut problems = Vec::new();
    let in_entry = |what: &'static str, offset: u32| {
        (offset < entry_end).then(|| SiteProblem::EntryPatchArea {
            site: site.id.clone(),
            function: site.function.clone(),
            offset,
            what,
            area_end: entry_end,
        })
    };
    // A seed starting before the area's end overlaps it (offsets are non-negative).
    problems.extend(in_entry("seed", site.offset));
    let probes = [
        ("pre-probe", site.probes.pre),
        ("post-probe", Some(site.probes.post)),
    ];
    for (what, offset) in probes {
        let Some(offset) = offset else { continue };
        if let Some(problem) = in_entry(what, offset) {
            problems.push(problem);
            continue;
        }
        let address = function.address + u64::from(offset);
        let holder = match live.kprobe_holder(address, address + 1) {
            Some(holder) => Some(holder),
            None => {
                let live_byte = live.read(address, 1)?[0];
                // An int3 never starts an instruction the analysis probes, unless a seed of
                // this function says the code has one there.
                (live_byte == INT3 && known_byte(group, offset) != Some(INT3)).then(|| {
                    if live.kprobes.is_some() {
                        "an int3 that is not a registered kprobe (kgdb, or a text_poke in \
                         progress)"
                    } else {
                        "an int3, probably a kprobe (debugfs is not mounted, so KernelX cannot \
                         name it)"
                    }
                    .to_owned()
                })
            }
        };
        if let Some(holder) = holder {
            problems.push(SiteProblem::ProbeOccupied {
                site: site.id.clone(),
                function: site.function.clone(),
                offset,
                address,
                what,
                holder,
            });
        }
    }
    Ok(problems)
}

/// The plan's byte at `offset` of the function, when a seed of `group` fixes it.
fn known_byte(group: &[&Site], offset: u32) -> Option<u8> {
    group.iter().find_map(|site| {
        let i = usize::try_from(offset.checked_sub(site.offset)?).ok()?;
        (site.mask.as_bytes().get(i) == Some(&0xff)).then(|| site.bytes.as_bytes()[i])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_host::{FakeHost, note};
    use crate::kprobes::{KPROBE_EVENTS, KPROBES_LIST};
    use kernelx_plan::ModuleIdentity;

    /// `PIPE_DEF_BUFFERS` in `alloc_pipe_info`: three sites, +0x6b, +0x77 and +0x7c, with
    /// probes at +0x71, +0x7c, +0x77 (pre) and +0x81.
    const PLAN: &str = include_str!("../../plan/testdata/example.plan.json");
    const TUNABLE: &str = "PIPE_DEF_BUFFERS";
    const BUILD_ID: &str = "7f76f39faf07f34cfa9fadd801e131bfa8cb6dc3";
    const TEXT: u64 = 0xffffffff81000000;
    /// Where the fake kernel's copies of the function may go, as offsets into its text.
    const SLOTS: [u64; 3] = [0x1000, 0x2000, 0x3000];
    const FUNCTION_SIZE: usize = 0x220;

    fn plan() -> Plan {
        Plan::from_json(PLAN).unwrap()
    }

    /// A function as the running kernel holds it: endbr64, the ftrace NOP, NOPs, and the
    /// plan's seeds at their offsets.
    fn live_code(plan: &Plan) -> Vec<u8> {
        let mut code = vec![0x90; FUNCTION_SIZE];
        code[..9].copy_from_slice(&[0xf3, 0x0f, 0x1e, 0xfa, 0x0f, 0x1f, 0x44, 0x00, 0x00]);
        for site in &plan.tunable(TUNABLE).unwrap().sites {
            let at = site.offset as usize;
            code[at..at + site.bytes.len()].copy_from_slice(site.bytes.as_bytes());
        }
        code
    }

    /// A fake lab kernel whose text holds `copies` (slot index, code) and whose kallsyms
    /// lists a `kind` `alloc_pipe_info` at each slot given.
    fn kernel(copies: &[(usize, &[u8])], kind: char) -> FakeHost {
        let host = FakeHost::new();
        host.kernel(
            "6.12.117+deb12-cloud-amd64",
            &BUILD_ID.parse::<HexBytes>().unwrap().0,
        );
        let mut text = vec![0xcc; 0x4000];
        let mut kallsyms = format!("0000000000000000 A fixed_percpu_data\n{TEXT:016x} T _text\n");
        for &(slot, code) in copies {
            let at = SLOTS[slot] as usize;
            text[at..at + code.len()].copy_from_slice(code);
            kallsyms.push_str(&format!(
                "{:016x} {kind} alloc_pipe_info\n",
                TEXT + SLOTS[slot]
            ));
        }
        host.write(crate::kallsyms::KALLSYMS, kallsyms);
        host.kcore(&[(TEXT, &text)]);
        host
    }

    #[track_caller]
    fn problems(host: &FakeHost, plan: &Plan) -> Vec<SiteProblem> {
        let live = LiveKernel::open(host.view()).unwrap();
        match verify(&live, plan, TUNABLE) {
            Err(VerifyError::Sites { problems, .. }) => problems,
            other => panic!("expected site problems, got {other:?}"),
        }
    }

    #[test]
    fn resolves_every_site_and_probe_of_a_matching_kernel() {
        let plan = plan();
        let code = live_code(&plan);
        let host = kernel(&[(0, &code)], 'T');
        let live = LiveKernel::open(host.view()).unwrap();
        let verified = verify(&live, &plan, TUNABLE).unwrap();
        assert!(verified.identity.build_id_compared);
        assert!(!verified.kprobe_list_checked);
        let function = TEXT + SLOTS[0];
        let got: Vec<(&str, u64, Option<u64>, u64)> = verified
            .sites
            .iter()
            .map(|s| {
                assert_eq!((s.function_address, s.candidates), (function, 1));
                (
                    s.site.id.as_str(),
                    s.seed_address,
                    s.pre_probe,
                    s.post_probe,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "fs/pipe.c:alloc_pipe_info+0x6b",
                    function + 0x6b,
                    None,
                    function + 0x71
                ),
                (
                    "fs/pipe.c:alloc_pipe_info+0x77",
                    function + 0x77,
                    None,
                    function + 0x7c
                ),
                (
                    "fs/pipe.c:alloc_pipe_info+0x7c",
                    function + 0x7c,
                    Some(function + 0x77),
                    function + 0x81
                ),
            ]
        );
    }

    #[test]
    fn ignores_bytes_the_mask_leaves_free() {
        let mut plan = plan();
        let site = &mut plan.tunables[0].sites[0];
        site.mask.0[4] = 0;
        let code = live_code(&plan);
        plan.tunables[0].sites[0].bytes.0[4] = 0x55;
        let host = kernel(&[(0, &code)], 'T');
        let live = LiveKernel::open(host.view()).unwrap();
        assert!(verify(&live, &plan, TUNABLE).is_ok());
    }

    #[test]
    fn resolves_a_duplicate_static_name_by_the_code() {
        let plan = plan();
        let code = live_code(&plan);
        // Another static function of the same name, equal at two sites but not at +0x7c.
        let mut other = code.clone();
        other[0x7d] = 0x20;
        let unrelated = vec![0x90; FUNCTION_SIZE];
        let host = kernel(&[(0, &other), (1, &code), (2, &unrelated)], 't');
        let live = LiveKernel::open(host.view()).unwrap();
        let verified = verify(&live, &plan, TUNABLE).unwrap();
        for site in &verified.sites {
            assert_eq!(site.function_address, TEXT + SLOTS[1]);
            assert_eq!(site.candidates, 3);
        }
    }

    #[test]
    fn refuses_duplicates_that_both_match() {
        let plan = plan();
        let code = live_code(&plan);
        let host = kernel(&[(0, &code), (2, &code)], 't');
        let problems = problems(&host, &plan);
        assert_eq!(problems.len(), 1, "{problems:?}");
        let SiteProblem::Ambiguous { addresses, .. } = &problems[0] else {
            panic!("{problems:?}");
        };
        assert_eq!(addresses, &[TEXT + SLOTS[0], TEXT + SLOTS[2]]);
        let message = problems[0].to_string();
        assert!(
            message.contains("0xffffffff81001000, 0xffffffff81003000"),
            "{message}"
        );
    }

    #[test]
    fn lists_every_mismatch_with_expected_and_found_bytes() {
        let plan = plan();
        let mut code = live_code(&plan);
        code[0x6b + 4] = 0x01; // cmp $0x1ffff,%ebp
        code[0x7c + 1] = 0x20; // mov $0x20,%ebp
        let host = kernel(&[(0, &code)], 'T');
        let live = LiveKernel::open(host.view()).unwrap();
        let err = verify(&live, &plan, TUNABLE).unwrap_err();
        let message = err.to_string();
        let VerifyError::Sites { problems, .. } = err else {
            panic!("{message}");
        };
        assert_eq!(problems.len(), 2, "{message}");
        for expected in [
            "alloc_pipe_info+0x6b (site fs/pipe.c:alloc_pipe_info+0x6b): expected 81fdffff0000 \
             (mask ffffffffffff), found 81fdffff0100 at 0xffffffff8100106b",
            "alloc_pipe_info+0x7c (site fs/pipe.c:alloc_pipe_info+0x7c): expected bd10000000 \
             (mask ffffffffff), found bd20000000 at 0xffffffff8100107c",
            "2 problems",
        ] {
            assert!(message.contains(expected), "{expected}\nnot in\n{message}");
        }
    }

    #[test]
    fn shows_every_candidate_when_no_duplicate_matches() {
        let plan = plan();
        let mut first = live_code(&plan);
        first[0x77] = 0xb9;
        let mut second = live_code(&plan);
        second[0x77] = 0xba;
        let host = kernel(&[(0, &first), (1, &second)], 't');
        let problems = problems(&host, &plan);
        let [SiteProblem::Mismatch { offset, found, .. }] = &problems[..] else {
            panic!("{problems:?}");
        };
        assert_eq!(*offset, 0x77);
        let bytes: Vec<String> = found
            .iter()
            .map(|f| f.bytes.as_ref().unwrap().to_string())
            .collect();
        assert_eq!(bytes, ["b910000000", "ba10000000"]);
    }

    #[test]
    fn names_the_kprobe_on_a_seed_and_on_a_probe_address() {
        let plan = plan();
        let mut code = live_code(&plan);
        code[0x6b] = 0xcc; // someone's int3 on the cmp
        let host = kernel(&[(0, &code)], 'T');
        let function = TEXT + SLOTS[0];
        host.write(
            KPROBES_LIST,
            format!(
                "{:016x}  k  alloc_pipe_info+0x6b    \n{:016x}  k  alloc_pipe_info+0x81    \
                 [OPTIMIZED]\n",
                function + 0x6b,
                function + 0x81
            ),
        );
        host.write(KPROBE_EVENTS[0], "p:other/cmp alloc_pipe_info+107\n");
        let problems = problems(&host, &plan);
        assert_eq!(problems.len(), 2, "{problems:?}");
        let seed = problems[0].to_string();
        assert!(seed.contains("found cc") && seed.contains("int3"), "{seed}");
        assert!(
            seed.contains("the tracefs kprobe event other/cmp"),
            "{seed}"
        );
        let SiteProblem::ProbeOccupied {
            offset,
            what,
            holder,
            ..
        } = &problems[1]
        else {
            panic!("{problems:?}");
        };
        assert_eq!((*offset, *what), (0x81, "post-probe"));
        assert!(holder.contains("not a tracefs event") && holder.contains("[OPTIMIZED]"));
    }

    #[test]
    fn refuses_an_int3_at_a_probe_address_without_debugfs() {
        let plan = plan();
        let mut code = live_code(&plan);
        code[0x71] = 0xcc;
        let host = kernel(&[(0, &code)], 'T');
        let problems = problems(&host, &plan);
        let [
            SiteProblem::ProbeOccupied {
                offset: 0x71,
                holder,
                ..
            },
        ] = &problems[..]
        else {
            panic!("{problems:?}");
        };
        assert!(holder.contains("debugfs is not mounted"), "{holder}");
    }

    #[test]
    fn refuses_a_probe_in_the_entry_patch_area() {
        let mut plan = plan();
        plan.tunables[0].sites[2].probes.pre = Some(4);
        let code = live_code(&plan);
        let host = kernel(&[(0, &code)], 'T');
        let problems = problems(&host, &plan);
        let [problem @ SiteProblem::EntryPatchArea { offset: 4, .. }] = &problems[..] else {
            panic!("{problems:?}");
        };
        let message = problem.to_string();
        assert!(
            message.contains("alloc_pipe_info+0x4 (the pre-probe"),
            "{message}"
        );
        assert!(message.contains("ftrace"), "{message}");
    }

    #[test]
    fn refuses_another_kernel_build_before_reading_code() {
        let plan = plan();
        let host = kernel(&[(0, &live_code(&plan))], 'T');
        host.kernel("6.12.117+deb12-cloud-amd64", &[0x11; 20]);
        let live = LiveKernel::open(host.view()).unwrap();
        let err = verify(&live, &plan, TUNABLE).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, VerifyError::Identity(_)), "{err:?}");
        assert!(message.contains(BUILD_ID) && message.contains(&"11".repeat(20)));
    }

    #[test]
    fn needs_kcore() {
        let plan = plan();
        let host = kernel(&[(0, &live_code(&plan))], 'T');
        std::fs::remove_file(host.view().resolve(crate::kcore::KCORE)).unwrap();
        let err = LiveKernel::open(host.view()).unwrap_err();
        assert!(
            matches!(err, VerifyError::Kcore(KcoreError::Missing)),
            "{err:?}"
        );
    }

    #[test]
    fn needs_visible_symbol_addresses() {
        let host = kernel(&[], 'T');
        host.write(
            crate::kallsyms::KALLSYMS,
            "0000000000000000 T _text\n0000000000000000 T alloc_pipe_info\n",
        );
        let err = LiveKernel::open(host.view()).unwrap_err();
        assert!(
            matches!(err, VerifyError::Kallsyms(KallsymsError::AddressesHidden)),
            "{err:?}"
        );
    }

    #[test]
    fn looks_in_the_module_only_when_one_is_given() {
        let plan = plan();
        let code = live_code(&plan);
        // vmlinux has no alloc_pipe_info here; module kx_target does.
        let host = kernel(&[], 'T');
        let mut text = vec![0xcc; 0x1000];
        text[..code.len()].copy_from_slice(&code);
        let module_base = 0xffffffffc0000000;
        host.kcore(&[(module_base, &text)]);
        host.write(
            crate::kallsyms::KALLSYMS,
            format!("{TEXT:016x} T _text\n{module_base:016x} t alloc_pipe_info\t[kx_target]\n"),
        );
        let module_id = HexBytes(vec![0xab; 20]);
        host.write(
            "/sys/module/kx_target/notes/.note.gnu.build-id",
            note(b"GNU\0", 3, module_id.as_bytes()),
        );
        let live = LiveKernel::open(host.view()).unwrap();

        let err = verify(&live, &plan, TUNABLE).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("alloc_pipe_info: no function of this name in vmlinux"),
            "{message}"
        );

        let mut plan = plan;
        plan.kernel.module = Some(ModuleIdentity {
            name: "kx_target".into(),
            build_id: Some(module_id),
        });
        let verified = verify(&live, &plan, TUNABLE).unwrap();
        assert_eq!(verified.sites[0].module.as_deref(), Some("kx_target"));
        assert_eq!(verified.sites[0].seed_address, module_base + 0x6b);
        assert!(verified.identity.module.unwrap().build_id_compared);
    }

    #[test]
    fn refuses_an_unknown_tunable() {
        let plan = plan();
        let host = kernel(&[(0, &live_code(&plan))], 'T');
        let live = LiveKernel::open(host.view()).unwrap();
        let err = verify(&live, &plan, "NO_SUCH").unwrap_err();
        assert!(err.to_string().contains("`NO_SUCH`"), "{err}");
    }
}
