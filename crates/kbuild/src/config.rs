//! Kernel configurations: kconfig's `.config` format, differences, and matching a source tree's
//! configuration against the running kernel's.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read as _;
use std::path::Path;

use crate::KbuildError;

/// Options that a distribution deletes from the config it installs in `/boot`, because they
/// name files or salts of its build machine. Debian 12's `config-6.12.117+deb12-cloud-amd64`
/// lacks exactly these, while `make olddefconfig` writes their defaults into a tree. None of them
/// reaches the code of a function: they feed ELF notes (`BUILD_SALT`), module signing at install
/// time, and the certificates built into the kernel's keyring.
pub const BUILD_MACHINE_OPTIONS: [&str; 4] = [
    "CONFIG_BUILD_SALT",
    "CONFIG_MODULE_SIG_ALL",
    "CONFIG_MODULE_SIG_KEY",
    "CONFIG_SYSTEM_TRUSTED_KEYS",
];

/// Why [`KernelConfig::compare_to_running`] may tolerate a difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tolerance {
    /// One of [`BUILD_MACHINE_OPTIONS`], absent from the running kernel's config.
    BuildMachineOption,
    /// A probe of the Rust toolchain (`CONFIG_RUSTC_*`, `CONFIG_RUST_IS_AVAILABLE`): kconfig
    /// records whatever `rustc` the configuring machine has on `PATH`. Only Rust kernel code
    /// reads it, and with `CONFIG_RUST` off on both sides there is none.
    RustToolchainProbe,
}

impl fmt::Display for Tolerance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tolerance::BuildMachineOption => {
                "build-machine setting the distribution strips from its installed config"
            }
            Tolerance::RustToolchainProbe => "Rust toolchain probe, and CONFIG_RUST is off",
        })
    }
}

/// A difference that does not prevent a match, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToleratedDifference {
    /// The difference (`left` is the tree's value, `right` the running kernel's).
    pub difference: ConfigDifference,
    /// Why it is tolerated.
    pub tolerance: Tolerance,
}

/// The value of one kconfig option, as `.config` spells it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConfigValue {
    /// `CONFIG_X=y`: built in (or a bool that is on).
    Yes,
    /// `CONFIG_X=m`: built as a module.
    Module,
    /// `# CONFIG_X is not set` (or the rarely written `CONFIG_X=n`).
    NotSet,
    /// `CONFIG_X="text"`, unescaped.
    String(String),
    /// `CONFIG_X=123` or `CONFIG_X=-1`.
    Integer(i64),
    /// `CONFIG_X=0x1000`.
    Hex(u64),
}

impl ConfigValue {
    /// `true` for `y` and `m`.
    pub fn is_enabled(&self) -> bool {
        matches!(self, ConfigValue::Yes | ConfigValue::Module)
    }
}

impl fmt::Display for ConfigValue {
    /// Renders the value the way `.config` writes it (`y`, `m`, `"text"`, `123`, `0x1f`), and
    /// `is not set` for [`ConfigValue::NotSet`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigValue::Yes => f.write_str("y"),
            ConfigValue::Module => f.write_str("m"),
            ConfigValue::NotSet => f.write_str("is not set"),
            ConfigValue::String(s) => {
                f.write_str("\"")?;
                for c in s.chars() {
                    if c == '"' || c == '\\' {
                        f.write_str("\\")?;
                    }
                    write!(f, "{c}")?;
                }
                f.write_str("\"")
            }
            ConfigValue::Integer(n) => write!(f, "{n}"),
            ConfigValue::Hex(n) => write!(f, "{n:#x}"),
        }
    }
}

/// One option whose value differs between two configs.
///
/// `None` means the option does not appear at all on that side (kconfig writes nothing for a
/// symbol whose dependencies are unmet, or that does not exist in that kernel version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDifference {
    /// The option's full name, e.g. `CONFIG_KPROBES`.
    pub option: String,
    /// The value in the config [`KernelConfig::diff`] was called on.
    pub left: Option<ConfigValue>,
    /// The value in the other config.
    pub right: Option<ConfigValue>,
}

