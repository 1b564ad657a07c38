//! From a tunable's plan to the probes of its SIE program and, for a value V', their map
//! entries. Pure: nothing here touches the kernel, so every refusal happens before a load
//! changes anything.

use kernelx_plan::MagicMismatch;
use kernelx_plan::magic::check_form;
use kernelx_plan::{
    Address, BoundReason, CodeRange, CombineOp, CompareOp, FlagSet, Gpr, Input, MagicForm,
    OutOfRange, Place, Recipe, RegOperand, Relation, Restriction, Site, TunablePlan, TunableRange,
    UndoOp, Update, Width,
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
    Divide {
        /// The site's sequence and width, for the multiplier and shift of V'.
        form: MagicForm,
        width: Width,
        /// The sequence as the program computes it.
        kx_form: abi::DivideForm,
        dividend: DivideInput,
        dest: Gpr,
        /// The other register the sequence writes (unused by `Imul` and `Mul`).
        temp: Gpr,
    },
}

/// Where a division's dividend comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DivideInput {
    Reg(RegOperand),
    Mem { operand: u64, disp: i64 },
    Saved,
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
    /// post-probe, recovered from the seed, or saved by the pre-probe; [`Update::Divide`] of
    /// every magic form, its dividend a register or memory operand read at the post-probe or
    /// a register the pre-probe saved (the fix-up reading the dividend again); pre-probes
    /// that mark the path or save a register. Refused: combines into memory or of memory and
    /// address inputs, flags of shifts, `imul` and divisions that the consumer reads, a
    /// division that writes its own input, and more probes than the program's map holds.
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

    /// The map entries of an X-tune policy generation: pre-probes as for `default`, and
    /// every update probe computing IV' from the V' the policy chooses per trigger, within
    /// the tunable's range (`bound` says what happens to a value outside it). `default` is
    /// what the policy is given and what a rejected value falls back to. Refuses a tunable
    /// with a division site: the program cannot derive a magic multiplier per trigger.
    pub(crate) fn policy_entries(
        &self,
        default: i64,
        bound: PolicyBound,
    ) -> Result<Vec<ProbeEntry>, SieError> {
        let mut entries = self.entries(default)?;
        let pow2 = self
            .range
            .restrictions
            .iter()
            .any(|r| r.restriction == Restriction::PowerOfTwo);
        let vflags = match bound {
            PolicyBound::Reject => 0,
            PolicyBound::Clamp => abi::V_CLAMP,
        } | if pow2 { abi::V_POW2 } else { 0 };
        for (probe, entry) in self.probes.iter().zip(&mut entries) {
            let Some((recipe, rel, rel_a, rel_b)) = self.policy_relation(probe)? else {
                continue;
            };
            *entry = ProbeEntry {
                policy: 1,
                rel: rel as u64,
                rel_a,
                rel_b,
                iv_mask: recipe.iv_width.mask(),
                vmin: self.range.min,
                vmax: self.range.max,
                vflags,
                dflt: default,
                ..*entry
            };
        }
        Ok(entries)
    }

    /// Whether an X-tune policy can drive every site (not a division: the program cannot
    /// derive a magic multiplier per trigger); the site that cannot, named.
    pub fn check_policy(&self) -> Result<(), SieError> {
        for probe in &self.probes {
            self.policy_relation(probe)?;
        }
        Ok(())
    }

    /// The recipe and IV' = f(V') of an update probe, as a policy entry carries it; `None`
    /// for a pre-probe.
    fn policy_relation<'p>(
        &self,
        probe: &'p Probe,
    ) -> Result<Option<(&'p Recipe, abi::RelationCode, i64, i64)>, SieError> {
        let Work::Update { recipe, .. } = &probe.work else {
            return Ok(None);
        };
        let (rel, a, b) = match recipe.relation {
            Relation::Affine { a, b } => (abi::RelationCode::Affine, a, b),
            Relation::Exp2 { k, b } => (abi::RelationCode::Exp2, k, b),
            Relation::Log2 { a, b } => (abi::RelationCode::Log2, a, b),
            Relation::UnsignedDivision { .. } | Relation::SignedDivision { .. } => {
                return Err(SieError::PolicyUnsupported {
                    tunable: self.tunable.clone(),
                    site: probe.site.clone(),
                    what: format!(
                        "its code divides by the value ({}); the program cannot derive a \
                         division's magic multiplier per trigger",
                        recipe.relation
                    ),
                });
            }
        };
        Ok(Some((recipe, rel, a, b)))
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
                // The range check above admits only V' of a division site's shape.
                update_entry(*update, iv, mark.unwrap_or(abi::NO_MARK), value).map_err(|mismatch| {
                    SieError::SiteOutOfRange {
                        tunable: self.tunable.clone(),
                        site: probe.site.clone(),
                        reason: OutOfRange {
                            value,
                            min: recipe.range.min,
                            max: recipe.range.max,
                            reason: BoundReason::MagicShape { mismatch },
                        },
                    }
                })
            }
        }
    }
}

