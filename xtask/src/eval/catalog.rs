//! The catalog's lab file (`tunables/<kernel>/lab.toml`): for each tunable, the spec file that
//! describes it (and how to build it), the value the lab loads, the workload that runs its sites
//! and, where one exists, a command whose output shows the value's effect.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

/// The file in a catalog directory that `cargo xtask eval` reads.
pub const LAB_FILE: &str = "lab.toml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LabFile {
    tunable: Vec<Entry>,
}

/// One catalog entry, as the lab evaluates it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The tunable's name in its spec file.
    pub name: String,
    /// The spec file, relative to the catalog directory; its stem names the subsystem.
    pub spec: PathBuf,
    /// The value loaded in the lab.
    pub value: i64,
    /// Run once before the workload (shell).
    #[serde(default)]
    pub setup: Option<String>,
    /// Runs the tunable's sites while it is loaded (shell).
    pub workload: String,
    /// Prints one integer that depends on the value (shell); run at the default, loaded and
    /// after unload.
    #[serde(default)]
    pub effect: Option<String>,
}

impl Entry {
    /// The subsystem: the spec file's stem (`block.toml` -> `block`).
    pub fn subsystem(&self) -> String {
        self.spec
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
    }
}

/// Reads `dir/lab.toml`: entries with distinct names whose spec files exist.
pub fn read(dir: &Path) -> Result<Vec<Entry>> {
    let path = dir.join(LAB_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let entries = parse(&text).with_context(|| format!("in {}", path.display()))?;
    for entry in &entries {
        let spec = dir.join(&entry.spec);
        ensure!(
            spec.is_file(),
            "{}: the spec file {} of {} does not exist",
            path.display(),
            spec.display(),
            entry.name
        );
    }
    Ok(entries)
}

fn parse(text: &str) -> Result<Vec<Entry>> {
    let file: LabFile = toml::from_str(text)?;
    ensure!(!file.tunable.is_empty(), "it lists no [[tunable]]");
    let mut names = HashSet::new();
    for entry in &file.tunable {
        if !names.insert(entry.name.as_str()) {
            bail!("{} is listed twice", entry.name);
        }
        ensure!(
            entry.spec.is_relative() && !entry.spec.starts_with(".."),
            "{}: spec {} must be a path inside the catalog directory",
            entry.name,
            entry.spec.display()
        );
    }
    Ok(file.tunable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_entries_with_defaults() {
        let entries = parse(
            r#"
            [[tunable]]
            name = "MAX_SOFTIRQ_RESTART"
            spec = "sched.toml"
            value = 20
            workload = "ping -c 3 127.0.0.1"

            [[tunable]]
            name = "BLK_MAX_REQUEST_COUNT"
            spec = "block.toml"
            value = 8
            setup = "modprobe null_blk"
            workload = "fio job.fio"
            effect = "cat /tmp/max"
            "#,
        )
        .unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].subsystem(), "sched");
        assert!(entries[0].effect.is_none() && entries[0].setup.is_none());
        assert_eq!(entries[1].setup.as_deref(), Some("modprobe null_blk"));
    }

    #[test]
    fn refuses_duplicates_unknown_keys_and_escaping_specs() {
        let entry = |name: &str, spec: &str, extra: &str| {
            format!(
                "[[tunable]]\nname = \"{name}\"\nspec = \"{spec}\"\nvalue = 1\nworkload = \"true\"\n{extra}\n"
            )
        };
        let twice = entry("A", "a.toml", "") + &entry("A", "b.toml", "");
        assert!(
            parse(&twice)
                .unwrap_err()
                .to_string()
                .contains("A is listed twice")
        );
        let typo = entry("A", "a.toml", "efect = \"true\"");
        assert!(parse(&typo).unwrap_err().to_string().contains("efect"));
        assert!(
            parse("tunable = []")
                .unwrap_err()
                .to_string()
                .contains("no [[tunable]]")
        );
        let outside = entry("A", "../a.toml", "");
        assert!(
            parse(&outside)
                .unwrap_err()
                .to_string()
                .contains("inside the catalog directory")
        );
    }
}
