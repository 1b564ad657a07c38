//! Verification against the live lab kernel: it runs inside the lab VM (`cargo xtask lab
//! test`, as root, debugfs and tracefs mounted) and is ignored on the host, whose kernel has
//! no `/proc/kcore`.
//!
//! The golden plans of `crates/analyze/testdata/golden` were built from the lab kernel's
//! source and vmlinux; they must verify as they are, and be refused once a byte is changed.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use kernelx_plan::{HexBytes, Plan};
use kernelx_runtime::host::HostView;
use kernelx_runtime::identity::{IdentityError, gnu_build_id};
use kernelx_runtime::kallsyms::KernelSymbol;
use kernelx_runtime::verify::{LiveKernel, SiteProblem, VerifyError, verify};

const KPROBE_EVENTS: &str = "/sys/kernel/tracing/kprobe_events";

#[track_caller]
fn golden(name: &str) -> Plan {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../analyze/testdata/golden")
        .join(format!("{name}.plan.json"));
    Plan::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The live kernel, read once: parsing kallsyms under TCG takes seconds.
fn live() -> &'static LiveKernel {
    static LIVE: OnceLock<LiveKernel> = OnceLock::new();
    LIVE.get_or_init(|| {
        LiveKernel::open(HostView::system())
            .unwrap_or_else(|e| panic!("reading the live kernel: {e}"))
    })
}

#[track_caller]
fn function(live: &LiveKernel, name: &str) -> u64 {
    let found: Vec<&KernelSymbol> = live.kallsyms().functions(name, None).collect();
    match found[..] {
        [one] => one.address,
        _ => panic!("{name}: {} functions of this name in kallsyms", found.len()),
    }
}

/// Verifies every tunable of a golden plan and checks each site's addresses against kallsyms.
#[track_caller]
fn verify_golden(name: &str) {
    let plan = golden(name);
    let live = live();
    assert_eq!(
        live.identity().build_id,
        plan.kernel.build_id,
        "the golden plan {name} holds build-id {:?}, /sys/kernel/notes {:?}",
        plan.kernel.build_id,
        live.identity().build_id
    );
    for tunable in &plan.tunables {
        let verified = verify(live, &plan, &tunable.name)
            .unwrap_or_else(|e| panic!("{name} {}: {e}", tunable.name));
        assert!(verified.identity.build_id_compared);
        assert!(verified.kprobe_list_checked, "debugfs lists no kprobes");
        assert_eq!(verified.sites.len(), tunable.sites.len());
        for (site, plan_site) in verified.sites.iter().zip(&tunable.sites) {
            let base = function(live, &plan_site.function);
            assert_eq!(site.site.id, plan_site.id);
            assert_eq!(site.function_address, base);
            assert_eq!(site.seed_address, base + u64::from(plan_site.offset));
            assert_eq!(site.post_probe, base + u64::from(plan_site.probes.post));
        }
    }
}

#[test]
#[ignore = "lab VM test: run with `cargo xtask lab test`"]
fn vm_verifies_the_max_softirq_restart_golden_plan() {
    verify_golden("max_softirq_restart");
}

#[test]
#[ignore = "lab VM test: run with `cargo xtask lab test`"]
fn vm_verifies_the_pipe_def_buffers_golden_plan() {
    verify_golden("pipe_def_buffers_fs");
}

#[test]
#[ignore = "lab VM test: run with `cargo xtask lab test`"]
fn vm_refuses_a_plan_with_one_byte_changed() {
    let mut plan = golden("pipe_def_buffers_fs");
    let site = plan.tunables[0]
        .sites
        .iter_mut()
        .find(|s| s.id == "fs/pipe.c:alloc_pipe_info+0x77")
        .expect("the golden plan has alloc_pipe_info+0x77");
    site.bytes.0[1] = 0x11; // mov $0x11,%eax instead of $0x10
    let err = verify(live(), &plan, "PIPE_DEF_BUFFERS").unwrap_err();
    let message = err.to_string();
    let VerifyError::Sites { problems, .. } = &err else {
        panic!("{message}");
    };
    assert_eq!(problems.len(), 1, "{message}");
    assert!(
        message.contains(
            "alloc_pipe_info+0x77 (site fs/pipe.c:alloc_pipe_info+0x77): expected b811000000 \
             (mask ffffffffff), found b810000000"
        ),
        "{message}"
    );
}

