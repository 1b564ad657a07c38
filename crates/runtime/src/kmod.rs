//! The kernelx module (`kmod/`), whose kfuncs the SIE program calls: whether it is loaded,
//! loading it, and building it from the sources embedded here.
//!
//! The module needs the per-CPU address of `current_kprobe`, which the kernel does not export:
//! it is passed as the parameter `current_kprobe_addr`, read from `/proc/kallsyms` (the module
//! checks it at load and refuses a wrong one).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::host::HostView;
use crate::kallsyms::Kallsyms;

/// The module's name.
pub const MODULE_NAME: &str = "kernelx";

/// Present while the module is loaded.
pub const MODULE_SYSFS: &str = "/sys/module/kernelx";

/// The symbol whose address the module needs.
pub const CURRENT_KPROBE: &str = "current_kprobe";

/// The module's sources (path relative to the build directory, text), so that an installed
/// `kernelx` can build it for the kernel it runs on.
pub const SOURCES: [(&str, &str); 4] = [
    ("Makefile", include_str!("../../../kmod/Makefile")),
    ("Kbuild", include_str!("../../../kmod/Kbuild")),
    ("kernelx.c", include_str!("../../../kmod/kernelx.c")),
    (
        "include/kernelx_abi.h",
        include_str!("../../../kmod/include/kernelx_abi.h"),
    ),
];

/// Why the module could not be found, built or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModuleError {
    /// kallsyms has no (or several) `current_kprobe`.
    #[error(
        "/proc/kallsyms lists {found} `{CURRENT_KPROBE}` symbols in vmlinux, expected one: the \
         kernelx module cannot be given its address"
    )]
    CurrentKprobe {
        /// How many there are.
        found: usize,
    },
    /// A command could not be started or failed.
    #[error("`{command}` failed ({status}){}", tail(stderr))]
    Command {
        /// The command line.
        command: String,
        /// How it ended.
        status: String,
        /// The end of its error output.
        stderr: String,
    },
    /// A file operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

fn tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.trim_end().lines().collect();
    let start = lines.len().saturating_sub(8);
    if lines.is_empty() {
        String::new()
    } else {
        format!(":\n{}", lines[start..].join("\n"))
    }
}

/// Whether the module is loaded on `host`.
pub fn is_loaded(host: &HostView) -> bool {
    host.exists(MODULE_SYSFS)
}

/// The per-CPU address of `current_kprobe` in vmlinux.
pub fn current_kprobe_addr(kallsyms: &Kallsyms) -> Result<u64, ModuleError> {
    let found: Vec<u64> = kallsyms
        .symbols()
        .iter()
        .filter(|s| s.name == CURRENT_KPROBE && s.module.is_none())
        .map(|s| s.address)
        .collect();
    match found[..] {
        [address] => Ok(address),
        _ => Err(ModuleError::CurrentKprobe { found: found.len() }),
    }
}

/// The `insmod` command that loads `ko` with the address of `current_kprobe`.
pub fn insmod_command(ko: &Path, current_kprobe: u64) -> Command {
    let mut command = Command::new("insmod");
    command
        .arg(ko)
        .arg(format!("current_kprobe_addr={current_kprobe:#x}"));
    command
}

/// Loads the module `ko`.
pub fn insert(ko: &Path, current_kprobe: u64) -> Result<(), ModuleError> {
    run(insmod_command(ko, current_kprobe))
}

/// Unloads the module (it refuses while a BPF program still holds its kfuncs).
pub fn remove() -> Result<(), ModuleError> {
    let mut command = Command::new("rmmod");
    command.arg(MODULE_NAME);
    run(command)
}

/// The `make` command that builds the module in `dir` (holding [`SOURCES`]) against the kernel
/// build directory `kdir`; the module ends up in [`built_module`]`(dir)`.
pub fn make_command(dir: &Path, kdir: &Path) -> Command {
    let mut command = Command::new("make");
    command
        .arg("-C")
        .arg(dir)
        .arg(format!("KDIR={}", kdir.display()));
    command
}

