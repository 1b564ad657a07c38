//! Differential test of SIE synthesis against the CPU (analysis issue, correctness bar 1).
//!
//! Each case is a block assembled for V1, V2, V3 and then decoded again, so synthesis sees
//! the encodings a compiler would choose (imm8 vs imm32, `shr %reg` for a count of 1, ...).
//! `synthesize` builds a recipe; then, for every V' of the case (V2, V3 and edge values) and
//! 1000 pseudo-random states, the real instruction bytes run natively:
//!
//! ```text
//!  s0 ─ V1 prefix ─► capture ─ V1 critical span ─► apply(V') ──────► compare ─ consumers ─► A
//!  s0 ─ V' prefix + critical span ───────────────────────────────►    at the   ─ consumers ─► B
//!                                                                     probe
//! ```
//!
//! At the probe and after the consumers, every GPR, the data page and the per-CPU (`%gs`) page
//! must be equal bit for bit, and so must every flag the recipe claims; the recipe must leave
//! the other flags alone. Conditional branches among the consumers run as `setcc %r15b`, so a
//! wrong flag shows up as a wrong register. The trampoline loads all GPRs but `%rsp` and
//! RFLAGS from a state block, runs the code and stores them back.
//!
//! Per-CPU stores and compares run with a real GS base (`arch_prctl(ARCH_SET_GS)` on the test
//! thread). `%gs:`-with-RIP-relative addressing is covered by the evaluator only (the page
//! would have to sit at gs base + a code address).
//!
//! Register conventions of the cases: `%rbx` holds the data page address + 0x100 and `%r13`
//! a small index (0..16) so that memory operands stay inside the pages; `%r15` receives the
//! converted branch conditions. Everything else is random, biased towards edge values and the
//! IVs of the case (so compares hit equality and off-by-one).

use iced_x86::code_asm::*;
use iced_x86::{Code, Decoder, DecoderOptions, Instruction, MemoryOperand, Register};
use kernelx_x86::symex::magic::{self, MagicForm};
use kernelx_x86::symex::{
    FlagSet, Gpr, MachineState, Recipe, RecipeSemantics, SeedContext, SeedVersion, SynthesisKind,
    Width, synthesize,
};

const TRIALS: usize = 1000;

mod native {
    use iced_x86::code_asm::*;
    use iced_x86::{Code, ConditionCode, Instruction, Register};

    const PAGE: usize = 4096;
    /// Code area; the last 64 KiB are the "virtual" addresses blocks are decoded at.
    const CODE: usize = 4 << 20;
    const VIRT: usize = 64 << 10;

    /// The state block the trampoline loads and stores: GPRs in hardware order, then RFLAGS.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Regs {
        pub gpr: [u64; 16],
        pub rflags: u64,
    }

    /// An executable mapping with a data page and a per-CPU page (the thread's GS base).
    pub struct Machine {
        base: *mut u8,
        len: usize,
        used: usize,
        old_gs: u64,
        pub data: u64,
        pub percpu: u64,
        pub virt: u64,
    }

    /// A compiled snippet.
    #[derive(Clone, Copy)]
    pub struct Code_ {
        addr: usize,
    }

    const ARCH_SET_GS: libc::c_long = 0x1001;
    const ARCH_GET_GS: libc::c_long = 0x1004;

    impl Machine {
        pub fn new() -> Machine {
            let len = CODE + 2 * PAGE;
            // SAFETY: a fresh anonymous private mapping; the result is checked below.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(
                p,
                libc::MAP_FAILED,
                "mmap of an executable test page failed"
            );
            let base = p.cast::<u8>();
            let data = base as u64 + CODE as u64;
            let percpu = data + PAGE as u64;
            let mut old_gs = 0u64;
            // SAFETY: arch_prctl only reads/writes this thread's GS base; the pointer is valid.
            unsafe {
                assert_eq!(
                    libc::syscall(libc::SYS_arch_prctl, ARCH_GET_GS, &mut old_gs as *mut u64),
                    0
                );
                assert_eq!(
                    libc::syscall(libc::SYS_arch_prctl, ARCH_SET_GS, percpu),
                    0,
                    "arch_prctl(ARCH_SET_GS)"
                );
            }
            Machine {
                base,
                len,
                used: 0,
                old_gs,
                data,
                percpu,
                virt: base as u64 + (CODE - VIRT) as u64,
            }
        }

        /// The data page and the per-CPU page.
        pub fn pages(&mut self) -> (&mut [u8], &mut [u8]) {
            // SAFETY: both pages are inside our mapping, disjoint, and live as long as `self`.
            unsafe {
                (
                    std::slice::from_raw_parts_mut(self.data as *mut u8, PAGE),
                    std::slice::from_raw_parts_mut(self.percpu as *mut u8, PAGE),
                )
            }
        }

        /// Assembles trampoline + `snippet` into the code area. Conditional branches in the
        /// snippet become `setcc %r15b`.
        pub fn compile(&mut self, snippet: &[Instruction]) -> Code_ {
            let mut a = CodeAssembler::new(64).unwrap();
            let regs64 = [
                rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15,
            ];
            for r in [rbx, rbp, r12, r13, r14, r15] {
                a.push(r).unwrap();
            }
            a.push(rdi).unwrap();
            a.mov(rax, qword_ptr(rdi + 128)).unwrap();
            a.push(rax).unwrap();
            a.popfq().unwrap();
            for (i, r) in regs64.iter().enumerate() {
                if i != 4 && i != 7 {
                    a.mov(*r, qword_ptr(rdi + 8 * i as i32)).unwrap();
                }
            }
            a.mov(rdi, qword_ptr(rdi + 56)).unwrap();
            for insn in snippet {
                if insn.is_jcc_short_or_near() {
                    a.add_instruction(
                        Instruction::with1(setcc(insn.condition_code()), Register::R15L).unwrap(),
                    )
                    .unwrap();
                } else {
                    a.add_instruction(*insn).unwrap();
                }
            }
            a.push(rdi).unwrap();
            a.mov(rdi, qword_ptr(rsp + 8)).unwrap();
            for (i, r) in regs64.iter().enumerate() {
                if i != 4 && i != 7 {
                    a.mov(qword_ptr(rdi + 8 * i as i32), *r).unwrap();
                }
            }
            a.pushfq().unwrap();
            a.pop(rax).unwrap();
            a.mov(qword_ptr(rdi + 128), rax).unwrap();
            a.pop(rax).unwrap();
            a.mov(qword_ptr(rdi + 56), rax).unwrap();
            a.pop(rdi).unwrap();
            for r in [r15, r14, r13, r12, rbp, rbx] {
                a.pop(r).unwrap();
            }
            a.ret().unwrap();
            let addr = self.base as usize + self.used;
            let bytes = a.assemble(addr as u64).unwrap();
            assert!(self.used + bytes.len() < CODE - VIRT, "code area full");
            // SAFETY: the destination is inside the mapping and not executing.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, bytes.len()) };
            self.used += bytes.len().next_multiple_of(16);
            Code_ { addr }
        }

        /// Runs compiled code on `regs`.
        pub fn run(&self, code: Code_, regs: &mut Regs) {
            // SAFETY: `code` was assembled by `compile` into this executable mapping as a
            // System V function taking the state pointer; it preserves the callee-saved
            // registers and the stack, and only touches the pages of this mapping.
            let f: extern "C" fn(*mut Regs) =
                unsafe { std::mem::transmute::<usize, extern "C" fn(*mut Regs)>(code.addr) };
            f(regs);
        }
    }

    impl Drop for Machine {
        fn drop(&mut self) {
            // SAFETY: restores this thread's GS base and unmaps our own mapping.
            unsafe {
                libc::syscall(libc::SYS_arch_prctl, ARCH_SET_GS, self.old_gs);
                libc::munmap(self.base.cast(), self.len);
            }
        }
    }

    fn setcc(cc: ConditionCode) -> Code {
        match cc {
            ConditionCode::o => Code::Seto_rm8,
            ConditionCode::no => Code::Setno_rm8,
            ConditionCode::b => Code::Setb_rm8,
            ConditionCode::ae => Code::Setae_rm8,
            ConditionCode::e => Code::Sete_rm8,
            ConditionCode::ne => Code::Setne_rm8,
            ConditionCode::be => Code::Setbe_rm8,
            ConditionCode::a => Code::Seta_rm8,
            ConditionCode::s => Code::Sets_rm8,
            ConditionCode::ns => Code::Setns_rm8,
            ConditionCode::p => Code::Setp_rm8,
            ConditionCode::np => Code::Setnp_rm8,
            ConditionCode::l => Code::Setl_rm8,
            ConditionCode::ge => Code::Setge_rm8,
            ConditionCode::le => Code::Setle_rm8,
            _ => Code::Setg_rm8,
        }
    }
}

