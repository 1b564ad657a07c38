//! The C layouts the loader shares with `bpf/sie.bpf.c` and the kernelx module, mirrored from
//! `bpf/sie.h` and `kmod/include/kernelx_abi.h`. The tests below read both headers and check
//! every value and the field order, so the mirror cannot drift silently.

use kernelx_plan::{Address, Gpr, Segment, Width};

/// The attach cookie of the probe at index 0 of `kx_probes` (cookie 0 means "none").
pub(crate) const COOKIE_BASE: u64 = 1;
/// Entries of a `kx_probes` slot (and of `kx_stats`).
pub(crate) const MAX_PROBES: usize = 256;
/// Slots of `kx_probes`: generation `g` uses slot `g % SLOTS`.
pub(crate) const SLOTS: u64 = 2;
/// Entries of `kx_ranges`.
pub(crate) const MAX_RANGES: usize = 256;
/// `span` of a probe entry whose site has no safe span.
pub(crate) const NO_SPAN: u64 = 0xffff_ffff;
/// Mark slots per task: sites whose post-probe needs their pre-probe.
pub(crate) const MAX_MARKS: usize = 256;
/// `mark` of a post-probe that applies on every path.
pub(crate) const NO_MARK: u64 = 0xffff_ffff;

/// `KX_OPERAND_NO_REG`: no base or index register.
const OPERAND_NO_REG: u64 = 0xff;
/// `KX_OPERAND_GS`.
const OPERAND_GS: u64 = 1 << 32;
/// `KX_OPERAND_RIP`.
const OPERAND_RIP: u64 = 1 << 33;

/// `enum kx_action`: what a probe does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub(crate) enum Action {
    /// `KX_ACT_MARK`.
    Mark = 1,
    /// `KX_ACT_LOAD_REG`.
    LoadReg = 2,
    /// `KX_ACT_LOAD_MEM`.
    LoadMem = 3,
    /// `KX_ACT_COMPARE_REG`.
    CompareReg = 4,
    /// `KX_ACT_COMPARE_MEM`.
    CompareMem = 5,
    /// `KX_ACT_SAVE_REG`.
    SaveReg = 6,
    /// `KX_ACT_COMBINE_REG`.
    CombineReg = 7,
    /// `KX_ACT_DIVIDE`.
    Divide = 8,
}

/// `enum kx_combine_op`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub(crate) enum CombineOp {
    /// `KX_OP_ADD`.
    Add = 0,
    /// `KX_OP_SUB`.
    Sub = 1,
    /// `KX_OP_AND`.
    And = 2,
    /// `KX_OP_OR`.
    Or = 3,
    /// `KX_OP_XOR`.
    Xor = 4,
    /// `KX_OP_SHL`.
    Shl = 5,
    /// `KX_OP_SHR`.
    Shr = 6,
    /// `KX_OP_SAR`.
    Sar = 7,
    /// `KX_OP_IMUL`.
    Imul = 8,
}

/// `enum kx_input`: where a combine's other operand comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub(crate) enum InputKind {
    /// `KX_IN_REG`.
    Reg = 0,
    /// `KX_IN_SAVED`.
    Saved = 1,
    /// `KX_IN_UNDO`.
    Undo = 2,
    /// `KX_IN_MEM`.
    Mem = 3,
}

/// `enum kx_divide_form`: the magic division sequence a divide entry recomputes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub(crate) enum DivideForm {
    /// `KX_DIV_IMUL`.
    Imul = 0,
    /// `KX_DIV_IMUL_REG`.
    ImulReg = 1,
    /// `KX_DIV_MUL`.
    Mul = 2,
    /// `KX_DIV_IMUL_ADD`.
    ImulAdd = 3,
    /// `KX_DIV_IMUL_ADD_HIGH`.
    ImulAddHigh = 4,
    /// `KX_DIV_SIGNED_ADD`.
    SignedAdd = 5,
}

/// `enum kx_relation`: IV' = f(V') in a policy entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub(crate) enum RelationCode {
    /// `KX_REL_AFFINE`.
    Affine = 1,
    /// `KX_REL_EXP2`.
    Exp2 = 2,
    /// `KX_REL_LOG2`.
    Log2 = 3,
}

