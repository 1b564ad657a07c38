//! What the kernel does with a kprobe at a given offset of a function: refuse it, run it as an
//! INT3 or ftrace-based probe, or jump-optimize it. The x86-64 rules of Linux 6.12, read from
//! the kernel's sources (paths relative to the kernel tree).
//!
//! # The rules, in the kernel's order
//!
//! Registration (`register_kprobe`, kernel/kprobes.c):
//!
//! 1. `arch_adjust_kprobe_addr` (arch/x86/kernel/kprobes/core.c): with IBT, a probe at `+0` of a
//!    function starting with `endbr64` moves to `+4`.
//! 2. `check_kprobe_address_safe` (kernel/kprobes.c): an ftrace location (the `__fentry__`
//!    call) makes an ftrace-based probe (`KPROBE_FLAG_FTRACE`), which is never optimized;
//!    refused in `.kprobes.text`, `.noinstr.text`/`.cpuidle.text` and `.entry.text`
//!    (`within_kprobe_blacklist`, `populate_kprobe_blacklist`, `arch_populate_kprobe_blacklist`),
//!    in `NOKPROBE_SYMBOL` functions (`_kprobe_blacklist`, also for `foo.cold` of a
//!    blacklisted `foo`), on a static-key (`jump_label_text_reserved`) or static-call site
//!    (`static_call_text_reserved`), and in `__cfi_`/`__pfx_` symbols.
//! 3. `arch_prepare_kprobe` → `can_probe` (core.c): the offset must be an instruction boundary,
//!    and not `int3`, `int n`, `into`, `int1`, `ud0`, `ud1`, `ud2` (`is_exception_insn`).
//!
//! Jump optimization (`try_to_optimize_kprobe` → `arch_prepare_optimized_kprobe`,
//! arch/x86/kernel/kprobes/opt.c):
//!
//! 4. `can_optimize`: at least 5 bytes (`JMP32_INSN_SIZE`) to the end of the function; the
//!    whole function decodes, has no exception-table entry (`search_exception_tables`), has no
//!    indirect jump unless the kernel has retpolines or IBT (`insn_is_indirect_jump`), and no
//!    relative `jmp`/`jcc`/`loop`/`jcxz` in it targets `[addr + 1, addr + 5]`
//!    (`insn_jump_into_range`, an inclusive bound).
//! 5. `copy_optimized_instructions`: the instructions covering the first 5 bytes (the
//!    *region*) are copied to a detour buffer; each must pass `__copy_instruction` (not `int3`,
//!    not `mov %ss`/`pop %ss`; RIP-relative displacements are rewritten) and `can_boost` (no
//!    `jcc`, `jmp`, `call`, `loop`, `int`, `lock`/`rep` opcodes, far calls, most opcode-group
//!    forms, two-byte opcodes outside `twobyte_is_boostable`, three-byte opcodes, `%cs` or
//!    address-size prefixes on one-byte opcodes); and the region must not overlap ftrace,
//!    static-key or static-call sites (`-EBUSY`).
//! 6. `arch_check_optimized_kprobe`: no other probe inside the region; and registering a probe
//!    inside an optimized probe's region unoptimizes that one (kernel/kprobes.c).
//!
//! On top of the kernel's rules, a jump from the function's `.cold` part into the region is
//! reported as unsafe: the kernel only decodes the symbol it probes, so it would optimize and
//! the jump would land inside the 5-byte `jmp`.
//!
//! # What the `.o` cannot say
//!
//! The object is not the live text: relocated fields, alternatives and static keys are
//! patched at boot, and ftrace sites are NOPs. Verdicts use the object's bytes, except that
//! ftrace, static-key and static-call sites are judged as the reserved text they are; regions
//! holding relocated fields or alternatives carry a note, since the runtime verifies the live
//! bytes before attaching. kallsyms sizes run to the next symbol (alignment padding included),
//! not to the ELF symbol's end.

use std::fmt;
use std::ops::Range;

use crate::dataflow::{FunctionCode, jumps_from_other_parts};
use crate::decode::{Insn, RelocField, Target};
use crate::elf::{Function, ObjectFile, Reloc, RelocTarget, SectionId};
use crate::format::referent_text;
use crate::placement::PlacementError;

/// `JMP32_INSN_SIZE`: the relative jump an optimized probe writes.
pub const JUMP_SIZE: u32 = 5;

/// The kernel configuration the rules depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelProbeConfig {
    /// `CONFIG_X86_KERNEL_IBT`: probes at `+0` move past `endbr64`, and `can_optimize` skips the
    /// indirect-jump check.
    pub ibt: bool,
    /// `CONFIG_MITIGATION_RETPOLINE`: `can_optimize` skips the indirect-jump check.
    pub retpoline: bool,
    /// `CONFIG_KPROBES_ON_FTRACE`: a probe on the `__fentry__` call becomes ftrace-based
    /// (otherwise it is refused).
    pub kprobes_on_ftrace: bool,
}

impl KernelProbeConfig {
    /// Debian's 6.12 cloud kernel (IBT, retpolines and kprobes-on-ftrace all enabled).
    pub const DEBIAN_6_12: Self = Self {
        ibt: true,
        retpoline: true,
        kprobes_on_ftrace: true,
    };
}

impl Default for KernelProbeConfig {
    fn default() -> Self {
        Self::DEBIAN_6_12
    }
}

/// How the kernel runs a probe at an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeKind {
    /// Jump-optimized: a 5-byte `jmp` to a detour (`[OPTIMIZED]` in
    /// `/sys/kernel/debug/kprobes/list`).
    JumpOptimized,
    /// A breakpoint (`int3`) probe.
    Int3,
    /// An ftrace-based probe on the function's `__fentry__` call.
    Ftrace,
    /// The kernel would jump-optimize it, but code it does not check jumps into the 5 bytes.
    Unsafe,
    /// `register_kprobe` fails.
    Refused,
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProbeKind::JumpOptimized => "optimized",
            ProbeKind::Int3 => "int3",
            ProbeKind::Ftrace => "ftrace",
            ProbeKind::Unsafe => "unsafe",
            ProbeKind::Refused => "refused",
        })
    }
}

