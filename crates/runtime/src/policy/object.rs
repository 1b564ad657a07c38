//! What a compiled policy object holds: its policy function, further (observer) programs and
//! parameters; and what it may not hold.

use std::path::Path;

use ::object::{Object as _, ObjectSection as _, ObjectSymbol as _, SectionKind, SymbolKind};

use super::PolicyError;
use super::params::ParamSpec;

/// The section of the policy function (`KX_POLICY`): it replaces the runtime's `kx_policy`.
pub const POLICY_SECTION: &str = "freplace/kx_policy";
/// The section of the policy's parameters (`KX_PARAM`).
pub const PARAMS_SECTION: &str = ".data.kx_params";

/// Section prefixes of the programs attached alongside the policy.
const OBSERVER_PREFIXES: [&str; 6] = [
    "kprobe/",
    "kretprobe/",
    "tracepoint/",
    "raw_tracepoint/",
    "fentry/",
    "fexit/",
];

/// A program of the policy file other than the policy: attached with it, detached with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObserverProgram {
    /// The function's name.
    pub name: String,
    /// Its section (`kprobe/do_sys_open`, ...), which says where it attaches.
    pub section: String,
}

/// A policy object that passed [`inspect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyObject {
    /// The name of the function in [`POLICY_SECTION`] (`kx_policy` with `KX_POLICY`).
    pub policy: String,
    /// The other programs, in symbol table order.
    pub observers: Vec<ObserverProgram>,
    /// The parameters, by offset.
    pub params: Vec<ParamSpec>,
    /// The initial contents of [`PARAMS_SECTION`] (empty without parameters): the values the
    /// source gives, for display before any `--param`.
    pub params_image: Vec<u8>,
}