use native::{Machine, Regs};

/// Addresses a block builder may use.
struct Layout {
    data: u64,
}

type Build = fn(&mut CodeAssembler, i64, &Layout) -> Result<(), IcedError>;
type Check = fn(&[u64; 16], &[u64; 16], i64) -> Result<(), String>;

struct Case {
    name: &'static str,
    kind: SynthesisKind,
    values: [i64; 3],
    /// The compiler's folding of V into the instruction (the builder receives IV).
    iv: fn(i64) -> i64,
    build: Build,
    /// V' that must be accepted and are run natively (V2 and V3 are always run too).
    valid: Vec<i64>,
    /// V' the range must reject.
    invalid: Vec<i64>,
    /// Adjusts the random initial registers.
    setup: fn(&mut [u64; 16]),
    /// A property of the final state of the V' code (e.g. the quotient).
    check: Option<Check>,
    /// How the recipe must obtain its input (`read`, `address`, `undo`, `saved`).
    input: Option<&'static str>,
    /// Bits of a register that may differ at the probe because the code after it never reads
    /// them (a narrowed load); after the consumers every bit must agree again.
    dead_at_probe: Option<(Gpr, u64)>,
}

fn case(
    name: &'static str,
    kind: SynthesisKind,
    values: [i64; 3],
    iv: fn(i64) -> i64,
    build: Build,
) -> Case {
    Case {
        name,
        kind,
        values,
        iv,
        build,
        valid: Vec::new(),
        invalid: Vec::new(),
        setup: |_| {},
        check: None,
        input: None,
        dead_at_probe: None,
    }
}

impl Case {
    fn valid(mut self, v: &[i64]) -> Case {
        self.valid.extend_from_slice(v);
        self
    }
    fn invalid(mut self, v: &[i64]) -> Case {
        self.invalid.extend_from_slice(v);
        self
    }
    fn setup(mut self, f: fn(&mut [u64; 16])) -> Case {
        self.setup = f;
        self
    }
    fn check(mut self, f: Check) -> Case {
        self.check = Some(f);
        self
    }
    fn input(mut self, how: &'static str) -> Case {
        self.input = Some(how);
        self
    }
    fn dead_at_probe(mut self, gpr: Gpr, bits: u64) -> Case {
        self.dead_at_probe = Some((gpr, bits));
        self
    }
}

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn assemble(case: &Case, v: i64, m: &Machine, layout: &Layout) -> Vec<Instruction> {
    let mut a = CodeAssembler::new(64).unwrap();
    (case.build)(&mut a, (case.iv)(v), layout)
        .unwrap_or_else(|e| panic!("{}: assembling V={v}: {e}", case.name));
    let bytes = a
        .assemble(m.virt)
        .unwrap_or_else(|e| panic!("{}: encoding V={v}: {e}", case.name));
    Decoder::with_ip(64, &bytes, m.virt, DecoderOptions::NONE)
        .into_iter()
        .collect()
}

fn to_state(regs: &Regs, m: &mut Machine, rip: u64) -> MachineState {
    let (data, percpu) = (m.data, m.percpu);
    let (dp, gp) = m.pages();
    let mut s = MachineState {
        gpr: regs.gpr,
        rflags: regs.rflags,
        rip,
        gs_base: percpu,
        ..MachineState::default()
    };
    s.memory.map(data, dp.to_vec());
    s.memory.map(percpu, gp.to_vec());
    s
}

fn from_state(s: &MachineState, m: &mut Machine) -> Regs {
    let (data, percpu) = (m.data, m.percpu);
    let (dp, gp) = m.pages();
    dp.copy_from_slice(s.memory.region(data).unwrap());
    gp.copy_from_slice(s.memory.region(percpu).unwrap());
    Regs {
        gpr: s.gpr,
        rflags: s.rflags,
    }
}

fn snapshot(m: &mut Machine) -> (Vec<u8>, Vec<u8>) {
    let (d, g) = m.pages();
    (d.to_vec(), g.to_vec())
}

fn restore(m: &mut Machine, pages: &(Vec<u8>, Vec<u8>)) {
    let (d, g) = m.pages();
    d.copy_from_slice(&pages.0);
    g.copy_from_slice(&pages.1);
}

const ARITH: u64 = FlagSet::ARITHMETIC.mask();