/// Text the kernel patches at run time and reserves against optimized probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReservedBy {
    /// An ftrace location (`call __fentry__`, a NOP until traced).
    Ftrace,
    /// A static-key site (`__jump_table`).
    JumpLabel,
    /// A static-call site (`.static_call_sites`, `call __SCT__*`).
    StaticCall,
}

impl fmt::Display for ReservedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReservedBy::Ftrace => "ftrace site",
            ReservedBy::JumpLabel => "static-key site",
            ReservedBy::StaticCall => "static-call site",
        })
    }
}

/// One reason a probe is refused, not optimized, or unsafe to optimize. Offsets are from the
/// function's start.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProbeBlocker {
    /// Not at an instruction boundary.
    NotInstructionBoundary,
    /// An exception instruction (`int3`, `int n`, `into`, `int1`, `ud0`/`ud1`/`ud2`).
    ExceptionInstruction,
    /// The function's section is blacklisted.
    BlacklistedSection {
        /// The section (`.noinstr.text`, `.entry.text`, ...).
        section: String,
    },
    /// The function (or the one it is a part of) is `NOKPROBE_SYMBOL`.
    NokprobeSymbol {
        /// The blacklisted symbol.
        symbol: String,
    },
    /// A `__cfi_`/`__pfx_` preamble symbol.
    CfiPreamble,
    /// Init text, freed after boot (or after the module's init).
    InitText {
        /// The section.
        section: String,
    },
    /// The probe is on a static-key or static-call site.
    OnReservedSite {
        /// What reserves it.
        by: ReservedBy,
        /// The site's first byte.
        site: u32,
    },
    /// The `__fentry__` call: ftrace-based probe (never optimized).
    FtraceSite,
    /// The `__fentry__` call without `CONFIG_KPROBES_ON_FTRACE`.
    FtraceSiteRefused,
    /// Fewer than 5 bytes to the end of the function.
    TooCloseToEnd {
        /// Bytes left.
        room: u32,
    },
    /// The function has an exception-table entry (a fixup may jump into it).
    ExceptionTable {
        /// The faulting instruction's offset.
        insn: u32,
    },
    /// The function has bytes the decoder cannot read.
    Undecodable {
        /// Their offset.
        at: u32,
    },
    /// An indirect jump in a kernel without retpolines and IBT.
    IndirectJump {
        /// The jump's offset.
        at: u32,
    },
    /// A relative jump of the function targets bytes 1..=5 of the probe.
    JumpIntoRegion {
        /// The jump's offset.
        from: u32,
        /// Its target.
        target: u32,
    },
    /// An instruction of the region cannot be copied and run from the detour buffer.
    NotBoostable {
        /// Its offset.
        at: u32,
        /// What it is (`jbe`, `call`, `lfence`, ...).
        insn: String,
    },
    /// The region overlaps text the kernel patches.
    RegionReserved {
        /// What reserves it.
        by: ReservedBy,
        /// The site's first byte.
        site: u32,
    },
    /// Another probe sits inside the region.
    OtherProbeInRegion {
        /// Its offset.
        probe: u32,
    },
    /// Code the kernel does not decode (the function's `.cold` part) jumps into bytes 1..=5.
    ForeignJumpIntoRegion {
        /// The jump, as `symbol+offset`.
        from: String,
        /// Its target in this function.
        target: u32,
    },
}

impl ProbeBlocker {
    /// What the blocker makes of the probe on its own.
    pub fn kind(&self) -> ProbeKind {
        use ProbeBlocker::*;
        match self {
            NotInstructionBoundary
            | ExceptionInstruction
            | BlacklistedSection { .. }
            | NokprobeSymbol { .. }
            | CfiPreamble
            | InitText { .. }
            | OnReservedSite { .. }
            | FtraceSiteRefused => ProbeKind::Refused,
            FtraceSite => ProbeKind::Ftrace,
            ForeignJumpIntoRegion { .. } => ProbeKind::Unsafe,
            _ => ProbeKind::Int3,
        }
    }

    /// The kernel function that applies the rule (file: function, in the kernel tree).
    pub fn kernel_rule(&self) -> &'static str {
        use ProbeBlocker::*;
        match self {
            NotInstructionBoundary | ExceptionInstruction => {
                "arch/x86/kernel/kprobes/core.c: can_probe"
            }
            BlacklistedSection { .. } | NokprobeSymbol { .. } => {
                "kernel/kprobes.c: within_kprobe_blacklist"
            }
            CfiPreamble => "kernel/kprobes.c: is_cfi_preamble_symbol",
            InitText { .. } => "kernel/kprobes.c: check_kprobe_address_safe",
            OnReservedSite { .. } => "kernel/kprobes.c: check_kprobe_address_safe",
            FtraceSite => "kernel/kprobes.c: try_to_optimize_kprobe (kprobe_ftrace)",
            FtraceSiteRefused => "kernel/kprobes.c: check_ftrace_location",
            TooCloseToEnd { .. }
            | ExceptionTable { .. }
            | Undecodable { .. }
            | IndirectJump { .. } => "arch/x86/kernel/kprobes/opt.c: can_optimize",
            JumpIntoRegion { .. } => "arch/x86/kernel/kprobes/opt.c: insn_jump_into_range",
            NotBoostable { .. } => {
                "arch/x86/kernel/kprobes/opt.c: copy_optimized_instructions (can_boost)"
            }
            RegionReserved { .. } => {
                "arch/x86/kernel/kprobes/opt.c: copy_optimized_instructions (*_text_reserved)"
            }
            OtherProbeInRegion { .. } => {
                "arch/x86/kernel/kprobes/opt.c: arch_check_optimized_kprobe"
            }
            ForeignJumpIntoRegion { .. } => "kernelx: can_optimize decodes only the probed symbol",
        }
    }
}

