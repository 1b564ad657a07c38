//! The target module (`tests/target-module`), KernelX's oracle, in the lab VM: it loads, every
//! debugfs file computes what `kx_target.c` says, `block` sleeps until released, and it unloads
//! cleanly without a kernel warning.
//!
//! `cargo xtask lab test` builds `kx_target.ko` on the host before it boots the VM (the guest
//! runs under TCG, where kbuild is slow). The expected results come from the `#define
//! KX_TARGET_*` lines of `kx_target.c` itself, so the source is the only copy of the constants.

use std::collections::BTreeMap;
use std::fs;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

const MODULE: &str = "kx_target";
const DEBUGFS: &str = "/sys/kernel/debug/kx_target";
/// Bound on every wait for the module (load, unload, a reader, a waiter count).
const WAIT: Duration = Duration::from_secs(30);

/// The tests share one module instance; keep them from overlapping even with several threads.
static MODULE_LOCK: Mutex<()> = Mutex::new(());

fn module_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/target-module")
}

/// One debugfs file of the module, the constant it embeds and its expected result.
struct Case {
    file: &'static str,
    constant: &'static str,
    /// The result is printed as a signed number (the input may be written as one too).
    signed: bool,
    /// The result for input `x` when the constant's value is `v` (both as two's complement).
    expect: fn(x: u64, v: u64) -> u64,
}

const fn case(
    file: &'static str,
    constant: &'static str,
    signed: bool,
    expect: fn(u64, u64) -> u64,
) -> Case {
    Case {
        file,
        constant,
        signed,
        expect,
    }
}

/// Every function but `block`, with the formula its kernel-doc states.
const CASES: &[Case] = &[
    case("imm_reg", "KX_TARGET_IMM_REG", false, |x, v| {
        x.wrapping_add(v)
    }),
    case("imm_reg64", "KX_TARGET_IMM_REG64", false, |x, v| {
        x.wrapping_add(v)
    }),
    case("imm_arg", "KX_TARGET_IMM_ARG", false, |x, v| {
        x.wrapping_add(v).wrapping_mul(2)
    }),
    case("store8", "KX_TARGET_STORE8", false, |_, v| v & 0xff),
    case("store16", "KX_TARGET_STORE16", false, |_, v| v & 0xffff),
    case("store32", "KX_TARGET_STORE32", false, |_, v| {
        v & 0xffff_ffff
    }),
    case("store64", "KX_TARGET_STORE64", true, |_, v| v),
    case("pcpu", "KX_TARGET_PCPU", false, |_, v| v & 0xffff_ffff),
    case("add", "KX_TARGET_ADD", false, |x, v| x.wrapping_add(v)),
    case("sub", "KX_TARGET_SUB", false, |x, v| x.wrapping_sub(v)),
    case("lea", "KX_TARGET_LEA", false, |x, v| {
        x.wrapping_mul(4).wrapping_add(v)
    }),
    case("imul", "KX_TARGET_IMUL", false, |x, v| x.wrapping_mul(v)),
    case("shl", "KX_TARGET_SHL", false, |x, v| x << v),
    case("shr", "KX_TARGET_SHR", false, |x, v| x >> v),
    case("sar", "KX_TARGET_SAR", true, |x, v| {
        i64::from((x as u32 as i32) >> v) as u64
    }),
    case("and", "KX_TARGET_AND", false, |x, v| x & v),
    case("or", "KX_TARGET_OR", false, |x, v| x | v),
    case("xor", "KX_TARGET_XOR", false, |x, v| x ^ v),
    case("cmp8", "KX_TARGET_CMP8", false, |x, v| {
        u64::from(x as u8 > v as u8)
    }),
    case("cmp16", "KX_TARGET_CMP16", false, |x, v| {
        u64::from(x as u16 > v as u16)
    }),
    case("cmp32", "KX_TARGET_CMP32", false, |x, v| {
        u64::from((x as u32) < v as u32)
    }),
    case("cmp64", "KX_TARGET_CMP64", false, |x, v| u64::from(x >= v)),
    case("test", "KX_TARGET_TEST", false, |x, v| {
        u64::from(x & v != 0)
    }),
    case("div", "KX_TARGET_DIV", false, |x, v| x / v),
    case("mod", "KX_TARGET_MOD", false, |x, v| {
        u64::from(x as u32 % v as u32)
    }),
    case("sdiv", "KX_TARGET_SDIV", true, |x, v| {
        i64::from((x as u32 as i32) / v as i32) as u64
    }),
    case("shared_a", "KX_TARGET_SHARED", false, |x, v| x.min(v)),
    case("shared_b", "KX_TARGET_SHARED", false, |x, v| {
        x.min(v).wrapping_add(v)
    }),
];