/// What a policy generation does with a value outside the tunable's range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyBound {
    /// The trigger uses the default instead (counted as rejected).
    #[default]
    Reject,
    /// The nearest valid value (counted as clamped).
    Clamp,
}

impl PolicyBound {
    /// `reject` or `clamp`.
    pub fn name(self) -> &'static str {
        match self {
            PolicyBound::Reject => "reject",
            PolicyBound::Clamp => "clamp",
        }
    }
}

/// The entry of `update` for IV' = `iv` and V' = `value` (a division's multiplier and shift
/// derive from V' itself); refuses a V' the division's sequence does not compute.
fn update_entry(
    update: UpdateWork,
    iv: u64,
    mark: u64,
    value: i64,
) -> Result<ProbeEntry, MagicMismatch> {
    let base = ProbeEntry {
        value: iv,
        mark,
        ..ProbeEntry::default()
    };
    let compare_op = |op| match op {
        CompareOp::Cmp => abi::COMPARE_CMP,
        CompareOp::Test => abi::COMPARE_TEST,
    };
    Ok(match update {
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
        UpdateWork::Divide {
            form,
            width,
            kx_form,
            dividend,
            dest,
            temp,
        } => {
            let (multiplier, shift) = check_form(value, width, form)?;
            let entry = ProbeEntry {
                action: Action::Divide as u64,
                reg: abi::reg(dest),
                width: u64::from(width.bytes()),
                op: kx_form as u64,
                multiplier,
                shift: u64::from(shift),
                temp: abi::reg(temp),
                ..base
            };
            match dividend {
                DivideInput::Reg(reg) => ProbeEntry {
                    input: abi::InputKind::Reg as u64,
                    input_reg: abi::reg(reg.gpr),
                    input_width: u64::from(reg.width.bytes()),
                    input_high8: u64::from(reg.high8),
                    ..entry
                },
                DivideInput::Mem { operand, disp } => ProbeEntry {
                    input: abi::InputKind::Mem as u64,
                    operand,
                    disp,
                    ..entry
                },
                DivideInput::Saved => ProbeEntry {
                    input: abi::InputKind::Saved as u64,
                    ..entry
                },
            }
        }
    })
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
        } | Update::Divide {
            dividend: Input::Saved,
            ..
        }
    );
    if !uses_saved {
        return Err(format!(
            "its pre-probe must save {} (saved inputs are supported for combines and \
             dividends only)",
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
    let operand = |addr: &Address, width: Width| memory_operand(site, addr, width);
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
        Update::Divide { .. } => divide_work(site),
    }
}

/// The packed memory operand of `site` and its displacement as the post-probe sees it.
fn memory_operand(site: &Site, addr: &Address, width: Width) -> Result<(u64, i64), String> {
    let packed =
        abi::pack_operand(addr, width).ok_or_else(|| format!("memory operand {addr} uses %fs"))?;
    // The plan makes RIP-relative addresses relative to the span's start; the kernel
    // sees the post-probe's address.
    let disp = if addr.rip_relative {
        addr.disp + site.recipe.span.start as i64 - i64::from(site.probes.post)
    } else {
        addr.disp
    };
    Ok((packed, disp))
}

/// The post-probe of the magic division of `site` (see [`update_work`]).
fn divide_work(site: &Site) -> Result<UpdateWork, String> {
    let recipe = &site.recipe;
    let Update::Divide {
        width,
        form,
        dividend: input,
        fixup,
        dest,
        temp,
        flags,
    } = recipe.update
    else {
        unreachable!("update_work passes divisions only");
    };
    // What the dividend is, and the registers reading it uses.
    let (dividend, reads) = match input {
        Input::Read {
            place: Place::Reg { reg },
        } => {
            check_width(reg.width)?;
            (DivideInput::Reg(reg), vec![reg.gpr])
        }
        Input::Read {
            place: Place::Mem { addr, width: read },
        } => {
            if addr.segment.is_some() {
                return Err(format!(
                    "it divides the per-CPU operand {addr} (segment operands are not read yet)"
                ));
            }
            check_width(read)?;
            let (operand, disp) = memory_operand(site, &addr, read)?;
            let regs = addr.base.into_iter().chain(addr.index).collect();
            (DivideInput::Mem { operand, disp }, regs)
        }
        Input::Saved if recipe.save.is_some() => (DivideInput::Saved, Vec::new()),
        Input::Saved => {
            return Err(
                "its dividend is saved by a pre-probe, but the recipe names nothing to save"
                    .to_owned(),
            );
        }
        Input::Address { .. } | Input::Undo { .. } => {
            return Err(format!(
                "its dividend is {} (only values read at the post-probe or saved by a \
                 pre-probe are supported yet)",
                input_kind(&input)
            ));
        }
    };
    // As for combines: the flags nobody reads may stay as V1 left them.
    let flags = flags.intersection(recipe.consumers);
    if !flags.is_empty() {
        return Err(format!(
            "the code after it reads the flags ({flags}) of its division's last instruction \
             (not computed yet)"
        ));
    }
    let needs_temp = |what: &str| {
        temp.ok_or_else(|| format!("its {form} division names no register for {what}"))
    };
    let (kx_form, temp) = match form {
        MagicForm::ImulImmediate => (abi::DivideForm::Imul, dest),
        MagicForm::ImulRegister => match temp {
            Some(t) => (abi::DivideForm::ImulReg, t),
            None => (abi::DivideForm::Imul, dest),
        },
        MagicForm::Mul { .. } => (abi::DivideForm::Mul, dest),
        MagicForm::ImulImmediateAdd { into_high } => {
            let t = needs_temp("the fix-up")?;
            // The fix-up starts from the dividend's low 32 bits: the program reads the
            // dividend once.
            let fixup = fixup.ok_or_else(|| {
                "its add fix-up division names no input for the fix-up".to_owned()
            })?;
            let same_value = fixup == input
                || matches!(
                    (fixup, dividend),
                    (Input::Read { place: Place::Reg { reg: f } }, DivideInput::Reg(d))
                        if f.gpr == d.gpr && !f.high8 && !d.high8
                            && f.width.bits() >= 32 && d.width.bits() >= 32
                );
            if !same_value {
                return Err(
                    "its add fix-up reads another value than the dividend's low 32 bits (not \
                     supported yet)"
                        .to_owned(),
                );
            }
            let kx_form = if into_high {
                abi::DivideForm::ImulAddHigh
            } else {
                abi::DivideForm::ImulAdd
            };
            (kx_form, t)
        }
        MagicForm::SignedImulAdd => (abi::DivideForm::SignedAdd, needs_temp("the sign")?),
    };
    let written: Vec<Gpr> = match kx_form {
        abi::DivideForm::Imul => vec![dest],
        abi::DivideForm::Mul => vec![dest, Gpr::Rax, Gpr::Rdx],
        _ => vec![dest, temp],
    };
    if written.contains(&Gpr::Rsp) {
        return Err("it writes %rsp, which a probe never rewrites".to_owned());
    }
    // Both sites of a division (multiplier and shift) apply the whole update at the same
    // post-probe: it must read nothing it writes, so that applying it twice is applying it
    // once.
    if let Some(gpr) = reads.iter().find(|r| written.contains(r)) {
        return Err(format!(
            "its division reads %{} and also writes it (the probes of the multiplier and the \
             shift both apply it at one post-probe, so it must not change its own input)",
            gpr.name()
        ));
    }
    Ok(UpdateWork::Divide {
        form,
        width,
        kx_form,
        dividend,
        dest,
        temp,
    })
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
    fn divisions_carry_the_magic_of_v_prime() {
        // kx_target_div: movabs $m,%rax; mul (%rdi); mov %rdx,%rax; shr $s,%rax. Both sites
        // (multiplier, shift) apply the whole division at +0x20.
        let program = SieProgram::from_plan(&target_tunable("KX_TARGET_DIV")).unwrap();
        let entries = program.entries(10).unwrap();
        assert_eq!(entries.len(), 2);
        for (e, iv) in entries.iter().zip([0xcccc_cccc_cccc_cccd, 3]) {
            assert_eq!(e.action, Action::Divide as u64);
            assert_eq!(e.op, abi::DivideForm::Mul as u64);
            assert_eq!(
                (e.multiplier, e.shift, e.value),
                (0xcccc_cccc_cccc_cccd, 3, iv)
            );
            assert_eq!((e.reg, e.width), (abi::reg(Gpr::Rax), 8));
            assert_eq!(e.input, abi::InputKind::Mem as u64);
            assert_eq!(
                (e.operand & 0xff, (e.operand >> 8) & 0xff, e.disp),
                (8, abi::reg(Gpr::Rdi), 0)
            );
            assert_eq!((e.flags, e.mark), (0, abi::NO_MARK));
        }

        // kx_target_mod: the add fix-up into %edx, the high half in %rcx, the dividend in
        // %eax; then imul $V (a combine) at +0x24.
        let program = SieProgram::from_plan(&target_tunable("KX_TARGET_MOD")).unwrap();
        let entries = program.entries(7).unwrap();
        for e in &entries[..2] {
            assert_eq!(e.action, Action::Divide as u64);
            assert_eq!(e.op, abi::DivideForm::ImulAdd as u64);
            assert_eq!((e.multiplier, e.shift), (0x2492_4925, 2));
            assert_eq!(
                (e.reg, e.temp, e.width),
                (abi::reg(Gpr::Rdx), abi::reg(Gpr::Rcx), 4)
            );
            assert_eq!(
                (e.input, e.input_reg, e.input_width),
                (abi::InputKind::Reg as u64, abi::reg(Gpr::Rax), 4)
            );
        }
        assert_eq!(
            (entries[2].action, entries[2].value),
            (Action::CombineReg as u64, 7)
        );

        // kx_target_sdiv: the dividend %edx is saved before the sequence overwrites it.
        let program = SieProgram::from_plan(&target_tunable("KX_TARGET_SDIV")).unwrap();
        let entries = program.entries(31).unwrap();
        let roles: Vec<_> = program.probes().iter().map(|p| p.role()).collect();
        assert_eq!(
            roles,
            [
                ProbeRole::Pre,
                ProbeRole::Post,
                ProbeRole::Pre,
                ProbeRole::Post
            ]
        );
        for pair in entries.chunks(2) {
            let [pre, post] = pair else { unreachable!() };
            assert_eq!(
                (pre.action, pre.reg, pre.width),
                (Action::SaveReg as u64, abi::reg(Gpr::Rdx), 4)
            );
            assert_eq!(post.op, abi::DivideForm::SignedAdd as u64);
            assert_eq!((post.multiplier, post.shift), (0x8421_0843, 4));
            assert_eq!(
                (post.reg, post.temp),
                (abi::reg(Gpr::Rax), abi::reg(Gpr::Rdx))
            );
            assert_eq!(post.input, abi::InputKind::Saved as u64);
            assert_eq!(post.mark, pre.mark);
        }
    }

    #[test]
    fn divisors_of_another_shape_are_refused_with_the_reason() {
        for (constant, value, reason) in [
            ("KX_TARGET_DIV", 1000, "pre-shift"),
            ("KX_TARGET_DIV", 7, "n+1 bits"),
            ("KX_TARGET_DIV", 16, "power of two"),
            ("KX_TARGET_MOD", 10, "no add-fixup"),
            ("KX_TARGET_MOD", 19, "imm32"),
            ("KX_TARGET_SDIV", 13, "no add-fixup"),
            ("KX_TARGET_SDIV", 0, "division by zero"),
        ] {
            let program = SieProgram::from_plan(&target_tunable(constant)).unwrap();
            let err = program.entries(value).unwrap_err().to_string();
            assert!(
                err.contains(constant) && err.contains(reason),
                "{constant} = {value}: {err}"
            );
        }
    }

    #[test]
    fn unsupported_divisions_are_refused_naming_the_site() {
        let refusal = |constant: &str, change: &dyn Fn(&mut Recipe)| {
            let mut tunable = target_tunable(constant);
            for site in &mut tunable.sites {
                change(&mut site.recipe);
            }
            SieProgram::from_plan(&tunable).unwrap_err().to_string()
        };
        let with_update = |change: fn(&mut Update)| move |r: &mut Recipe| change(&mut r.update);
        let err = refusal(
            "KX_TARGET_DIV",
            &with_update(|u| {
                if let Update::Divide { dividend, .. } = u {
                    *dividend = Input::Undo {
                        place: Place::Reg {
                            reg: RegOperand::full(Gpr::Rcx),
                        },
                        op: UndoOp::Sub,
                        operand: 1,
                    };
                }
            }),
        );
        assert!(
            err.contains("kx_target_div+0x9") && err.contains("undoing the seed"),
            "{err}"
        );
        // The quotient overwriting the dividend: the other site's probe would divide again.
        let err = refusal(
            "KX_TARGET_MOD",
            &with_update(|u| {
                if let Update::Divide { dest, .. } = u {
                    *dest = Gpr::Rax;
                }
            }),
        );
        assert!(
            err.contains("kx_target_mod+0x10") && err.contains("%rax"),
            "{err}"
        );
        let err = refusal(
            "KX_TARGET_DIV",
            &with_update(|u| {
                if let Update::Divide { dividend, .. } = u {
                    *dividend = Input::Read {
                        place: Place::Mem {
                            addr: Address {
                                segment: None,
                                base: Some(Gpr::Rdx),
                                index: None,
                                scale: 1,
                                disp: 0,
                                rip_relative: false,
                            },
                            width: Width::W64,
                        },
                    };
                }
            }),
        );
        assert!(err.contains("%rdx"), "{err}");
        let err = refusal(
            "KX_TARGET_MOD",
            &with_update(|u| {
                if let Update::Divide { fixup, .. } = u {
                    *fixup = Some(Input::Read {
                        place: Place::Reg {
                            reg: RegOperand::new(Gpr::Rsi, Width::W32),
                        },
                    });
                }
            }),
        );
        assert!(err.contains("fix-up"), "{err}");
        let err = refusal(
            "KX_TARGET_SDIV",
            &with_update(|u| {
                if let Update::Divide { temp, .. } = u {
                    *temp = None;
                }
            }),
        );
        assert!(err.contains("no register for the sign"), "{err}");
        let err = refusal("KX_TARGET_SDIV", &|r| r.save = None);
        assert!(err.contains("nothing to save"), "{err}");
        let err = refusal("KX_TARGET_DIV", &|r| {
            r.consumers = FlagSet::from_rflags(0x40); // ZF
        });
        assert!(
            err.contains("kx_target_div+0x9") && err.contains("flags"),
            "{err}"
        );
    }

    /// The division arithmetic of bpf/sie.h (`kx_divide`), compiled for the host, against
    /// the hardware's division (Rust's `/`) and 128-bit products, for every divisor up to
    /// 3000 of each sequence and some large ones, over edge and pseudo-random dividends.
    #[test]
    fn the_programs_division_arithmetic_divides_exactly() {
        use std::fmt::Write as _;

        let dir = tempfile::tempdir().unwrap();
        let binary = sie_h_harness(
            dir.path(),
            "\t__u64 form, x, m, s;\n\
             \twhile (scanf(\"%llu %llu %llu %llu\", &form, &x, &m, &s) == 4) {\n\
             \t\tstruct kx_quotient r = kx_divide(form, x, m, s);\n\
             \t\tprintf(\"%llu %llu %llu %llu\\n\", r.q, r.temp, r.lo, r.hi);\n\
             \t}\n",
        );

        // (form, x, m, s) and what the sequence must leave: (q, temp, lo, hi).
        let mut cases: Vec<([u64; 4], [u64; 4])> = Vec::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = move || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            seed ^ (seed >> 29)
        };
        let mut divisors: Vec<u64> = (2..3000).collect();
        divisors.extend((0..300).map(|i| (random() >> (i % 40)) | 3));
        for &d in &divisors {
            let mut xs: Vec<u64> = vec![0, 1, d - 1, d, d + 1, u64::MAX, 1 << 63, 1 << 32];
            xs.extend([u32::MAX, 1 << 31, (1 << 31) - 1].map(u64::from));
            xs.extend((0..12).map(|_| random()));
            let d_i64 = i64::try_from(d).unwrap_or(i64::MAX);
            for form in [
                MagicForm::Mul { shifted: true },
                MagicForm::Mul { shifted: false },
            ] {
                let Ok((m, s)) = check_form(d_i64, Width::W64, form) else {
                    continue;
                };
                for &x in &xs {
                    let product = u128::from(x) * u128::from(m);
                    let expected = [x / d, 0, product as u64, (product >> 64) as u64];
                    cases.push(([abi::DivideForm::Mul as u64, x, m, s.into()], expected));
                }
            }
            for (form, kx_form) in [
                (MagicForm::ImulImmediate, abi::DivideForm::Imul),
                (MagicForm::ImulRegister, abi::DivideForm::ImulReg),
            ] {
                let Ok((m, s)) = check_form(d_i64, Width::W32, form) else {
                    continue;
                };
                let temp = if kx_form == abi::DivideForm::ImulReg {
                    m
                } else {
                    0
                };
                for x in xs.iter().map(|&x| x & 0xffff_ffff) {
                    cases.push(([kx_form as u64, x, m, s.into()], [x / d, temp, 0, 0]));
                }
            }
            for (into_high, kx_form) in [
                (false, abi::DivideForm::ImulAdd),
                (true, abi::DivideForm::ImulAddHigh),
            ] {
                let form = MagicForm::ImulImmediateAdd { into_high };
                let Ok((m, s)) = check_form(d_i64, Width::W32, form) else {
                    continue;
                };
                for x in xs.iter().map(|&x| x & 0xffff_ffff) {
                    // The high half of x * (2^32 + m), less x; and the halved difference.
                    let high = ((u128::from(x) * (u128::from(m) + (1 << 32))) >> 32) as u64 - x;
                    let temp = if into_high { (x - high) >> 1 } else { high };
                    cases.push(([kx_form as u64, x, m, s.into()], [x / d, temp, 0, 0]));
                }
            }
            if let Ok((m, s)) = check_form(d_i64, Width::W32, MagicForm::SignedImulAdd) {
                for &x in &xs {
                    // Only the low 32 bits are the dividend.
                    let x32 = x as u32 as i32;
                    let q = u64::from((x32 / d as i32) as u32);
                    let sign = u64::from((x32 >> 31) as u32);
                    let form = abi::DivideForm::SignedAdd as u64;
                    cases.push(([form, x, m, s.into()], [q, sign, 0, 0]));
                }
            }
        }
        let input = cases.iter().fold(String::new(), |mut text, (args, _)| {
            let [form, x, m, s] = args;
            let _ = writeln!(text, "{form} {x} {m} {s}");
            text
        });
        let results = run_harness(&binary, &input);
        assert_eq!(results.len(), cases.len());
        for ((args, expected), line) in cases.iter().zip(&results) {
            let got: Vec<u64> = line.split(' ').map(|n| n.parse().unwrap()).collect();
            assert_eq!(got, expected, "kx_divide{args:?}");
        }
        // Every sequence was exercised, on many divisors.
        for form in 0..6u64 {
            let n = cases.iter().filter(|(args, _)| args[0] == form).count();
            assert!(n > 5_000, "form {form}: {n} cases");
        }
    }

    /// A host program whose `main` is `body`, with bpf/sie.h included (clang -O2), in `dir`:
    /// the very arithmetic the BPF program runs, for the host tests to check.
    fn sie_h_harness(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
        use std::process::Command;

        let harness = dir.join("harness.c");
        std::fs::write(
            &harness,
            format!(
                "typedef unsigned char __u8;\n\
                 typedef unsigned int __u32;\n\
                 typedef unsigned long long __u64;\n\
                 typedef int __s32;\n\
                 typedef long long __s64;\n\
                 #include <stdio.h>\n\
                 #include \"sie.h\"\n\
                 int main(void)\n\
                 {{\n{body}\treturn 0;\n}}\n"
            ),
        )
        .unwrap();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let binary = dir.join("harness");
        let clang = std::env::var_os("CLANG").unwrap_or_else(|| "clang".into());
        let output = Command::new(&clang)
            .args(["-O2", "-Wall", "-Werror", "-o"])
            .arg(&binary)
            .arg(format!("-I{}", root.join("bpf").display()))
            .arg(format!("-I{}", root.join("kmod/include").display()))
            .arg(&harness)
            .output()
            .unwrap_or_else(|e| panic!("running {clang:?} (the BPF build needs it too): {e}"));
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        binary
    }

    /// Runs `binary` on `input`; its output lines.
    fn run_harness(binary: &std::path::Path, input: &str) -> Vec<String> {
        use std::io::Write as _;
        use std::process::{Command, Stdio};

        let mut child = Command::new(binary)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_owned();
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let output = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(output.status.success());
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The policy arithmetic of bpf/sie.h against the plan's own: `kx_policy_iv` computes
    /// what [`Recipe::iv`] does for every relation a policy entry carries, and
    /// `kx_policy_bound` accepts, clamps and rejects as [`TunableRange`] and `PolicyBound`
    /// say.
    #[test]
    fn the_programs_policy_arithmetic_matches_the_plan() {
        use std::fmt::Write as _;

        let dir = tempfile::tempdir().unwrap();
        let binary = sie_h_harness(
            dir.path(),
            "\t__u64 rel, mask, flags;\n\
             \t__s64 a, b, v, min, max, out = 0;\n\
             \twhile (scanf(\"%llu %lld %lld %llu %lld %lld %lld %llu\", &rel, &a, &b, &mask, \
             &v, &min, &max, &flags) == 8) {\n\
             \t\tint verdict = kx_policy_bound(v, min, max, flags, &out);\n\
             \t\tprintf(\"%llu %d %lld\\n\", kx_policy_iv(rel, a, b, mask, v), verdict, \
             verdict >= 0 ? out : 0);\n\
             \t}\n",
        );
        let relations = [
            (Relation::Affine { a: 4096, b: -1 }, Width::W32),
            (Relation::Affine { a: 1, b: 0 }, Width::W8),
            (Relation::Affine { a: -3, b: 7 }, Width::W64),
            (Relation::Exp2 { k: 1, b: -1 }, Width::W64),
            (Relation::Exp2 { k: 4096, b: 0 }, Width::W32),
            (Relation::Log2 { a: 1, b: 0 }, Width::W8),
            (Relation::Log2 { a: 1, b: 12 }, Width::W32),
        ];
        let mut cases = Vec::new();
        for (relation, width) in relations {
            let (code, a, b) = match relation {
                Relation::Affine { a, b } => (abi::RelationCode::Affine, a, b),
                Relation::Exp2 { k, b } => (abi::RelationCode::Exp2, k, b),
                Relation::Log2 { a, b } => (abi::RelationCode::Log2, a, b),
                _ => unreachable!(),
            };
            let values: Vec<i64> = match relation {
                Relation::Exp2 { .. } => (0..63).collect(),
                Relation::Log2 { .. } => (0..63).map(|k| 1i64 << k).collect(),
                _ => [
                    0,
                    1,
                    2,
                    15,
                    16,
                    17,
                    255,
                    4096,
                    1 << 20,
                    -1,
                    -4096,
                    i64::MAX,
                    i64::MIN,
                ]
                .into(),
            };
            for v in values {
                let Some(iv) = relation.eval(v) else { continue };
                let expected = (iv as u64) & width.mask();
                cases.push(([code as u64, a as u64, b as u64, width.mask()], v, expected));
            }
        }
        let bounds: [(i64, i64, i64, u64, i32, i64); 10] = [
            // (v, min, max, flags, verdict, value)
            (16, 1, 1 << 20, 0, 0, 16),
            (0, 1, 1 << 20, 0, -1, 0),
            (0, 1, 1 << 20, abi::V_CLAMP, 1, 1),
            (1 << 30, 1, 1 << 20, abi::V_CLAMP, 1, 1 << 20),
            (-5, -3, 3, abi::V_CLAMP, 1, -3),
            (64, 1, 1 << 20, abi::V_POW2, 0, 64),
            (48, 1, 1 << 20, abi::V_POW2, -1, 0),
            (48, 1, 1 << 20, abi::V_POW2 | abi::V_CLAMP, 1, 32),
            (2, 3, 100, abi::V_POW2 | abi::V_CLAMP, 1, 4),
            (0, 1, 64, abi::V_POW2 | abi::V_CLAMP, 1, 1),
        ];
        let mut input = String::new();
        for ([rel, a, b, mask], v, _) in &cases {
            let _ = writeln!(input, "{rel} {} {} {mask} {v} 0 0 0", *a as i64, *b as i64);
        }
        for (v, min, max, flags, _, _) in bounds {
            let _ = writeln!(input, "1 1 0 0 {v} {min} {max} {flags}");
        }
        let lines = run_harness(&binary, &input);
        assert_eq!(lines.len(), cases.len() + bounds.len());
        for ((args, v, expected), line) in cases.iter().zip(&lines) {
            let iv: u64 = line.split(' ').next().unwrap().parse().unwrap();
            assert_eq!(iv, *expected, "kx_policy_iv{args:?} at V' = {v}");
        }
        for (bound, line) in bounds.iter().zip(&lines[cases.len()..]) {
            let got: Vec<i64> = line
                .split(' ')
                .skip(1)
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(
                got,
                [i64::from(bound.4), bound.5],
                "kx_policy_bound{bound:?}"
            );
        }
        assert!(cases.len() > 200, "{} cases", cases.len());
    }

    #[test]
    fn policy_entries_carry_the_relation_and_range_and_divisions_are_refused() {
        let tunable = pipe_tunable();
        let program = SieProgram::from_plan(&tunable).unwrap();
        let fixed = program.entries(16).unwrap();
        let entries = program.policy_entries(16, PolicyBound::Clamp).unwrap();
        for ((probe, entry), fixed) in program.probes().iter().zip(&entries).zip(&fixed) {
            if probe.role() == ProbeRole::Pre {
                assert_eq!(entry, fixed, "a pre-probe does the same");
                continue;
            }
            assert_eq!(entry.policy, 1);
            assert_eq!(
                (entry.vmin, entry.vmax),
                (tunable.range.min, tunable.range.max)
            );
            assert_eq!(entry.vflags, abi::V_CLAMP);
            assert_eq!(entry.dflt, 16);
            assert_eq!(entry.value, fixed.value, "IV' of the default stays");
            assert_eq!(entry.rel, abi::RelationCode::Affine as u64);
        }
        program.check_policy().unwrap();
        for constant in ["KX_TARGET_DIV", "KX_TARGET_MOD", "KX_TARGET_SDIV"] {
            let tunable = target_tunable(constant);
            let program = SieProgram::from_plan(&tunable).unwrap();
            let err = program.check_policy().unwrap_err().to_string();
            assert!(
                err.contains("cannot take a policy") && err.contains("divides by the value"),
                "{constant}: {err}"
            );
            let err = program
                .policy_entries(tunable.default, PolicyBound::Reject)
                .unwrap_err();
            assert!(matches!(err, SieError::PolicyUnsupported { .. }), "{err}");
        }
    }

    #[test]
    fn a_tunable_without_sites_is_refused() {
        let mut tunable = pipe_tunable();
        tunable.sites.clear();
        let err = SieProgram::from_plan(&tunable).unwrap_err();
        assert!(matches!(err, SieError::NoSites { .. }), "{err}");
    }
}