impl fmt::Display for ProbeBlocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ProbeBlocker::*;
        match self {
            NotInstructionBoundary => write!(f, "not an instruction boundary (EILSEQ)")?,
            ExceptionInstruction => write!(f, "exception instruction (int3/int/ud)")?,
            BlacklistedSection { section } => write!(f, "blacklisted section {section}")?,
            NokprobeSymbol { symbol } => write!(f, "NOKPROBE_SYMBOL({symbol})")?,
            CfiPreamble => write!(f, "CFI/padding preamble symbol")?,
            InitText { section } => write!(f, "{section} is freed after init")?,
            OnReservedSite { by, site } => write!(f, "on the {by} at {site:#x}")?,
            FtraceSite => write!(f, "the __fentry__ call: an ftrace-based kprobe")?,
            FtraceSiteRefused => write!(f, "the __fentry__ call without KPROBES_ON_FTRACE")?,
            TooCloseToEnd { room } => write!(f, "only {room} bytes to the function's end")?,
            ExceptionTable { insn } => write!(f, "exception-table entry at {insn:#x}")?,
            Undecodable { at } => write!(f, "undecodable bytes at {at:#x}")?,
            IndirectJump { at } => write!(f, "indirect jump at {at:#x}")?,
            JumpIntoRegion { from, target } => {
                write!(f, "jump at {from:#x} targets {target:#x} inside the jump")?
            }
            NotBoostable { at, insn } => write!(f, "{insn} at {at:#x} is not boostable")?,
            RegionReserved { by, site } => write!(f, "region overlaps the {by} at {site:#x}")?,
            OtherProbeInRegion { probe } => write!(f, "another probe at {probe:#x} in the region")?,
            ForeignJumpIntoRegion { from, target } => write!(
                f,
                "{from} jumps to {target:#x} inside the jump; the kernel does not check it"
            )?,
        }
        write!(f, " [{}]", self.kernel_rule())
    }
}

/// Facts about a probe site that do not change its kind but matter to whoever attaches it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProbeNote {
    /// `arch_adjust_kprobe_addr` moves a probe at `+0` past `endbr64`.
    MovedPastEndbr {
        /// Where it lands.
        to: u32,
    },
    /// The region copies an instruction with a relocated field: the live bytes differ from the
    /// object's (the runtime compares them masked).
    Relocated {
        /// The instruction.
        at: u32,
        /// The field.
        field: RelocField,
        /// What it refers to (`pipe_max_size`, `__x86_return_thunk`, ...).
        symbol: String,
    },
    /// A RIP-relative instruction in the region; `__copy_instruction` rewrites its
    /// displacement for the detour buffer.
    RipRelative {
        /// The instruction.
        at: u32,
    },
    /// The region overlaps an alternative site: boot-time patching may change the bytes the
    /// verdict was made on.
    Alternative {
        /// The site.
        site: Range<u32>,
    },
    /// A `.smp_locks` lock prefix at the probe or in the region: on a uniprocessor boot
    /// `alternatives_text_reserved` refuses the probe (and its optimization).
    UniprocessorLock {
        /// The prefix.
        at: u32,
    },
    /// Registering this probe unoptimizes another one, whose region holds it
    /// (`arch_within_optimized_kprobe`).
    DeoptimizesProbe {
        /// The other probe.
        probe: u32,
    },
}

impl fmt::Display for ProbeNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeNote::MovedPastEndbr { to } => {
                write!(f, "moved past endbr64 to {to:#x} (arch_adjust_kprobe_addr)")
            }
            ProbeNote::Relocated { at, field, symbol } => {
                write!(
                    f,
                    "relocated {field:?} of {at:#x} ({symbol}): verify live bytes"
                )
            }
            ProbeNote::RipRelative { at } => {
                write!(f, "RIP-relative {at:#x} is rewritten in the detour buffer")
            }
            ProbeNote::Alternative { site } => write!(
                f,
                "alternative at {:#x}..{:#x}: boot patching may change the verdict",
                site.start, site.end
            ),
            ProbeNote::UniprocessorLock { at } => write!(
                f,
                "lock prefix at {at:#x}: refused on a uniprocessor boot (alternatives_text_reserved)"
            ),
            ProbeNote::DeoptimizesProbe { probe } => {
                write!(
                    f,
                    "unoptimizes the probe at {probe:#x}, whose region holds it"
                )
            }
        }
    }
}

/// The verdict for one probe offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeCheck {
    /// The offset asked about.
    pub offset: u32,
    /// Where the kernel puts the probe (differs after `arch_adjust_kprobe_addr`).
    pub address: u32,
    /// What the kernel makes of it.
    pub kind: ProbeKind,
    /// The bytes an optimized probe replaces and copies (the instructions covering the first
    /// five), when the optimization rules were reached.
    pub region: Option<Range<u32>>,
    /// Every reason it is not jump-optimized (empty when it is).
    pub blockers: Vec<ProbeBlocker>,
    /// Facts for the runtime.
    pub notes: Vec<ProbeNote>,
}

impl ProbeCheck {
    /// Whether the kernel jump-optimizes it.
    pub fn is_optimized(&self) -> bool {
        self.kind == ProbeKind::JumpOptimized
    }

    /// Whether a probe can be attached here and behaves (optimized, INT3 or ftrace-based).
    pub fn is_usable(&self) -> bool {
        matches!(
            self.kind,
            ProbeKind::JumpOptimized | ProbeKind::Int3 | ProbeKind::Ftrace
        )
    }
}

impl fmt::Display for ProbeCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x} {}", self.offset, self.kind)?;
        if self.address != self.offset {
            write!(f, " at {:#x}", self.address)?;
        }
        for b in &self.blockers {
            write!(f, "; {b}")?;
        }
        Ok(())
    }
}

