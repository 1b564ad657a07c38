//! Probe placements and Safe Spans of every seed of a C fixture, as expectation lines
//! (`testdata/spans/README.md`).
//!
//! Each seed is its own critical span (`offset..offset + len`). The recipe it stands for
//! rewrites what the seed writes and reads what the seed reads (its inputs and address
//! registers), as [`Locations::written_by`] and [`Locations::read_by`] say.

use kernelx_x86::{
    Cfg, Disassembler, ExitKind, ExtensionReason, FunctionCode, KernelProbeConfig, Locations,
    ObjectFile, Placement, ProbeBlocker, ProbeCheck, ProbeNote, ProbeSites, ReservedBy,
    SafeSpanSlice, ScanStop, SliceOptions, place_post_probe, slice_span,
};

/// Which lines a test checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// `place ...` for every seed, and `probe ...` for each one the fixture asks about.
    Placement,
    /// `span ...` for every seed.
    Span,
}

impl Lines {
    fn prefixes(self) -> &'static [&'static str] {
        match self {
            Lines::Placement => &["place ", "probe "],
            Lines::Span => &["span "],
        }
    }
}

/// Compiles `testdata/spans/<name>`, diffs the builds, and checks the fixture's `place`/`probe`
/// or `span` expectations against what the analyses find in V1.
#[track_caller]
pub fn check(name: &str, lines: Lines) {
    let fixture = super::load_fixture("spans", name);
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let objects = super::compile_fixture(&fixture, dir.path());
    let (parsed, diff) = super::parse_and_diff(name, &fixture, &objects);
    let v1 = &parsed[0];
    let expected: Vec<(usize, String)> = fixture
        .expect
        .iter()
        .filter(|(_, e)| lines.prefixes().iter().any(|p| e.starts_with(p)))
        .cloned()
        .collect();
    let mut actual = Vec::new();
    let mut context = String::new();
    for seed in &diff.seeds {
        let function = v1
            .find_function(&seed.function, &seed.section)
            .unwrap_or_else(|| panic!("{name}: no function {}", seed.function));
        let cs = seed.offset..seed.offset + u32::from(seed.len);
        with_code(v1, function.name, |code, sites| {
            let label = format!("{}+{:#x}..{:#x}", function.name, cs.start, cs.end);
            match lines {
                Lines::Placement => {
                    let mut dis = Disassembler::new();
                    let n = code.index_at(cs.start).expect("seeds start instructions");
                    let du = dis.def_use(&code.insns[n].instruction);
                    let placement = place_post_probe(
                        sites,
                        cs.end,
                        &Locations::written_by(&du),
                        &Locations::read_by(&du),
                        &[],
                    )
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                    context.push_str(&format!("{label} ({}): {placement}\n", seed.asm));
                    actual.push(format!("place {label} {}", render_placement(&placement)));
                }
                Lines::Span => {
                    let slice = slice_span(code, cs.clone(), SliceOptions::default())
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                    context.push_str(&format!("{label} ({}): {slice}\n", seed.asm));
                    actual.push(format!("span {label} {}", render_slice(&slice)));
                }
            }
        });
    }
    if lines == Lines::Placement {
        for (line, e) in &expected {
            let Some(rest) = e.strip_prefix("probe ") else {
                continue;
            };
            let at = rest.split_whitespace().next().unwrap_or("");
            let (function, offset) = parse_site(at)
                .unwrap_or_else(|| panic!("{name}:{line}: `probe <function>+<offset>` expected"));
            with_code(v1, function, |_, sites| {
                let check = sites
                    .check(offset, &[])
                    .unwrap_or_else(|e| panic!("{name}:{line}: {e}"));
                context.push_str(&format!("{at}: {check}\n"));
                actual.push(format!("probe {at} {}", render_check(&check)));
            });
        }
    }
    actual.sort();
    super::assert_same_lines(
        &fixture.path.display().to_string(),
        &expected,
        &actual,
        &format!("what the analyses found:\n{context}"),
    );
}

