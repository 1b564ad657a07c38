//! From a tunable's plan to the probes of its SIE program and, for a value V', their map
//! entries. Pure: nothing here touches the kernel, so every refusal happens before a load
//! changes anything.

use kernelx_plan::{
    Address, CodeRange, CombineOp, CompareOp, FlagSet, Gpr, Input, Place, Recipe, RegOperand, Site,
    TunablePlan, TunableRange, UndoOp, Update, Width,
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
    /// The site's safe span: its index in [`SieProgram::spans`].
    span: Option<usize>,
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
    /// Save `reg` for the current task in `slot` (with its stack pointer), and mark it.
    Save { slot: u64, reg: RegOperand },
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
    CombineReg {
        op: abi::CombineOp,
        reg: RegOperand,
        input: CombineInput,
        /// The flags the update writes: those `op` defines that the consumer reads.
        flags: FlagSet,
    },
}

/// Where a combine's other operand comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CombineInput {
    Reg(RegOperand),
    Saved,
    Undo {
        reg: RegOperand,
        op: abi::CombineOp,
        operand: u64,
    },
}

/// A safe span of the tunable: where a task may still hold a value derived from the
/// constant, so a per-task or global transition waits for it to leave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramSpan {
    /// The span's id in the plan.
    pub id: String,
    /// The function it lies in.
    pub function: String,
    /// Its offset ranges in that function (half-open).
    pub ranges: Vec<CodeRange>,
}

/// The probes of one tunable, checked to be within what this runtime applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SieProgram {
    tunable: String,
    range: TunableRange,
    probes: Vec<Probe>,
    spans: Vec<ProgramSpan>,
}

