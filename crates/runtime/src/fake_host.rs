//! A fake host for unit tests: a temporary directory used as the root of a [`HostView`], with
//! writers for the kernel files this crate reads.

use crate::host::HostView;

/// A temporary root directory, removed when dropped.
pub(crate) struct FakeHost {
    dir: tempfile::TempDir,
}

impl FakeHost {
    #[track_caller]
    pub(crate) fn new() -> FakeHost {
        FakeHost {
            dir: tempfile::tempdir().expect("creating a temporary directory"),
        }
    }

    pub(crate) fn view(&self) -> HostView {
        HostView::with_root(self.dir.path())
    }

    /// Writes host file `path`, creating its directories.
    #[track_caller]
    pub(crate) fn write(&self, path: &str, contents: impl AsRef<[u8]>) -> &FakeHost {
        let real = self.view().resolve(path);
        std::fs::create_dir_all(real.parent().expect("an absolute host path"))
            .unwrap_or_else(|e| panic!("creating the directory of {path}: {e}"));
        std::fs::write(&real, contents).unwrap_or_else(|e| panic!("writing {path}: {e}"));
        self
    }

    /// Writes `/proc/kcore` as an ELF64 core file whose PT_LOAD segments map each
    /// `(virtual address, bytes)` pair, after a PT_NOTE header as the kernel writes one.
    #[track_caller]
    pub(crate) fn kcore(&self, segments: &[(u64, &[u8])]) -> &FakeHost {
        self.write("/proc/kcore", elf_core(segments))
    }

    /// Writes the release and the `/sys/kernel/notes` of a kernel with this GNU build-id.
    #[track_caller]
    pub(crate) fn kernel(&self, release: &str, build_id: &[u8]) -> &FakeHost {
        self.write("/proc/sys/kernel/osrelease", format!("{release}\n"));
        let mut notes = note(b"Linux\0", 0x101, &[6, 0, 0, 0]);
        notes.extend(note(b"Xen\0", 18, b"\x01\x02\x03"));
        notes.extend(note(b"GNU\0", 3, build_id));
        self.write("/sys/kernel/notes", notes)
    }
}

/// One ELF note: namesz, descsz, type, then name and desc each padded to 4 bytes.
pub(crate) fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for word in [name.len() as u32, desc.len() as u32, kind] {
        out.extend(word.to_le_bytes());
    }
    for part in [name, desc] {
        out.extend(part);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    out
}

/// An ELF64 little-endian x86-64 core file (written field by field, independently of the
/// reader in `kcore.rs`): the header, a PT_NOTE and one PT_LOAD per segment, the segments'
/// bytes at page-aligned offsets.
fn elf_core(segments: &[(u64, &[u8])]) -> Vec<u8> {
    const EHDR: usize = 64;
    const PHDR: usize = 56;
    const PAGE: usize = 0x1000;
    let phnum = segments.len() + 1;
    let mut out = Vec::new();
    out.extend(b"\x7fELF\x02\x01\x01\0");
    out.resize(16, 0);
    out.extend(4u16.to_le_bytes()); // ET_CORE
    out.extend(62u16.to_le_bytes()); // EM_X86_64
    out.extend(1u32.to_le_bytes()); // EV_CURRENT
    out.extend(0u64.to_le_bytes()); // e_entry
    out.extend((EHDR as u64).to_le_bytes()); // e_phoff
    out.extend(0u64.to_le_bytes()); // e_shoff
    out.extend(0u32.to_le_bytes()); // e_flags
    out.extend((EHDR as u16).to_le_bytes());
    out.extend((PHDR as u16).to_le_bytes());
    out.extend((phnum as u16).to_le_bytes());
    out.extend([0u8; 6]); // e_shentsize, e_shnum, e_shstrndx
    assert_eq!(out.len(), EHDR);
    let program_header = |out: &mut Vec<u8>, kind: u32, offset: u64, vaddr: u64, size: u64| {
        out.extend(kind.to_le_bytes());
        out.extend(7u32.to_le_bytes()); // RWX, as the kernel marks every kcore segment
        for field in [offset, vaddr, 0, size, size, PAGE as u64] {
            out.extend(field.to_le_bytes());
        }
    };
    program_header(&mut out, 4, 0, 0, 0); // PT_NOTE, empty
    let mut offset = (EHDR + PHDR * phnum).next_multiple_of(PAGE);
    let mut placed = Vec::new();
    for &(vaddr, bytes) in segments {
        program_header(&mut out, 1, offset as u64, vaddr, bytes.len() as u64);
        placed.push((offset, bytes));
        offset = (offset + bytes.len()).next_multiple_of(PAGE);
    }
    for (offset, bytes) in placed {
        out.resize(offset, 0);
        out.extend(bytes);
    }
    out
}