/// Inputs every case gets, besides V - 1, V and V + 1 of its own constant.
const INPUTS: &[u64] = &[
    0,
    1,
    7,
    100,
    0xff,
    0x100,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0001,
    0xdead_beef_cafe_f00d,
    0x8000_0000_0000_0000,
    (-1_i64) as u64,
    (-100_i64) as u64,
    (-0x8000_0000_i64) as u64,
];

/// `#define KX_TARGET_<NAME> <integer>` lines of `kx_target.c`, as two's complement.
fn constants() -> BTreeMap<String, u64> {
    let path = module_dir().join("kx_target.c");
    let source =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    source
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("#define KX_TARGET_")?;
            let (name, value) = rest.split_once(char::is_whitespace)?;
            let value = parse_c_integer(value.trim())
                .unwrap_or_else(|| panic!("{}: cannot read the value of {line:?}", path.display()));
            Some((format!("KX_TARGET_{name}"), value))
        })
        .collect()
}

/// Reads `0x1f`, `1237`, `(-0x1234567LL)`, `0x1badcafe5eedf00dULL`.
fn parse_c_integer(text: &str) -> Option<u64> {
    let text = text
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .unwrap_or(text);
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let digits = digits.trim_end_matches(['u', 'U', 'l', 'L']);
    let magnitude = match digits.strip_prefix("0x").or(digits.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => digits.parse().ok()?,
    };
    Some(if negative {
        magnitude.wrapping_neg()
    } else {
        magnitude
    })
}

#[track_caller]
fn constant(constants: &BTreeMap<String, u64>, name: &str) -> u64 {
    *constants
        .get(name)
        .unwrap_or_else(|| panic!("kx_target.c defines no {name}"))
}

fn debugfs(file: &str) -> String {
    format!("{DEBUGFS}/{file}")
}

#[track_caller]
fn write_file(path: &str, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("writing {text:?} to {path}: {e}"));
}

#[track_caller]
fn read_file(path: &str) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Reads a result line; signed ones come back as two's complement.
#[track_caller]
fn read_number(path: &str, signed: bool) -> u64 {
    let text = read_file(path);
    let number = text.trim();
    let parsed = if signed {
        number.parse::<i64>().map(|n| n as u64).ok()
    } else {
        number.parse::<u64>().ok()
    };
    parsed.unwrap_or_else(|| panic!("{path} printed {text:?}, not a number"))
}

