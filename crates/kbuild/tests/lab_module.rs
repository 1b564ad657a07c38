//! Variant builds of the target module (`tests/target-module`) against the lab kernel's
//! headers (`cargo xtask lab setup` installs them).
//!
//! Ignored by default; `cargo xtask ci` runs them with `--include-ignored` and
//! `KERNELX_LAB_HEADERS` set (else `/usr/src/linux-headers-6.12.117+deb12-cloud-amd64`).

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::Command;

use kernelx_kbuild::{
    BuiltUnits, Cache, ModuleTree, NoProgress, SourceTree, Toolchain, VariantOptions,
    build_variants,
};
use kernelx_spec::Tunable;
use object::{Object as _, ObjectSymbol as _, SymbolKind};

const LAB_RELEASE: &str = "6.12.117+deb12-cloud-amd64";

fn headers() -> PathBuf {
    let path = std::env::var_os("KERNELX_LAB_HEADERS").map_or_else(
        || format!("/usr/src/linux-headers-{LAB_RELEASE}").into(),
        PathBuf::from,
    );
    assert!(
        path.join(".config").is_file(),
        "{}: no kernel headers; run `cargo xtask lab setup` (it installs linux-headers-{LAB_RELEASE}) \
         or set KERNELX_LAB_HEADERS to a kernel build directory",
        path.display()
    );
    path
}

fn module_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/target-module")
}

/// The module built with its own Makefile into `out`, as `cargo xtask lab test` builds it.
fn build_module(out: &Path) -> PathBuf {
    let status = Command::new("make")
        .arg("-C")
        .arg(module_dir())
        .arg(format!("KDIR={}", headers().display()))
        .arg(format!("BUILD={}", out.display()))
        .env_remove("MAKEFLAGS")
        .status()
        .expect("running make");
    assert!(status.success(), "building the target module failed");
    out.join("kx_target.ko")
}

fn options(cache: &Path) -> VariantOptions {
    VariantOptions {
        toolchain: Toolchain::debian_gcc12(),
        jobs: std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
        cache: Cache::new(cache),
        // Ignored for a module: its units are its own.
        built: BuiltUnits::Unrestricted,
    }
}

/// Function sizes of an object file.
fn function_sizes(path: &Path) -> HashMap<String, u64> {
    let bytes = std::fs::read(path).unwrap();
    let file = object::File::parse(&*bytes).unwrap();
    file.symbols()
        .filter(|s| s.kind() == SymbolKind::Text && s.size() > 0)
        .map(|s| (s.name().unwrap().to_owned(), s.size()))
        .collect()
}

/// The module's units and commands come from kbuild, V2 and V3 differ where the constant is
/// used, and V1 is kbuild's own build: every function has the size it has in the `.ko` the
/// module's Makefile builds. Nothing is written into the module's directory.
#[test]
#[ignore = "needs the lab kernel's headers (cargo xtask lab setup)"]
fn lab_tree_module_variants_are_kbuilds_build() {
    let cache = tempfile::tempdir().unwrap();
    let options = options(cache.path());
    let before = listing(&module_dir());
    let module = ModuleTree::open(
        &module_dir(),
        &headers(),
        None,
        &options.toolchain,
        &options.cache,
    )
    .unwrap();
    assert_eq!(module.name(), "kx_target");
    assert_eq!(module.release(), LAB_RELEASE);
    assert!(module.units().contains(Path::new("kx_target.c")));
    assert!(!module.units().contains(Path::new("build/kx_target.c")));

    let tunable = Tunable::from_macro_name("KX_TARGET_ADD").unwrap();
    let set = build_variants(&module, &tunable, &options, &NoProgress).unwrap();
    assert_eq!(set.units.len(), 1);
    assert_eq!(set.units[0].source, Path::new("kx_target.c"));
    assert_eq!(set.values[0], 0x2a5);
    let v1 = function_sizes(&set.units[0].builds[0]);
    let v2 = function_sizes(&set.units[0].builds[1]);
    assert_ne!(
        std::fs::read(&set.units[0].builds[0]).unwrap(),
        std::fs::read(&set.units[0].builds[1]).unwrap()
    );

    let built = tempfile::tempdir().unwrap();
    let ko = build_module(built.path());
    let shipped = function_sizes(&ko);
    for name in ["kx_target_add", "kx_target_block", "kx_target_shared_b"] {
        assert_eq!(v1.get(name), shipped.get(name), "{name}");
        assert!(v1.contains_key(name), "{name} missing from V1");
    }
    let differing: Vec<&String> = shipped
        .iter()
        .filter(|(name, size)| name.starts_with("kx_target_") && v1.get(*name) != Some(size))
        .map(|(name, _)| name)
        .collect();
    assert!(
        differing.is_empty(),
        "V1 sizes differ from the .ko: {differing:?}"
    );
    assert_eq!(v2.get("kx_target_add"), v1.get("kx_target_add"));
    assert_eq!(
        before,
        listing(&module_dir()),
        "the module directory was written"
    );

    // Through SourceTree, the module names its release and itself.
    let tree = SourceTree::from(&module);
    assert_eq!(tree.release(), LAB_RELEASE);
    assert_eq!(tree.module().map(ModuleTree::name), Some("kx_target"));
}

