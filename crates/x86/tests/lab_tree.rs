//! Golden test on the real kernel: `PIPE_DEF_BUFFERS` in fs/pipe.c of the prepared Debian 6.12
//! lab tree (`cargo xtask lab setup`), rebuilt with 16, 32 and 64.
//!
//! Run with `KERNELX_LAB_TREE=<tree> cargo test -p kernelx-x86 --test lab_tree -- --ignored`.
//! The tree is only read: the compiler runs in it with kbuild's flags for a C object (taken
//! from `scripts/mod/.empty.o.cmd`, which `make prepare` writes), the modified header comes
//! from an include directory in a temporary directory placed first on the include path, and
//! the objects are written there too.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use kernelx_x86::{ChangedField, ObjectFile, UncoveredKind, diff_objects};

const VALUES: [i64; 3] = [16, 32, 64];

/// The prepared tree from `$KERNELX_LAB_TREE`, checked.
#[track_caller]
fn lab_tree() -> PathBuf {
    let Some(tree) = std::env::var_os("KERNELX_LAB_TREE") else {
        panic!(
            "KERNELX_LAB_TREE is not set: point it at the prepared kernel source tree, e.g. \
             ~/.cache/kernelx/kernels/6.12.117+deb12-cloud-amd64/linux-source-6.12 \
             (run `cargo xtask lab setup` to prepare one)"
        );
    };
    let tree = PathBuf::from(tree);
    for needed in [
        "Makefile",
        "fs/pipe.c",
        "include/linux/pipe_fs_i.h",
        "include/generated/autoconf.h",
        "scripts/mod/.empty.o.cmd",
    ] {
        assert!(
            tree.join(needed).is_file(),
            "KERNELX_LAB_TREE={} is not a prepared kernel tree: {needed} is missing (run \
             `cargo xtask lab setup`, or fix the variable)",
            tree.display()
        );
    }
    tree
}

/// Splits a kbuild command line into words; kbuild's saved commands only quote with `'...'`.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// kbuild's compile command for fs/pipe.o, derived from the saved command of
/// scripts/mod/empty.o (a kernel C object with the same flags), writing to `out` and searching
/// `overlay` first for headers.
#[track_caller]
fn pipe_command(tree: &Path, overlay: &Path, out: &Path) -> (String, Vec<OsString>) {
    let cmd_file = tree.join("scripts/mod/.empty.o.cmd");
    let text = std::fs::read_to_string(&cmd_file)
        .unwrap_or_else(|e| panic!("reading {}: {e}", cmd_file.display()));
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("savedcmd_scripts/mod/empty.o := "))
        .unwrap_or_else(|| panic!("{}: no savedcmd line", cmd_file.display()));
    let words = shell_words(line);
    let (program, flags) = words.split_first().expect("an empty saved command");
    let mut args: Vec<OsString> = Vec::new();
    let mut skip = 0;
    for w in flags {
        if skip > 0 {
            skip -= 1;
            continue;
        }
        match w.as_str() {
            w if w.starts_with("-Wp,-MMD") => {}
            "-nostdinc" => {
                args.push("-nostdinc".into());
                args.push(format!("-I{}", overlay.display()).into());
            }
            w if w.starts_with("-DKBUILD_MODFILE=") => {
                args.push("-DKBUILD_MODFILE=\"fs/pipe\"".into())
            }
            w if w.starts_with("-DKBUILD_BASENAME=") => {
                args.push("-DKBUILD_BASENAME=\"pipe\"".into())
            }
            w if w.starts_with("-DKBUILD_MODNAME=") => {
                args.push("-DKBUILD_MODNAME=\"pipe\"".into())
            }
            w if w.starts_with("-D__KBUILD_MODNAME=") => {
                args.push("-D__KBUILD_MODNAME=kmod_pipe".into())
            }
            // `-c -o scripts/mod/empty.o scripts/mod/empty.c`
            "-o" => skip = 1,
            w if w.ends_with("empty.c") => {}
            w => args.push(w.into()),
        }
    }
    args.push("-o".into());
    args.push(out.into());
    args.push("fs/pipe.c".into());
    (program.clone(), args)
}

