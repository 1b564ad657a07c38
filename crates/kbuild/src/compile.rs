//! kbuild's own compile command for an object, without building anything in the tree.
//!
//! `make -n <object>...` prints the recipe kbuild would run for each object. One make run parses
//! the Makefiles once for all the objects asked about; it costs about 1.5 s on 2 cores, which
//! is why results are memoised in the cache, keyed by everything that shapes them (see
//! `fingerprint`). In a tree that is already built, an up-to-date object prints nothing (its
//! recipe is kbuild's `if_changed`, which found the command unchanged); its command is then the
//! one kbuild saved in `<dir>/.<name>.o.cmd`, equal to the current one by that same check.
//!
//! # Keeping `make -n` from writing
//!
//! `make -n` still executes recursive `$(MAKE)` lines, `$(shell ...)` calls, and the recipes
//! that remake included makefiles. Two of those write into the tree:
//!
//! * the compiler probes of `scripts/Makefile.compiler` (`cc-option` and friends) create and
//!   delete `.tmp_<pid>` in the current directory: `TMPOUT=` on the command line moves them to a
//!   scratch directory, and `-j1` keeps two probes from sharing it;
//! * `include/config/auto.conf` is an included makefile: when `.config`, a Kconfig file, or the
//!   compiler, `rustc`, `ar` ... recorded in `include/config/auto.conf.cmd` differ from the
//!   tree's preparation, make runs `syncconfig`, which rewrites `include/config/` and
//!   `include/generated/` (verified on the lab tree by touching `.config` in an overlay).
//!
//! So make runs in a private mount namespace in which the tree is a read-only bind mount
//! (`unshare --mount`, with `--map-root-user` when not root). Any write fails there, and such a
//! failure is reported as [`KbuildError::TreeOutOfDate`]. Where namespaces are unavailable,
//! the common cause (`.config` newer than `include/config/auto.conf`) is refused up front
//! and make runs unguarded.

use std::collections::HashMap;
use std::ffi::OsString;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::cache::{Cache, KeyHasher, Stamp};
use crate::command::{CommandLine, Toolchain, make_args};
use crate::{KbuildError, KernelTree, shell};

/// kbuild's compile command for one object of a tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CompileCommand {
    /// The top of the source tree that `source` and `object` are relative to: the kernel
    /// tree, or an external module's directory.
    pub tree: PathBuf,
    /// The source, relative to the tree: `fs/pipe.c`.
    pub source: PathBuf,
    /// The object, relative to the tree: `fs/pipe.o`.
    pub object: PathBuf,
    /// The compiler invocation exactly as kbuild runs it: in the kernel tree's top directory,
    /// or for a module in the kernel build directory (then its paths into the module are
    /// absolute).
    pub command: CommandLine,
    /// Steps kbuild runs on the fresh object before it is final (`objtool` when the
    /// configuration checks each object rather than vmlinux as a whole); usually empty.
    pub post: Vec<CommandLine>,
}

/// The object kbuild builds from a source: `fs/pipe.c` → `fs/pipe.o`.
pub fn object_for(source: &Path) -> PathBuf {
    source.with_extension("o")
}

/// The `make -n` command that prints the compile commands of `sources`' objects.
///
/// `scratch` receives kbuild's compiler probes (`TMPOUT`); see the module documentation. The
/// command is not yet guarded against writes (that is `read_only_dirs`).
pub fn dry_run_command(
    tree: &KernelTree,
    toolchain: &Toolchain,
    scratch: &Path,
    sources: &[PathBuf],
) -> CommandLine {
    let mut args = make_args(tree, toolchain, NonZeroUsize::MIN, &[]);
    if let Some(release) = tree.kernel_release() {
        args.push(format!("KERNELRELEASE={release}").into());
    }
    let mut tmpout = OsString::from("TMPOUT=");
    tmpout.push(scratch.join("tmpout"));
    tmpout.push("/");
    args.push(tmpout);
    args.push("-n".into());
    args.push("-k".into());
    args.extend(sources.iter().map(|s| object_for(s).into_os_string()));
    CommandLine::new("make", args)
}