impl SieProgram {
    /// The probes for every site of `tunable`, or the first site this runtime cannot apply:
    /// never a part of the tunable.
    ///
    /// Supported: [`Update::Load`] into a register or the memory just stored,
    /// [`Update::Compare`] of a register or memory operand (not `%gs`-relative) read at the
    /// post-probe, and [`Update::Combine`] into a register of a register read at the
    /// post-probe, recovered from the seed, or saved by the pre-probe; pre-probes that mark
    /// the path or save a register. Refused: dividing updates, combines into memory or of
    /// memory and address inputs, flags of shifts and `imul` that the consumer reads, and
    /// more probes than the program's map holds.
    pub fn from_plan(tunable: &TunablePlan) -> Result<SieProgram, SieError> {
        if tunable.sites.is_empty() {
            return Err(SieError::NoSites {
                tunable: tunable.name.clone(),
            });
        }
        let spans: Vec<ProgramSpan> = tunable
            .safe_spans
            .iter()
            .map(|span| ProgramSpan {
                id: span.id.clone(),
                function: span.function.clone(),
                ranges: span.ranges.clone(),
            })
            .collect();
        let mut probes = Vec::new();
        let mut marks = 0u64;
        for site in &tunable.sites {
            let unsupported = |what: String| SieError::Unsupported {
                tunable: tunable.name.clone(),
                site: site.id.clone(),
                what,
            };
            let span = spans.iter().position(|s| s.id == site.safe_span);
            let update = update_work(site).map_err(unsupported)?;
            let save = saved_reg(site).map_err(unsupported)?;
            let mark = match site.probes.pre {
                None => None,
                Some(offset) => {
                    let slot = marks;
                    marks += 1;
                    let work = match save {
                        Some(reg) => Work::Save { slot, reg },
                        None => Work::Mark { slot },
                    };
                    probes.push(Probe {
                        site: site.id.clone(),
                        function: site.function.clone(),
                        offset,
                        role: ProbeRole::Pre,
                        jump_optimizable: false,
                        span,
                        work,
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
                span,
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
        let ranges = spans.iter().map(|s| s.ranges.len()).sum::<usize>();
        if ranges > abi::MAX_RANGES {
            return Err(SieError::TooManySpanRanges {
                tunable: tunable.name.clone(),
                ranges,
                max: abi::MAX_RANGES,
            });
        }
        Ok(SieProgram {
            tunable: tunable.name.clone(),
            range: tunable.range.clone(),
            probes,
            spans,
        })
    }

    /// The tunable's safe spans.
    pub fn spans(&self) -> &[ProgramSpan] {
        &self.spans
    }

    /// The span index of `probe`'s site, as the program's entries carry it.
    fn span_code(probe: &Probe) -> u64 {
        probe.span.map_or(abi::NO_SPAN, |i| i as u64)
    }

    /// The entries of the compiled value: every probe does nothing (the code already computes
    /// V), but each still names its site's span.
    pub(crate) fn compiled_entries(&self) -> Vec<ProbeEntry> {
        self.probes
            .iter()
            .map(|probe| ProbeEntry {
                span: Self::span_code(probe),
                ..ProbeEntry::default()
            })
            .collect()
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
            .map_err(|reason| SieError::OutOfRange {
                tunable: self.tunable.clone(),
                reason,
            })?;
        self.probes
            .iter()
            .map(|probe| {
                let entry = self.work_entry(probe, value)?;
                Ok(ProbeEntry {
                    span: Self::span_code(probe),
                    ..entry
                })
            })
            .collect()
    }

    /// What `probe` does at V' = `value` (a value already checked against the range).
    fn work_entry(&self, probe: &Probe, value: i64) -> Result<ProbeEntry, SieError> {
        match &probe.work {
            Work::Mark { slot } => Ok(ProbeEntry {
                action: Action::Mark as u64,
                mark: *slot,
                ..ProbeEntry::default()
            }),
            Work::Save { slot, reg } => Ok(ProbeEntry {
                action: Action::SaveReg as u64,
                mark: *slot,
                reg: abi::reg(reg.gpr),
                width: u64::from(reg.width.bytes()),
                high8: u64::from(reg.high8),
                ..ProbeEntry::default()
            }),
            Work::Update {
                recipe,
                update,
                mark,
            } => {
                let iv = recipe
                    .iv(value)
                    .map_err(|reason| SieError::SiteOutOfRange {
                        tunable: self.tunable.clone(),
                        site: probe.site.clone(),
                        reason,
                    })?;
                Ok(update_entry(*update, iv, mark.unwrap_or(abi::NO_MARK)))
            }
        }
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
        UpdateWork::CombineReg {
            op,
            reg,
            input,
            flags,
        } => {
            let entry = ProbeEntry {
                action: Action::CombineReg as u64,
                reg: abi::reg(reg.gpr),
                width: u64::from(reg.width.bytes()),
                high8: u64::from(reg.high8),
                op: op as u64,
                flags: flags.mask(),
                ..base
            };
            let read = |from: RegOperand| ProbeEntry {
                input_reg: abi::reg(from.gpr),
                input_width: u64::from(from.width.bytes()),
                input_high8: u64::from(from.high8),
                ..entry
            };
            match input {
                CombineInput::Reg(from) => ProbeEntry {
                    input: abi::InputKind::Reg as u64,
                    ..read(from)
                },
                CombineInput::Saved => ProbeEntry {
                    input: abi::InputKind::Saved as u64,
                    ..entry
                },
                CombineInput::Undo {
                    reg: from,
                    op,
                    operand,
                } => ProbeEntry {
                    input: abi::InputKind::Undo as u64,
                    undo_op: op as u64,
                    undo_value: operand,
                    ..read(from)
                },
            }
        }
    }
}

/// The register the pre-probe of `site` saves, or why this runtime cannot save it. A save
/// only serves a combine's saved input: any other recipe that asks for one is refused.
fn saved_reg(site: &Site) -> Result<Option<RegOperand>, String> {
    let recipe = &site.recipe;
    let Some(place) = recipe.save else {
        return Ok(None);
    };
    let uses_saved = matches!(
        recipe.update,
        Update::Combine {
            input: Input::Saved,
            ..
        }
    );
    if !uses_saved {
        return Err(format!(
            "its pre-probe must save {} (saved inputs are supported for combines only)",
            place_text(&place)
        ));
    }
    if site.probes.pre.is_none() {
        return Err(format!(
            "it must save {} but the plan places no pre-probe",
            place_text(&place)
        ));
    }
    match place {
        Place::Reg { reg } => Ok(Some(reg)),
        Place::Mem { .. } => Err(format!(
            "its pre-probe must save {} (saving memory is not supported yet)",
            place_text(&place)
        )),
    }
}

/// What the post-probe of `site` does, or why this runtime cannot do it.
fn update_work(site: &Site) -> Result<UpdateWork, String> {
    let recipe = &site.recipe;
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
                Place::Reg { reg } if reg.gpr == Gpr::Rsp => {
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
        Update::Combine {
            op,
            dest,
            input,
            flags,
        } => combine_work(recipe, op, dest, input, flags),
        Update::Divide { .. } => {
            Err("its update recomputes a magic division (not supported yet)".to_owned())
        }
    }
}

fn combine_work(
    recipe: &Recipe,
    op: CombineOp,
    dest: Place,
    input: Input,
    flags: FlagSet,
) -> Result<UpdateWork, String> {
    let Place::Reg { reg } = dest else {
        return Err(format!(
            "its update combines IV' into {} (combines into memory are not supported yet)",
            place_text(&dest)
        ));
    };
    check_width(reg.width)?;
    if reg.gpr == Gpr::Rsp {
        return Err("it writes %rsp, which a probe never rewrites".to_owned());
    }
    // The reference also defines the flags nobody reads; leaving those as V1 left them
    // is not observable, and it keeps the program to the flags it computes.
    let flags = flags.intersection(recipe.consumers);
    if !FlagSet::ARITHMETIC.contains_all(flags) {
        return Err(format!(
            "it writes flags other than the arithmetic ones ({flags})"
        ));
    }
    let kx_op = match op {
        CombineOp::Add | CombineOp::Lea => abi::CombineOp::Add,
        CombineOp::Sub => abi::CombineOp::Sub,
        CombineOp::And => abi::CombineOp::And,
        CombineOp::Or => abi::CombineOp::Or,
        CombineOp::Xor => abi::CombineOp::Xor,
        CombineOp::Shl => abi::CombineOp::Shl,
        CombineOp::Shr => abi::CombineOp::Shr,
        CombineOp::Sar => abi::CombineOp::Sar,
        CombineOp::Imul => abi::CombineOp::Imul,
    };
    let computes_flags = !matches!(
        op,
        CombineOp::Shl | CombineOp::Shr | CombineOp::Sar | CombineOp::Imul
    );
    if !flags.is_empty() && !computes_flags {
        return Err(format!(
            "the code after it reads the flags ({flags}) of its {op:?} combine (only add, sub \
             and logic flags are computed yet)"
        ));
    }
    let read_reg = |place: Place| match place {
        Place::Reg { reg } => {
            check_width(reg.width)?;
            Ok(reg)
        }
        Place::Mem { .. } => Err(format!(
            "its combine input is {} (memory inputs are not supported yet)",
            place_text(&place)
        )),
    };
    let input = match input {
        Input::Read { place } => CombineInput::Reg(read_reg(place)?),
        Input::Saved if recipe.save.is_some() => CombineInput::Saved,
        Input::Saved => {
            return Err(
                "its combine input is saved by a pre-probe, but the recipe names \
                        nothing to save"
                    .to_owned(),
            );
        }
        Input::Undo { place, op, operand } => CombineInput::Undo {
            reg: read_reg(place)?,
            op: match op {
                UndoOp::Sub => abi::CombineOp::Sub,
                UndoOp::Add => abi::CombineOp::Add,
                UndoOp::Xor => abi::CombineOp::Xor,
                UndoOp::Mul => abi::CombineOp::Imul,
            },
            operand,
        },
        Input::Address { .. } => {
            return Err(format!(
                "its combine input is {} (not supported yet)",
                input_kind(&input)
            ));
        }
    };
    Ok(UpdateWork::CombineReg {
        op: kx_op,
        reg,
        input,
        flags,
    })
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
        let refused = program.entries(0).unwrap_err();
        // The reason is in the message only: a report printing causes would repeat it.
        assert!(std::error::Error::source(&refused).is_none());
        let err = refused.to_string();
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
            err.contains("alloc_pipe_info+0x7c") && err.contains("nothing to save"),
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

    #[track_caller]
    fn target_tunable(constant: &str) -> TunablePlan {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("{TARGET_PLANS}/{constant}.plan.json"));
        let plan = Plan::read(&path).unwrap_or_else(|e| panic!("reading {path:?}: {e}"));
        plan.tunables
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("{path:?} has no tunable"))
    }

    const TARGET_PLANS: &str = "../analyze/testdata/golden/target_module";

    /// The post-probe entry of a one-site tunable for V' = `value`, and its pre-probe's.
    #[track_caller]
    fn combine_entries(constant: &str, value: i64) -> (ProbeEntry, Option<ProbeEntry>) {
        let program = SieProgram::from_plan(&target_tunable(constant)).unwrap();
        let entries = program.entries(value).unwrap();
        match entries[..] {
            [post] => (post, None),
            [pre, post] => (post, Some(pre)),
            _ => panic!("{constant}: {} probes", entries.len()),
        }
    }

    #[test]
    fn combines_undoing_the_seed_recover_the_input_with_iv_of_v1() {
        let rax = abi::reg(Gpr::Rax);
        // (constant, op, undo op, its constant: IV(V1) or its inverse)
        for (constant, op, undo, operand) in [
            (
                "KX_TARGET_ADD",
                abi::CombineOp::Add,
                abi::CombineOp::Sub,
                0x2a5,
            ),
            (
                "KX_TARGET_SUB",
                abi::CombineOp::Sub,
                abi::CombineOp::Add,
                0x1d3,
            ),
            (
                "KX_TARGET_LEA",
                abi::CombineOp::Add,
                abi::CombineOp::Sub,
                0x3c1,
            ),
            (
                "KX_TARGET_XOR",
                abi::CombineOp::Xor,
                abi::CombineOp::Xor,
                0x5a5a5,
            ),
            (
                "KX_TARGET_IMUL",
                abi::CombineOp::Imul,
                abi::CombineOp::Imul,
                12_988_774_525_627_339_901,
            ),
        ] {
            let (post, pre) = combine_entries(constant, 1000);
            assert_eq!(pre, None, "{constant}");
            assert_eq!(post.action, Action::CombineReg as u64, "{constant}");
            assert_eq!((post.op, post.value), (op as u64, 1000), "{constant}");
            assert_eq!(
                (post.reg, post.width, post.high8),
                (rax, 8, 0),
                "{constant}"
            );
            assert_eq!(post.input, abi::InputKind::Undo as u64, "{constant}");
            assert_eq!(
                (
                    post.input_reg,
                    post.input_width,
                    post.undo_op,
                    post.undo_value
                ),
                (rax, 8, undo as u64, operand),
                "{constant}"
            );
            // Nothing after the span reads the flags: they stay as V1 left them.
            assert_eq!(post.flags, 0, "{constant}");
            assert_eq!(post.mark, abi::NO_MARK, "{constant}");
        }
        // The inverse of 1237 modulo 2^64 undoes the seed.
        let (imul, _) = combine_entries("KX_TARGET_IMUL", 3);
        assert_eq!(imul.undo_value.wrapping_mul(1237), 1);
    }

    #[test]
    fn combines_of_a_destroyed_input_save_it_at_the_pre_probe() {
        let rax = abi::reg(Gpr::Rax);
        for (constant, op, width, value) in [
            ("KX_TARGET_SHL", abi::CombineOp::Shl, 8, 9),
            ("KX_TARGET_SHR", abi::CombineOp::Shr, 8, 2),
            ("KX_TARGET_SAR", abi::CombineOp::Sar, 4, 6),
            ("KX_TARGET_AND", abi::CombineOp::And, 4, 0x3c3c),
            ("KX_TARGET_OR", abi::CombineOp::Or, 8, 0x101),
        ] {
            let (post, pre) = combine_entries(constant, value);
            let pre = pre.unwrap_or_else(|| panic!("{constant} has no pre-probe"));
            assert_eq!(
                (pre.action, pre.reg, pre.width, pre.high8),
                (Action::SaveReg as u64, rax, width, 0),
                "{constant}"
            );
            assert_eq!(post.action, Action::CombineReg as u64, "{constant}");
            assert_eq!(post.input, abi::InputKind::Saved as u64, "{constant}");
            assert_eq!(
                (post.op, post.value),
                (op as u64, value as u64),
                "{constant}"
            );
            assert_eq!((post.reg, post.width), (rax, width), "{constant}");
            // The post-probe takes the value its own pre-probe saved.
            assert_eq!(post.mark, pre.mark, "{constant}");
            assert_ne!(post.mark, abi::NO_MARK, "{constant}");
        }
    }

    #[test]
    fn combines_in_a_shared_tunable_sit_beside_loads() {
        let program = SieProgram::from_plan(&target_tunable("KX_TARGET_SHARED")).unwrap();
        let entries = program.entries(77).unwrap();
        let actions: Vec<_> = entries.iter().map(|e| e.action).collect();
        assert_eq!(
            actions,
            [
                Action::LoadReg as u64,
                Action::LoadReg as u64,
                Action::CombineReg as u64
            ]
        );
        assert_eq!((entries[2].value, entries[2].undo_value), (77, 0x5a5));
        let (block, None) = combine_entries("KX_TARGET_BLOCK", 5) else {
            panic!("KX_TARGET_BLOCK has no pre-probe");
        };
        assert_eq!(
            (block.reg, block.input_reg, block.undo_value),
            (abi::reg(Gpr::Rbx), abi::reg(Gpr::Rbx), 0x6b1d)
        );
    }

    #[test]
    fn combines_write_the_flags_their_consumer_reads() {
        let mut tunable = target_tunable("KX_TARGET_ADD");
        tunable.sites[0].recipe.consumers = FlagSet::from_rflags(0x41); // CF|ZF
        let program = SieProgram::from_plan(&tunable).unwrap();
        assert_eq!(program.entries(1).unwrap()[0].flags, 0x41);

        let mut tunable = target_tunable("KX_TARGET_SHL");
        tunable.sites[0].recipe.consumers = FlagSet::from_rflags(0x40); // ZF
        let err = SieProgram::from_plan(&tunable).unwrap_err().to_string();
        assert!(
            err.contains("kx_target_shl+0xc") && err.contains("Shl") && err.contains("flags"),
            "{err}"
        );
    }

    #[test]
    fn unsupported_combines_are_refused_naming_the_site() {
        let refusal = |constant: &str, change: &dyn Fn(&mut Recipe)| {
            let mut tunable = target_tunable(constant);
            change(&mut tunable.sites[0].recipe);
            SieProgram::from_plan(&tunable).unwrap_err().to_string()
        };
        let mem = Place::Mem {
            addr: Address {
                segment: None,
                base: Some(Gpr::Rdi),
                index: None,
                scale: 1,
                disp: 8,
                rip_relative: false,
            },
            width: Width::W64,
        };
        let err = refusal("KX_TARGET_ADD", &|r| {
            if let Update::Combine { dest, .. } = &mut r.update {
                *dest = mem;
            }
        });
        assert!(
            err.contains("kx_target_add+0xc") && err.contains("memory"),
            "{err}"
        );
        let err = refusal("KX_TARGET_ADD", &|r| {
            if let Update::Combine { input, .. } = &mut r.update {
                *input = Input::Read { place: mem };
            }
        });
        assert!(err.contains("memory inputs"), "{err}");
        let err = refusal("KX_TARGET_ADD", &|r| {
            if let Update::Combine { input, .. } = &mut r.update {
                *input = Input::Address {
                    base: Some(Gpr::Rdi),
                    index: None,
                    scale: 1,
                };
            }
        });
        assert!(err.contains("an address computed"), "{err}");
        let err = refusal("KX_TARGET_OR", &|r| r.save = Some(mem));
        assert!(
            err.contains("kx_target_or+0xc") && err.contains("saving memory"),
            "{err}"
        );
        let mut tunable = target_tunable("KX_TARGET_OR");
        tunable.sites[0].probes.pre = None;
        let err = SieProgram::from_plan(&tunable).unwrap_err().to_string();
        assert!(err.contains("no pre-probe"), "{err}");
    }

    #[test]
    fn a_tunable_without_sites_is_refused() {
        let mut tunable = pipe_tunable();
        tunable.sites.clear();
        let err = SieProgram::from_plan(&tunable).unwrap_err();
        assert!(matches!(err, SieError::NoSites { .. }), "{err}");
    }
}
