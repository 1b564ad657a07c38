//! `vmlinux.h`: every type of the kernel's BTF as C, the way `bpftool btf dump format c`
//! writes it, generated with libbpf's btf_dump and cached by the BTF's hash.

use std::ffi::{CString, c_char, c_int, c_void};
use std::fs::File;
use std::io::Write as _;
use std::os::fd::AsRawFd as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use libbpf_sys as sys;
use sha2::{Digest as _, Sha256};

use super::PolicyError;

/// Where the kernel's BTF comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BtfSource {
    /// The running kernel's: `/sys/kernel/btf/vmlinux` (raw BTF).
    Running,
    /// The `.BTF` section of a vmlinux ELF file (the lab's debug vmlinux, in tests).
    Elf(PathBuf),
}

impl BtfSource {
    /// The file the BTF is read from.
    pub fn path(&self) -> &Path {
        match self {
            BtfSource::Running => Path::new("/sys/kernel/btf/vmlinux"),
            BtfSource::Elf(path) => path,
        }
    }
}

const PROLOGUE: &str = "#ifndef __VMLINUX_H__\n\
#define __VMLINUX_H__\n\
\n\
#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n\
#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)\n\
#endif\n\n";

const EPILOGUE: &str = "\n#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n\
#pragma clang attribute pop\n\
#endif\n\
\n\
#endif /* __VMLINUX_H__ */\n";

/// The path of `vmlinux.h` for `source`'s BTF under `cache`
/// (`<cache>/btf/<first 16 hex digits of sha256(raw BTF)>/vmlinux.h`), generated when absent.
///
/// The file is written under a temporary name and renamed into place, so a reader never sees
/// a partial file and two concurrent generations are harmless (the last rename wins, with the
/// same contents).
///
/// # Errors
///
/// [`PolicyError::Btf`] when libbpf cannot read the BTF, [`PolicyError::BtfDump`] when a type
/// cannot be written, [`PolicyError::Io`] for the cache.
pub fn vmlinux_header(source: &BtfSource, cache: &Path) -> Result<PathBuf, PolicyError> {
    // The running kernel's BTF file is the raw BTF: hashed as read, it is parsed only when
    // the header must be written (parsing 2-5 MB of types is most of a cache hit otherwise).
    let raw_hash = match source {
        BtfSource::Running => Some(hash(&std::fs::read(source.path()).map_err(|error| {
            PolicyError::Btf {
                btf: source.path().to_owned(),
                error,
            }
        })?)),
        BtfSource::Elf(_) => None,
    };
    if let Some(header) = raw_hash.as_ref().map(|h| header_path(cache, h))
        && header.is_file()
    {
        return Ok(header);
    }
    let btf = Btf::parse(source)?;
    let header = header_path(cache, &raw_hash.unwrap_or_else(|| btf.hash()));
    let dir = header
        .parent()
        .expect("a header path has a directory")
        .to_owned();
    if header.is_file() {
        return Ok(header);
    }
    std::fs::create_dir_all(&dir).map_err(|e| PolicyError::io(&dir, e))?;
    let mut temp = tempfile::Builder::new()
        .prefix(".vmlinux.h.")
        .tempfile_in(&dir)
        .map_err(|e| PolicyError::io(&dir, e))?;
    btf.dump(temp.as_file_mut()).map_err(|e| match e {
        DumpError::Write(error) => PolicyError::io(temp.path(), error),
        DumpError::Type { type_id, error } => PolicyError::BtfDump {
            btf: source.path().to_owned(),
            type_id,
            error,
        },
    })?;
    // tempfile creates 0600; the header is no secret, and a cache shared with other users
    // (KERNELX_CACHE) must stay readable.
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(|e| PolicyError::io(temp.path(), e))?;
    temp.persist(&header)
        .map_err(|e| PolicyError::io(&header, e.error))?;
    Ok(header)
}

/// `<cache>/btf/<hash>/vmlinux.h`.
fn header_path(cache: &Path, hash: &str) -> PathBuf {
    cache.join("btf").join(hash).join("vmlinux.h")
}