/// Runs one case; returns the number of native comparisons made.
fn run_case(m: &mut Machine, case: &Case) -> usize {
    let layout = Layout { data: m.data };
    let blocks: Vec<Vec<Instruction>> = case
        .values
        .iter()
        .map(|&v| assemble(case, v, m, &layout))
        .collect();
    let seed = (0..blocks[0].len())
        .find(|&i| {
            blocks[1]
                .get(i)
                .is_none_or(|b| b.code() != blocks[0][i].code() || *b != blocks[0][i])
        })
        .unwrap_or_else(|| panic!("{}: V1 and V2 assemble to the same code", case.name));
    let ctx = SeedContext {
        versions: [0, 1, 2].map(|k| SeedVersion {
            value: case.values[k],
            block: &blocks[k],
            seed,
        }),
    };
    let recipe =
        synthesize(&ctx).unwrap_or_else(|e| panic!("{}: synthesis failed: {e}", case.name));
    assert_eq!(recipe.kind, case.kind, "{}: kind", case.name);
    if let Some(how) = case.input {
        let update = serde_json::to_value(recipe.update).unwrap();
        let input = update
            .get("input")
            .or_else(|| update.get("dividend"))
            .and_then(|i| i.get("input"));
        assert_eq!(
            input.and_then(|i| i.as_str()),
            Some(how),
            "{}: input of {update}",
            case.name
        );
        assert_eq!(recipe.save.is_some(), how == "saved", "{}: save", case.name);
    }
    check_round_trip(case.name, &recipe);
    let range = recipe.valid_range();
    for &v in &case.valid {
        assert!(
            range.contains(v),
            "{}: V'={v} must be valid, range {range}: {:?}",
            case.name,
            range.check(v)
        );
    }
    for &v in &case.invalid {
        assert!(
            !range.contains(v),
            "{}: V'={v} must be rejected, range {range}",
            case.name
        );
        assert!(
            recipe
                .apply(&mut MachineState::default(), Default::default(), v)
                .is_err()
        );
    }
    let index_of = |ip: u64| {
        blocks[0]
            .iter()
            .position(|i| i.ip() == ip)
            .unwrap_or(blocks[0].len())
    };
    let (cs_start, cs_end) = (index_of(recipe.span.start), index_of(recipe.span.end));
    let v1 = &blocks[0];
    let v1_pre = m.compile(&v1[..cs_start]);
    let v1_cs = m.compile(&v1[cs_start..cs_end]);
    let v1_post = m.compile(&v1[cs_end..]);
    let coverage = recipe.coverage();
    let covered = coverage.flags.mask();

    let mut targets: Vec<i64> = case.values[1..].to_vec();
    targets.extend(&case.valid);
    let mut rng = Rng(case.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    }));
    let mut runs = 0;
    for &vp in &targets {
        let block = assemble(case, vp, m, &layout);
        assert_eq!(
            block.len(),
            v1.len(),
            "{}: V'={vp} changes the block's shape",
            case.name
        );
        let p_cs = m.compile(&block[..cs_end]);
        let p_post = m.compile(&block[cs_end..]);
        let mut interesting: Vec<u64> = [case.values[0], case.values[1], case.values[2], vp]
            .iter()
            .flat_map(|&v| {
                let iv = (case.iv)(v) as u64;
                [
                    iv,
                    iv.wrapping_add(1),
                    iv.wrapping_sub(1),
                    v as u64,
                    (v as u64).wrapping_sub(1),
                    (v as u64).wrapping_add(1),
                ]
            })
            .collect();
        interesting.extend([
            0,
            1,
            u64::MAX,
            0x7f,
            0x80,
            0xff,
            0x7fff,
            0x8000,
            0xffff,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_ffff,
            i64::MAX as u64,
            1 << 63,
        ]);
        for trial in 0..TRIALS {
            // The initial state.
            let mut r0 = Regs::default();
            for g in &mut r0.gpr {
                *g = match rng.below(4) {
                    0 | 1 => interesting[rng.below(interesting.len() as u64) as usize],
                    2 => rng.next() & 0xffff_ffff,
                    _ => rng.next(),
                };
            }
            r0.gpr[Gpr::Rbx.index()] = m.data + 0x100;
            r0.gpr[Gpr::R13.index()] = rng.below(16);
            r0.gpr[Gpr::Rsp.index()] = 0;
            (case.setup)(&mut r0.gpr);
            r0.rflags = 0x202 | (rng.next() & ARITH);
            {
                let (dp, gp) = m.pages();
                for chunk in dp.chunks_mut(8).chain(gp.chunks_mut(8)) {
                    let v = if rng.below(2) == 0 {
                        interesting[rng.below(interesting.len() as u64) as usize]
                    } else {
                        rng.next()
                    };
                    chunk.copy_from_slice(&v.to_le_bytes());
                }
            }
            let pages0 = snapshot(m);

            // A: V1 code, probes, recipe.
            let mut a = r0;
            m.run(v1_pre, &mut a);
            let at_start = to_state(&a, m, recipe.span.start);
            let saved = recipe.capture(&at_start).unwrap();
            m.run(v1_cs, &mut a);
            let mut probe_a = to_state(&a, m, recipe.span.end);
            let v1_at_probe = probe_a.clone();
            recipe
                .apply(&mut probe_a, saved, vp)
                .unwrap_or_else(|e| panic!("{}: apply V'={vp}: {e}", case.name));
            let mut a = from_state(&probe_a, m);
            m.run(v1_post, &mut a);
            let final_a = (a, snapshot(m));

            // B: V' code.
            restore(m, &pages0);
            let mut b = r0;
            m.run(p_cs, &mut b);
            let probe_b = to_state(&b, m, 0);
            m.run(p_post, &mut b);
            let final_b = (b, snapshot(m));

            let ctx = || format!("{} V'={vp} trial {trial} from {r0:x?}", case.name);
            compare_probe(
                &probe_a,
                &probe_b,
                &v1_at_probe,
                covered,
                case.dead_at_probe,
                &ctx,
            );
            assert_eq!(
                final_a.0.gpr,
                final_b.0.gpr,
                "{}: registers after the consumers",
                ctx()
            );
            assert_eq!(
                final_a.0.rflags & covered,
                final_b.0.rflags & covered,
                "{}: flags after the consumers",
                ctx()
            );
            assert!(
                final_a.1 == final_b.1,
                "{}: memory after the consumers",
                ctx()
            );
            if let Some(check) = case.check {
                check(&r0.gpr, &final_b.0.gpr, vp)
                    .unwrap_or_else(|e| panic!("{}: V' code itself: {e}", ctx()));
            }
            runs += 1;
        }
    }
    runs
}

fn compare_probe(
    a: &MachineState,
    b: &MachineState,
    v1: &MachineState,
    covered: u64,
    dead: Option<(Gpr, u64)>,
    ctx: &dyn Fn() -> String,
) {
    for g in Gpr::ALL {
        let live = match dead {
            Some((d, bits)) if d == g => !bits,
            _ => u64::MAX,
        };
        assert_eq!(
            a.get(g) & live,
            b.get(g) & live,
            "{}: {g} at the probe (V1 left {:#x})",
            ctx(),
            v1.get(g)
        );
    }
    assert_eq!(
        a.rflags & covered,
        b.rflags & covered,
        "{}: covered flags at the probe (V1 left {:#x})",
        ctx(),
        v1.rflags
    );
    assert_eq!(
        a.rflags & !covered,
        v1.rflags & !covered,
        "{}: the recipe touched flags it does not cover",
        ctx()
    );
    assert!(a.memory == b.memory, "{}: memory at the probe", ctx());
}

fn check_round_trip(name: &str, recipe: &Recipe) {
    let json = serde_json::to_string(recipe).unwrap();
    let back: Recipe =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{name}: {e} in {json}"));
    assert_eq!(&back, recipe, "{name}: serde round trip");
}

fn run_all(cases: Vec<Case>) {
    let mut m = Machine::new();
    let mut total = 0;
    for case in &cases {
        let n = run_case(&mut m, case);
        eprintln!("{:<48} {n:>6} native comparisons", case.name);
        total += n;
    }
    eprintln!("{} cases, {total} comparisons", cases.len());
}

// ---------------------------------------------------------------------------------------
// The cases.

fn rip_target(l: &Layout, off: u64) -> MemoryOperand {
    MemoryOperand::with_base_displ(Register::RIP, (l.data + off) as i64)
}

