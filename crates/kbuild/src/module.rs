//! External modules: a module's own directory of sources (with its `Kbuild` or `Makefile`),
//! built against a kernel build directory (`KDIR`: `/lib/modules/<release>/build`, or a
//! `linux-headers-<release>` directory), analysed like the kernel's tree.
//!
//! The module's directory is the tree: its sources are scanned, edited in an overlay and named
//! relative to it (`kx_target.c`). kbuild's compile commands run in KDIR and name module files
//! by absolute path (`make -C KDIR M=<dir>`), which [`CompileCommand::tree`] records, so the
//! overlay rewrite, the preprocessed-text filter and the object cache work unchanged.
//!
//! # Where the commands come from
//!
//! One `make -C KDIR M=<copy> -n -k modules` (memoised like the kernel's `make -n`, see
//! [`fingerprint`]) prints the compile recipe of every object the module's Kbuild builds
//! under KDIR's `.config`. That answers two questions at once, without a prior build: which
//! sources are the module's units (a `Kbuild` may pick objects by `CONFIG_` options, and a
//! source may not be built at all), and kbuild's exact command for each.
//!
//! `<copy>` is a scratch directory of symlinks to the module's sources and makefiles, without
//! its build outputs; the paths in the commands are then moved back to the module's directory.
//! In the module's own directory, objects built in place would be up to date and print nothing,
//! and with a `modules.order` there, make would go on to modpost and `modfinal`, whose `+`
//! recipes run even under `-n` (they would link the `.ko`). The `.<obj>.o.cmd` files a module
//! build saves were the other candidate: they need that build to exist, for this KDIR, in a
//! known place, and do not say which sources are units. make runs with KDIR and the copy
//! mounted read-only (as for a kernel tree), `TMPOUT` in scratch.
//!
//! # Which build
//!
//! The module's name is kbuild's `KBUILD_MODNAME` of its objects (one module per directory).
//! When the built `.ko` is known (given, or `<dir>/<name>.ko` as `make M=<dir>` leaves it), its
//! `.modinfo` must name this module and its `vermagic` KDIR's release: a module built for
//! another kernel would be analysed against the wrong headers.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};

use object::{Object as _, ObjectSection as _};

use crate::cache::{Cache, KeyHasher, Stamp};
use crate::compile::{
    CompileCommand, StoredCommand, hash_build_env, object_for, parse_dry_run, run_dry_run,
};
use crate::index::{is_unit, walk};
use crate::{BuiltUnits, CommandLine, KbuildError, Toolchain};

/// An external module's directory, opened against a kernel build directory.
#[derive(Debug, Clone)]
pub struct ModuleTree {
    dir: PathBuf,
    kernel_dir: PathBuf,
    release: String,
    name: String,
    commands: Vec<CompileCommand>,
    units: BuiltUnits,
    built: Option<BuiltModule>,
}

/// A built module file (`.ko`), as its `.modinfo` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltModule {
    /// The `.ko` file.
    pub path: PathBuf,
    /// Its `name=` (kbuild's `KBUILD_MODNAME`).
    pub name: String,
    /// Its `vermagic=`, e.g. `6.12.117+deb12-cloud-amd64 SMP preempt mod_unload modversions `.
    pub vermagic: String,
}