/// A built `.ko` must be this module, built for this kernel release.
#[test]
#[ignore = "needs the lab kernel's headers (cargo xtask lab setup)"]
fn lab_tree_module_built_for_another_release_is_refused() {
    let cache = tempfile::tempdir().unwrap();
    let options = options(cache.path());
    let built = tempfile::tempdir().unwrap();
    let ko = build_module(built.path());
    let module = ModuleTree::open(
        &module_dir(),
        &headers(),
        Some(&ko),
        &options.toolchain,
        &options.cache,
    )
    .unwrap();
    let found = module.built_module().unwrap();
    assert_eq!(found.name, "kx_target");
    assert_eq!(found.release(), LAB_RELEASE);

    let mut bytes = std::fs::read(&ko).unwrap();
    let magic = format!("vermagic={LAB_RELEASE}");
    let at = bytes
        .windows(magic.len())
        .position(|w| w == magic.as_bytes())
        .expect("the .ko has a vermagic");
    let other = b"vermagic=6.12.118";
    bytes[at..at + other.len()].copy_from_slice(other);
    let foreign = built.path().join("foreign.ko");
    std::fs::write(&foreign, bytes).unwrap();
    let err = ModuleTree::open(
        &module_dir(),
        &headers(),
        Some(&foreign),
        &options.toolchain,
        &options.cache,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("built for kernel 6.12.118+deb12-cloud-amd64"),
        "{err}"
    );
    assert!(
        err.contains(&format!("build directory of {LAB_RELEASE}")),
        "{err}"
    );
}

/// A module built in place (`make M=<dir>`: objects, `.cmd` files, `modules.order` and the
/// `.ko` next to the sources) and with the target module's `build/` directory of symlinks
/// still has one unit and kbuild's command for it, and make writes nothing there (modpost's
/// stage would link the `.ko` again if make got that far).
#[test]
#[ignore = "needs the lab kernel's headers (cargo xtask lab setup)"]
fn lab_tree_module_built_in_place_is_read_not_written() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["Kbuild", "Makefile", "kx_target.c"] {
        std::fs::copy(module_dir().join(file), dir.path().join(file)).unwrap();
    }
    let status = Command::new("make")
        .arg("-C")
        .arg(headers())
        .arg(format!("M={}", dir.path().display()))
        .arg("modules")
        .env_remove("MAKEFLAGS")
        .status()
        .expect("running make");
    assert!(status.success());
    let status = Command::new("make")
        .arg("-C")
        .arg(dir.path())
        .arg(format!("KDIR={}", headers().display()))
        .env_remove("MAKEFLAGS")
        .status()
        .expect("running make");
    assert!(status.success());
    assert!(dir.path().join("kx_target.ko").is_file());
    assert!(dir.path().join("build/.kx_target.o.cmd").is_file());
    let before = listing(dir.path());

    let cache = tempfile::tempdir().unwrap();
    let options = options(cache.path());
    let module = ModuleTree::open(
        dir.path(),
        &headers(),
        None,
        &options.toolchain,
        &options.cache,
    )
    .unwrap();
    assert_eq!(
        module.units(),
        &BuiltUnits::Listed {
            origin: format!(
                "the objects kbuild builds for module kx_target in {} against {}",
                dir.path().canonicalize().unwrap().display(),
                headers().canonicalize().unwrap().display()
            ),
            units: [PathBuf::from("kx_target.c")].into(),
        }
    );
    // `<dir>/kx_target.ko`, as `make M=<dir>` leaves it, is found.
    assert_eq!(
        module.built_module().map(|b| b.path.clone()),
        Some(dir.path().canonicalize().unwrap().join("kx_target.ko"))
    );
    let tunable = Tunable::from_macro_name("KX_TARGET_SUB").unwrap();
    let set = build_variants(&module, &tunable, &options, &NoProgress).unwrap();
    assert_eq!(set.units.len(), 1);
    assert_eq!(
        function_sizes(&set.units[0].builds[0]).get("kx_target_sub"),
        function_sizes(&dir.path().join("kx_target.ko")).get("kx_target_sub")
    );
    assert_eq!(
        before,
        listing(dir.path()),
        "the module directory was written"
    );
}

/// Every path under `dir` with its size and mtime.
fn listing(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            }
            out.push((entry.path(), meta.len(), meta.modified().unwrap()));
        }
    }
    out.sort();
    out
}
