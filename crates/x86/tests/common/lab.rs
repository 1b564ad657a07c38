//! The prepared lab tree (`cargo xtask lab setup`, `$KERNELX_LAB_TREE`) and fs/pipe.o built from
//! it with `PIPE_DEF_BUFFERS` set to chosen values.
//!
//! The tree is only read: the compiler runs in it with kbuild's flags for a C object (taken
//! from `scripts/mod/.empty.o.cmd`, which `make prepare` writes), the modified header comes
//! from an include directory in a temporary directory placed first on the include path, and
//! the objects are written there too.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `PIPE_DEF_BUFFERS` in the builds; 16 is the shipped value.
pub const VALUES: [i64; 3] = [16, 32, 64];

/// The prepared tree from `$KERNELX_LAB_TREE`, checked.
#[track_caller]
pub fn lab_tree() -> PathBuf {
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
pub fn shell_words(line: &str) -> Vec<String> {
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
pub fn pipe_command(tree: &Path, overlay: &Path, out: &Path) -> (String, Vec<OsString>) {
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
pub fn header_with(tree: &Path, value: i64) -> String {
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

/// fs/pipe.o of `tree` with `PIPE_DEF_BUFFERS` = each of `values`, built in parallel in `dir`;
/// the objects' bytes, in value order.
#[track_caller]
pub fn build_pipe_objects(tree: &Path, values: &[i64], dir: &Path) -> Vec<Vec<u8>> {
    std::thread::scope(|s| {
        let jobs: Vec<_> = values
            .iter()
            .map(|&v| {
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
    })
}