impl BuiltModule {
    /// Reads the `.modinfo` of a `.ko`.
    ///
    /// # Errors
    ///
    /// [`KbuildError::Read`] when it cannot be read, [`KbuildError::ModuleMismatch`] when it is
    /// not an ELF module with `name` and `vermagic`.
    pub fn read(path: &Path) -> Result<BuiltModule, KbuildError> {
        let read_error = |source| KbuildError::Read {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(read_error)?;
        // SAFETY: a read-only private map of an input KernelX never writes.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(read_error)?;
        let not_a_module = |why: String| KbuildError::ModuleMismatch {
            ko: path.to_owned(),
            reason: format!("{why}; pass the .ko file the module's build produced"),
        };
        let elf = object::File::parse(&*map).map_err(|e| not_a_module(format!("not ELF ({e})")))?;
        let modinfo = elf
            .section_by_name(".modinfo")
            .and_then(|s| s.data().ok())
            .ok_or_else(|| not_a_module("no .modinfo section".to_owned()))?;
        let field = |key: &str| {
            modinfo
                .split(|&b| b == 0)
                .find_map(|entry| entry.strip_prefix(format!("{key}=").as_bytes()))
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        match (field("name"), field("vermagic")) {
            (Some(name), Some(vermagic)) => Ok(BuiltModule {
                path: path.to_owned(),
                name,
                vermagic,
            }),
            _ => Err(not_a_module(
                ".modinfo has no name= or vermagic= (not a module built by kbuild)".to_owned(),
            )),
        }
    }

    /// The kernel release it was built for: the first word of `vermagic`.
    pub fn release(&self) -> &str {
        self.vermagic.split_whitespace().next().unwrap_or("")
    }
}

impl ModuleTree {
    /// Opens the module in `dir` against the kernel build directory `kernel_dir`, and asks
    /// kbuild for the commands of its objects (see the module documentation). `built` is the
    /// module's `.ko`; without it, `<dir>/<name>.ko` is used when it exists.
    ///
    /// # Errors
    ///
    /// [`KbuildError::NotAModule`] (no `Kbuild`/`Makefile`, no objects, several modules),
    /// [`KbuildError::NotAKernelBuildDir`], [`KbuildError::ModuleMismatch`] (the `.ko` is
    /// another module, or built for another release), and the errors of running make.
    pub fn open(
        dir: &Path,
        kernel_dir: &Path,
        built: Option<&Path>,
        toolchain: &Toolchain,
        cache: &Cache,
    ) -> Result<ModuleTree, KbuildError> {
        let not_a_module = |reason: &str| KbuildError::NotAModule {
            path: dir.to_owned(),
            reason: reason.to_owned(),
        };
        let dir = dir
            .canonicalize()
            .map_err(|_| not_a_module("no such directory"))?;
        if !dir.join("Kbuild").is_file() && !dir.join("Makefile").is_file() {
            return Err(not_a_module(
                "it has neither a Kbuild nor a Makefile; pass the directory kbuild builds the \
                 module in (the M= of `make -C <kernel build dir> M=<dir>`)",
            ));
        }
        let (kernel_dir, release) = open_kernel_dir(kernel_dir)?;
        let built = built.map(BuiltModule::read).transpose()?;
        if let Some(ko) = &built {
            check_release(ko, &kernel_dir, &release)?;
        }

        let commands = module_commands(&dir, &kernel_dir, &release, toolchain, cache)?;
        let names: BTreeSet<String> = commands.iter().filter_map(module_name).collect();
        let name = match names.len() {
            1 => names.into_iter().next().expect("one name"),
            0 => {
                return Err(not_a_module(
                    "kbuild's commands for it define no KBUILD_MODNAME; is it a module (obj-m)?",
                ));
            }
            _ => {
                let list: Vec<String> = names.into_iter().collect();
                return Err(not_a_module(&format!(
                    "it builds several modules ({}); KernelX analyses one module per directory",
                    list.join(", ")
                )));
            }
        };
        let built = match built {
            Some(ko) => Some(ko),
            None => Some(dir.join(format!("{name}.ko")))
                .filter(|p| p.is_file())
                .map(|p| BuiltModule::read(&p))
                .transpose()?,
        };
        if let Some(ko) = &built {
            if ko.name != name {
                return Err(KbuildError::ModuleMismatch {
                    ko: ko.path.clone(),
                    reason: format!(
                        "it is module {}, but {} builds module {name}; pass {name}.ko",
                        ko.name,
                        dir.display()
                    ),
                });
            }
            check_release(ko, &kernel_dir, &release)?;
        }
        let units = BuiltUnits::Listed {
            origin: format!(
                "the objects kbuild builds for module {name} in {} against {}",
                dir.display(),
                kernel_dir.display()
            ),
            units: commands.iter().map(|c| c.source.clone()).collect(),
        };
        Ok(ModuleTree {
            dir,
            kernel_dir,
            release,
            name,
            commands,
            units,
            built,
        })
    }

    /// The module's directory (canonical): the top of its sources.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The kernel build directory (canonical).
    pub fn kernel_dir(&self) -> &Path {
        &self.kernel_dir
    }

    /// The kernel release KDIR builds for (its `include/config/kernel.release`).
    pub fn release(&self) -> &str {
        &self.release
    }

    /// The module's name (`KBUILD_MODNAME`), as `lsmod` and `/sys/module` show it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The built `.ko`, when known.
    pub fn built_module(&self) -> Option<&BuiltModule> {
        self.built.as_ref()
    }

    /// The module's translation units, relative to its directory.
    pub fn units(&self) -> &BuiltUnits {
        &self.units
    }

    /// kbuild's commands for `sources` (units of the module), in order.
    pub(crate) fn compile_commands(
        &self,
        sources: &[PathBuf],
    ) -> Result<Vec<CompileCommand>, KbuildError> {
        sources
            .iter()
            .map(|source| {
                self.commands
                    .iter()
                    .find(|c| c.source == *source)
                    .cloned()
                    .ok_or_else(|| KbuildError::NotBuilt {
                        file: source.clone(),
                        origin: self.units.origin(),
                    })
            })
            .collect()
    }
}

/// The canonical KDIR and its release; it must be configured and prepared.
fn open_kernel_dir(kernel_dir: &Path) -> Result<(PathBuf, String), KbuildError> {
    let not_a_build_dir = |reason: String| KbuildError::NotAKernelBuildDir {
        path: kernel_dir.to_owned(),
        reason,
    };
    let canonical = kernel_dir.canonicalize().map_err(|_| {
        not_a_build_dir(
            "no such directory; install the kernel's headers (Debian: linux-headers-<release>)"
                .to_owned(),
        )
    })?;
    let release_file = canonical.join("include/config/kernel.release");
    if !canonical.join(".config").is_file() || !release_file.is_file() {
        return Err(not_a_build_dir(
            "it has no .config or include/config/kernel.release; pass a prepared kernel build \
             directory such as /lib/modules/<release>/build or /usr/src/linux-headers-<release>"
                .to_owned(),
        ));
    }
    let release = std::fs::read_to_string(&release_file)
        .map_err(|source| KbuildError::Read {
            path: release_file,
            source,
        })?
        .trim()
        .to_owned();
    Ok((canonical, release))
}

fn check_release(ko: &BuiltModule, kernel_dir: &Path, release: &str) -> Result<(), KbuildError> {
    if ko.release() == release {
        return Ok(());
    }
    Err(KbuildError::ModuleMismatch {
        ko: ko.path.clone(),
        reason: format!(
            "it was built for kernel {} (vermagic {:?}), but {} is the build directory of {release}; \
             rebuild the module against it, or pass the kernel build directory of {}",
            ko.release(),
            ko.vermagic.trim(),
            kernel_dir.display(),
            ko.release()
        ),
    })
}

/// `KBUILD_MODNAME` of a module object's command (`-DKBUILD_MODNAME="kx_target"`).
fn module_name(command: &CompileCommand) -> Option<String> {
    command.command.args.iter().find_map(|arg| {
        let value = arg.to_str()?.strip_prefix("-DKBUILD_MODNAME=")?;
        Some(value.trim_matches('"').to_owned())
    })
}

const MEMO_KIND: &str = "kbuild-module-commands";

/// The compile commands of every object kbuild builds for the module, from the memo or one
/// `make -n`.
fn module_commands(
    dir: &Path,
    kernel_dir: &Path,
    release: &str,
    toolchain: &Toolchain,
    cache: &Cache,
) -> Result<Vec<CompileCommand>, KbuildError> {
    let mut files = Vec::new();
    walk(dir, "", &mut files)?;
    let inputs: Vec<PathBuf> = files
        .iter()
        .map(PathBuf::from)
        .filter(|f| !is_build_output(f))
        .collect();
    let key = fingerprint(dir, kernel_dir, release, toolchain, &inputs);
    if let Some(stored) = cache.read_memo::<Vec<StoredCommand>>(MEMO_KIND, &key) {
        return Ok(stored
            .into_iter()
            .map(|s| s.into_command(kernel_dir, dir))
            .collect());
    }
    let scratch = cache.scratch()?;
    let copy = scratch.path().join("module");
    mirror(dir, &copy, &inputs)?;
    let make = dry_run_command(&copy, kernel_dir, toolchain, scratch.path());
    let (make, output) = run_dry_run(make, &[kernel_dir, &copy], kernel_dir)?;
    let sources: Vec<&PathBuf> = inputs.iter().filter(|f| is_unit(f)).collect();
    let in_copy: Vec<PathBuf> = sources.iter().map(|s| copy.join(s)).collect();
    let mut parsed = parse_dry_run(&output.stdout, kernel_dir, &in_copy);
    let mut commands = Vec::new();
    for (source, in_copy) in sources.iter().zip(&in_copy) {
        let Some(found) = parsed.remove(in_copy) else {
            continue;
        };
        commands.push(CompileCommand {
            tree: dir.to_owned(),
            source: (*source).clone(),
            object: object_for(source),
            command: relocate(&found.command, &copy, dir),
            post: found
                .post
                .iter()
                .map(|step| with_srcarch(&relocate(step, &copy, dir), toolchain))
                .collect(),
        });
    }
    if commands.is_empty() {
        return Err(KbuildError::NoCompileCommand {
            object: dir.join("*.o"),
            command: make,
            stderr_tail: output.stderr_tail,
        });
    }
    let stored: Vec<StoredCommand> = commands.iter().map(StoredCommand::from).collect();
    cache.write_memo(MEMO_KIND, &key, &stored)?;
    Ok(commands)
}

/// What a module build leaves next to the sources (objects, the `.ko`, modpost's files); walk
/// already skips kbuild's hidden `.cmd` files.
fn is_build_output(path: &Path) -> bool {
    let name = path.to_string_lossy();
    name.ends_with(".mod.c")
        || matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("o" | "ko" | "mod" | "a" | "order" | "symvers")
        )
}

/// Symlinks to `files` (relative to `dir`) under `copy`: the module's sources and makefiles
/// without any of its build outputs.
fn mirror(dir: &Path, copy: &Path, files: &[PathBuf]) -> Result<(), KbuildError> {
    for file in files {
        let link = copy.join(file);
        let parent = link.parent().expect("files have a directory");
        std::fs::create_dir_all(parent).map_err(|e| KbuildError::write(parent, e))?;
        std::os::unix::fs::symlink(dir.join(file), &link)
            .map_err(|e| KbuildError::write(&link, e))?;
    }
    Ok(())
}

/// `command` with every mention of the directory `from` (in paths, `-I`, `-Wp,-MMD,`) naming
/// `to` instead.
fn relocate(command: &CommandLine, from: &Path, to: &Path) -> CommandLine {
    let (from, to) = (from.to_string_lossy(), to.to_string_lossy());
    let mut relocated = CommandLine::new(
        command.program.clone(),
        command
            .args
            .iter()
            .map(|a| OsString::from(a.to_string_lossy().replace(from.as_ref(), to.as_ref())))
            .collect(),
    );
    relocated.dir = command.dir.clone();
    relocated
}

/// `step` run with `SRCARCH` set, as kbuild exports it to its recipes: Debian's headers ship
/// `tools/objtool/objtool` as a wrapper that picks the real binary by `SRCARCH`.
fn with_srcarch(step: &CommandLine, toolchain: &Toolchain) -> CommandLine {
    let mut args = vec![
        OsString::from(format!("SRCARCH={}", toolchain.arch)),
        step.program.clone(),
    ];
    args.extend(step.args.iter().cloned());
    let mut wrapped = CommandLine::new("env", args);
    wrapped.dir = step.dir.clone();
    wrapped
}

/// `make -C <kernel_dir> M=<dir> ... -n -k modules`, with kbuild's probes in `scratch`.
fn dry_run_command(
    dir: &Path,
    kernel_dir: &Path,
    toolchain: &Toolchain,
    scratch: &Path,
) -> CommandLine {
    let mut module = OsString::from("M=");
    module.push(dir);
    let mut tmpout = OsString::from("TMPOUT=");
    tmpout.push(scratch.join("tmpout"));
    tmpout.push("/");
    let args: Vec<OsString> = vec![
        "-C".into(),
        kernel_dir.into(),
        module,
        format!("ARCH={}", toolchain.arch).into(),
        format!("CROSS_COMPILE={}", toolchain.cross_compile).into(),
        format!("CC={}", toolchain.cc).into(),
        "-j1".into(),
        tmpout,
        "-n".into(),
        // modpost's stage fails without the objects; the compile recipes come before it.
        "-k".into(),
        "modules".into(),
    ];
    CommandLine::new("make", args)
}

/// A memo key covering what decides the module's commands: both directories, the toolchain,
/// KDIR's configuration and makefile, the module's Kbuild/Makefile, its list of sources and
/// the environment kbuild reads flags from.
fn fingerprint(
    dir: &Path,
    kernel_dir: &Path,
    release: &str,
    toolchain: &Toolchain,
    sources: &[PathBuf],
) -> String {
    let mut h = KeyHasher::new(MEMO_KIND);
    h.str(dir)
        .str(kernel_dir)
        .str(release)
        .str(&toolchain.arch)
        .str(&toolchain.cross_compile)
        .str(&toolchain.cc);
    let files = [
        kernel_dir.join(".config"),
        kernel_dir.join("include/config/auto.conf"),
        kernel_dir.join("Makefile"),
        dir.join("Kbuild"),
        dir.join("Makefile"),
    ];
    for file in files.iter().chain(sources.iter()) {
        h.str(file);
        match Stamp::of(&dir.join(file)) {
            Some(stamp) => h.str(format!("{}:{}", stamp.size, stamp.mtime_ns)),
            None => h.str("-"),
        };
    }
    hash_build_env(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_without_kbuild_or_makefile_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.c"), "int x;\n").unwrap();
        let cache = tempfile::tempdir().unwrap();
        let err = ModuleTree::open(
            dir.path(),
            Path::new("/nonexistent"),
            None,
            &Toolchain::debian_gcc12(),
            &Cache::new(cache.path()),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("neither a Kbuild nor a Makefile"), "{err}");
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
    }

    #[test]
    fn a_kernel_dir_must_be_prepared() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Kbuild"), "obj-m += m.o\n").unwrap();
        let kdir = tempfile::tempdir().unwrap();
        std::fs::write(kdir.path().join("Makefile"), "include /x/Makefile\n").unwrap();
        let cache = tempfile::tempdir().unwrap();
        let err = ModuleTree::open(
            dir.path(),
            kdir.path(),
            None,
            &Toolchain::debian_gcc12(),
            &Cache::new(cache.path()),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("include/config/kernel.release"), "{err}");
        assert!(err.contains(&kdir.path().display().to_string()), "{err}");
    }