/// Runs `f` on V1's function `name`, decoded, with its CFG and probe-site facts (Debian 6.12
/// configuration).
#[track_caller]
pub fn with_code<R>(
    object: &ObjectFile<'_>,
    name: &str,
    f: impl FnOnce(&FunctionCode<'_, '_>, &ProbeSites<'_, '_>) -> R,
) -> R {
    let function = object
        .function(name)
        .unwrap_or_else(|| panic!("{}: no function {name}", object.label()));
    let insns = Disassembler::new().decode(function);
    let cfg = Cfg::build(object, function, &insns);
    let code = FunctionCode::new(object, function, &insns, &cfg);
    let sites = ProbeSites::new(code, KernelProbeConfig::DEBIAN_6_12);
    f(&code, &sites)
}

/// `function+0x1f`.
fn parse_site(at: &str) -> Option<(&str, u32)> {
    let (function, offset) = at.rsplit_once('+')?;
    let offset = u32::from_str_radix(offset.strip_prefix("0x")?, 16).ok()?;
    Some((function, offset))
}

/// `-> 0xf int3 [0xf:int3] stop consumer@0xf`.
pub fn render_placement(p: &Placement) -> String {
    let chosen = match p.chosen() {
        Some(c) => format!("{:#x} {}", c.offset, c.kind),
        None => "none".to_owned(),
    };
    let candidates: Vec<String> = p
        .candidates
        .iter()
        .map(|c| format!("{:#x}:{}", c.offset, c.kind))
        .collect();
    let stop = match p.stop {
        ScanStop::Consumer { at } => format!("consumer@{at:#x}"),
        ScanStop::Writer { at } => format!("writer@{at:#x}"),
        ScanStop::Call { at } => format!("call@{at:#x}"),
        ScanStop::ControlTransfer { at } => format!("transfer@{at:#x}"),
        ScanStop::BranchTarget { at } => format!("target@{at:#x}"),
        ScanStop::FunctionEdge => "edge".to_owned(),
    };
    let mut out = format!("-> {chosen} [{}] stop {stop}", candidates.join(" "));
    if !p.also_reached_from.is_empty() {
        let from: Vec<String> = p.also_reached_from.iter().map(|o| o.to_string()).collect();
        out.push_str(&format!(" joins {}", from.join(",")));
    }
    out
}

/// `int3 not-boostable:jbe@0xf`, `ftrace at 0x4 ftrace-site`, notes after `+`.
pub fn render_check(c: &ProbeCheck) -> String {
    let mut out = c.kind.to_string();
    if c.address != c.offset {
        out.push_str(&format!(" at {:#x}", c.address));
    }
    for b in &c.blockers {
        out.push(' ');
        out.push_str(&blocker(b));
    }
    for n in &c.notes {
        let note = match n {
            // Shown as `at <address>`.
            ProbeNote::MovedPastEndbr { .. } => continue,
            ProbeNote::Relocated { at, symbol, .. } => format!("reloc:{symbol}@{at:#x}"),
            ProbeNote::RipRelative { at } => format!("rip@{at:#x}"),
            ProbeNote::Alternative { site } => format!("alt@{:#x}..{:#x}", site.start, site.end),
            ProbeNote::UniprocessorLock { at } => format!("up-lock@{at:#x}"),
            ProbeNote::DeoptimizesProbe { probe } => format!("deopt@{probe:#x}"),
            other => format!("{other:?}"),
        };
        out.push_str(" +");
        out.push_str(&note);
    }
    out
}