#[test]
fn immediate_loads() {
    use SynthesisKind::ImmediateLoad as K;
    run_all(vec![
        case(
            "mov $IV,%r8b (IV=V+100)",
            K,
            [1, 2, 3],
            |v| v + 100,
            |a, iv, _| a.mov(r8b, iv as i32),
        )
        .valid(&[-100, 0, 27])
        .invalid(&[28, -101]),
        case(
            "mov $IV,%cx (IV=2V-1)",
            K,
            [100, 200, 300],
            |v| 2 * v - 1,
            |a, iv, _| a.mov(cx, iv as i32),
        )
        .valid(&[1, 16384, 5000])
        .invalid(&[0, 16385]),
        case(
            "mov $IV,%eax (IV=4096V)",
            K,
            [16, 32, 4],
            |v| 4096 * v,
            |a, iv, _| a.mov(eax, iv as i32),
        )
        .valid(&[0, 64, 524_287])
        .invalid(&[-1, 524_288]),
        case(
            "mov $imm32,%rax sign-extended (IV=-V)",
            K,
            [1, 2, 3],
            |v| -v,
            |a, iv, _| {
                a.add_instruction(Instruction::with2(
                    Code::Mov_rm64_imm32,
                    Register::RAX,
                    iv as i32,
                )?)
            },
        )
        .valid(&[1 << 31, -((1 << 31) - 1), 0, 1000])
        .invalid(&[(1 << 31) + 1, -(1 << 31)]),
        case(
            "movabs $IV,%rdx (IV=V<<40)",
            K,
            [1, 2, 3],
            |v| v << 40,
            |a, iv, _| a.mov(rdx, iv),
        )
        .valid(&[0, (1 << 23) - 1])
        .invalid(&[1 << 23, -1]),
        case(
            "movb $IV,0x10(%rbx)",
            K,
            [5, 6, 7],
            |v| v,
            |a, iv, _| a.mov(byte_ptr(rbx + 0x10), iv as i32),
        )
        .valid(&[0, 127])
        .invalid(&[128]),
        // The target module's KX_TARGET_STORE8 with the values the analysis keeps: V1 = 0xa7
        // has the top bit set, so IV = V is unsigned and V' may be any byte.
        case(
            "movb $IV,0x10(%rbx) (V1=0xa7)",
            K,
            [0xa7, 250, 83],
            |v| v,
            |a, iv, _| a.mov(byte_ptr(rbx + 0x10), iv as i32),
        )
        .valid(&[0, 0x7f, 0x80, 0xff])
        .invalid(&[0x100, -1]),
        // KX_TARGET_STORE16 as gcc compiles it: V sign-extended into %ecx, only %cx stored,
        // then %ecx redefined. The update writes %cx; bits 16..64 of %rcx stay as V1 left
        // them until the redefinition.
        case(
            "mov $sext16(V),%ecx; mov %cx,mem",
            K,
            [0xbeef, 0xeeaa, 0x5f77],
            |v| i64::from(v as u16 as i16),
            |a, iv, _| {
                a.mov(ecx, iv as i32)?;
                a.mov(word_ptr(rbx + r13 * 2), cx)?;
                a.mov(ecx, edi)
            },
        )
        .valid(&[0, 0x7fff, 0x8000, 0xffff])
        .invalid(&[0x10000, -1])
        .dead_at_probe(Gpr::Rcx, !0xffff),
        // The same through a byte: `mov $sext8(V),%edx; cmp %dl,mem; sete`.
        case(
            "mov $sext8(V),%edx; cmp %dl,mem",
            K,
            [0xa7, 0xfa, 0x53],
            |v| i64::from(v as u8 as i8),
            |a, iv, _| {
                a.mov(edx, iv as i32)?;
                a.cmp(byte_ptr(rbx + 0x18), dl)?;
                a.sete(r15b)?;
                a.xor(edx, edx)
            },
        )
        .valid(&[0, 0x80, 0xff])
        .invalid(&[0x100, -1])
        .dead_at_probe(Gpr::Rdx, !0xff),
        case(
            "movw $IV,(%rbx,%r13,2) (IV=3V)",
            K,
            [1, 2, 3],
            |v| 3 * v,
            |a, iv, _| a.mov(word_ptr(rbx + r13 * 2), iv as i32),
        )
        .valid(&[0, 10922])
        .invalid(&[10923]),
        case(
            "movl $IV,0x20(%rbx,%r13,4) (IV=1000V+7)",
            K,
            [1, 2, 3],
            |v| 1000 * v + 7,
            |a, iv, _| a.mov(dword_ptr(rbx + r13 * 4 + 0x20), iv as i32),
        )
        .valid(&[0, 2_147_483, -0])
        .invalid(&[-1, 2_147_484]),
        case(
            "movq $IV,data(%rip) (IV=V-5)",
            K,
            [0, 1, 2],
            |v| v - 5,
            |a, iv, l| {
                a.add_instruction(Instruction::with2(
                    Code::Mov_rm64_imm32,
                    rip_target(l, 0x300),
                    iv as i32,
                )?)
            },
        )
        .valid(&[-100, 1000, (1 << 31) + 4])
        .invalid(&[(1 << 31) + 5]),
        case(
            "movl $IV,%gs:0x30 (per-CPU)",
            K,
            [10, 20, 30],
            |v| v,
            |a, iv, _| a.mov(dword_ptr(0x30).gs(), iv as i32),
        )
        .valid(&[0, 128, 0x7fff_ffff])
        .invalid(&[-1, 0x8000_0000]),
        case(
            "movw $IV,%gs:0x10(,%r13,8) (per-CPU)",
            K,
            [1, 2, 3],
            |v| 7 * v,
            |a, iv, _| a.mov(word_ptr(r13 * 8 + 0x10).gs(), iv as i32),
        )
        .valid(&[0, 4681])
        .invalid(&[4682]),
    ]);
}