/// The cache key of raw BTF bytes: the first 16 hex digits of their sha256.
fn hash(raw: &[u8]) -> String {
    Sha256::digest(raw)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A `struct btf` owned by libbpf.
struct Btf {
    ptr: NonNull<sys::btf>,
}

enum DumpError {
    Write(std::io::Error),
    Type { type_id: u32, error: std::io::Error },
}

impl Btf {
    fn parse(source: &BtfSource) -> Result<Btf, PolicyError> {
        let path = source.path();
        let error = |error| PolicyError::Btf {
            btf: path.to_owned(),
            error,
        };
        let c_path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| error(std::io::ErrorKind::InvalidInput.into()))?;
        // SAFETY: c_path is a valid C string; libbpf returns a new btf or NULL with errno set.
        let ptr = unsafe {
            match source {
                BtfSource::Running => sys::btf__parse_raw(c_path.as_ptr()),
                BtfSource::Elf(_) => sys::btf__parse_elf(c_path.as_ptr(), std::ptr::null_mut()),
            }
        };
        NonNull::new(ptr)
            .map(|ptr| Btf { ptr })
            .ok_or_else(|| error(std::io::Error::last_os_error()))
    }

    /// The cache key: the raw BTF bytes themselves, not the file they came from (a vmlinux is
    /// rebuilt in place; /sys/kernel/btf/vmlinux has the same path on every kernel).
    fn hash(&self) -> String {
        let mut size: u32 = 0;
        // SAFETY: self.ptr is a live btf; the returned buffer lives as long as it and is
        // `size` bytes long.
        let raw = unsafe {
            let data = sys::btf__raw_data(self.ptr.as_ptr(), &mut size);
            std::slice::from_raw_parts(data.cast::<u8>(), size as usize)
        };
        hash(raw)
    }

    fn dump(&self, out: &mut File) -> Result<(), DumpError> {
        out.write_all(PROLOGUE.as_bytes())
            .map_err(DumpError::Write)?;
        let mut sink = Sink {
            fd: out.as_raw_fd(),
            error: None,
        };
        // SAFETY: the callback receives `&mut sink` as ctx, which outlives the dumper (freed
        // below); opts may be NULL.
        let dumper = unsafe {
            sys::btf_dump__new(
                self.ptr.as_ptr(),
                Some(print),
                (&raw mut sink).cast::<c_void>(),
                std::ptr::null(),
            )
        };
        let Some(dumper) = NonNull::new(dumper) else {
            return Err(DumpError::Type {
                type_id: 0,
                error: std::io::Error::last_os_error(),
            });
        };
        // SAFETY: self.ptr is a live btf.
        let count = unsafe { sys::btf__type_cnt(self.ptr.as_ptr()) };
        let mut result = Ok(());
        for type_id in 1..count {
            // SAFETY: dumper is live; type ids below btf__type_cnt are valid.
            let rc = unsafe { sys::btf_dump__dump_type(dumper.as_ptr(), type_id) };
            if rc < 0 {
                result = Err(DumpError::Type {
                    type_id,
                    error: std::io::Error::from_raw_os_error(-rc),
                });
                break;
            }
            if let Some(error) = sink.error.take() {
                result = Err(DumpError::Write(error));
                break;
            }
        }
        // SAFETY: created above and not used after.
        unsafe { sys::btf_dump__free(dumper.as_ptr()) };
        result?;
        out.write_all(EPILOGUE.as_bytes()).map_err(DumpError::Write)
    }
}

impl Drop for Btf {
    fn drop(&mut self) {
        // SAFETY: the btf came from btf__parse_* and is freed once.
        unsafe { sys::btf__free(self.ptr.as_ptr()) }
    }
}

/// btf_dump's output: the file's descriptor, and the first write error (the callback cannot
/// return one).
struct Sink {
    fd: c_int,
    error: Option<std::io::Error>,
}

/// btf_dump's printf callback. libbpf-sys binds only `vdprintf` among the `v*printf`s, so each
/// call is a write(2) to the file: slower than a buffered stream, and the generation is cached.
unsafe extern "C" fn print(ctx: *mut c_void, fmt: *const c_char, args: *mut sys::__va_list_tag) {
    // SAFETY: ctx is the Sink given to btf_dump__new, alive while the dumper is.
    let sink = unsafe { &mut *ctx.cast::<Sink>() };
    // SAFETY: fmt and args are libbpf's printf format and its matching va_list.
    if unsafe { sys::vdprintf(sink.fd, fmt, args) } < 0 && sink.error.is_none() {
        sink.error = Some(std::io::Error::last_os_error());
    }
}