impl fmt::Display for ConfigDifference {
    /// `CONFIG_X: y vs is not set`, with `(absent)` for a missing side.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = |v: &Option<ConfigValue>| match v {
            Some(v) => v.to_string(),
            None => "(absent)".to_owned(),
        };
        write!(
            f,
            "{}: {} vs {}",
            self.option,
            side(&self.left),
            side(&self.right)
        )
    }
}

/// The outcome of [`KernelConfig::compare_to_running`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigComparison {
    /// Differences that make the tree unfit to rebuild the running kernel's code.
    /// `left` is the tree's value, `right` the running kernel's.
    pub mismatches: Vec<ConfigDifference>,
    /// Differences that do not affect the code, each with its reason.
    pub tolerated: Vec<ToleratedDifference>,
}

impl ConfigComparison {
    /// `true` when the tree's config can rebuild the running kernel's code.
    pub fn matches(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// A parsed kernel configuration (`.config`, `/boot/config-<release>`, `/proc/config.gz`).
///
/// Options are keyed by their full name (`CONFIG_KPROBES`). When an option is assigned twice,
/// the last assignment wins, as kconfig does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelConfig {
    options: BTreeMap<String, ConfigValue>,
}

impl KernelConfig {
    /// Parses `.config` text. `origin` names where it came from, for error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Self, KbuildError> {
        let mut options = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            let syntax = |message: String| KbuildError::ConfigSyntax {
                origin: origin.to_owned(),
                line: index + 1,
                message,
            };
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                // Only `# CONFIG_X is not set` carries a value; other comments are headings.
                if let Some(name) = comment
                    .trim_start()
                    .strip_suffix(" is not set")
                    .filter(|name| is_option_name(name))
                {
                    options.insert(name.to_owned(), ConfigValue::NotSet);
                }
                continue;
            }
            let (name, raw) = line
                .split_once('=')
                .ok_or_else(|| syntax(format!("expected `CONFIG_NAME=value`, found `{line}`")))?;
            if !is_option_name(name) {
                return Err(syntax(format!(
                    "`{name}` is not an option name (options start with CONFIG_)"
                )));
            }
            let value = parse_value(raw)
                .map_err(|message| syntax(format!("{name}: {message} (found `{raw}`)")))?;
            options.insert(name.to_owned(), value);
        }
        Ok(KernelConfig { options })
    }

    /// Decompresses and parses gzip-compressed config bytes, such as `/proc/config.gz`.
    pub fn from_gzip(bytes: &[u8], origin: &str) -> Result<Self, KbuildError> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_string(&mut text)
            .map_err(|source| KbuildError::Decompress {
                origin: origin.to_owned(),
                source,
            })?;
        Self::parse(&text, origin)
    }

    /// Reads a config file; gzip-compressed files (recognised by their magic bytes, whatever
    /// their name) are decompressed first.
    pub fn read(path: &Path) -> Result<Self, KbuildError> {
        let bytes = std::fs::read(path).map_err(|source| KbuildError::Read {
            path: path.to_owned(),
            source,
        })?;
        let origin = path.display().to_string();
        if bytes.starts_with(&[0x1f, 0x8b]) {
            return Self::from_gzip(&bytes, &origin);
        }
        let text = String::from_utf8_lossy(&bytes);
        Self::parse(&text, &origin)
    }

    /// The value of `option` (full name, e.g. `CONFIG_KPROBES`), if the config mentions it.
    pub fn get(&self, option: &str) -> Option<&ConfigValue> {
        self.options.get(option)
    }

    /// `true` when `option` is `y` or `m`.
    pub fn is_enabled(&self, option: &str) -> bool {
        self.get(option).is_some_and(ConfigValue::is_enabled)
    }

    /// The number of options the config mentions (including `is not set` ones).
    pub fn len(&self) -> usize {
        self.options.len()
    }

    /// `true` when the config mentions no option.
    pub fn is_empty(&self) -> bool {
        self.options.is_empty()
    }

    /// Every option, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ConfigValue)> {
        self.options.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Every option whose value differs between `self` (left) and `other` (right), in name
    /// order.
    ///
    /// An option that is absent on one side and `is not set` on the other is not a difference:
    /// both mean "off" in a built kernel.
    pub fn diff(&self, other: &KernelConfig) -> Vec<ConfigDifference> {
        let mut names: Vec<&String> = self.options.keys().chain(other.options.keys()).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .filter_map(|name| {
                let left = self.options.get(name);
                let right = other.options.get(name);
                let same = match (left, right) {
                    (Some(l), Some(r)) => l == r,
                    (None, Some(ConfigValue::NotSet)) | (Some(ConfigValue::NotSet), None) => true,
                    (None, None) => true,
                    _ => false,
                };
                (!same).then(|| ConfigDifference {
                    option: name.clone(),
                    left: left.cloned(),
                    right: right.cloned(),
                })
            })
            .collect()
    }

    /// Decides whether this config (a source tree's) can rebuild the code of the kernel whose
    /// config is `running`.
    ///
    /// Every difference is a mismatch, except two kinds measured on Debian 12's 6.12 kernel
    /// against its own source configured with `make olddefconfig` (see [`Tolerance`]):
    /// [`BUILD_MACHINE_OPTIONS`] missing from the running config, and Rust toolchain probes
    /// while `CONFIG_RUST` is off on both sides. The compiler is not tolerated: a different
    /// `CONFIG_CC_VERSION_TEXT` or `CONFIG_GCC_VERSION` is a mismatch, because code generation
    /// depends on it.
    pub fn compare_to_running(&self, running: &KernelConfig) -> ConfigComparison {
        let rust_off = !self.is_enabled("CONFIG_RUST") && !running.is_enabled("CONFIG_RUST");
        let mut comparison = ConfigComparison {
            mismatches: Vec::new(),
            tolerated: Vec::new(),
        };
        for difference in self.diff(running) {
            let name = difference.option.as_str();
            let tolerance = if BUILD_MACHINE_OPTIONS.contains(&name) && difference.right.is_none() {
                Some(Tolerance::BuildMachineOption)
            } else if rust_off
                && (name.starts_with("CONFIG_RUSTC_") || name == "CONFIG_RUST_IS_AVAILABLE")
            {
                Some(Tolerance::RustToolchainProbe)
            } else {
                None
            };
            match tolerance {
                Some(tolerance) => comparison.tolerated.push(ToleratedDifference {
                    difference,
                    tolerance,
                }),
                None => comparison.mismatches.push(difference),
            }
        }
        comparison
    }
}