#[test]
fn combining_ops() {
    use SynthesisKind::Combine as K;
    run_all(vec![
        // imm8 sign-extension edges: 127 fits imm8, 128 does not, -128 does, -129 does not.
        case(
            "add $IV,%eax (undo)",
            K,
            [100, 110, 120],
            |v| v,
            |a, iv, _| a.add(eax, iv as i32),
        )
        .valid(&[127, 128, 0, 1_000_000, 0x7fff_ffff])
        .invalid(&[-1])
        .input("undo"),
        case(
            "add $IV,%ax 16-bit imm8 (IV=V<0)",
            K,
            [-1, -2, -3],
            |v| v,
            |a, iv, _| a.add(ax, iv as i32),
        )
        .valid(&[-128, -129, -1, -32768])
        .invalid(&[0, -32769]),
        case(
            "add $IV,%rsi 64-bit imm32 (IV=16V)",
            K,
            [1, 2, 3],
            |v| 16 * v,
            |a, iv, _| a.add(rsi, iv as i32),
        )
        .valid(&[0, 8, 100, (1 << 27) - 1])
        .invalid(&[1 << 27, -1]),
        case(
            "sub $IV,%dl 8-bit (undo)",
            K,
            [1, 2, 3],
            |v| v,
            |a, iv, _| a.sub(dl, iv as i32),
        )
        .valid(&[0, 127])
        .invalid(&[128])
        .input("undo"),
        case(
            "subl $IV,0x8(%rbx) memory (undo)",
            K,
            [1, 2, 3],
            |v| 2 * v,
            |a, iv, _| a.sub(dword_ptr(rbx + 8), iv as i32),
        )
        .valid(&[0, 64, 65, (1 << 30) - 1])
        .invalid(&[1 << 30])
        .input("undo"),
        case(
            "mov %r9d,%edx; and $-V,%edx (recovered)",
            K,
            [4096, 8192, 16384],
            |v| -v,
            |a, iv, _| {
                a.mov(edx, r9d)?;
                a.and(edx, iv as i32)
            },
        )
        .valid(&[1, 64, 1 << 31])
        .invalid(&[0])
        .input("read"),
        case(
            "and $-V,%rdx 64-bit (saved)",
            K,
            [4096, 8192, 16384],
            |v| -v,
            |a, iv, _| a.and(rdx, iv as i32),
        )
        // Built with powers of two, `and $-V` aligns down: other V' would not.
        .valid(&[4096, 1 << 31, 1])
        .invalid(&[(1 << 31) + 1, -5, 4097])
        .input("saved"),
        case(
            "or $(1<<V),%r10w (saved)",
            K,
            [1, 4, 8],
            |v| 1 << v,
            |a, iv, _| a.or(r10w, iv as i32),
        )
        .valid(&[0, 7, 14])
        .invalid(&[15, -1])
        .input("saved"),
        case(
            "xor $IV,%r11 (undo)",
            K,
            [1, 2, 3],
            |v| 0x55 * v,
            |a, iv, _| a.xor(r11, iv as i32),
        )
        .valid(&[0, 2, 1000])
        .input("undo"),
        case(
            "andb $IV,0x10(%rbx) (saved memory)",
            K,
            [3, 5, 9],
            |v| v,
            |a, iv, _| a.and(byte_ptr(rbx + 0x10), iv as i32),
        )
        .valid(&[0, 127])
        .invalid(&[128])
        .input("saved"),
        case(
            "shl $V,%eax; flags dead",
            K,
            [2, 3, 5],
            |v| v,
            |a, iv, _| {
                a.shl(eax, iv as i32)?;
                a.add(ecx, ecx)
            },
        )
        .valid(&[0, 1, 17, 31])
        .invalid(&[32, -1])
        .input("saved"),
        case(
            "shr $V,%rdx; setz %cl",
            K,
            [2, 3, 5],
            |v| v,
            |a, iv, _| {
                a.shr(rdx, iv as i32)?;
                a.setz(cl)
            },
        )
        .valid(&[1, 63])
        .invalid(&[0, 64]),
        case(
            "sar $V,%cl; setns %al",
            K,
            [1, 2, 3],
            |v| v,
            |a, iv, _| {
                a.sar(cl, iv as i32)?;
                a.setns(al)
            },
        )
        .valid(&[1, 7])
        .invalid(&[0, 8]),
        case(
            "shl $log2(V),%esi",
            SynthesisKind::Combine,
            [16, 32, 64],
            |v| i64::from(v.trailing_zeros()),
            |a, iv, _| {
                a.shl(esi, iv as i32)?;
                a.xor(r12d, r12d)
            },
        )
        .valid(&[1, 2, 1 << 31])
        .invalid(&[3, 48, 1 << 32]),
        case(
            "imul $IV,%ecx,%eax; seto",
            K,
            [1, 2, 3],
            |v| 4 * v + 1,
            |a, iv, _| {
                a.imul_3(eax, ecx, iv as i32)?;
                a.seto(r8b)
            },
        )
        .valid(&[0, 31, 32, 1000])
        .input("read"),
        case(
            "imul $odd,%eax,%eax (undo by inverse)",
            K,
            [1, 2, 3],
            |v| 2 * v + 1,
            |a, iv, _| a.imul_3(eax, eax, iv as i32),
        )
        .valid(&[0, 63, 64, 100_000])
        .input("undo"),
        case(
            "imul $even,%rax,%rax (saved)",
            K,
            [1, 2, 3],
            |v| 2 * v,
            |a, iv, _| a.imul_3(rax, rax, iv as i32),
        )
        .valid(&[0, 64, 100_000])
        .input("saved"),
        case(
            "imul $IV,0x8(%rbx),%rdx",
            K,
            [1, 2, 3],
            |v| v - 10,
            |a, iv, _| a.imul_3(rdx, qword_ptr(rbx + 8), iv as i32),
        )
        .valid(&[-1000, 500])
        .input("read"),
        case(
            "imul $IV,%cx,%dx 16-bit",
            K,
            [1, 2, 3],
            |v| v,
            |a, iv, _| a.imul_3(dx, cx, iv as i32),
        )
        .valid(&[0, 200, 32767]),
        case(
            "lea IV(%rsi,%rdi,4),%rax (IV=8V-1)",
            K,
            [1, 16, 100],
            |v| 8 * v - 1,
            |a, iv, _| a.lea(rax, qword_ptr(rsi + rdi * 4 + iv as i32)),
        )
        .valid(&[1, 17, 1 << 28])
        .invalid(&[0, (1 << 28) + 1])
        .input("address"),
        case(
            "lea IV(%rax,%rax,2),%eax (undo)",
            K,
            [1, 2, 3],
            |v| v,
            |a, iv, _| a.lea(eax, dword_ptr(rax + rax * 2 + iv as i32)),
        )
        .valid(&[0, 127, 128, 0x7fff_ffff])
        .invalid(&[-1])
        .input("undo"),
        case(
            "lea -V(%rdi),%r8d",
            K,
            [1, 2, 3],
            |v| -v,
            |a, iv, _| a.lea(r8d, dword_ptr(rdi + iv as i32)),
        )
        .valid(&[128, 129, 1 << 31])
        .invalid(&[0])
        .input("address"),
        // gcc encodes `x + 128` as `sub $-128` (imm8): versions mix add and sub.
        case(
            "add $V / sub $-128,%eax (mixed)",
            K,
            [32, 64, 128],
            |v| v,
            |a, iv, _| {
                if iv == 128 {
                    a.sub(eax, -128)?;
                } else {
                    a.add(eax, iv as i32)?;
                }
                a.xor(r12d, r12d)
            },
        )
        .valid(&[1, 127, 128, 129, 1000]),
    ]);
}

#[test]
fn compares() {
    use SynthesisKind::Compare as K;
    run_all(vec![
        // alloc_pipe_info: cmp $0xffff,%ebp (PIPE_DEF_BUFFERS * PAGE_SIZE - 1).
        case(
            "cmp $IV,%ebp; jbe (IV=4096V-1)",
            K,
            [16, 32, 4],
            |v| 4096 * v - 1,
            |a, iv, _| {
                let mut l = a.create_label();
                a.cmp(ebp, iv as i32)?;
                a.jbe(l)?;
                a.set_label(&mut l)?;
                a.nop()
            },
        )
        .valid(&[1, 64, 1000, 1 << 20])
        .invalid(&[0, (1 << 20) + 1])
        .input("read"),
        case(
            "cmpb $IV,0x3(%rbx); jg",
            K,
            [-5, 0, 5],
            |v| v,
            |a, iv, _| {
                let mut l = a.create_label();
                a.cmp(byte_ptr(rbx + 3), iv as i32)?;
                a.jg(l)?;
                a.set_label(&mut l)?;
                a.nop()
            },
        )
        .valid(&[-128, 127])
        .invalid(&[128, -129]),
        case(
            "cmp $IV,%ax; cmovl %cx,%dx",
            K,
            [1, 2, 3],
            |v| 100 * v,
            |a, iv, _| {
                a.cmp(ax, iv as i32)?;
                a.cmovl(dx, cx)
            },
        )
        .valid(&[-327, 0, 327])
        .invalid(&[328]),
        case(
            "cmp $V-1,%r9; ja (imm8 -1)",
            K,
            [0, 16, 32],
            |v| v - 1,
            |a, iv, _| {
                let mut l = a.create_label();
                a.cmp(r9, iv as i32)?;
                a.ja(l)?;
                a.set_label(&mut l)?;
                a.nop()
            },
        )
        .valid(&[0, 128, 129, -126, 1 << 31])
        .invalid(&[(1 << 31) + 1]),
        case(
            "test $(1<<V),%edi; jne",
            K,
            [0, 3, 5],
            |v| 1 << v,
            |a, iv, _| {
                let mut l = a.create_label();
                a.test(edi, iv as u32 as i32)?;
                a.jne(l)?;
                a.set_label(&mut l)?;
                a.nop()
            },
        )
        .valid(&[0, 7, 8, 31])
        .invalid(&[32, -1]),
        case(
            "test $IV,%sil; sete %al",
            K,
            [1, 2, 4],
            |v| v,
            |a, iv, _| {
                a.test(sil, iv as i32)?;
                a.sete(al)
            },
        )
        .valid(&[0, 128, 255])
        .invalid(&[256, -1]),
        case(
            "cmpq $IV,(%rbx,%r13,8); setae",
            K,
            [1, 2, 3],
            |v| 1000 * v,
            |a, iv, _| {
                a.cmp(qword_ptr(rbx + r13 * 8), iv as i32)?;
                a.setae(cl)
            },
        )
        .valid(&[0, 2_147_483])
        .invalid(&[2_147_484, -1])
        .input("read"),
        case(
            "cmpl $IV,%gs:0x40; setb (per-CPU)",
            K,
            [10, 20, 30],
            |v| v,
            |a, iv, _| {
                a.cmp(dword_ptr(0x40).gs(), iv as u32 as i32)?;
                a.setb(dl)
            },
        )
        .valid(&[0, 128, 0xffff_ffff])
        .invalid(&[1 << 32]),
        case(
            "cmp $IV,%eax; setl; cmovg; jne",
            K,
            [1, 2, 3],
            |v| v,
            |a, iv, _| {
                let mut l = a.create_label();
                a.cmp(eax, iv as i32)?;
                a.setl(cl)?;
                a.cmovg(esi, edx)?;
                a.jne(l)?;
                a.set_label(&mut l)?;
                a.nop()
            },
        )
        .valid(&[-1, 0, 128, 0x7fff_ffff, -0x8000_0000])
        .invalid(&[0x8000_0000]),
    ]);
}