#[test]
#[ignore = "lab VM test: run with `cargo xtask lab test`"]
fn vm_refuses_another_build_of_the_release() {
    let mut plan = golden("max_softirq_restart");
    let real = plan
        .kernel
        .build_id
        .clone()
        .expect("the golden plan has a build-id");
    let mut other = real.clone();
    other.0[0] ^= 0xff;
    plan.kernel.build_id = Some(other.clone());
    let err = verify(live(), &plan, "MAX_SOFTIRQ_RESTART").unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, VerifyError::Identity(_)), "{message}");
    assert!(
        message.contains(&real.to_string()) && message.contains(&other.to_string()),
        "{message}"
    );
}

/// A tracefs kprobe event, removed when dropped.
struct TracefsKprobe(&'static str);

impl TracefsKprobe {
    #[track_caller]
    fn add(event: &'static str, place: &str) -> TracefsKprobe {
        append(KPROBE_EVENTS, &format!("p:{event} {place}\n"));
        TracefsKprobe(event)
    }
}

impl Drop for TracefsKprobe {
    fn drop(&mut self) {
        append(KPROBE_EVENTS, &format!("-:{}\n", self.0));
    }
}

#[track_caller]
fn append(path: &str, text: &str) {
    OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap_or_else(|e| panic!("writing {text:?} to {path}: {e}"));
}

#[test]
#[ignore = "lab VM test: run with `cargo xtask lab test`"]
fn vm_refuses_a_probe_address_another_kprobe_holds() {
    let plan = golden("max_softirq_restart");
    let site = &plan.tunables[0].sites[0];
    let place = format!("{}+{}", site.function, site.probes.post);
    let _held = TracefsKprobe::add("kx_verify/occupied", &place);
    let err = verify(live(), &plan, "MAX_SOFTIRQ_RESTART").unwrap_err();
    let message = err.to_string();
    let VerifyError::Sites { problems, .. } = &err else {
        panic!("{message}");
    };
    let [SiteProblem::ProbeOccupied { holder, what, .. }] = &problems[..] else {
        panic!("{message}");
    };
    assert_eq!(*what, "post-probe");
    assert!(
        holder.contains("tracefs kprobe event kx_verify/occupied"),
        "{message}"
    );
}

#[test]
#[ignore = "lab VM test: run with `cargo xtask lab test`"]
fn vm_resolves_a_duplicate_static_name_by_the_code() {
    const OFFSET: u32 = 0x10;
    const LEN: usize = 8;
    let live = live();
    let mut by_name: BTreeMap<&str, Vec<&KernelSymbol>> = BTreeMap::new();
    for symbol in live.kallsyms().symbols() {
        if symbol.kind == 't' && symbol.module.is_none() {
            by_name.entry(&symbol.name).or_default().push(symbol);
        }
    }
    // A static name several functions share, whose code differs at OFFSET in every copy.
    let window = |s: &KernelSymbol| {
        live.kcore()
            .read(s.address + u64::from(OFFSET), LEN)
            .unwrap_or_else(|e| panic!("{} at {:#x}: {e}", s.name, s.address))
    };
    let (name, copies) = by_name
        .iter()
        .filter(|(_, copies)| (2..=4).contains(&copies.len()))
        .map(|(name, copies)| (*name, copies.iter().map(|s| window(s)).collect::<Vec<_>>()))
        .find(|(_, copies)| {
            copies[1][0] != 0xcc
                && copies
                    .iter()
                    .enumerate()
                    .all(|(i, a)| copies[i + 1..].iter().all(|b| a != b))
        })
        .expect("no duplicate static function whose copies differ at +0x10");
    let candidates = &by_name[name];
    // A plan whose one site is the second copy's code.
    let mut plan = golden("max_softirq_restart");
    let site = &mut plan.tunables[0].sites[0];
    site.function = name.to_owned();
    site.offset = OFFSET;
    site.len = LEN as u8;
    site.bytes = HexBytes(copies[1].clone());
    site.mask = HexBytes(vec![0xff; LEN]);
    site.probes.pre = None;
    site.probes.post = OFFSET;
    let verified = verify(live, &plan, "MAX_SOFTIRQ_RESTART")
        .unwrap_or_else(|e| panic!("{name} (copies at {candidates:x?}): {e}"));
    assert_eq!(verified.sites[0].function_address, candidates[1].address);
    assert_eq!(verified.sites[0].candidates, candidates.len());
}

const MODULE: &str = "kx_target";

/// `kx_target.ko` loaded for the test; unloaded on drop when the test loaded it.
struct LoadedModule {
    loaded_here: bool,
}

impl LoadedModule {
    #[track_caller]
    fn load(ko: &Path) -> LoadedModule {
        if Path::new(&format!("/sys/module/{MODULE}")).exists() {
            return LoadedModule { loaded_here: false };
        }
        let status = Command::new("insmod")
            .arg(ko)
            .status()
            .unwrap_or_else(|e| panic!("running insmod {}: {e}", ko.display()));
        assert!(status.success(), "insmod {} exited {status}", ko.display());
        LoadedModule { loaded_here: true }
    }
}

impl Drop for LoadedModule {
    fn drop(&mut self) {
        if self.loaded_here {
            let _ = Command::new("rmmod").arg(MODULE).status();
        }
    }
}

/// The GNU build-id of a module file: its `.note.gnu.build-id` note, found by the note's
/// header (namesz 4, descsz 20, NT_GNU_BUILD_ID, "GNU\0"), which occurs once in the file.
#[track_caller]
fn module_file_build_id(ko: &[u8]) -> HexBytes {
    const HEADER: [u8; 16] = [4, 0, 0, 0, 20, 0, 0, 0, 3, 0, 0, 0, b'G', b'N', b'U', 0];
    let at = ko
        .windows(HEADER.len())
        .position(|w| w == HEADER)
        .expect("the module file has a GNU build-id note");
    gnu_build_id(&ko[at..at + HEADER.len() + 20])
        .expect("a well-formed note")
        .expect("a GNU build-id")
}

#[test]
#[ignore = "lab VM test: run with `cargo xtask lab test`"]
fn vm_verifies_a_site_in_a_loaded_module() {
    // kx_target_imm_reg: endbr64, the ftrace call, `mov (%rdi),%rdx`, then the seed
    // `mov $KX_TARGET_IMM_REG,%eax` at +0xc (KX_TARGET_IMM_REG = 0x5eed1 in kx_target.c) and
    // `add %rdx,%rax` at +0x11.
    const FUNCTION: &str = "kx_target_imm_reg";
    let ko = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/target-module/build")
        .join(format!("{MODULE}.ko"));
    let ko_bytes = fs::read(&ko).unwrap_or_else(|e| panic!("reading {}: {e}", ko.display()));
    let build_id = module_file_build_id(&ko_bytes);
    let _module = LoadedModule::load(&ko);
    // Opened after loading: the module's symbols are not in an older table.
    let live = LiveKernel::open(HostView::system()).unwrap_or_else(|e| panic!("{e}"));

    // The analysis's golden plan (built without a .ko, so without a build-id), bound to the
    // module file the lab built.
    let mut plan = golden("target_module/KX_TARGET_IMM_REG");
    let mut in_module = |build_id: &HexBytes| {
        let module = plan.kernel.module.as_mut().expect("a module plan");
        assert_eq!(module.name, MODULE);
        module.build_id = Some(build_id.clone());
        plan.clone()
    };
    let bound = in_module(&build_id);
    let verified = verify(&live, &bound, "KX_TARGET_IMM_REG")
        .unwrap_or_else(|e| panic!("{FUNCTION} in {MODULE}: {e}"));
    let symbol: Vec<&KernelSymbol> = live.kallsyms().functions(FUNCTION, Some(MODULE)).collect();
    assert_eq!(symbol.len(), 1, "{symbol:x?}");
    let site = &verified.sites[0];
    assert_eq!(site.module.as_deref(), Some(MODULE));
    assert_eq!(site.seed_address, symbol[0].address + 0xc);
    let module = verified
        .identity
        .module
        .as_ref()
        .expect("a verified module");
    assert!(module.build_id_compared);
    assert_eq!(module.build_id.as_ref(), Some(&build_id));

    // The same function is not looked for in vmlinux, and another module build is refused.
    let mut in_vmlinux = in_module(&build_id);
    in_vmlinux.kernel.module = None;
    let message = verify(&live, &in_vmlinux, "KX_TARGET_IMM_REG")
        .unwrap_err()
        .to_string();
    assert!(
        message.contains(&format!("{FUNCTION}: no function of this name in vmlinux")),
        "{message}"
    );
    let mut other = build_id.clone();
    other.0[0] ^= 0xff;
    let err = verify(&live, &in_module(&other), "KX_TARGET_IMM_REG").unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Identity(IdentityError::ModuleBuildIdMismatch { .. })
        ),
        "{err}"
    );
}