/// `KX_V_CLAMP`: a policy's out-of-range value is clamped (else rejected).
pub(crate) const V_CLAMP: u64 = 1;
/// `KX_V_POW2`: V' must be a power of two.
pub(crate) const V_POW2: u64 = 2;

/// `enum kx_compare_op`.
pub(crate) const COMPARE_CMP: u64 = 0;
/// `enum kx_compare_op`.
pub(crate) const COMPARE_TEST: u64 = 1;

/// `struct kx_probe`: one entry of the `kx_probes` map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct ProbeEntry {
    pub action: u64,
    pub value: u64,
    pub reg: u64,
    pub width: u64,
    pub high8: u64,
    pub operand: u64,
    pub disp: i64,
    pub op: u64,
    pub flags: u64,
    pub mark: u64,
    pub input: u64,
    pub input_reg: u64,
    pub input_width: u64,
    pub input_high8: u64,
    pub undo_op: u64,
    pub undo_value: u64,
    pub span: u64,
    pub multiplier: u64,
    pub shift: u64,
    pub temp: u64,
    pub policy: u64,
    pub rel: u64,
    pub rel_a: i64,
    pub rel_b: i64,
    pub iv_mask: u64,
    pub vmin: i64,
    pub vmax: i64,
    pub vflags: u64,
    pub dflt: i64,
}

/// `sizeof(struct kx_probe)`.
pub(crate) const PROBE_ENTRY_SIZE: usize = size_of::<ProbeEntry>();

impl ProbeEntry {
    /// The entry as the map stores it (native byte order, no padding: every field is a u64).
    pub(crate) fn to_bytes(self) -> Vec<u8> {
        [
            self.action,
            self.value,
            self.reg,
            self.width,
            self.high8,
            self.operand,
            self.disp as u64,
            self.op,
            self.flags,
            self.mark,
            self.input,
            self.input_reg,
            self.input_width,
            self.input_high8,
            self.undo_op,
            self.undo_value,
            self.span,
            self.multiplier,
            self.shift,
            self.temp,
            self.policy,
            self.rel,
            self.rel_a as u64,
            self.rel_b as u64,
            self.iv_mask,
            self.vmin as u64,
            self.vmax as u64,
            self.vflags,
            self.dflt as u64,
        ]
        .iter()
        .flat_map(|field| field.to_ne_bytes())
        .collect()
    }
}

/// `struct kx_probe_stats`: how often a probe ran and failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeStats {
    /// Times the probe ran.
    pub hits: u64,
    /// Times its update failed (a kfunc refused or a read faulted).
    pub errors: u64,
    /// The last failure's negative errno, 0 when none.
    pub last_error: i64,
}

/// `sizeof(struct kx_probe_stats)`.
pub(crate) const PROBE_STATS_SIZE: usize = 24;

impl ProbeStats {
    /// Reads a `kx_stats` value; `None` when it has the wrong size.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<ProbeStats> {
        let f = u64_fields(bytes, PROBE_STATS_SIZE)?;
        Some(ProbeStats {
            hits: f[0],
            errors: f[1],
            last_error: f[2] as i64,
        })
    }
}

/// `struct kx_policy_stats`: what an X-tune policy chose and what the range refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyStats {
    /// Times the policy was asked.
    pub decisions: u64,
    /// Values outside the range, replaced by the default.
    pub rejected: u64,
    /// Values outside the range, clamped into it.
    pub clamped: u64,
    /// The last value rejected or clamped.
    pub last_bad: i64,
    /// The probe (index) it came at.
    pub last_bad_probe: u64,
    /// The last value applied.
    pub last_value: i64,
}

/// `sizeof(struct kx_policy_stats)`.
pub(crate) const POLICY_STATS_SIZE: usize = 6 * 8;

impl PolicyStats {
    /// Reads a `kx_policy_stats` value; `None` when it has the wrong size.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<PolicyStats> {
        let f = u64_fields(bytes, POLICY_STATS_SIZE)?;
        Some(PolicyStats {
            decisions: f[0],
            rejected: f[1],
            clamped: f[2],
            last_bad: f[3] as i64,
            last_bad_probe: f[4],
            last_value: f[5] as i64,
        })
    }
}

