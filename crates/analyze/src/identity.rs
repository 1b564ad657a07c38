//! The kernel a plan is for: release from the tree, GNU build-id from the debug vmlinux.

use std::fs::File;
use std::path::{Path, PathBuf};

use kernelx_kbuild::KernelTree;
use kernelx_plan::{HexBytes, KernelIdentity};
use object::{Object as _, ObjectSection as _};

use crate::error::AnalyzeError;

/// Where Debian's `linux-image-*-dbg` puts the debug vmlinux of `release`.
pub fn default_vmlinux(release: &str) -> PathBuf {
    PathBuf::from(format!("/usr/lib/debug/boot/vmlinux-{release}"))
}

/// The identity of the kernel `tree` builds: `kernel.release` of the tree (else its
/// Makefile version), and the build-id of `vmlinux` when one is given. The returned strings are
/// warnings for the user (no build-id).
pub fn kernel_identity(
    tree: &KernelTree,
    vmlinux: Option<&Path>,
) -> Result<(KernelIdentity, Vec<String>), AnalyzeError> {
    let release = tree
        .kernel_release()
        .map(str::to_owned)
        .unwrap_or_else(|| tree.version().to_string());
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
        None => {
            warnings.push(format!(
                "no debug vmlinux for {release} (give --vmlinux): the plan names the release \
                 only, so the runtime cannot tell two builds of {release} apart"
            ));
            None
        }
    };
    Ok((KernelIdentity { release, build_id }, warnings))
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