/// Finds the compile command of each of `sources`' objects in `make -n` output. Sources whose
/// command is not there are left out.
pub fn parse_dry_run(
    output: &str,
    tree: &Path,
    sources: &[PathBuf],
) -> HashMap<PathBuf, CompileCommand> {
    let wanted: HashMap<String, &PathBuf> = sources
        .iter()
        .map(|s| (object_for(s).to_string_lossy().into_owned(), s))
        .collect();
    let mut found = HashMap::new();
    let joined = output.replace("\\\n", " ");
    for line in joined.lines() {
        if !line.contains("-o ") {
            continue;
        }
        for (object, &source) in &wanted {
            if found.contains_key(source) || !line.contains(object.as_str()) {
                continue;
            }
            if let Some(command) = parse_recipe(line, tree, source, Path::new(object)) {
                found.insert(source.clone(), command);
            }
        }
    }
    found
}

/// The compile command of `object` in a shell line of kbuild's (a `make -n` line, or the
/// `savedcmd_` value of a `.cmd` file): the simple command that has `-c`, `-o <object>` and
/// the source, followed by the `objtool` runs on the object.
fn parse_recipe(line: &str, tree: &Path, source: &Path, object: &Path) -> Option<CompileCommand> {
    let commands = shell::split_commands(line).ok()?;
    let source_str = source.to_str()?;
    let object_str = object.to_str()?;
    let n = commands.iter().position(|words| {
        words.windows(2).any(|w| w[0] == "-o" && w[1] == object_str)
            && words.iter().any(|w| w == "-c")
            && words.iter().any(|w| w == source_str)
    })?;
    let post = commands[n + 1..]
        .iter()
        .filter(|w| {
            Path::new(&w[0]).file_name() == Some("objtool".as_ref())
                && w.iter().any(|a| a == object_str)
        })
        .map(|w| to_command_line(w, tree))
        .collect();
    Some(CompileCommand {
        tree: tree.to_owned(),
        source: source.to_owned(),
        object: object.to_owned(),
        command: to_command_line(&commands[n], tree),
        post,
    })
}

/// The command kbuild saved for a built object, from `<dir>/.<name>.o.cmd`.
pub(crate) fn saved_command(tree: &Path, source: &Path) -> Option<CompileCommand> {
    let object = object_for(source);
    let name = object.file_name()?.to_str()?;
    let cmd_file = tree
        .join(object.parent().unwrap_or(Path::new("")))
        .join(format!(".{name}.cmd"));
    let text = std::fs::read_to_string(cmd_file).ok()?;
    let object_str = object.to_str()?;
    let value = text.lines().find_map(|line| {
        ["savedcmd_", "cmd_"].iter().find_map(|prefix| {
            line.strip_prefix(prefix)?
                .strip_prefix(object_str)?
                .trim_start()
                .strip_prefix(":=")
        })
    })?;
    parse_recipe(value, tree, source, &object)
}

fn to_command_line(words: &[String], tree: &Path) -> CommandLine {
    CommandLine::new(&words[0], words[1..].iter().map(OsString::from).collect()).in_dir(tree)
}

/// The compile commands of `sources` (relative `.c`/`.S` paths) in `tree`, in order: from the
/// cache's memos where they are still valid, else from one `make -n` for all the others.
///
/// # Errors
///
/// [`KbuildError::NoCompileCommand`] for a source kbuild has no rule for, and the errors of
/// running make.
pub fn compile_commands(
    tree: &KernelTree,
    toolchain: &Toolchain,
    sources: &[PathBuf],
    cache: &Cache,
) -> Result<Vec<CompileCommand>, KbuildError> {
    let mut known: HashMap<PathBuf, CompileCommand> = HashMap::new();
    let mut keys = HashMap::new();
    let mut missing = Vec::new();
    for source in sources {
        let key = fingerprint(tree, toolchain, source);
        match cache.read_memo::<StoredCommand>(MEMO_KIND, &key) {
            Some(stored) if stored.source == *source => {
                known.insert(
                    source.clone(),
                    stored.into_command(tree.path(), tree.path()),
                );
            }
            _ => missing.push(source.clone()),
        }
        keys.insert(source.clone(), key);
    }
    if !missing.is_empty() {
        let scratch = cache.scratch()?;
        let make = dry_run_command(tree, toolchain, scratch.path(), &missing);
        let (make, output) = run_dry_run(make, &[tree.path()], tree.path())?;
        let mut parsed = parse_dry_run(&output.stdout, tree.path(), &missing);
        for source in &missing {
            let Some(found) = parsed
                .remove(source)
                .or_else(|| saved_command(tree.path(), source))
            else {
                return Err(KbuildError::NoCompileCommand {
                    object: object_for(source),
                    command: make,
                    stderr_tail: output.stderr_tail,
                });
            };
            cache.write_memo(MEMO_KIND, &keys[source], &StoredCommand::from(&found))?;
            known.insert(source.clone(), found);
        }
    }
    Ok(sources
        .iter()
        .map(|s| known.remove(s).expect("every source was found or reported"))
        .collect())
}