/// Divisors that compile to `form` (first few, then a spread), from the library's algorithm;
/// the V' code built from them is checked natively against Rust's `/`.
fn divisors(width: Width, form: MagicForm, n: usize) -> Vec<i64> {
    (2..100_000)
        .filter(|&d| magic::check_form(d, width, form).is_ok())
        .take(n)
        .collect()
}

fn quotient32(r0: &[u64; 16], fin: &[u64; 16], v: i64) -> Result<(), String> {
    let x = r0[Gpr::Rdi.index()] as u32;
    let q = fin[Gpr::Rax.index()];
    if q == u64::from(x / v as u32) {
        Ok(())
    } else {
        Err(format!("{x} / {v} gave {q}"))
    }
}

fn quotient64(src: Gpr, dest: Gpr) -> Check {
    match (src, dest) {
        (Gpr::Rdi, Gpr::Rax) => |r0, fin, v| {
            let (x, q) = (r0[Gpr::Rdi.index()], fin[Gpr::Rax.index()]);
            if q == x / v as u64 {
                Ok(())
            } else {
                Err(format!("{x} / {v} gave {q}"))
            }
        },
        _ => |r0, fin, v| {
            let (x, q) = (r0[Gpr::Rsi.index()], fin[Gpr::Rdx.index()]);
            if q == x / v as u64 {
                Ok(())
            } else {
                Err(format!("{x} / {v} gave {q}"))
            }
        },
    }
}