/// The probe-site facts of one function, gathered once: its jumps, the kernel tables that name
/// its bytes (`__mcount_loc`, `__jump_table`, `.static_call_sites`, `__ex_table`,
/// `.altinstructions`, `.smp_locks`, `_kprobe_blacklist`) and its section; then
/// [`ProbeSites::check`] answers per offset.
#[derive(Debug, Clone)]
pub struct ProbeSites<'o, 'a> {
    code: FunctionCode<'o, 'a>,
    config: KernelProbeConfig,
    endbr: bool,
    /// Blockers that hold for every offset (section, symbol).
    everywhere: Vec<ProbeBlocker>,
    /// Relative jumps the kernel's decoder sees: (from, target) inside the function.
    jumps: Vec<(u32, u32)>,
    /// Jumps from the function's other parts: (`symbol+offset`, target).
    foreign: Vec<(String, u32)>,
    indirect: Vec<u32>,
    undecodable: Option<u32>,
    ex_table: Vec<u32>,
    reserved: Vec<(ReservedBy, Range<u32>)>,
    smp_locks: Vec<u32>,
    alternatives: Vec<Range<u32>>,
}

impl<'o, 'a> ProbeSites<'o, 'a> {
    /// Gathers the facts for `code`'s function.
    pub fn new(code: FunctionCode<'o, 'a>, config: KernelProbeConfig) -> Self {
        let FunctionCode {
            object, function, ..
        } = code;
        let insns = code.insns;
        let endbr = config.ibt && is_endbr(function.bytes);

        let mut jumps = Vec::new();
        let mut indirect = Vec::new();
        let mut undecodable = None;
        let mut reserved = Vec::new();
        for insn in insns {
            if insn.is_invalid() {
                undecodable.get_or_insert(insn.offset);
                continue;
            }
            let op = Opcode::parse(insn.bytes(function));
            if op.is_relative_jump()
                && let Some(Target::Internal(t)) = insn.branch_target(object, function)
            {
                jumps.push((insn.offset, t));
            }
            if op.is_indirect_jump() {
                indirect.push(insn.offset);
            }
            if let Some(r) = insn.reloc(RelocField::Branch) {
                let name = insn.reloc_referent(object, function, r).name;
                if name == "__fentry__" {
                    reserved.push((ReservedBy::Ftrace, insn.offset..insn.offset + JUMP_SIZE));
                } else if name.starts_with("__SCT__") {
                    reserved.push((ReservedBy::StaticCall, insn.offset..insn.offset + JUMP_SIZE));
                }
            }
        }
        for (_, at) in table_sites(object, function, "__mcount_loc", 8, 0) {
            reserved.push((ReservedBy::Ftrace, at..at + JUMP_SIZE));
        }
        for (_, at) in table_sites(object, function, ".static_call_sites", 8, 0) {
            reserved.push((ReservedBy::StaticCall, at..at + JUMP_SIZE));
        }
        for (_, at) in table_sites(object, function, "__jump_table", 16, 0) {
            // arch_jump_entry_size decodes the site: a 2- or 5-byte jmp or NOP.
            let len =
                crate::decode::index_at(insns, at).map_or(JUMP_SIZE, |n| insns[n].len() as u32);
            reserved.push((ReservedBy::JumpLabel, at..at + len));
        }
        reserved.sort_by_key(|(by, r)| (r.start, r.end, *by as u8));
        reserved.dedup();

        let ex_table = table_sites(object, function, "__ex_table", 12, 0)
            .into_iter()
            .map(|(_, at)| at)
            .collect();
        let smp_locks = table_sites(object, function, ".smp_locks", 4, 0)
            .into_iter()
            .map(|(_, at)| at)
            .collect();
        let alternatives = table_sites(object, function, ".altinstructions", 14, 0)
            .into_iter()
            .map(|(entry, at)| {
                // struct alt_instr (packed): s32 instr_offset, s32 repl_offset, u32 ft_flags,
                // u8 instrlen, u8 replacementlen.
                let len = entry.byte(12).unwrap_or(1).max(1);
                at..at + u32::from(len)
            })
            .collect();

        Self {
            code,
            config,
            endbr,
            everywhere: symbol_blockers(object, function),
            jumps,
            foreign: jumps_from_other_parts(object, function),
            indirect,
            undecodable,
            ex_table,
            reserved,
            smp_locks,
            alternatives,
        }
    }

    /// The function and its code.
    pub fn code(&self) -> FunctionCode<'o, 'a> {
        self.code
    }

    /// Whether code outside the function (its `.cold` part) jumps to `offset`: a branch
    /// target the function's own CFG does not show.
    pub fn is_entered_from_outside(&self, offset: u32) -> bool {
        self.foreign.iter().any(|(_, t)| *t == offset)
    }

    /// Jumps from the function's other parts into it: (`symbol+offset`, target).
    pub fn entries_from_outside(&self) -> &[(String, u32)] {
        &self.foreign
    }

    /// The configuration the verdicts assume.
    pub fn config(&self) -> KernelProbeConfig {
        self.config
    }

