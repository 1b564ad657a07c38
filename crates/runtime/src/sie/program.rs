//! From a tunable's plan to the probes of its SIE program and, for a value V', their map
//! entries. Pure: nothing here touches the kernel, so every refusal happens before a load
//! changes anything.

use kernelx_plan::{
    Address, CompareOp, FlagSet, Input, Place, Recipe, RegOperand, Site, TunablePlan, TunableRange,
    Update, Width,
};

use super::SieError;
use super::abi::{self, Action, ProbeEntry};

/// Whether a probe runs before the critical span or applies the update after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeRole {
    /// Marks the task as having entered the span (at `probes.pre`).
    Pre,
    /// Applies the update (at `probes.post`).
    Post,
}

/// One kprobe of a tunable's SIE program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    site: String,
    function: String,
    offset: u32,
    role: ProbeRole,
    jump_optimizable: bool,
    work: Work,
}

impl Probe {
    /// The id of the site the probe belongs to.
    pub fn site(&self) -> &str {
        &self.site
    }

    /// The function it is in, as the plan names it.
    pub fn function(&self) -> &str {
        &self.function
    }

    /// Its offset in that function.
    pub fn offset(&self) -> u32 {
        self.offset
    }

    /// Pre- or post-probe.
    pub fn role(&self) -> ProbeRole {
        self.role
    }