const MEMO_KIND: &str = "kbuild-command";

/// What a `make -n` printed.
pub(crate) struct DryRun {
    pub(crate) stdout: String,
    /// The last lines of its standard error.
    pub(crate) stderr_tail: String,
}

/// Runs `make` (a `make -n`) with `read_only` mounted read-only (see the module documentation),
/// or, without namespaces, after checking that `config_root`'s configuration is fresh. Returns
/// the command as run and its output.
pub(crate) fn run_dry_run(
    make: CommandLine,
    read_only: &[&Path],
    config_root: &Path,
) -> Result<(CommandLine, DryRun), KbuildError> {
    let make = match read_only_dirs(read_only, &make) {
        Some(guarded) => guarded,
        None => {
            check_config_fresh(config_root, &make)?;
            make
        }
    };
    let mut command = make.to_command();
    // A make above us (cargo under make, CI) must not hand its jobserver or flags down.
    for var in ["MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"] {
        command.env_remove(var);
    }
    let output = command.output().map_err(|source| KbuildError::Spawn {
        command: make.clone(),
        source,
    })?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let stderr_tail = lines[lines.len().saturating_sub(10)..].join("\n");
    if stderr.contains("Read-only file system") {
        return Err(KbuildError::TreeOutOfDate {
            tree: config_root.to_owned(),
            command: make,
            stderr_tail,
        });
    }
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    Ok((
        make,
        DryRun {
            stdout,
            stderr_tail,
        },
    ))
}

/// `make` wrapped to run with `dirs` mounted read-only in a private mount namespace, or `None`
/// when this process cannot create one (no `unshare`, no user namespaces).
pub fn read_only_dirs(dirs: &[&Path], make: &CommandLine) -> Option<CommandLine> {
    // A bind mount of the canonical path covers every way make names files in the tree.
    let dirs: Vec<PathBuf> = dirs
        .iter()
        .map(|d| d.canonicalize())
        .collect::<Result<_, _>>()
        .ok()?;
    Some(guard_command(namespace_prefix()?, &dirs, make))
}

/// `make` under `unshare <prefix> sh -c <mount dirs read-only, exec the rest>`.
fn guard_command(prefix: &[&str], dirs: &[PathBuf], make: &CommandLine) -> CommandLine {
    let mut args: Vec<OsString> = prefix.iter().map(OsString::from).collect();
    args.extend([
        "sh".into(),
        "-c".into(),
        GUARD_SCRIPT.into(),
        "kernelx-read-only".into(),
    ]);
    args.extend(dirs.iter().map(OsString::from));
    args.push("--".into());
    args.push(make.program.clone());
    args.extend(make.args.iter().cloned());
    let mut guarded = CommandLine::new("unshare", args);
    guarded.dir = make.dir.clone();
    guarded
}

/// Mounts each argument before `--` read-only over itself, then runs the arguments after it.
/// The working directory is entered again by name: one inherited from before the mount would
/// still be the writable one.
const GUARD_SCRIPT: &str = r#"while [ "$1" != -- ]; do mount --bind -o ro -- "$1" "$1" || exit 97; shift; done; shift; cd -- "$(pwd)" || exit 97; exec "$@""#;

