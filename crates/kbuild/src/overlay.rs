//! The private overlay: modified sources live outside the tree, and kbuild's command is
//! rewritten to read them there.
//!
//! An overlay is a directory in the cache mirroring the tree's layout, holding only:
//!
//! * the edited file, with a variant's text;
//! * unchanged copies of every file that includes a member by a `"name"` relative to its own
//!   directory (gcc looks there first, so the original next to the includer would win), and
//!   transitively of their includers — the translation unit itself among them when it
//!   quote-includes the edited file;
//! * unchanged copies of what those files quote-include from their own directory, so that
//!   their siblings still resolve (`#include "internal.h"` next to the copy).
//!
//! The compile command then changes in four places only ([`variant_command`]): the source
//! (when the unit is in the overlay), `-I<overlay>/<dir>` right before every `-I<dir>` that
//! holds an overlaid file, a forced `-include` of an overlaid file, and
//! `-fmacro-prefix-map=<overlay>/=` so `__FILE__` reads as in the tree. The output and the
//! dependency file go to scratch paths. Nothing in the tree is written, so an interrupted run
//! cannot leave it modified.
//!
//! Copies instead of `-iquote <original dir>`: `-iquote` applies to every quote-include of the
//! unit, so a name missing next to some other header would be looked up in the added directory
//! before the search path, and could resolve differently than in kbuild's build. Copies change
//! nothing but the files that need them.
//!
//! Overlays are named by the hash of their contents, so the same variant always has the same
//! paths, and the cache keys that contain them stay valid from run to run.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use crate::cache::{Cache, KeyHasher};
use crate::compile::CompileCommand;
use crate::index::{IncludeKind, TreeIndex, normalize};
use crate::{CommandLine, KbuildError};

/// A directory of modified and copied sources standing in for the tree's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    root: PathBuf,
    /// Tree-relative path → whether it differs from the tree's file.
    files: BTreeMap<PathBuf, bool>,
}

impl Overlay {
    /// An overlay (not written to disk) at `root` holding `files` (tree-relative path →
    /// modified?). For tests and callers that lay out files themselves.
    pub fn at(root: impl Into<PathBuf>, files: BTreeMap<PathBuf, bool>) -> Overlay {
        Overlay {
            root: root.into(),
            files,
        }
    }

    /// Lays out the overlay for `edited` with `text`, plus the copies its includers need (see
    /// the module documentation), under the cache's `overlays/`.
    ///
    /// # Errors
    ///
    /// [`KbuildError::OverlayUnsupported`] when an overlaid file uses `#include_next` (the
    /// search would continue in the tree's copy of the same directory), and I/O errors.
    pub fn create(
        cache: &Cache,
        index: &TreeIndex,
        edited: &Path,
        text: &str,
    ) -> Result<Overlay, KbuildError> {
        let mut members = index.own_directory_closure(&[edited]);
        // Siblings that overlaid files quote-include from their own directory, transitively.
        let mut i = 0;
        while i < members.len() {
            let file = members[i].clone();
            for include in index.includes(&file).unwrap_or_default() {
                if include.kind != IncludeKind::Quote {
                    continue;
                }
                let Some(dir) = file.parent() else { continue };
                let Some(target) = normalize(&dir.join(&include.name)) else {
                    continue;
                };
                if index.contains(&target) && !members.contains(&target) {
                    members.push(target);
                }
            }
            i += 1;
        }
        for file in &members {
            if let Some(next) = index
                .includes(file)
                .unwrap_or_default()
                .iter()
                .find(|i| i.kind == IncludeKind::Next)
            {
                return Err(KbuildError::OverlayUnsupported {
                    file: file.clone(),
                    line: next.line,
                    reason: format!(
                        "`#include_next <{}>` in a file the overlay must copy",
                        next.name
                    ),
                });
            }
        }
        members.sort();

        let mut contents: Vec<(PathBuf, Vec<u8>, bool)> = Vec::new();
        let mut h = KeyHasher::new("overlay");
        for member in &members {
            let (bytes, modified) = if member == edited {
                (text.as_bytes().to_vec(), true)
            } else {
                let path = index.root().join(member);
                let bytes = fs::read(&path).map_err(|source| KbuildError::Read { path, source })?;
                (bytes, false)
            };
            h.str(member).field(&bytes);
            contents.push((member.clone(), bytes, modified));
        }
        let root = cache.subdir("overlays")?.join(h.finish());
        if !root.is_dir() {
            let scratch = cache.scratch()?;
            let staging = scratch.path().join("overlay");
            for (member, bytes, _) in &contents {
                let path = staging.join(member);
                let parent = path.parent().expect("members are files");
                fs::create_dir_all(parent).map_err(|e| KbuildError::write(parent, e))?;
                fs::write(&path, bytes).map_err(|e| KbuildError::write(&path, e))?;
            }
            // Another run may have published the same overlay meanwhile; its content is equal.
            if let Err(e) = fs::rename(&staging, &root)
                && !root.is_dir()
            {
                return Err(KbuildError::write(&root, e));
            }
        }
        Ok(Overlay {
            root,
            files: contents
                .into_iter()
                .map(|(member, _, modified)| (member, modified))
                .collect(),
        })
    }