/// `enum kx_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub(crate) enum ModeCode {
    /// `KX_MODE_IMMEDIATE`.
    Immediate = 0,
    /// `KX_MODE_PER_TASK`.
    PerTask = 1,
    /// `KX_MODE_GLOBAL`.
    Global = 2,
}

/// `enum kx_transition`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub(crate) enum TransitionCode {
    /// `KX_TRANSITION_DONE`.
    Done = 0,
    /// `KX_TRANSITION_PENDING`.
    Pending = 1,
    /// `KX_TRANSITION_ABORTED`.
    Aborted = 2,
}

/// `enum kx_slot_kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub(crate) enum SlotKind {
    /// `KX_SLOT_VALUE`.
    Value = 0,
    /// `KX_SLOT_COMPILED`.
    Compiled = 1,
    /// `KX_SLOT_POLICY`.
    Policy = 2,
}

/// `struct kx_control`: the program's switches and the loader's record of transitions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Control {
    pub armed: u64,
    pub mode: u64,
    pub key: u64,
    pub target_gen: u64,
    pub stable_gen: u64,
    pub ranges: u64,
    pub transition: u64,
    pub started_ns: u64,
    pub latency_ns: u64,
    pub slot_value: [i64; SLOTS as usize],
    pub slot_kind: [u64; SLOTS as usize],
}

/// `sizeof(struct kx_control)`.
pub(crate) const CONTROL_SIZE: usize = 13 * 8;

impl Control {
    fn fields(&self) -> [u64; 13] {
        [
            self.armed,
            self.mode,
            self.key,
            self.target_gen,
            self.stable_gen,
            self.ranges,
            self.transition,
            self.started_ns,
            self.latency_ns,
            self.slot_value[0] as u64,
            self.slot_value[1] as u64,
            self.slot_kind[0],
            self.slot_kind[1],
        ]
    }

    /// The value as the map stores it.
    pub(crate) fn to_bytes(self) -> Vec<u8> {
        self.fields().iter().flat_map(|f| f.to_ne_bytes()).collect()
    }

    /// Reads a `kx_control` value; `None` when it has the wrong size.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Control> {
        let f = u64_fields(bytes, CONTROL_SIZE)?;
        Some(Control {
            armed: f[0],
            mode: f[1],
            key: f[2],
            target_gen: f[3],
            stable_gen: f[4],
            ranges: f[5],
            transition: f[6],
            started_ns: f[7],
            latency_ns: f[8],
            slot_value: [f[9] as i64, f[10] as i64],
            slot_kind: [f[11], f[12]],
        })
    }
}

/// `struct kx_span_range`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SpanRange {
    pub start: u64,
    pub end: u64,
    pub span: u64,
}

/// `sizeof(struct kx_span_range)`.
pub(crate) const SPAN_RANGE_SIZE: usize = 24;

impl SpanRange {
    /// The value as the map stores it.
    pub(crate) fn to_bytes(self) -> Vec<u8> {
        [self.start, self.end, self.span]
            .iter()
            .flat_map(|f| f.to_ne_bytes())
            .collect()
    }

    /// Reads a `kx_ranges` value; `None` when it has the wrong size.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<SpanRange> {
        let f = u64_fields(bytes, SPAN_RANGE_SIZE)?;
        Some(SpanRange {
            start: f[0],
            end: f[1],
            span: f[2],
        })
    }
}

/// `struct kx_inside`: a task a sweep found inside a safe span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Inside {
    pub pid: u64,
    pub addr: u64,
}

/// `sizeof(struct kx_inside)`.
pub(crate) const INSIDE_SIZE: usize = 16;

impl Inside {
    /// The records of one sweep's output; `None` when it is not a whole number of them.
    pub(crate) fn parse_all(bytes: &[u8]) -> Option<Vec<Inside>> {
        bytes.len().is_multiple_of(INSIDE_SIZE).then_some(())?;
        bytes
            .chunks(INSIDE_SIZE)
            .map(|chunk| {
                let f = u64_fields(chunk, INSIDE_SIZE)?;
                Some(Inside {
                    pid: f[0],
                    addr: f[1],
                })
            })
            .collect()
    }
}