/// Runs `program args` and waits at most [`WAIT`] for it; returns its combined output.
#[track_caller]
fn run_bounded(program: &str, args: &[&str]) -> Result<String, String> {
    let rendered = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting `{rendered}`: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for a child") {
            break status;
        }
        if start.elapsed() > WAIT {
            let _ = child.kill();
            panic!("`{rendered}` did not finish within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut output = String::new();
    for mut pipe in [
        child.stdout.take().map(|p| Box::new(p) as Box<dyn Read>),
        child.stderr.take().map(|p| Box::new(p) as Box<dyn Read>),
    ]
    .into_iter()
    .flatten()
    {
        let _ = pipe.read_to_string(&mut output);
    }
    if status.success() {
        Ok(output)
    } else {
        Err(format!("`{rendered}` failed ({status}): {output}"))
    }
}

/// Polls `check` every 20 ms until it holds or `limit` passes; returns whether it held.
fn loop_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

/// The kernel log from the moment it was opened: /dev/kmsg records, read without blocking.
struct Kmsg(fs::File);

/// One /dev/kmsg record: its syslog level (0 = emerg ... 7 = debug) and its text.
struct Record {
    level: u8,
    text: String,
}

/// Warnings loading any unsigned, out-of-tree module prints once per boot.
const EXPECTED_WARNINGS: &[&str] = &[
    "loading out-of-tree module taints kernel",
    "module verification failed: signature and/or required key missing",
];

impl Kmsg {
    fn open_at_end() -> Self {
        // O_NONBLOCK: read() says EAGAIN at the end of the log instead of waiting for more.
        const O_NONBLOCK: i32 = 0o4000;
        let mut file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(O_NONBLOCK)
            .open("/dev/kmsg")
            .unwrap_or_else(|e| panic!("opening /dev/kmsg: {e}"));
        file.seek(SeekFrom::End(0))
            .unwrap_or_else(|e| panic!("seeking to the end of /dev/kmsg: {e}"));
        Self(file)
    }

    /// Every record logged since the last call (or since opening).
    fn drain(&mut self) -> Vec<Record> {
        let mut records = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match self.0.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let raw = String::from_utf8_lossy(&buf[..n]);
                    // "<facility*8+level>,<seq>,<usec>,<flags>;<text>\n[ continuation lines]"
                    let (header, text) = raw.split_once(';').unwrap_or(("", &raw));
                    let level = header
                        .split(',')
                        .next()
                        .and_then(|p| p.parse::<u32>().ok())
                        .map_or(0, |p| (p & 7) as u8);
                    let text = text.lines().next().unwrap_or("").to_owned();
                    records.push(Record { level, text });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                // EPIPE: records were overwritten before we read them; the next read resumes.
                Err(e) if e.raw_os_error() == Some(32) => continue,
                Err(e) => panic!("reading /dev/kmsg: {e}"),
            }
        }
        records
    }
}

/// kx_target.ko loaded by a test; unloaded (best effort) if the test panics first.
struct Loaded {
    kmsg: Kmsg,
    unloaded: bool,
}

impl Loaded {
    #[track_caller]
    fn insmod() -> Self {
        let ko = module_dir().join("build/kx_target.ko");
        let source = module_dir().join("kx_target.c");
        let ko_time = fs::metadata(&ko)
            .and_then(|m| m.modified())
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e}; `cargo xtask lab test` builds it on the host before booting \
                 (by hand: make -C tests/target-module KDIR=/usr/src/linux-headers-<release>)",
                    ko.display()
                )
            });
        let source_time = fs::metadata(&source)
            .and_then(|m| m.modified())
            .unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        assert!(
            ko_time >= source_time,
            "{} is older than {}: rebuild it (cargo xtask lab test does)",
            ko.display(),
            source.display()
        );
        if Path::new(&format!("/sys/module/{MODULE}")).exists() {
            // A previous test panicked before it could unload.
            let _ = run_bounded("rmmod", &[MODULE]);
        }
        let kmsg = Kmsg::open_at_end();
        let ko = ko.to_str().expect("UTF-8 path");
        if let Err(e) = run_bounded("insmod", &[ko]) {
            panic!("{e}");
        }
        assert!(
            Path::new(DEBUGFS).is_dir(),
            "insmod {ko} succeeded but {DEBUGFS} does not exist"
        );
        Self {
            kmsg,
            unloaded: false,
        }
    }

    /// Unloads the module and checks that it left nothing behind and logged no warning.
    #[track_caller]
    fn rmmod(mut self) {
        self.unloaded = true;
        if let Err(e) = run_bounded("rmmod", &[MODULE]) {
            panic!("{e}");
        }
        assert!(
            !Path::new(DEBUGFS).exists(),
            "{DEBUGFS} is still there after rmmod"
        );
        assert!(
            !Path::new(&format!("/sys/module/{MODULE}")).exists(),
            "/sys/module/{MODULE} is still there after rmmod"
        );
        let records = self.kmsg.drain();
        let warnings: Vec<String> = records
            .iter()
            .filter(|r| r.level <= 4)
            .filter(|r| !EXPECTED_WARNINGS.iter().any(|w| r.text.contains(w)))
            .map(|r| format!("<{}> {}", r.level, r.text))
            .collect();
        let log: Vec<String> = records
            .iter()
            .map(|r| format!("<{}> {}", r.level, r.text))
            .collect();
        assert!(
            warnings.is_empty(),
            "the kernel logged warnings between insmod and rmmod:\n{}\nwhole log:\n{}",
            warnings.join("\n"),
            log.join("\n")
        );
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        if !self.unloaded {
            // Wake any reader left asleep; its file pins the module until it closes.
            let _ = fs::write(debugfs("release"), "1");
            loop_until(Duration::from_secs(5), || {
                run_bounded("rmmod", &[MODULE]).is_ok()
            });
        }
    }
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    MODULE_LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

