//! Reading kernel memory at a virtual address through `/proc/kcore`.
//!
//! `/proc/kcore` is an ELF64 core file of the kernel's address space: each `PT_LOAD` program
//! header maps `p_filesz` bytes at virtual address `p_vaddr` to file offset `p_offset` (the
//! kernel text, the module area, vmalloc, the direct map). Reading the file at that offset
//! reads live memory, so the code seen here is the code as patched at run time (alternatives,
//! static keys, ftrace, kprobes). The file is as large as the address space: only the
//! headers and the bytes asked for are ever read.

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt as _;

use crate::host::{HostError, HostView};

/// Where the kernel exposes its memory.
pub const KCORE: &str = "/proc/kcore";

const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const ET_CORE: u16 = 4;
const PT_LOAD: u32 = 1;
/// More program headers than any kernel writes (one per RAM range and mapping area).
const MAX_PHDRS: usize = 1 << 16;

/// Why kernel memory could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KcoreError {
    /// The kernel has no `/proc/kcore`.
    #[error(
        "{KCORE} does not exist: the running kernel is built without CONFIG_PROC_KCORE, so \
         KernelX cannot check the code it would probe"
    )]
    Missing,
    /// Opening it was refused.
    #[error(
        "{KCORE} cannot be opened: reading kernel memory needs root (CAP_SYS_RAWIO), and a \
         kernel in lockdown (confidentiality) refuses it to everyone"
    )]
    PermissionDenied,
    /// Another error while opening or reading its headers.
    #[error(transparent)]
    Host(HostError),
    /// The headers are not those of an ELF64 little-endian core file.
    #[error("{KCORE} is not an ELF64 little-endian core file: {reason}")]
    NotCore {
        /// What is wrong.
        reason: &'static str,
    },
    /// No `PT_LOAD` segment holds the range.
    #[error(
        "kernel address {address:#x} (+{len} bytes) is in no PT_LOAD segment of {KCORE}: the \
         kernel does not map it there"
    )]
    Unmapped {
        /// The first address asked for.
        address: u64,
        /// How many bytes.
        len: usize,
    },
    /// Reading mapped bytes failed.
    #[error("reading {len} bytes of kernel memory at {address:#x} from {KCORE}")]
    Read {
        /// The first address asked for.
        address: u64,
        /// How many bytes.
        len: usize,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// A `PT_LOAD` segment: `size` bytes of memory at `vaddr` are at file offset `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSegment {
    /// The first virtual address.
    pub vaddr: u64,
    /// Where its bytes start in the file.
    pub offset: u64,
    /// How many bytes the file holds (`p_filesz`).
    pub size: u64,
}

impl LoadSegment {
    /// The file offset of `[address, address + len)`, when the segment holds all of it.
    fn file_offset(&self, address: u64, len: usize) -> Option<u64> {
        let start = address.checked_sub(self.vaddr)?;
        let end = start.checked_add(len as u64)?;
        (end <= self.size).then(|| self.offset + start)
    }
}

/// An open `/proc/kcore` and its segments.
#[derive(Debug)]
pub struct Kcore {
    file: File,
    segments: Vec<LoadSegment>,
}

impl Kcore {
    /// Opens the host's `/proc/kcore` and reads its program headers.
    pub fn open(host: &HostView) -> Result<Kcore, KcoreError> {
        let file = host.open(KCORE).map_err(|e| match &e {
            HostError::Read { source, .. } if source.kind() == ErrorKind::NotFound => {
                KcoreError::Missing
            }
            HostError::Read { source, .. } if source.kind() == ErrorKind::PermissionDenied => {
                KcoreError::PermissionDenied
            }
            _ => KcoreError::Host(e),
        })?;
        let read_headers = |buf: &mut [u8]| {
            file.read_exact_at(buf, 0)
                .map_err(|source| match source.kind() {
                    ErrorKind::UnexpectedEof => KcoreError::NotCore {
                        reason: "the file ends inside its headers",
                    },
                    _ => KcoreError::Host(HostError::Read {
                        path: KCORE.into(),
                        source,
                    }),
                })
        };
        let mut ehdr = [0; EHDR_SIZE];
        read_headers(&mut ehdr)?;
        let (phoff, phnum) = parse_file_header(&ehdr)?;
        let mut headers = vec![0; phoff + phnum * PHDR_SIZE];
        read_headers(&mut headers)?;
        let segments = headers[phoff..]
            .chunks_exact(PHDR_SIZE)
            .filter(|ph| u32_at(ph, 0) == PT_LOAD)
            .map(|ph| LoadSegment {
                offset: u64_at(ph, 8),
                vaddr: u64_at(ph, 16),
                size: u64_at(ph, 32),
            })
            .collect();
        Ok(Kcore { file, segments })
    }