fn is_option_name(name: &str) -> bool {
    name.strip_prefix("CONFIG_").is_some_and(|rest| {
        !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

fn parse_value(raw: &str) -> Result<ConfigValue, String> {
    match raw {
        "y" => return Ok(ConfigValue::Yes),
        "m" => return Ok(ConfigValue::Module),
        "n" => return Ok(ConfigValue::NotSet),
        _ => {}
    }
    if let Some(quoted) = raw.strip_prefix('"') {
        return parse_quoted(quoted).map(ConfigValue::String);
    }
    if let Some(hex) = raw.strip_prefix("0x").or_else(|| raw.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16)
            .map(ConfigValue::Hex)
            .map_err(|e| format!("bad hex number: {e}"));
    }
    if raw.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return raw
            .parse()
            .map(ConfigValue::Integer)
            .map_err(|e| format!("bad number: {e}"));
    }
    Err("expected y, m, n, a quoted string, a decimal or a 0x-hex number".to_owned())
}

/// Parses the rest of a quoted string (after the opening quote): kconfig escapes `"` and `\`
/// with a backslash.
fn parse_quoted(rest: &str) -> Result<String, String> {
    let mut out = String::with_capacity(rest.len());
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) => out.push(escaped),
                None => return Err("string ends with a lone backslash".to_owned()),
            },
            '"' => {
                return if chars.as_str().is_empty() {
                    Ok(out)
                } else {
                    Err("text after the closing quote".to_owned())
                };
            }
            c => out.push(c),
        }
    }
    Err("missing closing quote".to_owned())
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    const SAMPLE: &str = "\
#
# Automatically generated file; DO NOT EDIT.
# Linux/x86 6.12.117 Kernel Configuration
#
CONFIG_CC_VERSION_TEXT=\"x86_64-linux-gnu-gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0\"
CONFIG_GCC_VERSION=120200
CONFIG_KPROBES=y
CONFIG_NULL_BLK=m
# CONFIG_MODULE_SIG_FORCE is not set
CONFIG_PHYSICAL_START=0x1000000
CONFIG_LOCALVERSION=\"\"
CONFIG_CMDLINE=\"a \\\"quoted\\\" \\\\ word\"
CONFIG_NEGATIVE=-1