/// Reads `object` (compiled from `source`, which errors name) and checks it is a policy the
/// loader may load.
///
/// # Errors
///
/// [`PolicyError::Object`] for an unreadable object, [`PolicyError::PolicyCount`] unless
/// exactly one function is in [`POLICY_SECTION`], [`PolicyError::ProgramSection`] for a
/// program in a section other than those and the observer ones (`kprobe/`, `kretprobe/`,
/// `tracepoint/`, `raw_tracepoint/`, `fentry/`, `fexit/`), [`PolicyError::KernelxKfunc`] for a
/// call to a kernelx kfunc, [`PolicyError::ParamSize`] for a parameter that is no 1, 2, 4 or
/// 8-byte integer.
pub fn inspect(object: &[u8], source: &Path) -> Result<PolicyObject, PolicyError> {
    let file = ::object::File::parse(object).map_err(|e| PolicyError::Object {
        file: source.to_owned(),
        message: e.to_string(),
    })?;
    let mut policies = Vec::new();
    let mut observers = Vec::new();
    let mut params = Vec::new();
    for symbol in file.symbols() {
        let Ok(name) = symbol.name() else { continue };
        if symbol.is_undefined() {
            // kfuncs are extern __ksym declarations: undefined symbols of the object.
            if name.starts_with("kernelx_") {
                return Err(PolicyError::KernelxKfunc {
                    file: source.to_owned(),
                    symbol: name.to_owned(),
                });
            }
            continue;
        }
        let Some(section) = symbol
            .section_index()
            .and_then(|index| file.section_by_index(index).ok())
        else {
            continue;
        };
        let Ok(section_name) = section.name() else {
            continue;
        };
        if symbol.kind() == SymbolKind::Text && section.kind() == SectionKind::Text {
            // .text holds subprograms (non-inlined functions the programs call).
            if section_name == ".text" {
                continue;
            }
            if section_name == POLICY_SECTION {
                policies.push(name.to_owned());
            } else if OBSERVER_PREFIXES
                .iter()
                .any(|p| section_name.starts_with(p))
            {
                observers.push(ObserverProgram {
                    name: name.to_owned(),
                    section: section_name.to_owned(),
                });
            } else {
                return Err(PolicyError::ProgramSection {
                    file: source.to_owned(),
                    program: name.to_owned(),
                    section: section_name.to_owned(),
                });
            }
        } else if section_name == PARAMS_SECTION
            && symbol.kind() == SymbolKind::Data
            && !name.is_empty()
        {
            let size = symbol.size();
            let Some(size) = u8::try_from(size)
                .ok()
                .filter(|s| matches!(s, 1 | 2 | 4 | 8))
            else {
                return Err(PolicyError::ParamSize {
                    file: source.to_owned(),
                    name: name.to_owned(),
                    size,
                });
            };
            params.push(ParamSpec {
                name: name.to_owned(),
                // An object file's symbol value is its offset in its section.
                offset: u32::try_from(symbol.address()).map_err(|_| PolicyError::Object {
                    file: source.to_owned(),
                    message: format!("parameter {name} at offset {:#x}", symbol.address()),
                })?,
                size,
            });
        }
    }
    if policies.len() != 1 {
        return Err(PolicyError::PolicyCount {
            file: source.to_owned(),
            found: policies,
        });
    }
    params.sort_by_key(|p| p.offset);
    let params_image = match file.section_by_name(PARAMS_SECTION) {
        Some(section) => section
            .data()
            .map_err(|e| PolicyError::Object {
                file: source.to_owned(),
                message: format!("{PARAMS_SECTION}: {e}"),
            })?
            .to_vec(),
        None => Vec::new(),
    };
    Ok(PolicyObject {
        policy: policies.remove(0),
        observers,
        params,
        params_image,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compiles C that spells out the sections itself: no vmlinux.h needed (the lab tests
    /// compile through `kernelx_policy.h`).
    fn compile(c: &str) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let (source, object) = (dir.path().join("p.c"), dir.path().join("p.o"));
        std::fs::write(&source, c).unwrap();
        let clang = std::env::var_os("CLANG").unwrap_or_else(|| "clang".into());
        let output = std::process::Command::new(clang)
            .args(["-target", "bpf", "-O2", "-g", "-c"])
            .arg(&source)
            .arg("-o")
            .arg(&object)
            .output()
            .expect("clang (the crate's build needs it too)");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::read(object).unwrap()
    }

    const POLICY: &str = r#"
#define SEC(s) __attribute__((section(s), used))
char LICENSE[] SEC("license") = "GPL";
volatile unsigned long long cgroup SEC(".data.kx_params") = 7;
volatile short level SEC(".data.kx_params") = -2;
volatile unsigned char on SEC(".data.kx_params") = 1;
SEC("freplace/kx_policy") long kx_policy(void *ctx, unsigned long long probe, long dflt)
{
	return cgroup == probe ? level : dflt;
}
"#;

    fn inspect_c(c: &str) -> Result<PolicyObject, PolicyError> {
        inspect(&compile(c), Path::new("p.bpf.c"))
    }

    #[test]
    fn the_policy_observers_and_params_are_found() {
        let c = format!(
            "{POLICY}\nSEC(\"kprobe/tcp_sendmsg\") int seen(void *ctx) {{ return 0; }}\n\
             SEC(\"tracepoint/sched/sched_switch\") int switched(void *ctx) {{ return 0; }}\n"
        );
        let policy = inspect_c(&c).unwrap();
        assert_eq!(policy.policy, "kx_policy");
        let observers: Vec<(&str, &str)> = policy
            .observers
            .iter()
            .map(|o| (o.name.as_str(), o.section.as_str()))
            .collect();
        assert_eq!(
            observers,
            [
                ("seen", "kprobe/tcp_sendmsg"),
                ("switched", "tracepoint/sched/sched_switch")
            ]
        );
        let params: Vec<(&str, u8)> = policy
            .params
            .iter()
            .map(|p| (p.name.as_str(), p.size))
            .collect();
        assert_eq!(params, [("cgroup", 8), ("level", 2), ("on", 1)]);
        let values = super::super::decode_params(&policy.params, &policy.params_image).unwrap();
        let shown: Vec<String> = values.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["cgroup=7", "level=65534 (-2)", "on=1"]);
    }

    #[test]
    fn without_a_policy_function_the_error_names_kx_policy() {
        let error =
            inspect_c("__attribute__((section(\"kprobe/x\"))) int p(void *c) { return 0; }")
                .unwrap_err();
        assert!(matches!(&error, PolicyError::PolicyCount { found, .. } if found.is_empty()));
        assert!(
            error.to_string().contains("KX_POLICY(ctx, probe, dflt)"),
            "{error}"
        );
    }

    #[test]
    fn two_policy_functions_are_refused() {
        let c = format!(
            "{POLICY}\n__attribute__((section(\"freplace/kx_policy\"))) long again(void *c) \
             {{ return 1; }}\n"
        );
        let error = inspect_c(&c).unwrap_err();
        assert!(
            matches!(&error, PolicyError::PolicyCount { found, .. } if found == &["kx_policy", "again"]),
            "{error}"
        );
    }

    #[test]
    fn programs_in_other_sections_are_refused() {
        let c = format!("{POLICY}\nSEC(\"xdp\") int pass(void *ctx) {{ return 2; }}\n");
        let error = inspect_c(&c).unwrap_err();
        assert!(
            matches!(&error, PolicyError::ProgramSection { program, section, .. }
                if program == "pass" && section == "xdp"),
            "{error}"
        );
    }

    #[test]
    fn calls_to_kernelx_kfuncs_are_refused_and_others_allowed() {
        let kfunc = |name: &str| {
            format!(
                "{POLICY}\nextern int {name}(void) __attribute__((section(\".ksyms\")));\n\
                 SEC(\"kprobe/x\") int p(void *ctx) {{ return {name}(); }}\n"
            )
        };
        let error = inspect_c(&kfunc("kernelx_set_reg")).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("may not call the kernelx module's kfuncs"),
            "{error}"
        );
        inspect_c(&kfunc("bpf_rcu_read_lock")).unwrap();
    }

    #[test]
    fn a_param_that_is_no_integer_is_refused() {
        let c = format!(
            "{POLICY}\nvolatile struct {{ int a[3]; }} big __attribute__((section(\".data.kx_params\")));\n"
        );
        let error = inspect_c(&c).unwrap_err();
        assert!(
            matches!(&error, PolicyError::ParamSize { name, size: 12, .. } if name == "big"),
            "{error}"
        );
    }
}
