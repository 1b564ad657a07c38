//! Which translation units a kernel was really built from.
//!
//! The debug vmlinux answers exactly: gcc writes one DWARF compile unit per `.c` (and, with
//! `-g`, per `.S`) linked into it, named by its path relative to the source tree. Asking kbuild
//! instead (its Makefiles evaluated against `.config`) would need a `make -n` over the whole tree,
//! tens of seconds, and still describe the tree rather than the binary that runs. Loadable
//! modules are not in vmlinux; their units count when their debug `.ko` files are added.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use object::{Object as _, ObjectSection as _};

use crate::KbuildError;
use crate::index::normalize;

/// The translation units a build consists of, or no restriction at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuiltUnits {
    /// Units read from debug info.
    Listed {
        /// Which files they came from, for reports (e.g. `compile units of /x/vmlinux`).
        origin: String,
        /// Source paths relative to the tree, e.g. `fs/pipe.c`.
        units: BTreeSet<PathBuf>,
    },
    /// Every unit of the tree counts (no debug info given); discovery then preprocesses
    /// units that this configuration may not build.
    Unrestricted,
}

impl BuiltUnits {
    /// The compile units of `files` (a debug vmlinux, debug `.ko` files).
    ///
    /// # Errors
    ///
    /// [`KbuildError::Read`] when a file cannot be opened, [`KbuildError::DebugInfo`] when it is
    /// not ELF or has no DWARF compile units.
    pub fn from_debug_info(files: &[&Path]) -> Result<BuiltUnits, KbuildError> {
        let mut units = BTreeSet::new();
        for path in files {
            units.extend(compile_unit_names(path)?);
        }
        let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        Ok(BuiltUnits::Listed {
            origin: format!("the compile units of {}", names.join(", ")),
            units,
        })
    }

    /// Whether the unit (relative to the tree) is part of the build.
    pub fn contains(&self, unit: &Path) -> bool {
        match self {
            BuiltUnits::Listed { units, .. } => units.contains(unit),
            BuiltUnits::Unrestricted => true,
        }
    }

    /// Where the list came from, for reports.
    pub fn origin(&self) -> String {
        match self {
            BuiltUnits::Listed { origin, units } => format!("{origin} ({} units)", units.len()),
            BuiltUnits::Unrestricted => "no debug info given: every unit of the tree".to_owned(),
        }
    }
}

fn debug_info_error(path: &Path, message: impl Into<String>) -> KbuildError {
    KbuildError::DebugInfo {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// The `DW_AT_name` of every compile unit of an ELF file, made relative to the source tree.
fn compile_unit_names(path: &Path) -> Result<BTreeSet<PathBuf>, KbuildError> {
    let file = File::open(path).map_err(|source| KbuildError::Read {
        path: path.to_owned(),
        source,
    })?;
    // SAFETY: the map is read-only and private. The debug vmlinux is an input KernelX never
    // writes; if another process truncated it meanwhile, reads could fault, as with any tool
    // mapping its input (object, gimli and addr2line users alike).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| KbuildError::Read {
        path: path.to_owned(),
        source,
    })?;
    let elf = object::File::parse(&*map).map_err(|e| debug_info_error(path, e.to_string()))?;
    let endian = if elf.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    let section = |id: gimli::SectionId| -> Result<gimli::EndianSlice<'_, gimli::RunTimeEndian>, KbuildError> {
        let data = match elf.section_by_name(id.name()) {
            Some(s) => s
                .data()
                .map_err(|e| debug_info_error(path, format!("section {}: {e}", id.name())))?,
            None => &[],
        };
        Ok(gimli::EndianSlice::new(data, endian))
    };
    let dwarf = gimli::Dwarf::load(section)?;
    let dwarf_error = |e: gimli::Error| debug_info_error(path, format!("DWARF: {e}"));
    let mut names = BTreeSet::new();
    let mut headers = dwarf.units();
    while let Some(header) = headers.next().map_err(dwarf_error)? {
        let abbreviations = dwarf.abbreviations(&header).map_err(dwarf_error)?;
        let mut entries = header.entries(&abbreviations);
        let Some(root) = entries.next_dfs().map_err(dwarf_error)? else {
            continue;
        };
        if root.tag() != gimli::DW_TAG_compile_unit {
            continue;
        }
        let Some(value) = root.attr_value(gimli::DW_AT_name) else {
            continue;
        };
        let name = match value {
            gimli::AttributeValue::String(s) => s,
            gimli::AttributeValue::DebugStrRef(offset) => {
                dwarf.debug_str.get_str(offset).map_err(dwarf_error)?
            }
            gimli::AttributeValue::DebugLineStrRef(offset) => {
                dwarf.debug_line_str.get_str(offset).map_err(dwarf_error)?
            }
            _ => continue,
        };
        if let Some(unit) = tree_relative(&name.to_string_lossy()) {
            names.insert(unit);
        }
    }
    if names.is_empty() {
        return Err(debug_info_error(
            path,
            "no DWARF compile units (the file has no debug info)",
        ));
    }
    Ok(names)
}

/// A compile unit's name as a path relative to the source tree: `fs/pipe.c` stays,
/// `./fs/pipe.c` loses its `./`; absolute names (generated files of an out-of-tree build)
/// and names climbing out of the tree are dropped.
fn tree_relative(name: &str) -> Option<PathBuf> {
    normalize(Path::new(name)).filter(|p| !p.as_os_str().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_are_made_tree_relative() {
        assert_eq!(tree_relative("fs/pipe.c"), Some(PathBuf::from("fs/pipe.c")));
        assert_eq!(
            tree_relative("./fs/pipe.c"),
            Some(PathBuf::from("fs/pipe.c"))
        );
        assert_eq!(tree_relative("/build/x.c"), None);
        assert_eq!(tree_relative("../x.c"), None);
    }

    #[test]
    fn unrestricted_contains_everything() {
        assert!(BuiltUnits::Unrestricted.contains(Path::new("any/thing.c")));
        let listed = BuiltUnits::Listed {
            origin: "test".into(),
            units: [PathBuf::from("fs/pipe.c")].into(),
        };
        assert!(listed.contains(Path::new("fs/pipe.c")));
        assert!(!listed.contains(Path::new("fs/splice.c")));
        assert_eq!(listed.origin(), "test (1 units)");
    }

    #[test]
    fn rejects_files_without_debug_info() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-elf");
        std::fs::write(&path, b"hello").unwrap();
        let err = BuiltUnits::from_debug_info(&[&path])
            .unwrap_err()
            .to_string();
        assert!(err.contains("linux-image-<release>-dbg"), "{err}");
        // The test binary itself is ELF; whether it has DWARF depends on the profile, so only
        // the error path for non-ELF input is checked here.
    }
}