    /// The verdict for a probe at `offset`, given the other probes that will be attached to
    /// the same function (their offsets; e.g. the pre-probe of the same span).
    pub fn check(&self, offset: u32, other_probes: &[u32]) -> Result<ProbeCheck, PlacementError> {
        let len = self.code.len();
        if offset >= len {
            return Err(PlacementError::OutsideFunction {
                function: self.code.function.name.to_owned(),
                offset,
                size: len,
            });
        }
        let mut check = ProbeCheck {
            offset,
            address: offset,
            kind: ProbeKind::JumpOptimized,
            region: None,
            blockers: self.everywhere.clone(),
            notes: Vec::new(),
        };
        // arch_adjust_kprobe_addr: a probe on the function entry moves past endbr64.
        if self.endbr && offset == 0 {
            check.address = 4;
            check.notes.push(ProbeNote::MovedPastEndbr { to: 4 });
        }
        let address = check.address;
        self.registration(&mut check);
        let registers_as_int3 = check
            .blockers
            .iter()
            .all(|b| !matches!(b.kind(), ProbeKind::Refused | ProbeKind::Ftrace));
        if registers_as_int3 {
            self.optimization(&mut check, other_probes);
        }
        for &p in other_probes {
            let holds_us = p < address
                && self.region_at(p).is_some_and(|region| address < region.end)
                && self.check(p, &[]).is_ok_and(|other| other.is_optimized());
            if holds_us {
                check.notes.push(ProbeNote::DeoptimizesProbe { probe: p });
            }
        }
        check.kind = check
            .blockers
            .iter()
            .map(ProbeBlocker::kind)
            .max()
            .unwrap_or(ProbeKind::JumpOptimized);
        // Unsafe only matters if the kernel would optimize.
        if check.kind == ProbeKind::Unsafe
            && check.blockers.iter().any(|b| b.kind() == ProbeKind::Int3)
        {
            check.kind = ProbeKind::Int3;
        }
        Ok(check)
    }

    /// The bytes an optimized probe at `offset` would replace: the instructions covering its
    /// first five bytes; `None` off an instruction boundary or too close to the end.
    pub fn region_at(&self, offset: u32) -> Option<Range<u32>> {
        let n = self.code.index_at(offset)?;
        let mut end = offset;
        for insn in &self.code.insns[n..] {
            if end - offset >= JUMP_SIZE {
                break;
            }
            end = insn.end();
        }
        (end - offset >= JUMP_SIZE).then_some(offset..end)
    }

    /// Rules of `register_kprobe`: `check_kprobe_address_safe` and `can_probe`.
    fn registration(&self, check: &mut ProbeCheck) {
        let address = check.address;
        if self
            .reserved_at(address, ReservedBy::Ftrace)
            .is_some_and(|r| r.start == address)
        {
            check.blockers.push(if self.config.kprobes_on_ftrace {
                ProbeBlocker::FtraceSite
            } else {
                ProbeBlocker::FtraceSiteRefused
            });
        }
        for by in [ReservedBy::JumpLabel, ReservedBy::StaticCall] {
            if let Some(r) = self.reserved_at(address, by) {
                check
                    .blockers
                    .push(ProbeBlocker::OnReservedSite { by, site: r.start });
            }
        }
        if self.smp_locks.contains(&address) {
            check
                .notes
                .push(ProbeNote::UniprocessorLock { at: address });
        }
        match self.code.index_at(address) {
            None => check.blockers.push(ProbeBlocker::NotInstructionBoundary),
            Some(n) => {
                let insn = &self.code.insns[n];
                if !insn.is_invalid()
                    && Opcode::parse(insn.bytes(self.code.function)).is_exception()
                {
                    check.blockers.push(ProbeBlocker::ExceptionInstruction);
                }
            }
        }
    }

    /// Rules of `arch_prepare_optimized_kprobe` and `arch_check_optimized_kprobe`.
    fn optimization(&self, check: &mut ProbeCheck, other_probes: &[u32]) {
        let address = check.address;
        let function = self.code.function;
        // can_optimize
        let room = self.code.len() - address;
        if room < JUMP_SIZE {
            check.blockers.push(ProbeBlocker::TooCloseToEnd { room });
        }
        if let Some(&insn) = self.ex_table.first() {
            check.blockers.push(ProbeBlocker::ExceptionTable { insn });
        }
        if let Some(at) = self.undecodable {
            check.blockers.push(ProbeBlocker::Undecodable { at });
        }
        if !self.config.retpoline && !self.config.ibt {
            for &at in &self.indirect {
                check.blockers.push(ProbeBlocker::IndirectJump { at });
            }
        }
        let inside = |t: u32| address < t && t <= address + JUMP_SIZE;
        for &(from, target) in &self.jumps {
            if inside(target) {
                check
                    .blockers
                    .push(ProbeBlocker::JumpIntoRegion { from, target });
            }
        }
        // copy_optimized_instructions
        let Some(region) = self.region_at(address) else {
            return;
        };
        let first = self
            .code
            .index_at(address)
            .expect("region starts at an instruction");
        for insn in self.code.insns[first..]
            .iter()
            .take_while(|i| i.offset < region.end)
        {
            self.note_fields(insn, check);
            let is_site = self.reserved.iter().any(|(_, r)| r.start == insn.offset);
            if is_site {
                continue; // judged as reserved text below: its live bytes are not the object's
            }
            let op = Opcode::parse(insn.bytes(function));
            if let Err(what) = op.copyable_and_boostable() {
                let name = if insn.is_invalid() {
                    "(bad)".to_owned()
                } else {
                    format!("{:?}", insn.instruction.mnemonic()).to_lowercase()
                };
                check.blockers.push(ProbeBlocker::NotBoostable {
                    at: insn.offset,
                    insn: if what.is_empty() {
                        name
                    } else {
                        format!("{name} ({what})")
                    },
                });
            }
        }
        // The *_text_reserved checks take [src, src + len - 1], inclusive.
        let last = region.end - 1;
        for (by, r) in &self.reserved {
            if r.start <= last && address < r.end {
                check.blockers.push(ProbeBlocker::RegionReserved {
                    by: *by,
                    site: r.start,
                });
            }
        }
        for &at in &self.smp_locks {
            if at != address && address <= at && at < last {
                check.notes.push(ProbeNote::UniprocessorLock { at });
            }
        }
        for site in &self.alternatives {
            if site.start < region.end && address < site.end {
                check
                    .notes
                    .push(ProbeNote::Alternative { site: site.clone() });
            }
        }
        // arch_check_optimized_kprobe
        for &p in other_probes {
            if address < p && p < region.end {
                check
                    .blockers
                    .push(ProbeBlocker::OtherProbeInRegion { probe: p });
            }
        }
        // Ours: the kernel decodes only this symbol, not its .cold part.
        for (from, target) in &self.foreign {
            if inside(*target) {
                check.blockers.push(ProbeBlocker::ForeignJumpIntoRegion {
                    from: from.clone(),
                    target: *target,
                });
            }
        }
        check.region = Some(region);
    }

