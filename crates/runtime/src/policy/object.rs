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