    /// Whether the plan expects the kernel to jump-optimize it (post-probes only).
    pub fn jump_optimizable(&self) -> bool {
        self.jump_optimizable
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Work {
    /// Set mark `slot` for the current task.
    Mark { slot: u64 },
    /// Apply `update` (only after mark `mark`, when set).
    Update {
        recipe: Box<Recipe>,
        update: UpdateWork,
        mark: Option<u64>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UpdateWork {
    LoadReg {
        reg: RegOperand,
    },
    LoadMem {
        operand: u64,
        disp: i64,
    },
    CompareReg {
        op: CompareOp,
        width: Width,
        reg: RegOperand,
        flags: FlagSet,
    },
    CompareMem {
        op: CompareOp,
        width: Width,
        operand: u64,
        disp: i64,
        flags: FlagSet,
    },
}

/// The probes of one tunable, checked to be within what this runtime applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SieProgram {
    tunable: String,
    range: TunableRange,
    probes: Vec<Probe>,
}

impl SieProgram {
    /// The probes for every site of `tunable`, or the first site this runtime cannot apply:
    /// never a part of the tunable.
    ///
    /// Supported: [`Update::Load`] into a register or the memory just stored, and
    /// [`Update::Compare`] of a register or memory operand (not `%gs`-relative) read at the
    /// post-probe; pre-probes that only mark the path. Refused: combining and dividing
    /// updates, inputs saved by a pre-probe or recovered from the seed, and more probes than
    /// the program's map holds.
    pub fn from_plan(tunable: &TunablePlan) -> Result<SieProgram, SieError> {
        if tunable.sites.is_empty() {
            return Err(SieError::NoSites {
                tunable: tunable.name.clone(),
            });
        }
        let mut probes = Vec::new();
        let mut marks = 0u64;
        for site in &tunable.sites {
            let unsupported = |what: String| SieError::Unsupported {
                tunable: tunable.name.clone(),
                site: site.id.clone(),
                what,
            };
            let update = update_work(site).map_err(unsupported)?;
            let mark = match site.probes.pre {
                None => None,
                Some(offset) => {
                    let slot = marks;
                    marks += 1;
                    probes.push(Probe {
                        site: site.id.clone(),
                        function: site.function.clone(),
                        offset,
                        role: ProbeRole::Pre,
                        jump_optimizable: false,
                        work: Work::Mark { slot },
                    });
                    Some(slot)
                }
            };
            probes.push(Probe {
                site: site.id.clone(),
                function: site.function.clone(),
                offset: site.probes.post,
                role: ProbeRole::Post,
                jump_optimizable: site.probes.jump_optimizable,
                work: Work::Update {
                    recipe: Box::new(site.recipe.clone()),
                    update,
                    mark,
                },
            });
        }
        if probes.len() > abi::MAX_PROBES || marks > abi::MAX_MARKS as u64 {
            return Err(SieError::TooManyProbes {
                tunable: tunable.name.clone(),
                probes: probes.len(),
                max: abi::MAX_PROBES,
            });
        }
        Ok(SieProgram {
            tunable: tunable.name.clone(),
            range: tunable.range.clone(),
            probes,
        })
    }

    /// The tunable's name.
    pub fn tunable(&self) -> &str {
        &self.tunable
    }

    /// The valid values of V'.
    pub fn range(&self) -> &TunableRange {
        &self.range
    }

    /// The probes, in attach order (a site's pre-probe before its post-probe).
    pub fn probes(&self) -> &[Probe] {
        &self.probes
    }

    /// The map entries for V' = `value`, index i for probe i; refuses a value outside the
    /// tunable's range, naming the range.
    pub(crate) fn entries(&self, value: i64) -> Result<Vec<ProbeEntry>, SieError> {
        self.range
            .check(value)
            .map_err(|source| SieError::OutOfRange {
                tunable: self.tunable.clone(),
                source,
            })?;
        self.probes
            .iter()
            .map(|probe| match &probe.work {
                Work::Mark { slot } => Ok(ProbeEntry {
                    action: Action::Mark as u64,
                    mark: *slot,
                    ..ProbeEntry::default()
                }),
                Work::Update {
                    recipe,
                    update,
                    mark,
                } => {
                    let iv = recipe
                        .iv(value)
                        .map_err(|source| SieError::SiteOutOfRange {
                            tunable: self.tunable.clone(),
                            site: probe.site.clone(),
                            source,
                        })?;
                    Ok(update_entry(*update, iv, mark.unwrap_or(abi::NO_MARK)))
                }
            })
            .collect()
    }
}

fn update_entry(update: UpdateWork, iv: u64, mark: u64) -> ProbeEntry {
    let base = ProbeEntry {
        value: iv,
        mark,
        ..ProbeEntry::default()
    };
    let compare_op = |op| match op {
        CompareOp::Cmp => abi::COMPARE_CMP,
        CompareOp::Test => abi::COMPARE_TEST,
    };
    match update {
        UpdateWork::LoadReg { reg } => ProbeEntry {
            action: Action::LoadReg as u64,
            reg: abi::reg(reg.gpr),
            width: u64::from(reg.width.bytes()),
            high8: u64::from(reg.high8),
            ..base
        },
        UpdateWork::LoadMem { operand, disp } => ProbeEntry {
            action: Action::LoadMem as u64,
            operand,
            disp,
            ..base
        },
        UpdateWork::CompareReg {
            op,
            width,
            reg,
            flags,
        } => ProbeEntry {
            action: Action::CompareReg as u64,
            reg: abi::reg(reg.gpr),
            width: u64::from(width.bytes()),
            high8: u64::from(reg.high8),
            op: compare_op(op),
            flags: flags.mask(),
            ..base
        },
        UpdateWork::CompareMem {
            op,
            width,
            operand,
            disp,
            flags,
        } => ProbeEntry {
            action: Action::CompareMem as u64,
            width: u64::from(width.bytes()),
            operand,
            disp,
            op: compare_op(op),
            flags: flags.mask(),
            ..base
        },
    }
}

/// What the post-probe of `site` does, or why this runtime cannot do it.
fn update_work(site: &Site) -> Result<UpdateWork, String> {
    let recipe = &site.recipe;
    if let Some(place) = recipe.save {
        return Err(format!(
            "its pre-probe must save {} (saved inputs are not supported yet)",
            place_text(&place)
        ));
    }
    let operand = |addr: &Address, width: Width| -> Result<(u64, i64), String> {
        let packed = abi::pack_operand(addr, width)
            .ok_or_else(|| format!("memory operand {addr} uses %fs"))?;
        // The plan makes RIP-relative addresses relative to the span's start; the kernel
        // sees the post-probe's address.
        let disp = if addr.rip_relative {
            addr.disp + recipe.span.start as i64 - i64::from(site.probes.post)
        } else {
            addr.disp
        };
        Ok((packed, disp))
    };
    match recipe.update {
        Update::Load { dest } => {
            check_width(dest.width())?;
            match dest {
                Place::Reg { reg } if reg.gpr == kernelx_plan::Gpr::Rsp => {
                    Err("it writes %rsp, which a probe never rewrites".to_owned())
                }
                Place::Reg { reg } => Ok(UpdateWork::LoadReg { reg }),
                Place::Mem { addr, width } => {
                    let (operand, disp) = operand(&addr, width)?;
                    Ok(UpdateWork::LoadMem { operand, disp })
                }
            }
        }
        Update::Compare {
            op,
            width,
            input,
            flags,
        } => {
            check_width(width)?;
            if !FlagSet::ARITHMETIC.contains_all(flags) {
                return Err(format!(
                    "it writes flags other than the arithmetic ones ({flags})"
                ));
            }
            let Input::Read { place } = input else {
                return Err(format!(
                    "its compare input is {} (only values read at the post-probe are supported \
                     yet)",
                    input_kind(&input)
                ));
            };
            check_width(place.width())?;
            match place {
                Place::Reg { reg } => Ok(UpdateWork::CompareReg {
                    op,
                    width,
                    reg,
                    flags,
                }),
                Place::Mem { addr, width: read } => {
                    if addr.segment.is_some() {
                        return Err(format!(
                            "it compares the per-CPU operand {addr} (segment operands are not \
                             read yet)"
                        ));
                    }
                    let (operand, disp) = operand(&addr, read)?;
                    Ok(UpdateWork::CompareMem {
                        op,
                        width,
                        operand,
                        disp,
                        flags,
                    })
                }
            }
        }
        Update::Combine { op, .. } => Err(format!(
            "its update combines IV' with other inputs ({op:?}; not supported yet)"
        )),
        Update::Divide { .. } => {
            Err("its update recomputes a magic division (not supported yet)".to_owned())
        }
    }
}

fn check_width(width: Width) -> Result<(), String> {
    if width == Width::W1 {
        return Err("it has a 1-bit operand, which no x86 load or compare uses".to_owned());
    }
    Ok(())
}

fn place_text(place: &Place) -> String {
    match place {
        Place::Reg { reg } => reg.to_string(),
        Place::Mem { addr, width } => format!("{width} memory at {addr}"),
    }
}

fn input_kind(input: &Input) -> &'static str {
    match input {
        Input::Read { .. } => "read at the post-probe",
        Input::Address { .. } => "an address computed from registers",
        Input::Saved => "saved by a pre-probe",
        Input::Undo { .. } => "recovered by undoing the seed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernelx_plan::{Gpr, Plan, Segment};

    const PIPE_PLAN: &str = "../analyze/testdata/golden/pipe_def_buffers_fs.plan.json";

    #[track_caller]
    fn pipe_tunable() -> TunablePlan {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(PIPE_PLAN);
        let plan = Plan::read(&path).unwrap_or_else(|e| panic!("reading {PIPE_PLAN}: {e}"));
        plan.tunables
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("{PIPE_PLAN} has no tunable"))
    }

    #[track_caller]
    fn site<'a>(tunable: &'a mut TunablePlan, id: &str) -> &'a mut Site {
        tunable
            .sites
            .iter_mut()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("no site {id}"))
    }

    #[test]
    fn pipe_plan_becomes_probes_and_entries() {
        let program = SieProgram::from_plan(&pipe_tunable()).unwrap();
        let placed: Vec<_> = program
            .probes()
            .iter()
            .map(|p| (p.function(), p.offset(), p.role()))
            .collect();
        assert_eq!(
            placed[..4],
            [
                ("alloc_pipe_info", 0x71, ProbeRole::Post),
                ("alloc_pipe_info", 0x7c, ProbeRole::Post),
                ("alloc_pipe_info", 0x77, ProbeRole::Pre),
                ("alloc_pipe_info", 0x81, ProbeRole::Post),
            ]
        );
        let entries = program.entries(32).unwrap();
        // cmp $0xffff,%ebp becomes cmp $(4096*32-1),%ebp; both movs load 32.
        assert_eq!(entries[0].action, Action::CompareReg as u64);
        assert_eq!(entries[0].value, 4096 * 32 - 1);
        assert_eq!(entries[0].reg, abi::reg(Gpr::Rbp));
        assert_eq!(entries[0].width, 4);
        assert_eq!(entries[0].flags, FlagSet::ARITHMETIC.mask());
        assert_eq!(entries[0].mark, abi::NO_MARK);
        assert_eq!(
            (entries[1].action, entries[1].value, entries[1].reg),
            (Action::LoadReg as u64, 32, abi::reg(Gpr::Rax))
        );
        // The join point at +0x81 applies only after the pre-probe at +0x77.
        assert_eq!(
            (entries[2].action, entries[2].mark),
            (Action::Mark as u64, 0)
        );
        assert_eq!(
            (entries[3].action, entries[3].value, entries[3].mark),
            (Action::LoadReg as u64, 32, 0)
        );
    }

    /// The compare at +0x6b as if it read memory: `cmpl $0xffff,0x14(%rdi)`.
    fn compare_in_memory(tunable: &mut TunablePlan) -> &mut Address {
        let s = site(tunable, "fs/pipe.c:alloc_pipe_info+0x6b");
        let Update::Compare { input, .. } = &mut s.recipe.update else {
            panic!("alloc_pipe_info+0x6b is a compare");
        };
        *input = Input::Read {
            place: Place::Mem {
                addr: Address {
                    segment: None,
                    base: Some(Gpr::Rdi),
                    index: None,
                    scale: 1,
                    disp: 0x14,
                    rip_relative: false,
                },
                width: Width::W32,
            },
        };
        let Input::Read {
            place: Place::Mem { addr, .. },
        } = input
        else {
            unreachable!()
        };
        addr
    }

    #[test]
    fn a_compare_reads_memory_through_its_operand() {
        let mut tunable = pipe_tunable();
        compare_in_memory(&mut tunable);
        let program = SieProgram::from_plan(&tunable).unwrap();
        let e = program.entries(32).unwrap()[0];
        assert_eq!(e.action, Action::CompareMem as u64);
        assert_eq!(
            (e.operand & 0xff, (e.operand >> 8) & 0xff),
            (4, abi::reg(Gpr::Rdi))
        );
        assert_eq!((e.disp, e.value), (0x14, 4096 * 32 - 1));
    }

    #[test]
    fn out_of_range_values_name_the_range() {
        let program = SieProgram::from_plan(&pipe_tunable()).unwrap();
        let err = program.entries(0).unwrap_err().to_string();
        assert!(err.contains("[1, 1048576]"), "{err}");
        assert!(err.contains("PIPE_DEF_BUFFERS"), "{err}");
        assert!(program.entries(1_048_577).is_err());
        assert!(program.entries(1_048_576).is_ok());
    }

    #[test]
    fn unsupported_updates_are_refused_naming_the_site() {
        let mut tunable = pipe_tunable();
        let s = site(&mut tunable, "fs/pipe.c:alloc_pipe_info+0x77");
        s.recipe.save = Some(Place::Reg {
            reg: RegOperand::new(Gpr::Rax, Width::W32),
        });
        let err = SieProgram::from_plan(&tunable).unwrap_err().to_string();
        assert!(err.contains("fs/pipe.c:alloc_pipe_info+0x77"), "{err}");
        assert!(err.contains("save %eax"), "{err}");

        let mut tunable = pipe_tunable();
        let s = site(&mut tunable, "fs/pipe.c:alloc_pipe_info+0x6b");
        let Update::Compare { input, .. } = &mut s.recipe.update else {
            panic!("+0x6b is a compare");
        };
        *input = Input::Saved;
        let err = SieProgram::from_plan(&tunable).unwrap_err().to_string();
        assert!(
            err.contains("alloc_pipe_info+0x6b") && err.contains("saved"),
            "{err}"
        );

        let mut tunable = pipe_tunable();
        site(&mut tunable, "fs/pipe.c:alloc_pipe_info+0x7c")
            .recipe
            .update = Update::Combine {
            op: kernelx_plan::CombineOp::Add,
            dest: Place::Reg {
                reg: RegOperand::new(Gpr::Rbp, Width::W32),
            },
            input: Input::Saved,
            flags: FlagSet::EMPTY,
        };
        let err = SieProgram::from_plan(&tunable).unwrap_err().to_string();
        assert!(
            err.contains("alloc_pipe_info+0x7c") && err.contains("combines"),
            "{err}"
        );

        let mut tunable = pipe_tunable();
        site(&mut tunable, "fs/pipe.c:alloc_pipe_info+0x7c")
            .recipe
            .update = Update::Load {
            dest: Place::Reg {
                reg: RegOperand::full(Gpr::Rsp),
            },
        };
        let err = SieProgram::from_plan(&tunable).unwrap_err().to_string();
        assert!(err.contains("%rsp"), "{err}");
    }

    #[test]
    fn stores_and_rip_relative_operands_are_relative_to_the_probe() {
        let mut tunable = pipe_tunable();
        let s = site(&mut tunable, "fs/pipe.c:alloc_pipe_info+0x7c");
        // As if the seed were `movl $0x10, 0x100(%rip)` at +0x7c (span 0x7c..0x81).
        s.recipe.update = Update::Load {
            dest: Place::Mem {
                addr: Address {
                    segment: None,
                    base: None,
                    index: None,
                    scale: 1,
                    disp: 0x100,
                    rip_relative: true,
                },
                width: Width::W32,
            },
        };
        let program = SieProgram::from_plan(&tunable).unwrap();
        let entries = program.entries(64).unwrap();
        let store = entries[3];
        assert_eq!(store.action, Action::LoadMem as u64);
        assert_eq!(store.value, 64);
        assert_eq!(store.operand & 0xff, 4);
        // The span starts at 0x7c, the post-probe is at 0x81.
        assert_eq!(store.disp, 0x100 + 0x7c - 0x81);

        compare_in_memory(&mut tunable).segment = Some(Segment::Gs);
        let err = SieProgram::from_plan(&tunable).unwrap_err().to_string();
        assert!(
            err.contains("alloc_pipe_info+0x6b") && err.contains("per-CPU"),
            "{err}"
        );
    }

    #[test]
    fn a_tunable_without_sites_is_refused() {
        let mut tunable = pipe_tunable();
        tunable.sites.clear();
        let err = SieProgram::from_plan(&tunable).unwrap_err();
        assert!(matches!(err, SieError::NoSites { .. }), "{err}");
    }
}