#[test]
#[ignore = "lab VM test: run with `cargo xtask lab test`"]
fn vm_target_module_loads_with_every_function_and_unloads_cleanly() {
    let _serial = serial();
    let loaded = Loaded::insmod();
    let constants = constants();
    for case in CASES {
        constant(&constants, case.constant);
    }
    let files: Vec<String> = fs::read_dir(DEBUGFS)
        .unwrap_or_else(|e| panic!("listing {DEBUGFS}: {e}"))
        .map(|e| {
            e.expect("a debugfs entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let wanted = CASES
        .iter()
        .map(|c| c.file)
        .chain(["block", "release", "waiters"]);
    let missing: Vec<&str> = wanted.filter(|w| !files.iter().any(|f| f == w)).collect();
    assert!(
        missing.is_empty(),
        "{DEBUGFS} lacks {missing:?}; it has {files:?}"
    );
    // Each function must exist under its own name (not inlined, not a .constprop clone) for
    // the analysis to pair it and for a kprobe to find it.
    let kallsyms = read_file("/proc/kallsyms");
    let symbols: Vec<&str> = kallsyms
        .lines()
        .filter(|l| l.ends_with(&format!("[{MODULE}]")))
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    let absent: Vec<String> = CASES
        .iter()
        .map(|c| c.file)
        .chain(["block"])
        .map(|f| format!("kx_target_{f}"))
        .filter(|name| !symbols.contains(&name.as_str()))
        .collect();
    assert!(
        absent.is_empty(),
        "/proc/kallsyms lacks {absent:?}; the module's symbols are {symbols:?}"
    );
    loaded.rmmod();
}

#[test]
#[ignore = "lab VM test: run with `cargo xtask lab test`"]
fn vm_target_module_computes_what_its_source_says() {
    let _serial = serial();
    let loaded = Loaded::insmod();
    let constants = constants();
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in CASES {
        let v = constant(&constants, case.constant);
        let own = [v.wrapping_sub(1), v, v.wrapping_add(1)];
        let path = debugfs(case.file);
        for &x in INPUTS.iter().chain(&own) {
            let written = if case.signed {
                (x as i64).to_string()
            } else {
                x.to_string()
            };
            write_file(&path, &written);
            let got = read_number(&path, case.signed);
            let want = (case.expect)(x, v);
            checked += 1;
            if got != want {
                failures.push(format!(
                    "{}: wrote {written} ({x:#x}), {} = {v:#x}: read {got:#x}, expected {want:#x}",
                    case.file, case.constant
                ));
            }
        }
        // Reading again recomputes from the same input.
        let again = read_number(&path, case.signed);
        let want = (case.expect)(own[2], v);
        if again != want {
            failures.push(format!(
                "{}: a second read gave {again:#x}, the first {want:#x}",
                case.file
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} results differ from kx_target.c:\n{}",
        failures.len(),
        failures.join("\n")
    );
    loaded.rmmod();
}

/// Starts a thread that reads `block` once and sends what it got. One read(2), not
/// `read_to_string`: after an rmmod the file's next read fails with EIO.
fn spawn_block_reader() -> mpsc::Receiver<std::io::Result<String>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let result = fs::File::open(debugfs("block")).and_then(|mut file| {
            let mut buf = [0u8; 64];
            let n = file.read(&mut buf)?;
            Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
        });
        let _ = tx.send(result);
    });
    rx
}

#[track_caller]
fn waiters() -> u64 {
    read_number(&debugfs("waiters"), false)
}

#[test]
#[ignore = "lab VM test: run with `cargo xtask lab test`"]
fn vm_target_module_block_sleeps_inside_its_span_until_released() {
    let _serial = serial();
    let loaded = Loaded::insmod();
    let v = constant(&constants(), "KX_TARGET_BLOCK");
    let input: u64 = 1000;
    write_file(&debugfs("block"), &input.to_string());
    assert_eq!(waiters(), 0, "waiters before any read of block");

    let reader = spawn_block_reader();
    assert!(
        loop_until(WAIT, || waiters() == 1),
        "no task waited in kx_target_block within {WAIT:?}: waiters = {}",
        waiters()
    );
    // Still asleep a while later: only `release` wakes it.
    if let Ok(early) = reader.recv_timeout(Duration::from_millis(500)) {
        panic!("block returned {early:?} before release was written");
    }
    // Its kernel stack has a return address inside kx_target_block, which is what a safe
    // span check looks for.
    let stacks: Vec<String> = fs::read_dir("/proc/self/task")
        .expect("listing /proc/self/task")
        .filter_map(|t| fs::read_to_string(t.ok()?.path().join("stack")).ok())
        .collect();
    assert!(
        stacks.iter().any(|s| s.contains("kx_target_block+")),
        "no thread's kernel stack goes through kx_target_block:\n{}",
        stacks.join("\n")
    );
    // Other functions run while one task sleeps in block.
    write_file(&debugfs("add"), "1");
    let add = read_number(&debugfs("add"), false);
    assert_eq!(
        add,
        1 + constant(&constants(), "KX_TARGET_ADD"),
        "add while block sleeps"
    );

    write_file(&debugfs("release"), "1");
    let result = reader
        .recv_timeout(WAIT)
        .unwrap_or_else(|_| panic!("block still asleep {WAIT:?} after release"))
        .unwrap_or_else(|e| panic!("reading block: {e}"));
    let want = input.wrapping_add(v);
    assert_eq!(
        result.trim(),
        want.to_string(),
        "block with input {input}: before release it slept, after it returned {result:?}"
    );
    assert!(
        loop_until(WAIT, || waiters() == 0),
        "waiters = {} after release",
        waiters()
    );

    // A release with nobody waiting is not saved up for the next reader.
    write_file(&debugfs("release"), "1");
    let reader = spawn_block_reader();
    assert!(
        loop_until(WAIT, || waiters() == 1),
        "the second reader never waited: waiters = {}",
        waiters()
    );
    if let Ok(early) = reader.recv_timeout(Duration::from_millis(300)) {
        panic!("a release written before the read woke it: block returned {early:?}");
    }
    write_file(&debugfs("release"), "1");
    let result = reader
        .recv_timeout(WAIT)
        .unwrap_or_else(|_| panic!("the second reader still asleep {WAIT:?} after release"))
        .unwrap_or_else(|e| panic!("reading block: {e}"));
    assert_eq!(
        result.trim(),
        want.to_string(),
        "the second reader's result"
    );
    loaded.rmmod();
}

#[test]
#[ignore = "lab VM test: run with `cargo xtask lab test`"]
fn vm_target_module_stays_loaded_while_a_reader_sleeps() {
    let _serial = serial();
    let loaded = Loaded::insmod();
    let reader = spawn_block_reader();
    assert!(
        loop_until(WAIT, || waiters() == 1),
        "no task waited in kx_target_block within {WAIT:?}: waiters = {}",
        waiters()
    );
    // The sleeper's open file holds a module reference, so its code cannot go away under it.
    match run_bounded("rmmod", &[MODULE]) {
        Ok(out) => panic!("rmmod succeeded with a reader asleep in kx_target_block: {out}"),
        Err(e) => assert!(e.contains("in use"), "rmmod failed otherwise: {e}"),
    }
    assert_eq!(waiters(), 1, "waiters after the refused rmmod");
    if let Ok(early) = reader.recv_timeout(Duration::from_millis(300)) {
        panic!("the refused rmmod woke the reader: block returned {early:?}");
    }
    write_file(&debugfs("release"), "1");
    let result = reader
        .recv_timeout(WAIT)
        .unwrap_or_else(|_| panic!("the reader still sleeps {WAIT:?} after release"));
    assert!(result.is_ok(), "the released reader got {result:?}");
    loaded.rmmod();
}
