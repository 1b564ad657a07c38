//! The running kernel's symbol table, `/proc/kallsyms`.
//!
//! Each line is `<address> <type> <name>`, followed by `\t[<module>]` for a module's symbol
//! (and for pseudo-modules such as `[bpf]` or `[__builtin__ftrace]`). Static functions of
//! different translation units can share a name (several `t name` lines): this module keeps
//! them all as candidates and never picks one; the verifier decides by the code.

use serde::Serialize;

use crate::host::{HostError, HostView};

/// Where the kernel lists its symbols.
pub const KALLSYMS: &str = "/proc/kallsyms";

/// Why the symbol table could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KallsymsError {
    /// The file could not be read.
    #[error(transparent)]
    Host(#[from] HostError),
    /// A line is not `<hex address> <type> <name> [\[module\]]`.
    #[error("{KALLSYMS} line {line}: expected `<address> <type> <name> [[module]]`, got `{text}`")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
    /// Every address is zero: the kernel hides them from this process.
    #[error(
        "every address in {KALLSYMS} is zero: the kernel hides symbol addresses from this \
         process; run KernelX as root (CAP_SYSLOG) with sysctl kernel.kptr_restrict below 2"
    )]
    AddressesHidden,
}

/// One symbol of the running kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelSymbol {
    /// Its address.
    pub address: u64,
    /// The `nm`-style type letter (`T` global text, `t` local text, `D` data, ...).
    pub kind: char,
    /// The name.
    pub name: String,
    /// The module that holds it, `None` for vmlinux.
    pub module: Option<String>,
}

impl KernelSymbol {
    /// Whether the symbol is a function (text, or a weak symbol, which kallsyms lists as `W`).
    pub fn is_code(&self) -> bool {
        matches!(self.kind, 't' | 'T' | 'W')
    }
}

/// The parsed symbol table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kallsyms {
    symbols: Vec<KernelSymbol>,
}

impl Kallsyms {
    /// Reads and parses the host's `/proc/kallsyms`.
    pub fn read(host: &HostView) -> Result<Kallsyms, KallsymsError> {
        Kallsyms::parse(&host.read_to_string(KALLSYMS)?)
    }

    /// Parses the text of `/proc/kallsyms`. Refuses a table whose addresses are all zero.
    pub fn parse(text: &str) -> Result<Kallsyms, KallsymsError> {
        let symbols = text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(i, line)| {
                parse_line(line).ok_or_else(|| KallsymsError::Parse {
                    line: i + 1,
                    text: line.to_owned(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Per-cpu symbols are legitimately at 0; a table with nothing but zeros is hidden.
        if symbols.iter().all(|s| s.address == 0) {
            return Err(KallsymsError::AddressesHidden);
        }
        Ok(Kallsyms { symbols })
    }

    /// Every symbol, in the file's order.
    pub fn symbols(&self) -> &[KernelSymbol] {
        &self.symbols
    }

    /// Every function named `name` in vmlinux (`module` `None`) or in that module: all
    /// candidates, in the file's order. Module symbols never match a vmlinux lookup.
    pub fn functions<'a>(
        &'a self,
        name: &'a str,
        module: Option<&'a str>,
    ) -> impl Iterator<Item = &'a KernelSymbol> {
        self.symbols
            .iter()
            .filter(move |s| s.is_code() && s.name == name && s.module.as_deref() == module)
    }
}

fn parse_line(line: &str) -> Option<KernelSymbol> {
    let mut fields = line.split_whitespace();
    let address = u64::from_str_radix(fields.next()?, 16).ok()?;
    let mut kind_chars = fields.next()?.chars();
    let kind = kind_chars.next().filter(|_| kind_chars.next().is_none())?;
    let name = fields.next()?.to_owned();
    let module = match fields.next() {
        None => None,
        Some(m) => Some(m.strip_prefix('[')?.strip_suffix(']')?.to_owned()),
    };
    if fields.next().is_some() {
        return None;
    }
    Some(KernelSymbol {
        address,
        kind,
        name,
        module,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_host::FakeHost;

    const TABLE: &str = "\
0000000000000000 A fixed_percpu_data
ffffffff81000000 T _text
ffffffff81234560 t sh_cmd
ffffffff81234600 T alloc_pipe_info
ffffffff81290000 d sh_cmd
ffffffff81345670 t sh_cmd
ffffffffc0001000 t sh_cmd\t[kx_target]
ffffffffc0002000 T kx_imm_reg\t[kx_target]
ffffffffc0003000 t bpf_prog_6deef7357e7b4530_sd_fw_ingress\t[bpf]
";

    #[test]
    fn reads_symbols_with_and_without_modules() {
        let host = FakeHost::new();
        host.write(KALLSYMS, TABLE);
        let table = Kallsyms::read(&host.view()).unwrap();
        assert_eq!(table.symbols().len(), 9);
        assert_eq!(
            table.symbols()[7],
            KernelSymbol {
                address: 0xffffffffc0002000,
                kind: 'T',
                name: "kx_imm_reg".into(),
                module: Some("kx_target".into()),
            }
        );
    }

    #[test]
    fn keeps_every_duplicate_static_function_as_a_candidate() {
        let table = Kallsyms::parse(TABLE).unwrap();
        let vmlinux: Vec<u64> = table.functions("sh_cmd", None).map(|s| s.address).collect();
        // The data symbol of the same name and the module's copy are not candidates.
        assert_eq!(vmlinux, [0xffffffff81234560, 0xffffffff81345670]);
    }

    #[test]
    fn matches_module_symbols_only_when_the_module_is_asked_for() {
        let table = Kallsyms::parse(TABLE).unwrap();
        assert_eq!(table.functions("kx_imm_reg", None).count(), 0);
        let in_module: Vec<u64> = table
            .functions("sh_cmd", Some("kx_target"))
            .map(|s| s.address)
            .collect();
        assert_eq!(in_module, [0xffffffffc0001000]);
        assert_eq!(table.functions("kx_imm_reg", Some("other")).count(), 0);
    }

    #[test]
    fn refuses_a_table_whose_addresses_are_hidden() {
        let hidden = TABLE
            .lines()
            .map(|l| format!("0000000000000000{}\n", &l[16..]))
            .collect::<String>();
        let err = Kallsyms::parse(&hidden).unwrap_err();
        assert!(matches!(err, KallsymsError::AddressesHidden), "{err}");
        assert!(err.to_string().contains("kptr_restrict"), "{err}");
    }

    #[test]
    fn names_the_line_it_cannot_parse() {
        for bad in [
            "ffffffff81000000 T",
            "zzzz T x",
            "ffffffff81000000 Tt x",
            "ffffffff81000000 t x kx_target",
            "ffffffff81000000 t x [m] extra",
        ] {
            let text = format!("ffffffff81000000 T _text\n{bad}\n");
            match Kallsyms::parse(&text) {
                Err(KallsymsError::Parse { line: 2, text }) => assert_eq!(text, bad),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