#[test]
fn folded_divisions() {
    use SynthesisKind::Folded as K;
    let imm_reg = divisors(Width::W32, MagicForm::ImulRegister, 40);
    let imm_imm = divisors(Width::W32, MagicForm::ImulImmediate, 40);
    let mul = divisors(Width::W64, MagicForm::Mul { shifted: true }, 40);
    let fixup = divisors(Width::W32, ADD_FIXUP, 40);
    let signed = divisors(Width::W32, SIGNED_ADD, 40);
    let pick = |v: &[i64]| [v[3], v[11], v[24], v[39]];
    run_all(vec![
        // gcc -O2 for `x / 10` (unsigned int): mov %edi,%eax; mov $0xcccccccd,%edx;
        // imul %rdx,%rax; shr $0x23,%rax. V = 10, 20, 40 share the multiplier: the seed is shr.
        case(
            "u32 / V: mov $m,%edx; imul %rdx,%rax; shr",
            K,
            [10, 20, 40],
            |v| v,
            |a, v, _| {
                let (m, s) = magic::check_form(v, Width::W32, MagicForm::ImulRegister).unwrap();
                a.mov(eax, edi)?;
                a.mov(edx, m as u32)?;
                a.imul_2(rax, rdx)?;
                a.shr(rax, s as i32)
            },
        )
        .valid(&[3, 5, 6, 12, 60])
        .valid(&pick(&imm_reg))
        .invalid(&[0, 1, 7, 64, 100, 1 << 31])
        .check(quotient32)
        .input("read"),
        // `x / 1000`: mov %edi,%eax; imul $0x10624dd3,%rax,%rax; shr $0x26,%rax.
        case(
            "u32 / V: imul $m,%rax,%rax; shr",
            K,
            [1000, 100, imm_imm[5]],
            |v| v,
            |a, v, _| {
                let (m, s) = magic::check_form(v, Width::W32, MagicForm::ImulImmediate).unwrap();
                a.mov(eax, edi)?;
                a.imul_3(rax, rax, m as i32)?;
                a.shr(rax, s as i32)
            },
        )
        .valid(&pick(&imm_imm))
        .invalid(&[0, 1, 10, 7, 1024])
        .check(quotient32),
        case(
            "u32 / V: imul $m,%rax,%rax; shr (no mov: saved)",
            K,
            [1000, 100, imm_imm[5]],
            |v| v,
            |a, v, _| {
                let (m, s) = magic::check_form(v, Width::W32, MagicForm::ImulImmediate).unwrap();
                a.imul_3(rax, rax, m as i32)?;
                a.shr(rax, s as i32)
            },
        )
        .valid(&pick(&imm_imm))
        .setup(|r| r[Gpr::Rax.index()] &= 0xffff_ffff)
        .input("saved"),
        // `x / 10` (unsigned long): movabs $0xcccccccccccccccd,%rax; mul %rdi; mov %rdx,%rax;
        // shr $0x3,%rax.
        case(
            "u64 / V: movabs; mul %rdi; mov %rdx,%rax; shr",
            K,
            [10, 12, 3],
            |v| v,
            |a, v, _| {
                let (m, s) =
                    magic::check_form(v, Width::W64, MagicForm::Mul { shifted: true }).unwrap();
                a.mov(rax, m)?;
                a.mul(rdi)?;
                a.mov(rax, rdx)?;
                a.shr(rax, s as i32)
            },
        )
        .valid(&[3, 5, 6, 10, 12, 60])
        .valid(&pick(&mul))
        .invalid(&[0, 1, 7, 100, 1000, 1 << 20])
        .check(quotient64(Gpr::Rdi, Gpr::Rax))
        .input("read"),
        case(
            "u64 / V: movabs; mul %rsi; shr %rdx",
            K,
            [3, 5, 6],
            |v| v,
            |a, v, _| {
                let (m, s) =
                    magic::check_form(v, Width::W64, MagicForm::Mul { shifted: true }).unwrap();
                a.mov(rax, m)?;
                a.mul(rsi)?;
                a.shr(rdx, s as i32)
            },
        )
        .valid(&pick(&mul))
        .check(quotient64(Gpr::Rsi, Gpr::Rdx)),
        // The target module's `READ_ONCE(*in) / 13` (gcc-12): movabs $m,%rax; mov (%rdi),%rdx;
        // mul %rdx; mov %rdx,%rax; shr $2,%rax. The dividend is loaded between the multiplier
        // and the `mul`, which destroys it: the update reads it from memory again.
        case(
            "u64 / V: movabs; mov (mem),%rdx; mul %rdx; mov %rdx,%rax; shr",
            K,
            [13, 26, 6],
            |v| v,
            |a, v, _| {
                let (m, s) =
                    magic::check_form(v, Width::W64, MagicForm::Mul { shifted: true }).unwrap();
                a.mov(rax, m)?;
                a.mov(rdx, qword_ptr(rbx + r13 * 8))?;
                a.mul(rdx)?;
                a.mov(rax, rdx)?;
                a.shr(rax, s as i32)
            },
        )
        .valid(&[3, 5, 10, 12, 60])
        .valid(&pick(&mul))
        .invalid(&[0, 1, 7, 100, 1 << 20])
        .input("read"),
        // The target module's `(u32)x % 1009` (gcc-12), up to the quotient: mov %eax,%ecx;
        // mov %eax,%edx; imul $m,%rcx,%rcx; shr $0x20,%rcx; sub %ecx,%edx; shr %edx;
        // add %ecx,%edx; shr $0x9,%edx. The dividend comes from the two movs before.
        case(
            "u32 / V, 33-bit magic: imul $m; shr $32; sub; shr; add; shr",
            K,
            [1009, fixup[7], fixup[20]],
            |v| v,
            |a, v, _| {
                let (m, s) = magic::check_form(v, Width::W32, ADD_FIXUP).unwrap();
                a.mov(eax, edi)?;
                a.mov(ecx, eax)?;
                a.mov(edx, eax)?;
                a.imul_3(rcx, rcx, m as i32)?;
                a.shr(rcx, 32)?;
                a.sub(edx, ecx)?;
                a.shr(edx, 1)?;
                a.add(edx, ecx)?;
                a.shr(edx, s as i32)
            },
        )
        .valid(&[7])
        .valid(&pick(&fixup))
        .invalid(&[0, 1, 2018, 504, 10, 19, 1024, 1 << 31])
        .check(|r0, fin, v| {
            let (x, q) = (r0[Gpr::Rdi.index()] as u32, fin[Gpr::Rdx.index()]);
            if q == u64::from(x / v as u32) {
                Ok(())
            } else {
                Err(format!("{x} / {v} gave {q}"))
            }
        })
        .input("read"),
        // gcc-12's `x / 7` (unsigned int): mov %edi,%eax; imul $m,%rax,%rax; shr $0x20,%rax;
        // sub %eax,%edi; shr %edi; add %edi,%eax; shr $0x2,%eax. The sum goes to the high
        // half's register, and the dividend's only copy is destroyed: the pre-probe saves
        // %edi, which the multiplied %rax zero-extends.
        case(
            "u32 / V, 33-bit magic: mov; imul $m; shr $32; sub; shr; add (into the high half); shr",
            K,
            [7, fixup[7], fixup[20]],
            |v| v,
            |a, v, _| {
                let (m, s) = magic::check_form(v, Width::W32, ADD_FIXUP_INTO_HIGH).unwrap();
                a.mov(eax, edi)?;
                a.imul_3(rax, rax, m as i32)?;
                a.shr(rax, 32)?;
                a.sub(edi, eax)?;
                a.shr(edi, 1)?;
                a.add(eax, edi)?;
                a.shr(eax, s as i32)
            },
        )
        .valid(&[1009])
        .valid(&pick(&fixup))
        .invalid(&[0, 1, 14, 10, 19])
        .check(quotient32)
        .input("saved"),
        // The target module's `(s32)x / 7` (gcc-12): movslq %edx,%rax; imul $m,%rax,%rax;
        // shr $0x20,%rax; add %edx,%eax; sar $0x1f,%edx; sar $0x2,%eax; sub %edx,%eax. The
        // dividend %edx is destroyed (its sign): the pre-probe saves it.
        case(
            "s32 / V: movslq; imul $m; shr; add; sar $31; sar; sub",
            K,
            [7, signed[9], signed[23]],
            |v| v,
            |a, v, _| {
                let (m, s) = magic::check_form(v, Width::W32, SIGNED_ADD).unwrap();
                a.movsxd(rax, edx)?;
                a.imul_3(rax, rax, m as u32 as i32)?;
                a.shr(rax, 32)?;
                a.add(eax, edx)?;
                a.sar(edx, 31)?;
                a.sar(eax, s as i32)?;
                a.sub(eax, edx)
            },
        )
        .valid(&[7, 14, 31])
        .valid(&pick(&signed))
        .invalid(&[0, 1, -7, 3, 8, 1 << 31])
        .check(|r0, fin, v| {
            let (x, q) = (r0[Gpr::Rdx.index()] as i32, fin[Gpr::Rax.index()]);
            if q == u64::from((x / v as i32) as u32) {
                Ok(())
            } else {
                Err(format!("{x} / {v} gave {q:#x}"))
            }
        })
        .input("saved"),
        // Other schedules of the same sequence: the shift before the sign.
        case(
            "s32 / V: movslq; imul $m; shr; add; sar; sar $31; sub",
            K,
            [7, signed[9], signed[23]],
            |v| v,
            |a, v, _| {
                let (m, s) = magic::check_form(v, Width::W32, SIGNED_ADD).unwrap();
                a.movsxd(rcx, edi)?;
                a.imul_3(rsi, rcx, m as u32 as i32)?;
                a.shr(rsi, 32)?;
                a.add(esi, edi)?;
                a.sar(esi, s as i32)?;
                a.sar(edi, 31)?;
                a.sub(esi, edi)
            },
        )
        .valid(&pick(&signed))
        .input("saved"),
        // The dividend copied before the sequence: the update reads the copy.
        case(
            "s32 / V: mov; movslq; imul $m; shr; add; sar $31; sar; sub (read)",
            K,
            [7, signed[9], signed[23]],
            |v| v,
            |a, v, _| {
                let (m, s) = magic::check_form(v, Width::W32, SIGNED_ADD).unwrap();
                a.mov(edx, edi)?;
                a.movsxd(rax, edx)?;
                a.imul_3(rax, rax, m as u32 as i32)?;
                a.shr(rax, 32)?;
                a.add(eax, edx)?;
                a.sar(edx, 31)?;
                a.sar(eax, s as i32)?;
                a.sub(eax, edx)
            },
        )
        .valid(&pick(&signed))
        .input("read"),
    ]);
}

const ADD_FIXUP: MagicForm = MagicForm::ImulImmediateAdd { into_high: false };
const ADD_FIXUP_INTO_HIGH: MagicForm = MagicForm::ImulImmediateAdd { into_high: true };
const SIGNED_ADD: MagicForm = MagicForm::SignedImulAdd;