    /// The overlay's top directory (it mirrors the tree's top).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the overlay has its own version of a tree-relative file.
    pub fn contains(&self, path: &Path) -> bool {
        self.files.contains_key(path)
    }

    /// The tree-relative files it holds, with whether each differs from the tree's.
    pub fn files(&self) -> impl Iterator<Item = (&Path, bool)> {
        self.files.iter().map(|(p, &m)| (p.as_path(), m))
    }

    /// Whether some overlaid file lies under the tree-relative directory `dir`.
    fn covers(&self, dir: &Path) -> bool {
        self.files.keys().any(|f| f.starts_with(dir))
    }
}

/// What to do with a rewritten compile command.
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    /// Preprocess only (`-E`) into `output`, listing every file read in `depfile`.
    Preprocess {
        /// The preprocessed text.
        output: &'a Path,
        /// gcc's dependency list.
        depfile: &'a Path,
    },
    /// Compile into `output`, with the dependency list in `depfile`.
    Compile {
        /// The object.
        output: &'a Path,
        /// gcc's dependency list.
        depfile: &'a Path,
    },
}

/// `cmd` rewritten to read the overlay's files (if any) and to write only `action`'s paths.
///
/// The rest of kbuild's command is kept as it is, argument for argument, so a build without
/// overlay is kbuild's build.
pub fn variant_command(
    cmd: &CompileCommand,
    overlay: Option<&Overlay>,
    action: Action<'_>,
) -> CommandLine {
    let (output, depfile, preprocess) = match action {
        Action::Preprocess { output, depfile } => (output, depfile, true),
        Action::Compile { output, depfile } => (output, depfile, false),
    };
    let cwd = cmd.command.dir.as_deref().unwrap_or(Path::new("."));
    let source = cmd.source.as_os_str();
    let mut args: Vec<OsString> = Vec::with_capacity(cmd.command.args.len() + 4);
    let mut depfile_arg = OsString::from("-Wp,-MD,");
    depfile_arg.push(depfile);
    let mut iter = cmd.command.args.iter().peekable();
    while let Some(arg) = iter.next() {
        let bytes = arg.as_bytes();
        if bytes.starts_with(b"-Wp,-MMD,") || bytes.starts_with(b"-Wp,-MD,") {
            args.push(depfile_arg.clone());
        } else if arg == "-MF" {
            iter.next();
            args.push("-MF".into());
            args.push(depfile.into());
        } else if arg == "-o" {
            iter.next();
            args.push("-o".into());
            args.push(output.into());
        } else if arg == "-c" && preprocess {
            args.push("-E".into());
        } else if (arg == source && cmd.tree == cwd) || Path::new(arg) == cmd.tree.join(&cmd.source)
        {
            match overlay.filter(|o| o.contains(&cmd.source)) {
                Some(o) => args.push(o.root.join(&cmd.source).into()),
                None => args.push(arg.clone()),
            }
        } else if let Some(o) = overlay
            && let Some((flag, dir, joined)) = include_dir_flag(arg, iter.peek().copied())
        {
            let rel = tree_relative(&cmd.tree, &cwd.join(&dir));
            if let Some(rel) = rel.filter(|r| o.covers(r)) {
                push_dir_flag(&mut args, &flag, &o.root.join(&rel), joined);
            }
            if !joined {
                args.push(arg.clone());
                args.push(iter.next().expect("include_dir_flag saw it").clone());
            } else {
                args.push(arg.clone());
            }
        } else if let Some(o) = overlay
            && arg == "-include"
            && let Some(file) = iter.peek()
            && let Some(rel) = tree_relative(&cmd.tree, &cwd.join(file))
            && o.contains(&rel)
        {
            iter.next();
            args.push(arg.clone());
            args.push(o.root.join(rel).into());
        } else {
            args.push(arg.clone());
        }
    }
    if let Some(o) = overlay {
        // `__FILE__` of an overlaid file reads as kbuild's: tree-relative in a kernel tree,
        // absolute in a module's directory (kbuild names module sources by absolute path).
        let mut map = OsString::from("-fmacro-prefix-map=");
        map.push(&o.root);
        map.push("/=");
        if cmd.tree != cwd {
            map.push(&cmd.tree);
            map.push("/");
        }
        args.push(map);
    }
    let mut rewritten = CommandLine::new(cmd.command.program.clone(), args);
    rewritten.dir = cmd.command.dir.clone();
    rewritten
}