/// Where [`make_command`] puts the module.
pub fn built_module(dir: &Path) -> PathBuf {
    dir.join("build").join(format!("{MODULE_NAME}.ko"))
}

/// Writes [`SOURCES`] into `dir` (leaving files that already hold them alone, so make does
/// not rebuild), builds the module against `kdir` and returns it.
pub fn build(dir: &Path, kdir: &Path) -> Result<PathBuf, ModuleError> {
    write_sources(dir)?;
    run(make_command(dir, kdir))?;
    Ok(built_module(dir))
}

fn write_sources(dir: &Path) -> Result<(), ModuleError> {
    for (relative, text) in SOURCES {
        let path = dir.join(relative);
        if fs::read(&path).is_ok_and(|old| old == text.as_bytes()) {
            continue;
        }
        let io_error = |action| {
            let path = path.clone();
            move |source| ModuleError::Io {
                action,
                path,
                source,
            }
        };
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_error("creating the directory of"))?;
        }
        fs::write(&path, text).map_err(io_error("writing"))?;
    }
    Ok(())
}

/// `command` as a shell line, for messages.
pub fn render(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

fn run(mut command: Command) -> Result<(), ModuleError> {
    let line = render(&command);
    let output: Output = command.output().map_err(|source| ModuleError::Command {
        command: line.clone(),
        status: source.to_string(),
        stderr: String::new(),
    })?;
    if output.status.success() {
        return Ok(());
    }
    Err(ModuleError::Command {
        command: line,
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(command: &Command) -> Vec<String> {
        command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn insmod_passes_the_address_in_hex() {
        let command = insmod_command(Path::new("/x/kernelx.ko"), 0x2_0f40);
        assert_eq!(command.get_program(), "insmod");
        assert_eq!(
            args(&command),
            ["/x/kernelx.ko", "current_kprobe_addr=0x20f40"]
        );
    }

    #[test]
    fn current_kprobe_must_be_in_vmlinux_once() {
        let kallsyms = Kallsyms::parse(
            "0000000000020f40 D current_kprobe\nffffffff81000000 T _stext\n\
             ffffffffc0000000 t current_kprobe\t[other]\n",
        )
        .unwrap();
        assert_eq!(current_kprobe_addr(&kallsyms).unwrap(), 0x20f40);
        let none = Kallsyms::parse("ffffffff81000000 T _stext\n").unwrap();
        let err = current_kprobe_addr(&none).unwrap_err().to_string();
        assert!(err.contains("lists 0 `current_kprobe`"), "{err}");
    }

    #[test]
    fn sources_are_written_once_and_make_builds_there() {
        let temp = tempfile::tempdir().unwrap();
        write_sources(temp.path()).unwrap();
        let c = temp.path().join("kernelx.c");
        assert_eq!(fs::read_to_string(&c).unwrap(), SOURCES[2].1);
        assert!(temp.path().join("include/kernelx_abi.h").is_file());
        let mtime = fs::metadata(&c).unwrap().modified().unwrap();
        write_sources(temp.path()).unwrap();
        assert_eq!(fs::metadata(&c).unwrap().modified().unwrap(), mtime);
        let make = make_command(temp.path(), Path::new("/lib/modules/r/build"));
        assert_eq!(
            args(&make),
            [
                "-C".to_owned(),
                temp.path().display().to_string(),
                "KDIR=/lib/modules/r/build".to_owned()
            ]
        );
        assert_eq!(
            built_module(temp.path()),
            temp.path().join("build/kernelx.ko")
        );
    }

    #[test]
    fn a_failing_command_is_named_with_its_error_output() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo boom >&2; exit 3"]);
        let err = run(command).unwrap_err().to_string();
        assert!(err.contains("sh -c") && err.contains("boom"), "{err}");
    }
}