/// `KX_TRACE_UNTIL`: the index of the trace lease in `kx_trace`.
pub(crate) const TRACE_UNTIL: u32 = 0;
/// `KX_TRACE_DROPPED`: the index of the dropped-event count in `kx_trace`.
pub(crate) const TRACE_DROPPED: u32 = 1;
/// `KX_TRACE_LEASE_NS`: how long a trace session's lease runs without renewal.
pub(crate) const TRACE_LEASE_NS: u64 = 2_000_000_000;
/// `sizeof` a `kx_trace` value.
pub(crate) const TRACE_VALUE_SIZE: usize = 8;
/// `enum kx_event_type`.
const EVENT_TRIGGER: u64 = 1;
/// `enum kx_event_type`.
const EVENT_TASK_MOVE: u64 = 2;
/// `sizeof(struct kx_trigger_event)`.
pub(crate) const TRIGGER_EVENT_SIZE: usize = 8 * 8;
/// `sizeof(struct kx_move_event)`.
pub(crate) const MOVE_EVENT_SIZE: usize = 6 * 8;

/// `struct kx_trigger_event`, without its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TriggerRecord {
    pub ktime_ns: u64,
    pub pid_tgid: u64,
    pub probe: u64,
    pub generation: u64,
    pub action: u64,
    pub skipped: u64,
    pub result: i64,
}

/// `struct kx_move_event`, without its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MoveRecord {
    pub ktime_ns: u64,
    pub pid: u64,
    pub from_gen: u64,
    pub to_gen: u64,
    pub sweep: u64,
}

/// One record of the `kx_events` ring buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventRecord {
    /// `KX_EVENT_TRIGGER`.
    Trigger(TriggerRecord),
    /// `KX_EVENT_TASK_MOVE`.
    Move(MoveRecord),
}

impl EventRecord {
    /// Reads one ring buffer record; `None` for an unknown type or a size that is not its
    /// type's.
    pub(crate) fn parse(bytes: &[u8]) -> Option<EventRecord> {
        let kind = u64::from_ne_bytes(bytes.get(..8)?.try_into().ok()?);
        match kind {
            EVENT_TRIGGER => {
                let f = u64_fields(bytes, TRIGGER_EVENT_SIZE)?;
                Some(EventRecord::Trigger(TriggerRecord {
                    ktime_ns: f[1],
                    pid_tgid: f[2],
                    probe: f[3],
                    generation: f[4],
                    action: f[5],
                    skipped: f[6],
                    result: f[7] as i64,
                }))
            }
            EVENT_TASK_MOVE => {
                let f = u64_fields(bytes, MOVE_EVENT_SIZE)?;
                Some(EventRecord::Move(MoveRecord {
                    ktime_ns: f[1],
                    pid: f[2],
                    from_gen: f[3],
                    to_gen: f[4],
                    sweep: f[5],
                }))
            }
            _ => None,
        }
    }
}

/// The native-endian u64s of `bytes`, which must be `size` long.
fn u64_fields(bytes: &[u8], size: usize) -> Option<Vec<u64>> {
    (bytes.len() == size).then_some(())?;
    Some(
        bytes
            .chunks_exact(8)
            .map(|c| u64::from_ne_bytes(c.try_into().expect("chunks of 8")))
            .collect(),
    )
}

/// `enum kernelx_reg`: registers are numbered as the hardware encodes them.
pub(crate) fn reg(gpr: Gpr) -> u64 {
    gpr.index() as u64
}