/// `-I<dir>`, `-I <dir>`, `-isystem <dir>`, `-idirafter <dir>`: the flag, the directory, and
/// whether they were one argument.
fn include_dir_flag(arg: &OsString, next: Option<&OsString>) -> Option<(String, OsString, bool)> {
    let s = arg.to_str()?;
    for flag in ["-I", "-isystem", "-idirafter"] {
        if s == flag {
            return next.map(|n| (flag.to_owned(), n.clone(), false));
        }
        if flag == "-I"
            && let Some(dir) = s.strip_prefix("-I")
        {
            return Some((flag.to_owned(), dir.into(), true));
        }
    }
    None
}

fn push_dir_flag(args: &mut Vec<OsString>, flag: &str, dir: &Path, joined: bool) {
    if joined {
        let mut a = OsString::from(flag);
        a.push(dir);
        args.push(a);
    } else {
        args.push(flag.into());
        args.push(dir.into());
    }
}

/// A path relative to `tree`, absolute or (as kbuild's commands name them) relative to the
/// tree itself; `None` if it is outside.
fn tree_relative(tree: &Path, path: &Path) -> Option<PathBuf> {
    if path.is_absolute() {
        normalize(path.strip_prefix(tree).ok()?)
    } else {
        normalize(path)
    }
}