/// include/linux/pipe_fs_i.h with `PIPE_DEF_BUFFERS` set to `value`.
#[track_caller]
fn header_with(tree: &Path, value: i64) -> String {
    let path = tree.join("include/linux/pipe_fs_i.h");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut found = 0;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            if words == ["#define", "PIPE_DEF_BUFFERS", "16"] {
                found += 1;
                format!("#define PIPE_DEF_BUFFERS\t{value}")
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert_eq!(
        found,
        1,
        "{}: expected one `#define PIPE_DEF_BUFFERS 16`",
        path.display()
    );
    out.join("\n") + "\n"
}

#[test]
#[ignore = "needs the prepared lab tree (cargo xtask lab setup)"]
fn lab_tree_pipe_def_buffers() {
    let tree = lab_tree();
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let objects: Vec<Vec<u8>> = std::thread::scope(|s| {
        let jobs: Vec<_> = VALUES
            .iter()
            .map(|&v| {
                let tree = &tree;
                let dir = dir.path();
                s.spawn(move || {
                    let overlay = dir.join(format!("include-{v}"));
                    std::fs::create_dir_all(overlay.join("linux")).unwrap();
                    std::fs::write(overlay.join("linux/pipe_fs_i.h"), header_with(tree, v))
                        .unwrap();
                    let out = dir.join(format!("pipe-{v}.o"));
                    let (program, args) = pipe_command(tree, &overlay, &out);
                    let mut cmd = Command::new(&program);
                    cmd.args(&args).current_dir(tree);
                    let output = cmd
                        .output()
                        .unwrap_or_else(|e| panic!("running {program}: {e}"));
                    assert!(
                        output.status.success(),
                        "compiling fs/pipe.c with PIPE_DEF_BUFFERS={v} failed: {cmd:?}\n{}",
                        String::from_utf8_lossy(&output.stderr)
                    );
                    std::fs::read(&out).unwrap()
                })
            })
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect()
    });
    let parsed: Vec<ObjectFile<'_>> = objects
        .iter()
        .zip(VALUES)
        .map(|(b, v)| ObjectFile::parse(format!("fs/pipe.o [{v}]"), b).unwrap())
        .collect();
    let diff = diff_objects([&parsed[0], &parsed[1], &parsed[2]], VALUES).unwrap();
    let report = serde_json::to_string_pretty(&diff).unwrap();

    // Measured on the lab tree: fs/pipe.o has 41 functions, as in the shipped vmlinux.
    assert_eq!(diff.stats.functions, 41, "{report}");
    let seeds: Vec<(&str, u32, &str, &ChangedField, &[u64])> = diff
        .seeds
        .iter()
        .flat_map(|s| {
            s.changes.iter().map(move |c| {
                (
                    s.function.as_str(),
                    s.offset,
                    s.asm.as_str(),
                    &c.field,
                    c.values.as_slice(),
                )
            })
        })
        .collect();
    let imm = &ChangedField::Immediate;
    assert_eq!(
        seeds,
        [
            (
                "alloc_pipe_info",
                0x6b,
                "cmp $0xffff,%ebp",
                imm,
                &[0xffff, 0x1ffff, 0x3ffff][..]
            ),
            (
                "alloc_pipe_info",
                0x77,
                "mov $0x10,%eax",
                imm,
                &[0x10, 0x20, 0x40][..]
            ),
            (
                "alloc_pipe_info",
                0x7c,
                "mov $0x10,%ebp",
                imm,
                &[0x10, 0x20, 0x40][..]
            ),
        ],
        "{report}"
    );
    assert_eq!(diff.uncovered.len(), 1, "{report}");
    let data = &diff.uncovered[0];
    assert_eq!(
        (data.kind, data.symbol.as_str(), data.section.as_str()),
        (UncoveredKind::DataValue, "pipe_user_pages_soft", ".data"),
        "{report}"
    );
    // PIPE_DEF_BUFFERS * INR_OPEN_CUR (1024)
    assert_eq!(data.values, Some(vec![0x4000, 0x8000, 0x10000]), "{report}");
    assert!(diff.unmatched.is_empty(), "{report}");
}

#[test]
fn splits_saved_commands() {
    assert_eq!(
        shell_words(" gcc -DKBUILD_MODFILE='\"scripts/mod/empty\"'  -c x.c "),
        ["gcc", "-DKBUILD_MODFILE=\"scripts/mod/empty\"", "-c", "x.c"]
    );
}