/// The `unshare` options that work here, probed once per process.
fn namespace_prefix() -> Option<&'static [&'static str]> {
    static PREFIX: OnceLock<Option<&'static [&'static str]>> = OnceLock::new();
    *PREFIX.get_or_init(|| {
        let candidates: [&'static [&'static str]; 2] =
            [&["--mount"], &["--mount", "--map-root-user"]];
        let probe_dir = std::env::temp_dir();
        candidates.into_iter().find(|prefix| {
            std::process::Command::new("unshare")
                .args(*prefix)
                .args(["sh", "-c", GUARD_SCRIPT, "kernelx-probe"])
                .arg(&probe_dir)
                .args(["--", "true"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
    })
}

/// Without a read-only mount: refuses a tree whose `.config` is newer than the configuration
/// kbuild derived from it, since `make -n` would rewrite that.
fn check_config_fresh(root: &Path, make: &CommandLine) -> Result<(), KbuildError> {
    let modified = |p: &str| {
        std::fs::metadata(root.join(p))
            .and_then(|m| m.modified())
            .ok()
    };
    match (modified(".config"), modified("include/config/auto.conf")) {
        (Some(config), Some(auto)) if auto >= config => Ok(()),
        _ => Err(KbuildError::TreeOutOfDate {
            tree: root.to_owned(),
            command: make.clone(),
            stderr_tail: "include/config/auto.conf is missing or older than .config".to_owned(),
        }),
    }
}

/// A memo key covering what decides an object's compile command: the tree and toolchain,
/// the configuration, kbuild's own makefiles, the Makefile/Kbuild of every directory from the
/// top down to the source's (their `subdir-ccflags` accumulate), and the environment
/// variables kbuild reads flags from.
fn fingerprint(tree: &KernelTree, toolchain: &Toolchain, source: &Path) -> String {
    let root = tree.path();
    let mut h = KeyHasher::new(MEMO_KIND);
    h.str(root)
        .str(&toolchain.arch)
        .str(&toolchain.cross_compile)
        .str(&toolchain.cc)
        .str(tree.kernel_release().unwrap_or(""))
        .str(source);
    let mut files: Vec<PathBuf> = [
        ".config",
        "include/config/auto.conf",
        "Makefile",
        "scripts/Makefile.build",
        "scripts/Makefile.lib",
        "scripts/Makefile.compiler",
        "scripts/Kbuild.include",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    files.push(Path::new("arch").join(&toolchain.arch).join("Makefile"));
    let mut dir = source.parent();
    while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
        files.push(d.join("Makefile"));
        files.push(d.join("Kbuild"));
        dir = d.parent();
    }
    for file in files {
        h.str(&file);
        match Stamp::of(&root.join(&file)) {
            Some(stamp) => h.str(format!("{}:{}", stamp.size, stamp.mtime_ns)),
            None => h.str("-"),
        };
    }
    hash_build_env(&mut h);
    h.finish()
}

/// Adds the environment variables kbuild reads flags from to a memo key.
pub(crate) fn hash_build_env(h: &mut KeyHasher) {
    for var in [
        "KCFLAGS",
        "KCPPFLAGS",
        "KAFLAGS",
        "KBUILD_EXTRA_WARN",
        "W",
        "LLVM",
        "C",
    ] {
        h.str(var).str(std::env::var_os(var).unwrap_or_default());
    }
}

/// The cache's form of a [`CompileCommand`]: arguments as strings (kbuild's are UTF-8), the
/// tree left out (it is part of the key).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredCommand {
    source: PathBuf,
    object: PathBuf,
    command: Vec<String>,
    post: Vec<Vec<String>>,
}

impl From<&CompileCommand> for StoredCommand {
    fn from(c: &CompileCommand) -> Self {
        let words = |cl: &CommandLine| {
            std::iter::once(&cl.program)
                .chain(&cl.args)
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        StoredCommand {
            source: c.source.clone(),
            object: c.object.clone(),
            command: words(&c.command),
            post: c.post.iter().map(words).collect(),
        }
    }
}

impl StoredCommand {
    /// The command, run in `dir`, of a source of `tree`.
    pub(crate) fn into_command(self, dir: &Path, tree: &Path) -> CompileCommand {
        CompileCommand {
            tree: tree.to_owned(),
            source: self.source,
            object: self.object,
            command: to_command_line(&self.command, dir),
            post: self.post.iter().map(|w| to_command_line(w, dir)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::tests::fake_tree;

    /// Lines as `make -n` prints them for two objects of 6.12 (flags shortened).
    const DRY_RUN: &str = r#"make -f ./scripts/Makefile.build obj=fs \
need-builtin=1 \
fs/pipe.o
set -e;  echo '  CC      fs/pipe.o';   trap 'rm -f fs/pipe.o; trap - HUP; kill -s HUP $$' HUP; x86_64-linux-gnu-gcc-12 -Wp,-MMD,fs/.pipe.o.d -nostdinc -I./include -include ./include/linux/kconfig.h -O2 -DKBUILD_MODFILE='"fs/pipe"' -DKBUILD_BASENAME='"pipe"' -c -o fs/pipe.o fs/pipe.c  ; scripts/basic/fixdep fs/.pipe.o.d fs/pipe.o 'x86_64-linux-gnu-gcc-12 -c -o fs/pipe.o fs/pipe.c' > fs/.pipe.o.cmd; rm -f fs/.pipe.o.d
set -e;    trap 'rm -f fs/pipe.o; trap - HUP; kill -s HUP $$' HUP; if x86_64-linux-gnu-nm fs/pipe.o 2>/dev/null | grep -q ' __export_symbol_'; then x86_64-linux-gnu-gcc-12 -E -D__GENKSYMS__ -Wp,-MMD,fs/.pipe.o.d fs/pipe.c | scripts/genksyms/genksyms   -r /dev/null >> fs/.pipe.o.cmd; fi
set -e;  echo '  AS      arch/x86/entry/entry_64.o'; x86_64-linux-gnu-gcc-12 -Wp,-MMD,arch/x86/entry/.entry_64.o.d -D__ASSEMBLY__ -c -o arch/x86/entry/entry_64.o arch/x86/entry/entry_64.S ; ./tools/objtool/objtool --hacks=jump_label --orc arch/x86/entry/entry_64.o; scripts/basic/fixdep x y z
"#;

    #[test]
    fn dry_run_command_redirects_probes() {
        let dir = tempfile::tempdir().unwrap();
        fake_tree(dir.path(), "");
        let tree = KernelTree::open(dir.path()).unwrap();
        let cmd = dry_run_command(
            &tree,
            &Toolchain::debian_gcc12(),
            Path::new("/scratch"),
            &[
                PathBuf::from("fs/pipe.c"),
                PathBuf::from("arch/x86/entry/entry_64.S"),
            ],
        );
        let args: Vec<String> = cmd
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let tree_path = dir.path().to_string_lossy().into_owned();
        assert_eq!(
            args,
            [
                "-C",
                tree_path.as_str(),
                "ARCH=x86",
                "CROSS_COMPILE=x86_64-linux-gnu-",
                "CC=x86_64-linux-gnu-gcc-12",
                "-j1",
                "TMPOUT=/scratch/tmpout/",
                "-n",
                "-k",
                "fs/pipe.o",
                "arch/x86/entry/entry_64.o",
            ]
        );
    }

    #[test]
    fn parses_compile_commands_from_make_output() {
        let sources = [
            PathBuf::from("fs/pipe.c"),
            PathBuf::from("arch/x86/entry/entry_64.S"),
            PathBuf::from("fs/splice.c"),
        ];
        let found = parse_dry_run(DRY_RUN, Path::new("/tree"), &sources);
        assert_eq!(found.len(), 2);
        let pipe = &found[&sources[0]];
        assert_eq!(pipe.object, Path::new("fs/pipe.o"));
        assert_eq!(pipe.command.program, "x86_64-linux-gnu-gcc-12");
        assert_eq!(pipe.command.dir.as_deref(), Some(Path::new("/tree")));
        let args: Vec<&str> = pipe
            .command
            .args
            .iter()
            .map(|a| a.to_str().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "-Wp,-MMD,fs/.pipe.o.d",
                "-nostdinc",
                "-I./include",
                "-include",
                "./include/linux/kconfig.h",
                "-O2",
                "-DKBUILD_MODFILE=\"fs/pipe\"",
                "-DKBUILD_BASENAME=\"pipe\"",
                "-c",
                "-o",
                "fs/pipe.o",
                "fs/pipe.c",
            ]
        );
        assert!(pipe.post.is_empty());
        let entry = &found[&sources[1]];
        assert_eq!(entry.post.len(), 1);
        assert_eq!(entry.post[0].program, "./tools/objtool/objtool");
        assert_eq!(
            entry.post[0].args.last().unwrap(),
            "arch/x86/entry/entry_64.o"
        );
    }

    #[test]
    fn built_objects_fall_back_to_the_saved_command() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("kernel")).unwrap();
        std::fs::write(
            dir.path().join("kernel/.softirq.o.cmd"),
            "savedcmd_kernel/softirq.o := gcc -Wp,-MMD,kernel/.softirq.o.d -DKBUILD_MODNAME='\"softirq\"' -c -o kernel/softirq.o kernel/softirq.c  ; ./tools/objtool/objtool --orc kernel/softirq.o\n\nsource_kernel/softirq.o := kernel/softirq.c\n",
        )
        .unwrap();
        let found = saved_command(dir.path(), Path::new("kernel/softirq.c")).unwrap();
        assert_eq!(found.object, Path::new("kernel/softirq.o"));
        let args: Vec<&str> = found
            .command
            .args
            .iter()
            .map(|a| a.to_str().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "-Wp,-MMD,kernel/.softirq.o.d",
                "-DKBUILD_MODNAME=\"softirq\"",
                "-c",
                "-o",
                "kernel/softirq.o",
                "kernel/softirq.c"
            ]
        );
        assert_eq!(found.post.len(), 1);
        assert_eq!(saved_command(dir.path(), Path::new("kernel/other.c")), None);
    }

    #[test]
    fn the_guard_mounts_the_tree_read_only_then_runs_make() {
        let make =
            CommandLine::new("make", vec!["-C".into(), "/t".into(), "-n".into()]).in_dir("/w");
        let guarded = guard_command(
            &["--mount", "--map-root-user"],
            &[PathBuf::from("/t"), PathBuf::from("/m")],
            &make,
        );
        assert_eq!(guarded.program, "unshare");
        assert_eq!(guarded.dir.as_deref(), Some(Path::new("/w")));
        let args: Vec<&str> = guarded.args.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            [
                "--mount",
                "--map-root-user",
                "sh",
                "-c",
                GUARD_SCRIPT,
                "kernelx-read-only",
                "/t",
                "/m",
                "--",
                "make",
                "-C",
                "/t",
                "-n"
            ]
        );
    }

    /// Where this process may create namespaces, writing under the guard fails and reading
    /// works.
    #[test]
    fn the_guard_blocks_writes_where_namespaces_work() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        let write =
            CommandLine::new("sh", vec!["-c".into(), "echo y > f".into()]).in_dir(dir.path());
        let Some(guarded) = read_only_dirs(&[dir.path()], &write) else {
            eprintln!("no mount namespaces here; the unguarded path is used");
            return;
        };
        let out = guarded.to_command().output().unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"));
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"x");
        let read = CommandLine::new("cat", vec!["f".into()]).in_dir(dir.path());
        let out = read_only_dirs(&[dir.path()], &read).unwrap().run().unwrap();
        assert_eq!(out.stdout, b"x");
    }

    #[test]
    fn stored_commands_round_trip() {
        let found = parse_dry_run(DRY_RUN, Path::new("/tree"), &[PathBuf::from("fs/pipe.c")]);
        let command = found.into_values().next().unwrap();
        let stored = StoredCommand::from(&command);
        let json = serde_json::to_string(&stored).unwrap();
        let back: StoredCommand = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back.into_command(Path::new("/tree"), Path::new("/tree")),
            command
        );
    }
}