    fn note_fields(&self, insn: &Insn, check: &mut ProbeCheck) {
        let FunctionCode {
            object, function, ..
        } = self.code;
        for r in insn.relocs.iter().flatten() {
            let referent = insn.reloc_referent(object, function, *r);
            check.notes.push(ProbeNote::Relocated {
                at: insn.offset,
                field: r.field,
                symbol: referent_text(&referent),
            });
        }
        if insn.instruction.is_ip_rel_memory_operand() {
            check.notes.push(ProbeNote::RipRelative { at: insn.offset });
        }
    }

    fn reserved_at(&self, at: u32, by: ReservedBy) -> Option<&Range<u32>> {
        self.reserved
            .iter()
            .find(|(b, r)| *b == by && r.contains(&at))
            .map(|(_, r)| r)
    }
}

/// `endbr64` (or `endbr32`) at the function's start.
fn is_endbr(bytes: &[u8]) -> bool {
    matches!(bytes, [0xf3, 0x0f, 0x1e, 0xfa | 0xfb, ..])
}

/// Blockers that hold for the whole function: its section and its symbol.
fn symbol_blockers(object: &ObjectFile<'_>, function: &Function<'_>) -> Vec<ProbeBlocker> {
    let mut out = Vec::new();
    // within_kprobe_blacklist also checks `foo` for `foo.cold`, `foo.isra.0`, ...
    let base = function.name.split('.').next().unwrap_or(function.name);
    let parts: Vec<&Function<'_>> = std::iter::once(function)
        .chain(
            object
                .functions()
                .iter()
                .filter(|f| base != function.name && f.name == base),
        )
        .collect();
    for f in &parts {
        let section = f.section_name;
        let blacklisted = [
            ".kprobes.text",
            ".noinstr.text",
            ".cpuidle.text",
            ".entry.text",
        ]
        .iter()
        .any(|s| section == *s || section.starts_with(&format!("{s}.")));
        if blacklisted {
            out.push(ProbeBlocker::BlacklistedSection {
                section: section.to_owned(),
            });
        }
    }
    if function.section_name.starts_with(".init.text")
        || function.section_name.starts_with(".exit.text")
    {
        out.push(ProbeBlocker::InitText {
            section: function.section_name.to_owned(),
        });
    }
    if function.name.starts_with("__cfi_") || function.name.starts_with("__pfx_") {
        out.push(ProbeBlocker::CfiPreamble);
    }
    for section in object
        .sections()
        .iter()
        .filter(|s| s.name == "_kprobe_blacklist")
    {
        for r in &section.relocs {
            let referent = object.resolve(r.target, r.addend);
            let named =
                |f: &Function<'_>| f.name == referent.name || f.aliases.contains(&referent.name);
            if referent.offset == 0 && parts.iter().any(|f| named(f)) {
                out.push(ProbeBlocker::NokprobeSymbol {
                    symbol: referent.name.to_owned(),
                });
            }
        }
    }
    out.dedup();
    out
}

/// An entry of a kernel table section: the section's bytes and where the entry starts.
struct TableEntry<'a> {
    data: &'a [u8],
    offset: usize,
}

impl TableEntry<'_> {
    /// Byte `at` of the entry.
    fn byte(&self, at: usize) -> Option<u8> {
        self.data.get(self.offset + at).copied()
    }
}

/// Entries of every section named `name` (`entry`-byte records) whose field at `field` is
/// relocated to an address inside `function`; each with the function offset it names.
fn table_sites<'a>(
    object: &ObjectFile<'a>,
    function: &Function<'a>,
    name: &str,
    entry: u32,
    field: u32,
) -> Vec<(TableEntry<'a>, u32)> {
    let mut out = Vec::new();
    for section in object.sections().iter().filter(|s| s.name == name) {
        for r in &section.relocs {
            if r.offset % entry != field {
                continue;
            }
            let Some((target_section, address)) = reloc_address(r) else {
                continue;
            };
            let start = function.address as i64;
            let end = start + function.bytes.len() as i64;
            if target_section == function.section && (start..end).contains(&address) {
                out.push((
                    TableEntry {
                        data: section.data,
                        offset: (r.offset - field) as usize,
                    },
                    (address - start) as u32,
                ));
            }
        }
    }
    out.sort_by_key(|(_, at)| *at);
    out
}

/// `S + A` of a relocation: the address a table entry names (for PC-relative entries the
/// kernel adds the field's own address back).
fn reloc_address(r: &Reloc<'_>) -> Option<(SectionId, i64)> {
    match r.target {
        RelocTarget::Section(id) => Some((id, r.addend)),
        RelocTarget::Symbol {
            section: Some(id),
            value,
            ..
        } => Some((id, (value as i64).wrapping_add(r.addend))),
        _ => None,
    }
}

/// The opcode of an instruction as the kernel's decoder sees it: legacy prefixes, then the
/// opcode bytes after any REX prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Opcode {
    /// `%cs` (0x2e) prefix present.
    cs_prefix: bool,
    /// Address-size (0x67) prefix present.
    address_size_prefix: bool,
    /// VEX or EVEX encoded.
    vex: bool,
    bytes: [u8; 3],
    nbytes: u8,
    /// The byte after the opcode (ModRM, for the opcodes that have one).
    modrm: u8,
}

