//! The lab VM's initramfs: static busybox plus our `init`, as a newc cpio archive.

use std::path::Path;

use anyhow::{Context, Result};

/// The guest's PID 1; its header comment documents the host <-> guest protocol.
pub const INIT_SCRIPT: &str = include_str!("init.sh");

/// Builds the archive from the host's static busybox and the kernel's overlayfs module
/// (`overlay.ko`, uncompressed: busybox's insmod cannot load `.ko.xz`).
pub fn build(busybox: &Path, overlay_module: &[u8]) -> Result<Vec<u8>> {
    let busybox = std::fs::read(busybox)
        .with_context(|| format!("reading {} (install busybox-static)", busybox.display()))?;
    let mut archive = Cpio::default();
    for dir in ["bin", "dev", "proc", "sys"] {
        archive.dir(dir);
    }
    // The kernel opens /dev/console for init before devtmpfs is mounted.
    archive.char_device("dev/console", 5, 1);
    archive.file("bin/busybox", 0o755, &busybox);
    archive.file("overlay.ko", 0o644, overlay_module);
    archive.file("init", 0o755, INIT_SCRIPT.as_bytes());
    Ok(archive.finish())
}

/// A writer for the "newc" cpio format the kernel unpacks (Documentation/driver-api/early-userspace).
#[derive(Default)]
struct Cpio {
    bytes: Vec<u8>,
    next_inode: u32,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

impl Cpio {
    fn dir(&mut self, name: &str) {
        self.entry(name, S_IFDIR | 0o755, 2, (0, 0), &[]);
    }

    fn file(&mut self, name: &str, permissions: u32, data: &[u8]) {
        self.entry(name, S_IFREG | permissions, 1, (0, 0), data);
    }

    fn char_device(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, S_IFCHR | 0o600, 1, (major, minor), &[]);
    }

    fn entry(&mut self, name: &str, mode: u32, links: u32, rdev: (u32, u32), data: &[u8]) {
        self.next_inode += 1;
        let name_size = u32::try_from(name.len() + 1).expect("short name");
        let data_size = u32::try_from(data.len()).expect("initramfs member under 4 GiB");
        // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
        let fields = [
            self.next_inode,
            mode,
            0,
            0,
            links,
            0,
            data_size,
            0,
            0,
            rdev.0,
            rdev.1,
            name_size,
            0,
        ];
        self.bytes.extend_from_slice(b"070701");
        for field in fields {
            self.bytes
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[]);
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_entries_are_aligned_and_terminated() {
        let mut archive = Cpio::default();
        archive.file("init", 0o755, b"#!/bin/sh\n");
        let bytes = archive.finish();
        assert_eq!(&bytes[..6], b"070701");
        // 110-byte header + "init\0" padded to 116, then 10 data bytes padded to 12.
        assert_eq!(&bytes[110..114], b"init");
        assert_eq!(&bytes[116..126], b"#!/bin/sh\n");
        assert_eq!(&bytes[128..134], b"070701");
        assert_eq!(bytes.len() % 4, 0);
        let trailer = String::from_utf8_lossy(&bytes[128 + 110..128 + 120]);
        assert!(trailer.starts_with("TRAILER!!!"), "{trailer}");
        // mode field of the file: regular, 0755
        assert_eq!(&bytes[14..22], b"000081ed");
    }

    #[test]
    fn cpio_tool_lists_the_archive() {
        let mut archive = Cpio::default();
        archive.dir("bin");
        archive.file("bin/hello", 0o644, b"hello");
        archive.char_device("console", 5, 1);
        let dir = std::env::temp_dir().join(format!("kx-cpio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.cpio");
        std::fs::write(&path, archive.finish()).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("cpio -itv < {}", path.display()))
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(listing.contains("bin/hello"), "{listing}");
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with('c') && l.contains("console")),
            "{listing}"
        );
    }
}