/// Every path must agree: the CPU and the concrete semantics (`sem::execute`) on single
/// instructions of every modelled kind, so neither a harness bug nor a semantics bug can
/// hide behind two runs agreeing with each other. Flags the SDM leaves undefined for the
/// operands at hand are not compared.
#[test]
fn cpu_matches_concrete_semantics() {
    type Emit = fn(&mut CodeAssembler) -> Result<(), IcedError>;
    let insns: Vec<(&str, Emit)> = vec![
        ("cmp imm32", |a| a.cmp(ebp, 0xffff)),
        ("cmp mem8", |a| a.cmp(byte_ptr(rbx + 3), -3)),
        ("test r16", |a| a.test(ax, cx)),
        ("setbe", |a| a.setbe(r15b)),
        ("add imm8", |a| a.add(eax, -128)),
        ("sub mem64", |a| a.sub(qword_ptr(rbx + r13 * 8), rdx)),
        ("and r8", |a| a.and(ah, cl)),
        ("or mem16", |a| a.or(word_ptr(rbx + 2), 0x1234)),
        ("xor r64", |a| a.xor(r11, r12)),
        ("inc", |a| a.inc(esi)),
        ("dec mem8", |a| a.dec(byte_ptr(rbx))),
        ("neg", |a| a.neg(r9w)),
        ("not", |a| a.not(edi)),
        ("shl imm", |a| a.shl(rdx, 3)),
        ("shl 1", |a| a.shl(eax, 1)),
        ("shr cl", |a| a.shr(r8d, cl)),
        ("sar cl 8-bit", |a| a.sar(dl, cl)),
        ("sar 1 16-bit", |a| a.sar(si, 1)),
        ("imul 3-op", |a| a.imul_3(ecx, esi, 0x1234_5679)),
        ("imul 2-op", |a| a.imul_2(rdx, rdi)),
        ("imul 1-op 8-bit", |a| a.imul(cl)),
        ("imul 1-op 64-bit", |a| a.imul(rsi)),
        ("mul 1-op 32-bit", |a| a.mul(edi)),
        ("mul 1-op 16-bit", |a| a.mul(word_ptr(rbx + 6))),
        ("mov to mem", |a| {
            a.mov(dword_ptr(rbx + r13 * 4 + 0x20), 0x55)
        }),
        ("mov gs", |a| a.mov(word_ptr(r13 * 8 + 0x10).gs(), 0x77)),
        ("mov gs load", |a| {
            a.mov(rcx, qword_ptr(r13 * 8 + 0x18).gs())
        }),
        ("mov r8 high", |a| a.mov(bh, dl)),
        ("movzx", |a| a.movzx(eax, byte_ptr(rbx + 1))),
        ("movsx", |a| a.movsx(rcx, dx)),
        ("movsxd", |a| a.movsxd(r10, esi)),
        ("lea 32", |a| a.lea(r8d, dword_ptr(rdi + rdi * 2 - 5))),
        ("lea 16", |a| a.lea(r8w, word_ptr(rdi + rsi * 8 + 0x7fff))),
        ("cmovg 64", |a| a.cmovg(r9, r10)),
        ("cmovb 32 mem", |a| a.cmovb(r9d, dword_ptr(rbx + 4))),
        ("cdqe", |a| a.cdqe()),
        ("cqo", |a| a.cqo()),
        ("cwd", |a| a.cwd()),
    ];
    let mut m = Machine::new();
    let mut rng = Rng(7);
    let mut compared = 0;
    for (name, emit) in insns {
        let mut a = CodeAssembler::new(64).unwrap();
        emit(&mut a).unwrap();
        let bytes = a.assemble(m.virt).unwrap();
        let block: Vec<Instruction> = Decoder::with_ip(64, &bytes, m.virt, DecoderOptions::NONE)
            .into_iter()
            .collect();
        let code = m.compile(&block);
        for trial in 0..TRIALS {
            let mut r = Regs::default();
            for g in &mut r.gpr {
                *g = match rng.below(3) {
                    0 => rng.below(70),
                    1 => [
                        0,
                        1,
                        u64::MAX,
                        0x7f,
                        0x80,
                        0x7fff_ffff,
                        0x8000_0000,
                        1 << 63,
                    ][rng.below(8) as usize],
                    _ => rng.next(),
                };
            }
            r.gpr[Gpr::Rbx.index()] = m.data + 0x100;
            r.gpr[Gpr::R13.index()] = rng.below(16);
            r.gpr[Gpr::Rsp.index()] = 0;
            r.rflags = 0x202 | (rng.next() & ARITH);
            {
                let (dp, gp) = m.pages();
                for b in dp.iter_mut().chain(gp.iter_mut()) {
                    *b = rng.next() as u8;
                }
            }
            let mut s = to_state(&r, &mut m, block[0].ip());
            let step = kernelx_x86::symex::sem::execute(&block[0], &mut s)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            m.run(code, &mut r);
            let native = to_state(&r, &mut m, 0);
            let ctx = format!("{name} trial {trial}");
            assert_eq!(native.gpr, s.gpr, "{ctx}: registers");
            let mask = ARITH & !step.undefined.mask();
            assert_eq!(native.rflags & mask, s.rflags & mask, "{ctx}: flags");
            assert!(native.memory == s.memory, "{ctx}: memory");
            compared += 1;
        }
    }
    eprintln!("{compared} single-instruction comparisons");
}

#[test]
fn unsupported_seeds_name_the_instruction() {
    let m = Machine::new();
    let layout = Layout { data: m.data };
    let build = |f: Build, v: i64| -> Vec<Instruction> {
        let mut a = CodeAssembler::new(64).unwrap();
        f(&mut a, v, &layout).unwrap();
        let bytes = a.assemble(m.virt).unwrap();
        Decoder::with_ip(64, &bytes, m.virt, DecoderOptions::NONE)
            .into_iter()
            .collect()
    };
    let err = |f: Build, values: [i64; 3]| -> String {
        let blocks = values.map(|v| build(f, v));
        let ctx = SeedContext {
            versions: [0, 1, 2].map(|k| SeedVersion {
                value: values[k],
                block: &blocks[k],
                seed: 0,
            }),
        };
        synthesize(&ctx).unwrap_err().to_string()
    };
    // A load from a V-dependent offset is a layout change, not a constant.
    let e = err(|a, v, _| a.mov(eax, dword_ptr(rbx + v as i32)), [8, 16, 24]);
    assert!(e.contains("mov") && e.contains("layout"), "{e}");
    // adc reads CF: no recipe.
    let e = err(|a, v, _| a.adc(eax, v as i32), [1, 2, 3]);
    assert!(e.contains("adc"), "{e}");
    // A quadratic constant has no relation.
    let e = err(|a, v, _| a.mov(eax, (v * v) as i32), [1, 2, 3]);
    assert!(
        e.contains("no relation") && e.contains("mov $1,%eax"),
        "{e}"
    );
    // A dividend loaded inside the division sequence is read again at the post-probe only if
    // nothing else sees the first load and nothing stores in between.
    let e = err(
        |a, v, _| {
            let (m, s) =
                magic::check_form(v, Width::W64, MagicForm::Mul { shifted: true }).unwrap();
            a.mov(rax, m)?;
            a.mov(rdx, qword_ptr(rbx))?;
            a.mov(rcx, rdx)?;
            a.mul(rdx)?;
            a.shr(rdx, s as i32)
        },
        [10, 12, 6],
    );
    assert!(e.contains("used besides the multiply"), "{e}");
    let e = err(
        |a, v, _| {
            let (m, s) =
                magic::check_form(v, Width::W64, MagicForm::Mul { shifted: true }).unwrap();
            a.mov(rax, m)?;
            a.mov(rdx, qword_ptr(rbx))?;
            a.mov(qword_ptr(rbx + 8), rsi)?;
            a.mul(rdx)?;
            a.shr(rdx, s as i32)
        },
        [10, 12, 6],
    );
    assert!(e.contains("stores to memory"), "{e}");
    // A consumer reading the overflow flag of a multi-bit shift cannot be served.
    let e = err(
        |a, v, _| {
            a.shl(eax, v as i32)?;
            a.seto(cl)
        },
        [2, 3, 4],
    );
    assert!(e.contains("seto") && e.contains("OF"), "{e}");
}