/// `twobyte_is_boostable` of arch/x86/kernel/kprobes/core.c, one string per row of 16 second
/// opcode bytes (`0f 00` ... `0f ff`), read left to right.
const TWOBYTE_BOOSTABLE: [&str; 16] = [
    "0011001011000000", // 00
    "0000000000000001", // 10
    "1111000000000000", // 20
    "0100000000000000", // 30
    "1111111111111111", // 40
    "0000000000000000", // 50
    "1111111111110011", // 60
    "0000111100000011", // 70
    "0000000000000000", // 80
    "1111111111111111", // 90
    "1101110011011101", // a0
    "1111111100011111", // b0
    "1100000011111111", // c0
    "0111010011011101", // d0
    "0110010011011101", // e0
    "0111010011101110", // f0
];

impl Opcode {
    fn parse(bytes: &[u8]) -> Self {
        let mut op = Opcode {
            cs_prefix: false,
            address_size_prefix: false,
            vex: false,
            bytes: [0; 3],
            nbytes: 0,
            modrm: 0,
        };
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            match b {
                0x2e => op.cs_prefix = true,
                0x67 => op.address_size_prefix = true,
                0xf0 | 0xf2 | 0xf3 | 0x26 | 0x36 | 0x3e | 0x64 | 0x65 | 0x66 => {}
                _ => break,
            }
            i += 1;
        }
        if bytes.get(i).is_some_and(|b| (0x40..=0x4f).contains(b)) {
            i += 1;
        }
        if bytes
            .get(i)
            .is_some_and(|b| matches!(b, 0xc4 | 0xc5 | 0x62))
        {
            op.vex = true;
        }
        let at = |k: usize| bytes.get(k).copied().unwrap_or(0);
        op.bytes[0] = at(i);
        op.nbytes = 1;
        if op.bytes[0] == 0x0f {
            op.bytes[1] = at(i + 1);
            op.nbytes = 2;
            if matches!(op.bytes[1], 0x38 | 0x3a) {
                op.bytes[2] = at(i + 2);
                op.nbytes = 3;
            }
        }
        op.modrm = at(i + usize::from(op.nbytes));
        op
    }

    fn modrm_reg(&self) -> u8 {
        (self.modrm >> 3) & 7
    }

    /// `is_exception_insn` (core.c).
    fn is_exception(&self) -> bool {
        if self.bytes[0] == 0x0f {
            return matches!(self.bytes[1], 0xff | 0xb9 | 0x0b);
        }
        matches!(self.bytes[0], 0xcc | 0xcd | 0xce | 0xf1)
    }

    /// `insn_is_indirect_jump` (opt.c).
    fn is_indirect_jump(&self) -> bool {
        (self.bytes[0] == 0xff && self.modrm_reg() & 6 == 4) || self.bytes[0] == 0xea
    }

    /// The opcodes `insn_jump_into_range` (opt.c) follows.
    fn is_relative_jump(&self) -> bool {
        match self.bytes[0] {
            0xe0..=0xe3 | 0xe9 | 0xeb => true,
            0x0f => self.bytes[1] & 0xf0 == 0x80,
            b => b & 0xf0 == 0x70,
        }
    }

    /// `__copy_instruction` and `can_boost` (core.c); the error says why not (empty when the
    /// mnemonic says it all).
    fn copyable_and_boostable(&self) -> Result<(), &'static str> {
        // __copy_instruction
        if self.bytes[0] == 0xcc {
            return Err("a breakpoint");
        }
        if self.bytes[0] == 0x17 || (self.bytes[0] == 0x8e && self.modrm_reg() == 2) {
            return Err("masks exceptions");
        }
        // can_boost
        if self.vex {
            // The kernel's decoder folds VEX opcodes differently; kernel C code has none.
            return Err("VEX/EVEX, not judged");
        }
        if self.nbytes == 2 {
            let row = TWOBYTE_BOOSTABLE[usize::from(self.bytes[1] >> 4)].as_bytes();
            return if row[usize::from(self.bytes[1] & 0xf)] == b'1' {
                Ok(())
            } else {
                Err("")
            };
        }
        if self.nbytes != 1 {
            return Err("three-byte opcode");
        }
        if self.cs_prefix || self.address_size_prefix {
            return Err("%cs or address-size prefix");
        }
        let reg = self.modrm_reg();
        let ok = match self.bytes[0] {
            0x62 | 0x70..=0x7f | 0x9a | 0xcc..=0xce | 0xd6 | 0xd8..=0xdf | 0xe0..=0xe3 => false,
            0xe8 | 0xe9 | 0xeb | 0xf0..=0xf4 => false,
            0xc0 | 0xc1 | 0xd0..=0xd3 => reg != 0b110,
            0xf6 | 0xf7 => reg != 0b001,
            0xfe => reg <= 0b001,
            0xff => matches!(reg, 0b000 | 0b001 | 0b100),
            _ => true,
        };
        if ok { Ok(()) } else { Err("") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cfg::Cfg;
    use crate::decode::Disassembler;

    fn check_bytes(bytes: &[u8], offset: u32, others: &[u32]) -> ProbeCheck {
        check_with(KernelProbeConfig::default(), bytes, offset, others)
    }

    fn check_with(
        config: KernelProbeConfig,
        bytes: &[u8],
        offset: u32,
        others: &[u32],
    ) -> ProbeCheck {
        let object = ObjectFile::from_code("t", &[("f", bytes)]);
        let f = &object.functions()[0];
        let insns = Disassembler::new().decode(f);
        let cfg = Cfg::build(&object, f, &insns);
        let sites = ProbeSites::new(FunctionCode::new(&object, f, &insns, &cfg), config);
        sites.check(offset, others).unwrap()
    }

    #[test]
    fn config_decides_indirect_jumps_and_endbr() {
        // 0: endbr64; 4: mov %rax,%rdx; 7: nopl 0x0(%rax,%rax,1); c: jmp *%rax
        let bytes = [
            0xf3, 0x0f, 0x1e, 0xfa, 0x48, 0x89, 0xc2, 0x0f, 0x1f, 0x44, 0, 0, 0xff, 0xe0,
        ];
        let debian = check_bytes(&bytes, 4, &[]);
        assert_eq!(debian.kind, ProbeKind::JumpOptimized, "{debian}");
        let plain = KernelProbeConfig {
            ibt: false,
            retpoline: false,
            kprobes_on_ftrace: true,
        };
        let old = check_with(plain, &bytes, 4, &[]);
        assert_eq!(old.blockers, [ProbeBlocker::IndirectJump { at: 0xc }]);
        // Without IBT a probe at +0 stays on the endbr64.
        let entry = check_with(plain, &bytes, 0, &[]);
        assert_eq!(entry.address, 0);
    }

    #[test]
    fn boostable_table_matches_the_kernel_rows() {
        let boost = |b: &[u8]| Opcode::parse(b).copyable_and_boostable().is_ok();
        assert!(boost(&[0x0f, 0x1f, 0x44, 0, 0]), "nopl");
        assert!(boost(&[0x0f, 0xb6, 0xc0]), "movzbl");
        assert!(boost(&[0x0f, 0xaf, 0xc1]), "imul");
        assert!(
            boost(&[0xf0, 0x49, 0x0f, 0xc1, 0x54, 0x24, 0x38]),
            "lock xadd"
        );
        assert!(!boost(&[0x0f, 0x86, 0, 0, 0, 0]), "jbe rel32");
        assert!(!boost(&[0x0f, 0xae, 0xe8]), "lfence");
        assert!(!boost(&[0x0f, 0x0b]), "ud2");
        assert!(!boost(&[0x76, 0x10]), "jbe rel8");
        assert!(!boost(&[0xe8, 0, 0, 0, 0]), "call");
        assert!(!boost(&[0x2e, 0x89, 0xc8]), "%cs prefix");
        assert!(
            boost(&[0xff, 0xe0]),
            "jmp *%rax is boostable (the kernel's own table)"
        );
        assert!(!boost(&[0xff, 0xd0]), "call *%rax");
        assert!(boost(&[0xc3]), "ret");
        assert!(!boost(&[0xf6, 0xc8, 1]), "test /1 (reserved on Intel)");
        assert_eq!(
            TWOBYTE_BOOSTABLE.iter().map(|r| r.len()).sum::<usize>(),
            256
        );
    }

    #[test]
    fn optimizes_a_plain_region() {
        // 0: mov %rax,%rdx; 3: lock xadd %rdx,0x38(%r12); a: ret
        let bytes = [
            0x48, 0x89, 0xc2, 0xf0, 0x49, 0x0f, 0xc1, 0x54, 0x24, 0x38, 0xc3,
        ];
        let c = check_bytes(&bytes, 0, &[]);
        assert_eq!(c.kind, ProbeKind::JumpOptimized, "{c}");
        assert_eq!(c.region, Some(0..10));
    }

    #[test]
    fn jcc_in_region_and_jump_targets() {
        // 0: cmp $0xffff,%ebp; 6: jbe 0xd; 8: mov $0x10,%eax; d: ret
        let bytes = [
            0x81, 0xfd, 0xff, 0xff, 0, 0, 0x76, 0x05, 0xb8, 0x10, 0, 0, 0, 0xc3,
        ];
        let at_jbe = check_bytes(&bytes, 6, &[]);
        assert_eq!(at_jbe.kind, ProbeKind::Int3);
        assert!(
            matches!(&at_jbe.blockers[..], [ProbeBlocker::NotBoostable { at: 6, insn }] if insn == "jbe"),
            "{at_jbe}"
        );
        // The jbe targets 0xd = 8 + 5: inside [addr + 1, addr + 5] by the kernel's inclusive bound.
        let at_mov = check_bytes(&bytes, 8, &[]);
        assert_eq!(
            at_mov.blockers,
            [ProbeBlocker::JumpIntoRegion {
                from: 6,
                target: 0xd
            }]
        );
        let mid = check_bytes(&bytes, 7, &[]);
        assert_eq!(mid.kind, ProbeKind::Refused);
        assert_eq!(mid.blockers, [ProbeBlocker::NotInstructionBoundary]);
        let end = check_bytes(&bytes, 0xd, &[]);
        assert_eq!(end.blockers, [ProbeBlocker::TooCloseToEnd { room: 1 }]);
    }

    #[test]
    fn probes_interact() {
        // 0: mov %rax,%rdx (3); 3: mov %rcx,%rsi (3); 6: nopl (5); b: ret
        let bytes = [
            0x48, 0x89, 0xc2, 0x48, 0x89, 0xce, 0x0f, 0x1f, 0x44, 0, 0, 0xc3,
        ];
        let first = check_bytes(&bytes, 0, &[3]);
        assert_eq!(
            first.blockers,
            [ProbeBlocker::OtherProbeInRegion { probe: 3 }]
        );
        let second = check_bytes(&bytes, 3, &[0]);
        assert_eq!(second.kind, ProbeKind::JumpOptimized);
        assert_eq!(second.notes, [ProbeNote::DeoptimizesProbe { probe: 0 }]);
    }

    #[test]
    fn entry_sites() {
        // 0: endbr64; 4: nopl (%rax); 7: ud2; 9: ret
        let bytes = [0xf3, 0x0f, 0x1e, 0xfa, 0x0f, 0x1f, 0x00, 0x0f, 0x0b, 0xc3];
        let entry = check_bytes(&bytes, 0, &[]);
        assert_eq!((entry.address, entry.kind), (4, ProbeKind::Int3), "{entry}");
        assert!(matches!(
            &entry.blockers[..],
            [ProbeBlocker::NotBoostable { at: 7, .. }]
        ));
        assert_eq!(check_bytes(&bytes, 2, &[]).kind, ProbeKind::Refused);
        let trap = check_bytes(&bytes, 7, &[]);
        assert_eq!(trap.blockers, [ProbeBlocker::ExceptionInstruction]);
    }
}