# General setup
";

    fn sample() -> KernelConfig {
        KernelConfig::parse(SAMPLE, "sample").unwrap()
    }

    #[test]
    fn parses_every_value_form() {
        let c = sample();
        assert_eq!(c.get("CONFIG_KPROBES"), Some(&ConfigValue::Yes));
        assert_eq!(c.get("CONFIG_NULL_BLK"), Some(&ConfigValue::Module));
        assert_eq!(c.get("CONFIG_MODULE_SIG_FORCE"), Some(&ConfigValue::NotSet));
        assert_eq!(
            c.get("CONFIG_PHYSICAL_START"),
            Some(&ConfigValue::Hex(0x100_0000))
        );
        assert_eq!(
            c.get("CONFIG_GCC_VERSION"),
            Some(&ConfigValue::Integer(120200))
        );
        assert_eq!(c.get("CONFIG_NEGATIVE"), Some(&ConfigValue::Integer(-1)));
        assert_eq!(
            c.get("CONFIG_LOCALVERSION"),
            Some(&ConfigValue::String(String::new()))
        );
        assert_eq!(
            c.get("CONFIG_CMDLINE"),
            Some(&ConfigValue::String(r#"a "quoted" \ word"#.to_owned()))
        );
        assert_eq!(c.get("CONFIG_NOT_MENTIONED"), None);
        assert!(c.is_enabled("CONFIG_NULL_BLK"));
        assert!(!c.is_enabled("CONFIG_MODULE_SIG_FORCE"));
        assert_eq!(c.len(), 9);
    }

    #[test]
    fn display_round_trips_through_the_parser() {
        let c = sample();
        let text: String = c
            .iter()
            .map(|(name, value)| match value {
                ConfigValue::NotSet => format!("# {name} is not set\n"),
                value => format!("{name}={value}\n"),
            })
            .collect();
        assert_eq!(KernelConfig::parse(&text, "rendered").unwrap(), c);
    }

    #[test]
    fn last_assignment_wins() {
        let c = KernelConfig::parse("CONFIG_A=y\n# CONFIG_A is not set\n", "t").unwrap();
        assert_eq!(c.get("CONFIG_A"), Some(&ConfigValue::NotSet));
    }

    #[test]
    fn rejects_malformed_lines_with_their_line_number() {
        for (text, needle) in [
            ("CONFIG_A=y\nnonsense\n", "expected `CONFIG_NAME=value`"),
            ("CONFIG_A=y\nFOO=y\n", "not an option name"),
            ("CONFIG_A=y\nCONFIG_B=maybe\n", "CONFIG_B: expected y, m, n"),
            ("CONFIG_A=y\nCONFIG_B=\"open\n", "missing closing quote"),
            ("CONFIG_A=y\nCONFIG_B=0xZZ\n", "bad hex number"),
        ] {
            let err = KernelConfig::parse(text, "t").unwrap_err().to_string();
            assert!(err.starts_with("t:2: "), "{err}");
            assert!(err.contains(needle), "{err} should contain {needle}");
        }
    }

    #[test]
    fn diff_treats_absent_as_not_set() {
        let left =
            KernelConfig::parse("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=1\n", "l").unwrap();
        let right = KernelConfig::parse("CONFIG_A=m\nCONFIG_C=1\nCONFIG_D=y\n", "r").unwrap();
        assert_eq!(
            left.diff(&right),
            vec![
                ConfigDifference {
                    option: "CONFIG_A".into(),
                    left: Some(ConfigValue::Yes),
                    right: Some(ConfigValue::Module),
                },
                ConfigDifference {
                    option: "CONFIG_D".into(),
                    left: None,
                    right: Some(ConfigValue::Yes),
                },
            ]
        );
        assert_eq!(left.diff(&right)[1].to_string(), "CONFIG_D: (absent) vs y");
    }

    /// The differences between Debian's installed config-6.12.117+deb12-cloud-amd64 and its
    /// source tree after `cp config .config; make olddefconfig` on a machine with rustc 1.95.
    #[test]
    fn compare_to_running_tolerates_what_debian_strips_and_rust_probes() {
        let running = sample();
        let tree_text = format!(
            "{SAMPLE}CONFIG_BUILD_SALT=\"\"\nCONFIG_MODULE_SIG_ALL=y\n\
             CONFIG_MODULE_SIG_KEY=\"certs/signing_key.pem\"\nCONFIG_SYSTEM_TRUSTED_KEYS=\"\"\n\
             CONFIG_RUSTC_VERSION=109500\nCONFIG_RUSTC_LLVM_VERSION=220102\n\
             CONFIG_RUSTC_HAS_UNNECESSARY_TRANSMUTES=y\n"
        );
        let running_text = format!("{SAMPLE}CONFIG_RUSTC_VERSION=0\nCONFIG_RUSTC_LLVM_VERSION=0\n");
        let running_with_rust = KernelConfig::parse(&running_text, "running").unwrap();
        let tree = KernelConfig::parse(&tree_text, "tree").unwrap();
        let cmp = tree.compare_to_running(&running_with_rust);
        assert!(cmp.matches(), "{:?}", cmp.mismatches);
        let kinds: Vec<(&str, Tolerance)> = cmp
            .tolerated
            .iter()
            .map(|t| (t.difference.option.as_str(), t.tolerance))
            .collect();
        assert_eq!(
            kinds,
            [
                ("CONFIG_BUILD_SALT", Tolerance::BuildMachineOption),
                ("CONFIG_MODULE_SIG_ALL", Tolerance::BuildMachineOption),
                ("CONFIG_MODULE_SIG_KEY", Tolerance::BuildMachineOption),
                (
                    "CONFIG_RUSTC_HAS_UNNECESSARY_TRANSMUTES",
                    Tolerance::RustToolchainProbe
                ),
                ("CONFIG_RUSTC_LLVM_VERSION", Tolerance::RustToolchainProbe),
                ("CONFIG_RUSTC_VERSION", Tolerance::RustToolchainProbe),
                ("CONFIG_SYSTEM_TRUSTED_KEYS", Tolerance::BuildMachineOption),
            ]
        );

        // A build-machine option the running config does state must match.
        let running_salted = KernelConfig::parse(
            &format!("{running_text}CONFIG_BUILD_SALT=\"6.12.117\"\n"),
            "running",
        )
        .unwrap();
        let cmp = tree.compare_to_running(&running_salted);
        assert_eq!(cmp.mismatches.len(), 1);
        assert_eq!(cmp.mismatches[0].option, "CONFIG_BUILD_SALT");

        // With Rust code in the kernel, the Rust toolchain matters.
        let rust_tree =
            KernelConfig::parse(&format!("{tree_text}CONFIG_RUST=y\n"), "tree").unwrap();
        let rust_running =
            KernelConfig::parse(&format!("{running_text}CONFIG_RUST=y\n"), "running").unwrap();
        let cmp = rust_tree.compare_to_running(&rust_running);
        assert_eq!(cmp.mismatches.len(), 3, "{:?}", cmp.mismatches);

        // The C compiler is never tolerated.
        let other_gcc = KernelConfig::parse(
            &SAMPLE.replace("x86_64-linux-gnu-gcc-12 (Debian", "gcc-12 (Debian"),
            "tree",
        )
        .unwrap();
        let cmp = other_gcc.compare_to_running(&running);
        assert_eq!(cmp.mismatches[0].option, "CONFIG_CC_VERSION_TEXT");
    }

    #[test]
    fn reads_plain_and_gzip_files() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("config-6.12.117");
        std::fs::write(&plain, SAMPLE).unwrap();
        let gz = dir.path().join("config.gz");
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(SAMPLE.as_bytes()).unwrap();
        std::fs::write(&gz, encoder.finish().unwrap()).unwrap();
        assert_eq!(KernelConfig::read(&plain).unwrap(), sample());
        assert_eq!(KernelConfig::read(&gz).unwrap(), sample());

        let err = KernelConfig::from_gzip(&[0x1f, 0x8b, 0, 0], "junk").unwrap_err();
        assert!(matches!(err, KbuildError::Decompress { .. }), "{err}");
        let err = KernelConfig::read(&dir.path().join("missing")).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }

    /// Real configs exercise forms a hand-written sample may miss.
    #[test]
    fn parses_this_hosts_running_config_if_any() {
        let path = Path::new("/proc/config.gz");
        if !path.exists() {
            println!("skipped: {} does not exist on this host", path.display());
            return;
        }
        let config = KernelConfig::read(path).unwrap();
        assert!(config.len() > 1000, "only {} options", config.len());
        assert!(config.get("CONFIG_CC_VERSION_TEXT").is_some());
        assert!(config.diff(&config).is_empty());
    }

    /// The lab's Debian 6.12 source tree, configured with `make olddefconfig` from the image's
    /// config, must match that config: this is the real case the tolerances were measured on.
    /// The tree lives in the xtask lab's cache (`cargo xtask lab setup`); skipped without it.
    #[test]
    fn the_lab_tree_matches_its_image_config_if_present() {
        let cache = std::env::var_os("KERNELX_CACHE")
            .map(std::path::PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/kernelx")));
        let kernels = cache.map(|c| c.join("kernels"));
        let Some(Ok(entries)) = kernels.as_ref().map(std::fs::read_dir) else {
            println!("skipped: no lab cache at {kernels:?} (run `cargo xtask lab setup`)");
            return;
        };
        let mut compared = 0;
        for entry in entries.flatten() {
            let release = entry.file_name().to_string_lossy().into_owned();
            let running = entry.path().join(format!("image/boot/config-{release}"));
            let Ok(dirs) = std::fs::read_dir(entry.path()) else {
                continue;
            };
            for tree_dir in dirs.flatten().map(|d| d.path()) {
                let dot_config = tree_dir.join(".config");
                if !running.is_file() || !dot_config.is_file() {
                    continue;
                }
                let tree = KernelConfig::read(&dot_config).unwrap();
                let cmp = tree.compare_to_running(&KernelConfig::read(&running).unwrap());
                assert!(
                    cmp.matches(),
                    "{}: {:#?}",
                    tree_dir.display(),
                    cmp.mismatches
                );
                println!(
                    "{} matches {}, tolerating {:?}",
                    dot_config.display(),
                    running.display(),
                    cmp.tolerated
                        .iter()
                        .map(|t| &t.difference.option)
                        .collect::<Vec<_>>()
                );
                compared += 1;
            }
        }
        if compared == 0 {
            println!("skipped: no configured lab tree under {kernels:?}");
        }
    }
}
