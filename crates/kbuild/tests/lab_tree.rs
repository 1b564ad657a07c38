//! Variant builds on the prepared lab tree (Debian 6.12, `cargo xtask lab setup`).
//!
//! Ignored by default; `cargo xtask ci` runs them with `--include-ignored`, with
//! `KERNELX_LAB_TREE` (the prepared source tree) and `KERNELX_LAB_VMLINUX` (its debug vmlinux)
//! set. All tests of this file share one cache directory, created empty for the run, so the
//! first build of a unit is cold and later ones may hit.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use kernelx_kbuild::{
    BuiltUnits, Cache, KbuildError, KernelTree, NoProgress, Toolchain, VariantOptions, VariantSet,
    build_variants,
};
use kernelx_spec::{EnvOverrides, Tunable};
use object::{Object as _, ObjectSymbol as _, SymbolKind};

#[track_caller]
fn lab_path(var: &str, what: &str) -> PathBuf {
    let value = std::env::var_os(var).unwrap_or_else(|| {
        panic!("{var} is not set: point it at {what} (cargo xtask lab setup prepares it)")
    });
    let path = PathBuf::from(value);
    assert!(
        path.exists(),
        "{var}={} does not exist: point it at {what}",
        path.display()
    );
    path
}

fn lab_tree() -> KernelTree {
    let path = lab_path("KERNELX_LAB_TREE", "the prepared 6.12 source tree");
    let tree = KernelTree::open(&path)
        .unwrap_or_else(|e| panic!("KERNELX_LAB_TREE={}: {e}", path.display()));
    assert!(
        tree.kernel_release().is_some(),
        "KERNELX_LAB_TREE={} is not prepared (no include/config/kernel.release); run cargo xtask lab setup",
        path.display()
    );
    tree
}

fn lab_vmlinux() -> PathBuf {
    lab_path(
        "KERNELX_LAB_VMLINUX",
        "the debug vmlinux of the lab kernel (vmlinux-<release> from the -dbg package)",
    )
}

fn built_units() -> &'static BuiltUnits {
    static UNITS: OnceLock<BuiltUnits> = OnceLock::new();
    UNITS.get_or_init(|| BuiltUnits::from_debug_info(&[&lab_vmlinux()]).unwrap())
}

/// The cache all tests of this run share: empty at the start of the run.
fn shared_cache() -> Cache {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    Cache::new(DIR.get_or_init(|| tempfile::tempdir().unwrap()).path())
}

fn options(cache: Cache) -> VariantOptions {
    VariantOptions {
        toolchain: Toolchain::debian_gcc12(),
        jobs: std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
        cache,
        built: built_units().clone(),
    }
}

fn tunable(toml: &str) -> Tunable {
    kernelx_spec::parse_str(toml, "test.toml", &EnvOverrides::default())
        .unwrap()
        .spec
        .tunables
        .remove(0)
}

fn softirq_tunable() -> Tunable {
    tunable(
        r##"
name = "MAX_SOFTIRQ_RESTART"
[source]
file = "kernel/softirq.c"
original = "#define MAX_SOFTIRQ_RESTART 10"
modified = ["#define MAX_SOFTIRQ_RESTART 20", "#define MAX_SOFTIRQ_RESTART 5"]
values = [10, 20, 5]
"##,
    )
}

/// `PIPE_DEF_BUFFERS` named as a macro, built once for the tests that inspect it.
fn pipe_variants() -> &'static VariantSet {
    static SET: OnceLock<VariantSet> = OnceLock::new();
    SET.get_or_init(|| {
        let started = Instant::now();
        let set = build_variants(
            &lab_tree(),
            &Tunable::from_macro_name("PIPE_DEF_BUFFERS").unwrap(),
            &options(shared_cache()),
            &NoProgress,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "PIPE_DEF_BUFFERS built in {:.1} s:\n{}\n{}\ntimings {:?}, compile {:?}",
            started.elapsed().as_secs_f64(),
            set.change,
            set.discovery,
            set.discovery.timings,
            set.stats
        );
        set
    })
}

fn sources(set: &VariantSet) -> Vec<&str> {
    set.units
        .iter()
        .map(|u| u.source.to_str().unwrap())
        .collect()
}

