//! The kernel a plan is for: release from the tree, GNU build-id from the debug vmlinux; for a
//! module's plan also the module's name and the build-id of its built `.ko`.

use std::fs::File;
use std::path::{Path, PathBuf};

use kernelx_kbuild::SourceTree;
use kernelx_plan::{HexBytes, KernelIdentity, ModuleIdentity};
use object::{Object as _, ObjectSection as _};

use crate::error::AnalyzeError;

/// Where Debian's `linux-image-*-dbg` puts the debug vmlinux of `release`.
pub fn default_vmlinux(release: &str) -> PathBuf {
    PathBuf::from(format!("/usr/lib/debug/boot/vmlinux-{release}"))
}

/// The identity of the kernel `tree` builds: `kernel.release` of the tree (else its
/// Makefile version; for a module, its kernel build directory's), and the build-id of `vmlinux`
/// when one is given. For a module, also its name and the build-id of its built `.ko` when
/// known. The returned strings are warnings for the user (no build-id).
pub fn kernel_identity<'t>(
    tree: impl Into<SourceTree<'t>>,
    vmlinux: Option<&Path>,
) -> Result<(KernelIdentity, Vec<String>), AnalyzeError> {
    let tree = tree.into();
    let release = tree.release();
    let mut warnings = Vec::new();
    let build_id = match vmlinux {
        Some(path) => {
            let id = read_build_id(path)?;
            if id.is_none() {
                warnings.push(format!(
                    "{} has no .note.gnu.build-id: the plan names the release only",
                    path.display()
                ));
            }
            id
        }
        // A module's sites are in the module; the runtime tells its builds apart by the .ko.
        None if tree.module().is_some() => None,
        None => {
            warnings.push(format!(
                "no debug vmlinux for {release} (give --vmlinux): the plan names the release \
                 only, so the runtime cannot tell two builds of {release} apart"
            ));
            None
        }
    };
    let module = match tree.module() {
        None => None,
        Some(module) => {
            let build_id = match module.built_module() {
                Some(ko) => {
                    let id = read_build_id(&ko.path)?;
                    if id.is_none() {
                        warnings.push(format!(
                            "{} has no .note.gnu.build-id: the plan names module {} only",
                            ko.path.display(),
                            module.name()
                        ));
                    }
                    id
                }
                None => {
                    warnings.push(format!(
                        "no built {name}.ko (give --module-ko): the plan names module {name} \
                         only, so the runtime cannot tell two builds of it apart",
                        name = module.name()
                    ));
                    None
                }
            };
            Some(ModuleIdentity {
                name: module.name().to_owned(),
                build_id,
            })
        }
    };
    Ok((
        KernelIdentity {
            release,
            build_id,
            module,
        },
        warnings,
    ))
}

/// The GNU build-id note of an ELF file, `None` when it has none.
pub fn read_build_id(path: &Path) -> Result<Option<HexBytes>, AnalyzeError> {
    let read = |source| AnalyzeError::Read {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read)?;
    // SAFETY: a read-only private map of an input KernelX never writes; a concurrent truncation
    // could fault, as with every tool that maps its input.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(read)?;
    build_id_of(&map).map_err(|detail| AnalyzeError::Elf {
        path: path.to_owned(),
        detail,
    })
}

/// The `.note.gnu.build-id` of ELF bytes.
fn build_id_of(bytes: &[u8]) -> Result<Option<HexBytes>, String> {
    let elf = object::File::parse(bytes).map_err(|e| e.to_string())?;
    if let Some(id) = elf.build_id().map_err(|e| e.to_string())? {
        return Ok(Some(HexBytes(id.to_vec())));
    }
    // Without program headers `build_id` still reads the section; keep this as a fallback.
    Ok(elf
        .section_by_name(".note.gnu.build-id")
        .and_then(|s| s.data().ok())
        .filter(|d| d.len() > 16)
        .map(|d| HexBytes(d[16..].to_vec())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_an_elf_file_is_an_error() {
        assert!(build_id_of(b"not elf").is_err());
    }

    #[test]
    fn the_default_vmlinux_is_debians() {
        assert_eq!(
            default_vmlinux("6.12.117+deb12-cloud-amd64"),
            Path::new("/usr/lib/debug/boot/vmlinux-6.12.117+deb12-cloud-amd64")
        );
    }
}