    #[test]
    fn the_module_name_is_kbuilds() {
        let command = CompileCommand {
            tree: "/m".into(),
            source: "a.c".into(),
            object: "a.o".into(),
            command: CommandLine::new(
                "gcc",
                [
                    "-DKBUILD_BASENAME=\"a\"",
                    "-DKBUILD_MODNAME=\"kx_target\"",
                    "-c",
                ]
                .iter()
                .map(OsString::from)
                .collect(),
            ),
            post: Vec::new(),
        };
        assert_eq!(module_name(&command).as_deref(), Some("kx_target"));
    }

    #[test]
    fn the_release_is_the_first_word_of_vermagic() {
        let ko = BuiltModule {
            path: "/m/x.ko".into(),
            name: "x".into(),
            vermagic: "6.1.0-28-amd64 SMP preempt mod_unload modversions ".into(),
        };
        assert_eq!(ko.release(), "6.1.0-28-amd64");
        let err = check_release(&ko, Path::new("/k"), "6.12.117+deb12-cloud-amd64")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/m/x.ko: it was built for kernel 6.1.0-28-amd64"),
            "{err}"
        );
        assert!(
            err.contains("/k is the build directory of 6.12.117"),
            "{err}"
        );
        assert!(check_release(&ko, Path::new("/k"), "6.1.0-28-amd64").is_ok());
    }
}