/// The bytes of function `name` in an object file.
#[track_caller]
fn function_bytes(object_path: &Path, name: &str) -> Vec<u8> {
    let data = std::fs::read(object_path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let symbol = file
        .symbols()
        .find(|s| s.name() == Ok(name))
        .unwrap_or_else(|| panic!("{}: no symbol {name}", object_path.display()));
    let section = file
        .section_by_index(symbol.section_index().unwrap())
        .unwrap();
    use object::ObjectSection as _;
    let bytes = section.data().unwrap();
    let start = symbol.address() as usize;
    bytes[start..start + symbol.size() as usize].to_vec()
}

#[test]
#[ignore = "needs the prepared lab tree (cargo xtask lab setup)"]
fn lab_tree_pipe_def_buffers_finds_every_unit() {
    let set = pipe_variants();
    assert_eq!(set.values, [16, 32, 8]);
    let change = &set.change;
    assert_eq!(change.file, Path::new("include/linux/pipe_fs_i.h"));
    let definition = change.definition.as_ref().unwrap();
    assert_eq!(
        (definition.value_text.as_str(), definition.value),
        ("16", 16)
    );
    let d = &set.discovery;
    let expected = ["fs/pipe.c", "fs/splice.c", "kernel/trace/trace.c"];
    assert_eq!(sources(set), expected, "{d}");
    for stage in [
        &d.mentions,
        &d.candidates,
        &d.built,
        &d.including,
        &d.affected,
    ] {
        let stage: Vec<&str> = stage.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(stage, expected, "{d}");
    }
    assert!(d.scanned_files > 1000, "{d}");
    let pipe = &set.units[0];
    assert_eq!(pipe.object, Path::new("fs/pipe.o"));
    let [v1, v2, v3] = &pipe.builds;
    let alloc: Vec<Vec<u8>> = [v1, v2, v3]
        .iter()
        .map(|o| function_bytes(o, "alloc_pipe_info"))
        .collect();
    assert_ne!(alloc[0], alloc[1], "V1 and V2 of alloc_pipe_info are equal");
    assert_ne!(alloc[0], alloc[2], "V1 and V3 of alloc_pipe_info are equal");
    assert_ne!(alloc[1], alloc[2], "V2 and V3 of alloc_pipe_info are equal");
    // The compare against 16 pages' worth of bytes: cmp $0xffff -> $0x1ffff -> $0x7fff.
    let has = |bytes: &[u8], imm: u32| bytes.windows(4).any(|w| w == imm.to_le_bytes());
    assert!(has(&alloc[0], 0xffff) && !has(&alloc[1], 0xffff) && has(&alloc[1], 0x1ffff));
    assert!(has(&alloc[2], 0x7fff));
    for unit in &set.units {
        for build in &unit.builds {
            assert!(
                build.starts_with(shared_cache().root()),
                "{} is outside the cache",
                build.display()
            );
        }
    }
}

/// Lab notes, "Rebuilding one object reproduces the shipped code": every function of the V1
/// build of fs/pipe.o has the size of the same symbol in the shipped (debug) vmlinux.
#[test]
#[ignore = "needs the prepared lab tree (cargo xtask lab setup)"]
fn lab_tree_v1_of_pipe_reproduces_the_shipped_function_sizes() {
    let set = pipe_variants();
    let pipe = set
        .units
        .iter()
        .find(|u| u.object == Path::new("fs/pipe.o"))
        .unwrap();
    let object_data = std::fs::read(&pipe.builds[0]).unwrap();
    let object = object::File::parse(&*object_data).unwrap();
    let vmlinux_file = std::fs::File::open(lab_vmlinux()).unwrap();
    // SAFETY: the lab's vmlinux is not modified while the test runs.
    let vmlinux_data = unsafe { memmap2::Mmap::map(&vmlinux_file) }.unwrap();
    let vmlinux = object::File::parse(&*vmlinux_data).unwrap();

    // Local symbols follow the STT_FILE symbol of their unit; globals are unique by name.
    let mut in_vmlinux: HashMap<&str, Vec<(Option<&str>, u64)>> = HashMap::new();
    let mut file: Option<&str> = None;
    for symbol in vmlinux.symbols() {
        match symbol.kind() {
            SymbolKind::File => file = symbol.name().ok(),
            SymbolKind::Text if symbol.size() > 0 => {
                let owner = if symbol.is_global() { None } else { file };
                if let Ok(name) = symbol.name() {
                    in_vmlinux
                        .entry(name)
                        .or_default()
                        .push((owner, symbol.size()));
                }
            }
            _ => {}
        }
    }
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for symbol in object.symbols() {
        if symbol.kind() != SymbolKind::Text || symbol.size() == 0 {
            continue;
        }
        let name = symbol.name().unwrap();
        let candidates = in_vmlinux.get(name).cloned().unwrap_or_default();
        let same_unit: Vec<u64> = candidates
            .iter()
            .filter(|(owner, _)| {
                symbol.is_global() == owner.is_none() && owner.is_none_or(|f| f == "pipe.c")
            })
            .map(|&(_, size)| size)
            .collect();
        if same_unit.contains(&symbol.size()) {
            checked += 1;
        } else {
            mismatches.push(format!(
                "{name}: {:#x} in fs/pipe.o, {same_unit:#x?} in vmlinux",
                symbol.size()
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert!(checked >= 40, "only {checked} functions in fs/pipe.o");
    eprintln!("{checked} functions of fs/pipe.o have their vmlinux sizes");
}

#[test]
#[ignore = "needs the prepared lab tree (cargo xtask lab setup)"]
fn lab_tree_warm_rebuild_hits_the_cache() {
    pipe_variants();
    let started = Instant::now();
    let again = build_variants(
        &lab_tree(),
        &Tunable::from_macro_name("PIPE_DEF_BUFFERS").unwrap(),
        &options(shared_cache()),
        &NoProgress,
    )
    .unwrap();
    let elapsed = started.elapsed();
    eprintln!(
        "warm PIPE_DEF_BUFFERS: {:.2} s, timings {:?}",
        elapsed.as_secs_f64(),
        again.discovery.timings
    );
    assert_eq!((again.stats.compiled, again.stats.cached), (0, 9));
    assert_eq!(again.discovery.preprocess_cached, (6, 6));
    assert_eq!(again.units, pipe_variants().units);
    // Generous: the bar is 2 s on an idle machine; tests share the CPUs with each other.
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[test]
#[ignore = "needs the prepared lab tree (cargo xtask lab setup)"]
fn lab_tree_max_softirq_restart_pattern_form_builds_one_unit() {
    let set = build_variants(
        &lab_tree(),
        &softirq_tunable(),
        &options(shared_cache()),
        &NoProgress,
    )
    .unwrap();
    eprintln!("{}\n{}", set.change, set.discovery);
    assert_eq!(sources(&set), ["kernel/softirq.c"]);
    assert_eq!(set.values, [10, 20, 5]);
    assert_eq!(set.change.replacements, 1);
    let [v1, v2, v3] = &set.units[0].builds;
    let bytes: Vec<Vec<u8>> = [v1, v2, v3]
        .iter()
        .map(|o| function_bytes(o, "handle_softirqs"))
        .collect();
    assert_ne!(bytes[0], bytes[1]);
    assert_ne!(bytes[1], bytes[2]);
    assert_ne!(bytes[0], bytes[2]);
}

#[test]
#[ignore = "needs the prepared lab tree (cargo xtask lab setup)"]
fn lab_tree_pattern_that_matches_nothing_names_file_and_pattern() {
    let t = tunable(
        r##"
name = "typo"
[source]
file = "kernel/softirq.c"
original = "#define MAX_SOFTIRQ_RESTART 11"
modified = ["#define MAX_SOFTIRQ_RESTART 20", "#define MAX_SOFTIRQ_RESTART 5"]
values = [11, 20, 5]
"##,
    );
    let err = build_variants(&lab_tree(), &t, &options(shared_cache()), &NoProgress).unwrap_err();
    assert!(
        matches!(err, KbuildError::PatternNotFound { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with(
            "kernel/softirq.c: the pattern \"#define MAX_SOFTIRQ_RESTART 11\" does not occur"
        ),
        "{text}"
    );
}

/// A build with an empty cache (so make and gcc really run) leaves every file of the tree as
/// it was, and creates none.
#[test]
#[ignore = "needs the prepared lab tree (cargo xtask lab setup)"]
fn lab_tree_builds_leave_the_tree_untouched() {
    let tree = lab_tree();
    let watched = [
        "fs/pipe.c",
        "include/linux/pipe_fs_i.h",
        "kernel/softirq.c",
        ".config",
        "include/config/auto.conf",
        "Makefile",
        ".",
    ];
    let snapshot = || -> Vec<(SystemTime, Vec<u8>)> {
        watched
            .iter()
            .map(|f| {
                let path = tree.path().join(f);
                let meta = std::fs::metadata(&path).unwrap();
                let content = if meta.is_file() {
                    std::fs::read(&path).unwrap()
                } else {
                    Vec::new()
                };
                (meta.modified().unwrap(), content)
            })
            .collect()
    };
    let before = snapshot();
    let stamp_dir = tempfile::tempdir().unwrap();
    let stamp = stamp_dir.path().join("stamp");
    std::fs::write(&stamp, b"").unwrap();
    // `find -newer` compares whole mtimes: make sure a write right after the stamp is newer.
    std::thread::sleep(Duration::from_millis(20));

    let fresh = tempfile::tempdir().unwrap();
    let set = build_variants(
        &tree,
        &softirq_tunable(),
        &options(Cache::new(fresh.path())),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(set.stats.compiled, 3, "the fresh cache must compile");

    let find = Command::new("find")
        .arg(tree.path())
        .args(["-newer"])
        .arg(&stamp)
        .output()
        .unwrap();
    assert!(find.status.success());
    let newer = String::from_utf8_lossy(&find.stdout);
    assert!(newer.trim().is_empty(), "written in the tree:\n{newer}");
    assert!(before == snapshot(), "a watched file changed");
}