fn blocker(b: &ProbeBlocker) -> String {
    let by = |by: &ReservedBy| match by {
        ReservedBy::Ftrace => "ftrace",
        ReservedBy::JumpLabel => "jump-label",
        ReservedBy::StaticCall => "static-call",
    };
    match b {
        ProbeBlocker::NotInstructionBoundary => "not-boundary".to_owned(),
        ProbeBlocker::ExceptionInstruction => "exception-insn".to_owned(),
        ProbeBlocker::BlacklistedSection { section } => format!("blacklisted:{section}"),
        ProbeBlocker::NokprobeSymbol { symbol } => format!("nokprobe:{symbol}"),
        ProbeBlocker::CfiPreamble => "cfi".to_owned(),
        ProbeBlocker::InitText { section } => format!("init:{section}"),
        ProbeBlocker::OnReservedSite { by: b, site } => format!("on-{}@{site:#x}", by(b)),
        ProbeBlocker::FtraceSite => "ftrace-site".to_owned(),
        ProbeBlocker::FtraceSiteRefused => "ftrace-refused".to_owned(),
        ProbeBlocker::TooCloseToEnd { room } => format!("too-close:{room}"),
        ProbeBlocker::ExceptionTable { insn } => format!("extable@{insn:#x}"),
        ProbeBlocker::Undecodable { at } => format!("undecodable@{at:#x}"),
        ProbeBlocker::IndirectJump { at } => format!("indirect@{at:#x}"),
        ProbeBlocker::JumpIntoRegion { from, target } => {
            format!("jump-into:{from:#x}->{target:#x}")
        }
        ProbeBlocker::NotBoostable { at, insn } => {
            format!("not-boostable:{}@{at:#x}", insn.replace(' ', "_"))
        }
        ProbeBlocker::RegionReserved { by: b, site } => format!("reserved-{}@{site:#x}", by(b)),
        ProbeBlocker::OtherProbeInRegion { probe } => format!("other-probe@{probe:#x}"),
        ProbeBlocker::ForeignJumpIntoRegion { from, target } => {
            format!("foreign-jump:{from}->{target:#x}")
        }
        other => format!("{other:?}"),
    }
}

/// `ranges 0x9..0x17 exits 0x12:return escapes 0xc:stored`.
pub fn render_slice(s: &SafeSpanSlice) -> String {
    let list = |items: Vec<String>| {
        if items.is_empty() {
            "-".to_owned()
        } else {
            items.join(",")
        }
    };
    let ranges = list(
        s.ranges
            .iter()
            .map(|r| format!("{:#x}..{:#x}", r.start, r.end))
            .collect(),
    );
    let exits = list(
        s.exits
            .iter()
            .map(|(at, k)| {
                let kind = match k {
                    ExitKind::Return => "return".to_owned(),
                    ExitKind::TailCall { target } => format!("tail:{target}"),
                    ExitKind::Cold { target } => format!("cold:{target}"),
                    ExitKind::IndirectJump => "indirect".to_owned(),
                    ExitKind::Trap => "trap".to_owned(),
                    ExitKind::FallsOffEnd => "falls-off".to_owned(),
                };
                format!("{at:#x}:{kind}")
            })
            .collect(),
    );
    let regs = |regs: &[iced_x86::Register]| {
        regs.iter()
            .map(|r| format!("{r:?}").to_lowercase())
            .collect::<Vec<_>>()
            .join("+")
    };
    let escapes = list(
        s.conservative
            .iter()
            .map(|e| {
                let what = match &e.reason {
                    ExtensionReason::Stored { .. } => "stored".to_owned(),
                    ExtensionReason::StackAddressEscapes { .. } => "stack-escape".to_owned(),
                    ExtensionReason::PassedToCall { callee, regs: r } => format!(
                        "call:{}({})",
                        callee.as_deref().unwrap_or("indirect"),
                        regs(r)
                    ),
                    ExtensionReason::Returned { regs: r } => format!("returned({})", regs(r)),
                    ExtensionReason::TailCall { target, regs: r } => {
                        format!("tail:{target}({})", regs(r))
                    }
                    ExtensionReason::ColdPart { target } => format!("cold:{target}"),
                    ExtensionReason::IndirectJump => "indirect".to_owned(),
                    other => format!("{other:?}"),
                };
                format!("{:#x}:{what}", e.at)
            })
            .collect(),
    );
    let mut out = format!("ranges {ranges} exits {exits} escapes {escapes}");
    if !s.derived_branches.is_empty() {
        let b: Vec<String> = s
            .derived_branches
            .iter()
            .map(|o| format!("{o:#x}"))
            .collect();
        out.push_str(&format!(" branches {}", b.join(",")));
    }
    out
}