    /// The `PT_LOAD` segments, in the file's order.
    pub fn segments(&self) -> &[LoadSegment] {
        &self.segments
    }

    /// Reads `len` bytes of kernel memory at virtual address `address`.
    pub fn read(&self, address: u64, len: usize) -> Result<Vec<u8>, KcoreError> {
        let offset = self
            .segments
            .iter()
            .find_map(|s| s.file_offset(address, len))
            .ok_or(KcoreError::Unmapped { address, len })?;
        let mut buf = vec![0; len];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|source| KcoreError::Read {
                address,
                len,
                source,
            })?;
        Ok(buf)
    }
}

/// Checks the ELF header and returns the program headers' offset and count.
fn parse_file_header(ehdr: &[u8; EHDR_SIZE]) -> Result<(usize, usize), KcoreError> {
    let not_core = |reason| KcoreError::NotCore { reason };
    if ehdr[..4] != *b"\x7fELF" {
        return Err(not_core("no ELF magic"));
    }
    // EI_CLASS = ELFCLASS64, EI_DATA = ELFDATA2LSB, EI_VERSION = EV_CURRENT.
    if ehdr[4..7] != [2, 1, 1] {
        return Err(not_core("not 64-bit little-endian ELF version 1"));
    }
    if u16_at(ehdr, 16) != ET_CORE {
        return Err(not_core("e_type is not ET_CORE"));
    }
    let phentsize = usize::from(u16_at(ehdr, 54));
    let phnum = usize::from(u16_at(ehdr, 56));
    if phentsize != PHDR_SIZE {
        return Err(not_core("e_phentsize is not 56"));
    }
    let phoff = usize::try_from(u64_at(ehdr, 32))
        .ok()
        .filter(|&off| (EHDR_SIZE..=MAX_PHDRS * PHDR_SIZE).contains(&off))
        .ok_or_else(|| not_core("e_phoff is not near the start of the file"))?;
    Ok((phoff, phnum))
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_host::FakeHost;

    const TEXT: u64 = 0xffffffff81000000;
    const MODULES: u64 = 0xffffffffc0000000;

    #[test]
    fn reads_bytes_at_virtual_addresses_of_each_segment() {
        let host = FakeHost::new();
        let text: Vec<u8> = (0..=255).collect();
        host.kcore(&[(TEXT, &text), (MODULES, b"\xf3\x0f\x1e\xfa\xc3")]);
        let kcore = Kcore::open(&host.view()).unwrap();
        assert_eq!(kcore.segments().len(), 2);
        assert_eq!(kcore.segments()[1].vaddr, MODULES);
        assert_eq!(kcore.read(TEXT + 0x10, 3).unwrap(), [0x10, 0x11, 0x12]);
        assert_eq!(
            kcore.read(TEXT + 250, 6).unwrap(),
            [250, 251, 252, 253, 254, 255]
        );
        assert_eq!(kcore.read(MODULES + 4, 1).unwrap(), [0xc3]);
    }

    #[test]
    fn refuses_addresses_outside_every_segment() {
        let host = FakeHost::new();
        host.kcore(&[(TEXT, &[0x90; 16])]);
        let kcore = Kcore::open(&host.view()).unwrap();
        for (address, len) in [(TEXT - 1, 2), (TEXT + 15, 2), (MODULES, 1), (u64::MAX, 2)] {
            match kcore.read(address, len) {
                Err(err @ KcoreError::Unmapped { .. }) => {
                    assert!(err.to_string().contains(&format!("{address:#x}")), "{err}")
                }
                other => panic!("{address:#x}+{len}: {other:?}"),
            }
        }
    }

    #[test]
    fn says_when_the_kernel_has_no_kcore() {
        let host = FakeHost::new();
        let err = Kcore::open(&host.view()).unwrap_err();
        assert!(matches!(err, KcoreError::Missing), "{err:?}");
        assert!(err.to_string().contains("CONFIG_PROC_KCORE"), "{err}");
    }

    #[test]
    fn refuses_a_file_that_is_not_an_elf_core() {
        let host = FakeHost::new();
        host.kcore(&[(TEXT, &[0x90; 16])]);
        let core = std::fs::read(host.view().resolve(KCORE)).unwrap();
        let mut executable = core.clone();
        executable[16] = 2; // ET_EXEC
        let mut big_endian = core.clone();
        big_endian[5] = 2;
        for (bytes, reason) in [
            (vec![b'x'; 100], "magic"),
            (executable, "ET_CORE"),
            (big_endian, "little-endian"),
            (core[..100].to_vec(), "ends inside"),
        ] {
            host.write(KCORE, &bytes);
            match Kcore::open(&host.view()) {
                Err(err @ KcoreError::NotCore { .. }) => {
                    assert!(err.to_string().contains(reason), "{err}")
                }
                other => panic!("{reason}: {other:?}"),
            }
        }
    }
}