/// The packed memory operand of `kernelx_abi.h`; `None` for `%fs`, which the kernel never
/// uses for its own data and the module does not address.
pub(crate) fn pack_operand(addr: &Address, width: Width) -> Option<u64> {
    let reg_or_none = |r: Option<Gpr>| r.map_or(OPERAND_NO_REG, reg);
    let mut packed = u64::from(width.bytes())
        | reg_or_none(addr.base) << 8
        | reg_or_none(addr.index) << 16
        | u64::from(addr.scale) << 24;
    match addr.segment {
        None => {}
        Some(Segment::Gs) => packed |= OPERAND_GS,
        Some(Segment::Fs) => return None,
    }
    if addr.rip_relative {
        packed |= OPERAND_RIP;
    }
    Some(packed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABI_H: &str = include_str!("../../../../kmod/include/kernelx_abi.h");
    const SIE_H: &str = include_str!("../../../../bpf/sie.h");

    /// The value a header gives `name` (`#define` or enumerator), evaluating the few forms
    /// the headers use: decimal, hex, `U`/`ULL` suffixes and `(1ULL << n)`.
    #[track_caller]
    fn c_value(header: &str, name: &str) -> u64 {
        let text = header
            .lines()
            .find_map(|line| {
                let line = line.trim();
                let rest = line
                    .strip_prefix("#define ")
                    .and_then(|l| l.strip_prefix(name))
                    .filter(|r| r.starts_with(' '))
                    .or_else(|| line.strip_prefix(name)?.trim_start().strip_prefix('='))?;
                // The value, without a trailing comment.
                let value = rest.split("/*").next().unwrap_or_default();
                Some(value.trim().trim_end_matches(',').to_owned())
            })
            .unwrap_or_else(|| panic!("{name} is not defined in the header"));
        let number = |s: &str| {
            let s = s.trim().trim_end_matches(['U', 'L']);
            match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            }
            .unwrap_or_else(|e| panic!("{name} = {text}: {e}"))
        };
        match text
            .strip_prefix("(1ULL << ")
            .and_then(|t| t.strip_suffix(')'))
        {
            Some(shift) => 1 << number(shift),
            None => number(&text),
        }
    }

    #[test]
    fn constants_match_the_headers() {
        assert_eq!(c_value(SIE_H, "KX_COOKIE_BASE"), COOKIE_BASE);
        assert_eq!(c_value(SIE_H, "KX_MAX_PROBES"), MAX_PROBES as u64);
        assert_eq!(c_value(SIE_H, "KX_MAX_MARKS"), MAX_MARKS as u64);
        assert_eq!(c_value(SIE_H, "KX_SLOTS"), SLOTS);
        assert_eq!(c_value(SIE_H, "KX_MAX_RANGES"), MAX_RANGES as u64);
        assert_eq!(c_value(SIE_H, "KX_NO_SPAN"), NO_SPAN);
        for (name, mode) in [
            ("KX_MODE_IMMEDIATE", ModeCode::Immediate),
            ("KX_MODE_PER_TASK", ModeCode::PerTask),
            ("KX_MODE_GLOBAL", ModeCode::Global),
        ] {
            assert_eq!(c_value(SIE_H, name), mode as u64, "{name}");
        }
        for (name, code) in [
            ("KX_TRANSITION_DONE", TransitionCode::Done),
            ("KX_TRANSITION_PENDING", TransitionCode::Pending),
            ("KX_TRANSITION_ABORTED", TransitionCode::Aborted),
        ] {
            assert_eq!(c_value(SIE_H, name), code as u64, "{name}");
        }
        assert_eq!(c_value(SIE_H, "KX_NO_MARK"), NO_MARK);
        assert_eq!(c_value(SIE_H, "KX_CMP"), COMPARE_CMP);
        assert_eq!(c_value(SIE_H, "KX_TEST"), COMPARE_TEST);
        for (name, action) in [
            ("KX_ACT_MARK", Action::Mark),
            ("KX_ACT_LOAD_REG", Action::LoadReg),
            ("KX_ACT_LOAD_MEM", Action::LoadMem),
            ("KX_ACT_COMPARE_REG", Action::CompareReg),
            ("KX_ACT_COMPARE_MEM", Action::CompareMem),
            ("KX_ACT_SAVE_REG", Action::SaveReg),
            ("KX_ACT_COMBINE_REG", Action::CombineReg),
            ("KX_ACT_DIVIDE", Action::Divide),
        ] {
            assert_eq!(c_value(SIE_H, name), action as u64, "{name}");
        }
        for (name, op) in [
            ("KX_OP_ADD", CombineOp::Add),
            ("KX_OP_SUB", CombineOp::Sub),
            ("KX_OP_AND", CombineOp::And),
            ("KX_OP_OR", CombineOp::Or),
            ("KX_OP_XOR", CombineOp::Xor),
            ("KX_OP_SHL", CombineOp::Shl),
            ("KX_OP_SHR", CombineOp::Shr),
            ("KX_OP_SAR", CombineOp::Sar),
            ("KX_OP_IMUL", CombineOp::Imul),
        ] {
            assert_eq!(c_value(SIE_H, name), op as u64, "{name}");
        }
        for (name, input) in [
            ("KX_IN_REG", InputKind::Reg),
            ("KX_IN_SAVED", InputKind::Saved),
            ("KX_IN_UNDO", InputKind::Undo),
            ("KX_IN_MEM", InputKind::Mem),
        ] {
            assert_eq!(c_value(SIE_H, name), input as u64, "{name}");
        }
        for (name, form) in [
            ("KX_DIV_IMUL", DivideForm::Imul),
            ("KX_DIV_IMUL_REG", DivideForm::ImulReg),
            ("KX_DIV_MUL", DivideForm::Mul),
            ("KX_DIV_IMUL_ADD", DivideForm::ImulAdd),
            ("KX_DIV_IMUL_ADD_HIGH", DivideForm::ImulAddHigh),
            ("KX_DIV_SIGNED_ADD", DivideForm::SignedAdd),
        ] {
            assert_eq!(c_value(SIE_H, name), form as u64, "{name}");
        }
        for (name, relation) in [
            ("KX_REL_AFFINE", RelationCode::Affine),
            ("KX_REL_EXP2", RelationCode::Exp2),
            ("KX_REL_LOG2", RelationCode::Log2),
        ] {
            assert_eq!(c_value(SIE_H, name), relation as u64, "{name}");
        }
        for (name, kind) in [
            ("KX_SLOT_VALUE", SlotKind::Value),
            ("KX_SLOT_COMPILED", SlotKind::Compiled),
            ("KX_SLOT_POLICY", SlotKind::Policy),
        ] {
            assert_eq!(c_value(SIE_H, name), kind as u64, "{name}");
        }
        assert_eq!(c_value(SIE_H, "KX_V_CLAMP"), V_CLAMP);
        assert_eq!(c_value(SIE_H, "KX_V_POW2"), V_POW2);
        assert_eq!(c_value(ABI_H, "KX_OPERAND_NO_REG"), OPERAND_NO_REG);
        assert_eq!(c_value(ABI_H, "KX_OPERAND_GS"), OPERAND_GS);
        assert_eq!(c_value(ABI_H, "KX_OPERAND_RIP"), OPERAND_RIP);
        for flag in kernelx_plan::FlagSet::ARITHMETIC.iter() {
            let name = format!("KX_FLAG_{}", flag.name());
            assert_eq!(
                c_value(ABI_H, &name),
                kernelx_plan::FlagSet::of(&[flag]).mask(),
                "{name}"
            );
        }
    }

    #[test]
    fn register_numbers_match_the_header() {
        for gpr in Gpr::ALL {
            let name = format!("KX_REG_{}", gpr.name().to_uppercase());
            assert_eq!(c_value(ABI_H, &name), reg(gpr), "{name}");
        }
    }

    /// The field names of `struct <name>` in a header, in order.
    fn c_fields(header: &str, name: &str) -> Vec<String> {
        let start = header
            .find(&format!("struct {name} {{"))
            .unwrap_or_else(|| panic!("struct {name} not in the header"));
        let body = &header[start..];
        let body = &body[body.find('{').unwrap() + 1..body.find("};").unwrap()];
        body.lines()
            .filter_map(|line| {
                let decl = line.split(';').next()?.trim();
                (!decl.is_empty() && !decl.starts_with("/*"))
                    .then(|| decl.rsplit(' ').next().unwrap().to_owned())
            })
            .collect()
    }

    #[test]
    fn probe_entry_mirrors_struct_kx_probe() {
        let fields = c_fields(SIE_H, "kx_probe");
        assert_eq!(
            fields,
            [
                "action",
                "value",
                "reg",
                "width",
                "high8",
                "operand",
                "disp",
                "op",
                "flags",
                "mark",
                "input",
                "input_reg",
                "input_width",
                "input_high8",
                "undo_op",
                "undo_value",
                "span",
                "multiplier",
                "shift",
                "temp",
                "policy",
                "rel",
                "rel_a",
                "rel_b",
                "iv_mask",
                "vmin",
                "vmax",
                "vflags",
                "dflt",
            ]
        );
        assert_eq!(PROBE_ENTRY_SIZE, fields.len() * 8);
        let entry = ProbeEntry {
            action: 2,
            disp: -2,
            mark: NO_MARK,
            ..ProbeEntry::default()
        };
        let bytes = entry.to_bytes();
        assert_eq!(bytes.len(), PROBE_ENTRY_SIZE);
        assert_eq!(bytes[0..8], 2u64.to_ne_bytes());
        assert_eq!(bytes[48..56], (-2i64).to_ne_bytes());
        assert_eq!(bytes[72..80], NO_MARK.to_ne_bytes());
    }

    #[test]
    fn policy_stats_mirror_struct_kx_policy_stats() {
        assert_eq!(
            c_fields(SIE_H, "kx_policy_stats"),
            [
                "decisions",
                "rejected",
                "clamped",
                "last_bad",
                "last_bad_probe",
                "last_value"
            ]
        );
        let bytes: Vec<u8> = [7u64, 1, 2, (-5i64) as u64, 3, 64]
            .iter()
            .flat_map(|f| f.to_ne_bytes())
            .collect();
        let stats = PolicyStats::from_bytes(&bytes).unwrap();
        assert_eq!((stats.decisions, stats.last_bad), (7, -5));
        assert_eq!((stats.last_bad_probe, stats.last_value), (3, 64));
        assert_eq!(PolicyStats::from_bytes(&bytes[8..]), None);
    }

    #[test]
    fn control_mirrors_struct_kx_control() {
        assert_eq!(
            c_fields(SIE_H, "kx_control"),
            [
                "armed",
                "mode",
                "key",
                "target_gen",
                "stable_gen",
                "ranges",
                "transition",
                "started_ns",
                "latency_ns",
                "slot_value[KX_SLOTS]",
                "slot_kind[KX_SLOTS]",
            ]
        );
        let control = Control {
            armed: 1,
            target_gen: 3,
            slot_value: [-5, 7],
            slot_kind: [0, 1],
            ..Control::default()
        };
        let bytes = control.to_bytes();
        assert_eq!(bytes.len(), CONTROL_SIZE);
        assert_eq!(bytes[24..32], 3u64.to_ne_bytes());
        assert_eq!(bytes[72..80], (-5i64).to_ne_bytes());
        assert_eq!(bytes[96..104], 1u64.to_ne_bytes());
        assert_eq!(Control::from_bytes(&bytes), Some(control));
        assert_eq!(Control::from_bytes(&bytes[8..]), None);
    }

    #[test]
    fn span_ranges_and_inside_records_mirror_the_header() {
        assert_eq!(c_fields(SIE_H, "kx_span_range"), ["start", "end", "span"]);
        let range = SpanRange {
            start: 1,
            end: 2,
            span: 3,
        };
        assert_eq!(range.to_bytes().len(), SPAN_RANGE_SIZE);
        assert_eq!(range.to_bytes()[16..24], 3u64.to_ne_bytes());
        assert_eq!(SpanRange::from_bytes(&range.to_bytes()), Some(range));
        assert_eq!(c_fields(SIE_H, "kx_inside"), ["pid", "addr"]);
        let bytes: Vec<u8> = [7u64, 0xffff_ffff_8100_0010, 8, 0]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        assert_eq!(
            Inside::parse_all(&bytes),
            Some(vec![
                Inside {
                    pid: 7,
                    addr: 0xffff_ffff_8100_0010
                },
                Inside { pid: 8, addr: 0 }
            ])
        );
        assert_eq!(Inside::parse_all(&bytes[..20]), None);
        assert_eq!(Inside::parse_all(&[]), Some(vec![]));
    }

    #[test]
    fn operands_pack_as_the_header_describes() {
        let addr = Address {
            segment: Some(Segment::Gs),
            base: Some(Gpr::Rbx),
            index: Some(Gpr::R13),
            scale: 8,
            disp: -0x10,
            rip_relative: false,
        };
        assert_eq!(
            pack_operand(&addr, Width::W16),
            Some(2 | 3 << 8 | 13 << 16 | 8 << 24 | OPERAND_GS)
        );
        let rip = Address {
            segment: None,
            base: None,
            index: None,
            scale: 1,
            disp: 0x40,
            rip_relative: true,
        };
        assert_eq!(
            pack_operand(&rip, Width::W64),
            Some(8 | 0xff << 8 | 0xff << 16 | 1 << 24 | OPERAND_RIP)
        );
        let fs = Address {
            segment: Some(Segment::Fs),
            ..rip
        };
        assert_eq!(pack_operand(&fs, Width::W8), None);
    }

    #[test]
    fn trace_constants_match_the_header() {
        assert_eq!(c_value(SIE_H, "KX_TRACE_UNTIL"), u64::from(TRACE_UNTIL));
        assert_eq!(c_value(SIE_H, "KX_TRACE_DROPPED"), u64::from(TRACE_DROPPED));
        assert_eq!(c_value(SIE_H, "KX_TRACE_ENTRIES"), 2);
        assert_eq!(c_value(SIE_H, "KX_TRACE_LEASE_NS"), TRACE_LEASE_NS);
        assert_eq!(c_value(SIE_H, "KX_EVENT_TRIGGER"), EVENT_TRIGGER);
        assert_eq!(c_value(SIE_H, "KX_EVENT_TASK_MOVE"), EVENT_TASK_MOVE);
        let ring = c_value(SIE_H, "KX_EVENTS_BYTES");
        assert!(
            ring.is_power_of_two() && ring.is_multiple_of(4096),
            "{ring}"
        );
    }

    fn bytes_of(fields: &[u64]) -> Vec<u8> {
        fields.iter().flat_map(|v| v.to_ne_bytes()).collect()
    }

    #[test]
    fn trigger_events_mirror_struct_kx_trigger_event() {
        let fields = c_fields(SIE_H, "kx_trigger_event");
        assert_eq!(
            fields,
            [
                "type", "ktime_ns", "pid_tgid", "probe", "gen", "action", "skipped", "result"
            ]
        );
        assert_eq!(TRIGGER_EVENT_SIZE, fields.len() * 8);
        let bytes = bytes_of(&[1, 500, 7 << 32 | 9, 3, 4, 2, 0, (-14i64) as u64]);
        assert_eq!(
            EventRecord::parse(&bytes),
            Some(EventRecord::Trigger(TriggerRecord {
                ktime_ns: 500,
                pid_tgid: 7 << 32 | 9,
                probe: 3,
                generation: 4,
                action: 2,
                skipped: 0,
                result: -14,
            }))
        );
        assert_eq!(EventRecord::parse(&bytes[..56]), None, "too short");
    }

    #[test]
    fn move_events_mirror_struct_kx_move_event() {
        let fields = c_fields(SIE_H, "kx_move_event");
        assert_eq!(
            fields,
            ["type", "ktime_ns", "pid", "from_gen", "to_gen", "sweep"]
        );
        assert_eq!(MOVE_EVENT_SIZE, fields.len() * 8);
        let bytes = bytes_of(&[2, 600, 42, 1, 2, 1]);
        assert_eq!(
            EventRecord::parse(&bytes),
            Some(EventRecord::Move(MoveRecord {
                ktime_ns: 600,
                pid: 42,
                from_gen: 1,
                to_gen: 2,
                sweep: 1,
            }))
        );
        // A trigger's size with a move's type, an unknown type, nothing.
        assert_eq!(
            EventRecord::parse(&bytes_of(&[2, 0, 0, 0, 0, 0, 0, 0])),
            None
        );
        assert_eq!(EventRecord::parse(&bytes_of(&[9, 0, 0, 0, 0, 0])), None);
        assert_eq!(EventRecord::parse(&[]), None);
    }

    #[test]
    fn stats_read_back() {
        let bytes: Vec<u8> = [5u64, 1, (-1i64) as u64]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        assert_eq!(
            ProbeStats::from_bytes(&bytes),
            Some(ProbeStats {
                hits: 5,
                errors: 1,
                last_error: -1
            })
        );
        assert_eq!(ProbeStats::from_bytes(&bytes[..16]), None);
    }
}