/// Whether the dependency list of a variant's preprocessing names the tree's copy of an
/// overlaid, modified file (then the overlay was bypassed).
pub(crate) fn bypassed(overlay: &Overlay, tree: &Path, deps: &[PathBuf]) -> Option<PathBuf> {
    let modified: Vec<&Path> = overlay
        .files()
        .filter(|(_, m)| *m)
        .map(|(p, _)| p)
        .collect();
    deps.iter()
        .filter_map(|d| tree_relative(tree, d))
        .find(|d| modified.contains(&d.as_path()))
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;

    use super::*;
    use crate::index::tests::write_files;

    fn pipe_command() -> CompileCommand {
        let args = [
            "-Wp,-MMD,fs/.pipe.o.d",
            "-nostdinc",
            "-I./arch/x86/include",
            "-I./include",
            "-I",
            "./fs",
            "-include",
            "./include/linux/kconfig.h",
            "-O2",
            "-c",
            "-o",
            "fs/pipe.o",
            "fs/pipe.c",
        ];
        CompileCommand {
            tree: "/tree".into(),
            source: "fs/pipe.c".into(),
            object: "fs/pipe.o".into(),
            command: CommandLine::new("gcc", args.iter().map(OsString::from).collect())
                .in_dir("/tree"),
            post: Vec::new(),
        }
    }

    fn strings(cmd: &CommandLine) -> Vec<String> {
        cmd.args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn without_overlay_only_outputs_move() {
        let cmd = pipe_command();
        let out = variant_command(
            &cmd,
            None,
            Action::Compile {
                output: Path::new("/s/1.o"),
                depfile: Path::new("/s/1.d"),
            },
        );
        let mut expected = strings(&cmd.command);
        expected[0] = "-Wp,-MD,/s/1.d".into();
        expected[11] = "/s/1.o".into();
        assert_eq!(strings(&out), expected);
        assert_eq!(out.dir.as_deref(), Some(Path::new("/tree")));
        assert_eq!(out.program, "gcc");
    }

    #[test]
    fn a_header_overlay_goes_before_its_search_directory() {
        let overlay = Overlay::at(
            "/c/ov",
            [(PathBuf::from("include/linux/pipe_fs_i.h"), true)].into(),
        );
        let out = variant_command(
            &pipe_command(),
            Some(&overlay),
            Action::Preprocess {
                output: Path::new("/s/2.i"),
                depfile: Path::new("/s/2.d"),
            },
        );
        assert_eq!(
            strings(&out),
            [
                "-Wp,-MD,/s/2.d",
                "-nostdinc",
                "-I./arch/x86/include",
                "-I/c/ov/include",
                "-I./include",
                "-I",
                "./fs",
                "-include",
                "./include/linux/kconfig.h",
                "-O2",
                "-E",
                "-o",
                "/s/2.i",
                "fs/pipe.c",
                "-fmacro-prefix-map=/c/ov/=",
            ]
        );
    }

    #[test]
    fn an_overlaid_unit_and_forced_include_are_swapped() {
        let overlay = Overlay::at(
            "/c/ov",
            [
                (PathBuf::from("fs/pipe.c"), true),
                (PathBuf::from("fs/internal.h"), false),
                (PathBuf::from("include/linux/kconfig.h"), true),
            ]
            .into(),
        );
        let out = variant_command(
            &pipe_command(),
            Some(&overlay),
            Action::Compile {
                output: Path::new("/s/3.o"),
                depfile: Path::new("/s/3.d"),
            },
        );
        assert_eq!(
            strings(&out),
            [
                "-Wp,-MD,/s/3.d",
                "-nostdinc",
                "-I./arch/x86/include",
                "-I/c/ov/include",
                "-I./include",
                "-I",
                "/c/ov/fs",
                "-I",
                "./fs",
                "-include",
                "/c/ov/include/linux/kconfig.h",
                "-O2",
                "-c",
                "-o",
                "/s/3.o",
                "/c/ov/fs/pipe.c",
                "-fmacro-prefix-map=/c/ov/=",
            ]
        );
    }

    /// A module's command runs in the kernel build directory and names module files by
    /// absolute path; relative paths in it belong to the kernel build directory.
    #[test]
    fn a_module_command_is_rewritten_by_absolute_path() {
        let args = [
            "-Wp,-MMD,/m/.kx.o.d",
            "-I./include",
            "-I/m/inc",
            "-DKBUILD_MODNAME=\"kx\"",
            "-c",
            "-o",
            "/m/kx.o",
            "/m/kx.c",
        ];
        let cmd = CompileCommand {
            tree: "/m".into(),
            source: "kx.c".into(),
            object: "kx.o".into(),
            command: CommandLine::new("gcc", args.iter().map(OsString::from).collect())
                .in_dir("/kdir"),
            post: Vec::new(),
        };
        let overlay = Overlay::at(
            "/c/ov",
            [
                (PathBuf::from("kx.c"), true),
                (PathBuf::from("inc/kx.h"), false),
                (PathBuf::from("include/x.h"), false),
            ]
            .into(),
        );
        let out = variant_command(
            &cmd,
            Some(&overlay),
            Action::Compile {
                output: Path::new("/s/1.o"),
                depfile: Path::new("/s/1.d"),
            },
        );
        assert_eq!(
            strings(&out),
            [
                "-Wp,-MD,/s/1.d",
                // ./include is the kernel's, not the module's include/.
                "-I./include",
                "-I/c/ov/inc",
                "-I/m/inc",
                "-DKBUILD_MODNAME=\"kx\"",
                "-c",
                "-o",
                "/s/1.o",
                "/c/ov/kx.c",
                "-fmacro-prefix-map=/c/ov/=/m/",
            ]
        );
        assert_eq!(out.dir.as_deref(), Some(Path::new("/kdir")));
    }

    #[test]
    fn overlays_copy_quote_includers_and_their_siblings() {
        let tree = tempfile::tempdir().unwrap();
        write_files(
            tree.path(),
            &[
                ("fs/internal.h", "#define LIMIT 4\n"),
                (
                    "fs/pipe.c",
                    "#include \"internal.h\"\n#include \"mount.h\"\n",
                ),
                ("fs/mount.h", "struct m;\n"),
                ("fs/open.c", "#include <linux/fs.h>\n"),
                ("include/linux/fs.h", "#include <linux/types.h>\n"),
                ("include/linux/types.h", "\n"),
            ],
        );
        let index = TreeIndex::scan(
            tree.path(),
            "x86",
            Some("LIMIT"),
            &crate::BuiltUnits::Unrestricted,
            NonZeroUsize::MIN,
        )
        .unwrap();
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(cache_dir.path());
        let overlay = Overlay::create(
            &cache,
            &index,
            Path::new("fs/internal.h"),
            "#define LIMIT 8\n",
        )
        .unwrap();
        let files: Vec<(String, bool)> = overlay
            .files()
            .map(|(p, m)| (p.to_string_lossy().into_owned(), m))
            .collect();
        assert_eq!(
            files,
            [
                ("fs/internal.h".to_owned(), true),
                ("fs/mount.h".to_owned(), false),
                ("fs/pipe.c".to_owned(), false),
            ]
        );
        assert_eq!(
            fs::read_to_string(overlay.root().join("fs/internal.h")).unwrap(),
            "#define LIMIT 8\n"
        );
        assert!(overlay.root().starts_with(cache_dir.path()));
        // Same content, same place.
        let again = Overlay::create(
            &cache,
            &index,
            Path::new("fs/internal.h"),
            "#define LIMIT 8\n",
        )
        .unwrap();
        assert_eq!(again, overlay);
        let other = Overlay::create(
            &cache,
            &index,
            Path::new("fs/internal.h"),
            "#define LIMIT 2\n",
        )
        .unwrap();
        assert_ne!(other.root(), overlay.root());

        let deps = [
            tree.path().join("fs/mount.h"),
            overlay.root().join("fs/internal.h"),
        ];
        assert_eq!(bypassed(&overlay, tree.path(), &deps), None);
        let deps = [tree.path().join("fs/internal.h")];
        assert_eq!(
            bypassed(&overlay, tree.path(), &deps),
            Some(PathBuf::from("fs/internal.h"))
        );
    }

    #[test]
    fn include_next_in_an_overlaid_file_is_refused() {
        let tree = tempfile::tempdir().unwrap();
        write_files(
            tree.path(),
            &[
                (
                    "include/linux/x.h",
                    "#include_next <linux/x.h>\n#define N 1\n",
                ),
                ("lib/x.c", "#include <linux/x.h>\n"),
            ],
        );
        let index = TreeIndex::scan(
            tree.path(),
            "x86",
            Some("N"),
            &crate::BuiltUnits::Unrestricted,
            NonZeroUsize::MIN,
        )
        .unwrap();
        let cache_dir = tempfile::tempdir().unwrap();
        let err = Overlay::create(
            &Cache::new(cache_dir.path()),
            &index,
            Path::new("include/linux/x.h"),
            "#define N 2\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("include/linux/x.h:1: `#include_next"),
            "{err}"
        );
    }
}
