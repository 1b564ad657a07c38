//! `kernelx clean`: removes what KernelX left behind that nothing uses. Never a loaded
//! tunable's state: pins stay, and so does the record of every pinned tunable.
//!
//! * load records of tunables that are not pinned (stale: after a reboot, or pins removed by
//!   hand) and record writes a killed kernelx left half done, under the state lock;
//! * with `--cache`, the build cache's artefacts (variant objects, memos, overlays, scratch).
//!
//! Tunables pinned without a record (a load killed midway) are named, not removed: their
//! probes are attached, and `kernelx unload --all` detaches them.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use anyhow::Context as _;
use kernelx_kbuild::Cache;
use kernelx_runtime::lock::{LockError, StateLock};
use kernelx_runtime::sie::SieRuntime;
use kernelx_runtime::state::{self, StateDir};

use crate::args::CleanArgs;

/// The build cache's directories of artefacts (crates/kbuild/src/cache.rs, its layout): every
/// entry is rebuilt when missing. The rest of the cache directory is not KernelX's build's.
const CACHE_ARTEFACTS: [&str; 4] = ["objects", "overlays", "memo", "tmp"];

/// Runs `kernelx clean`.
pub fn run(args: &CleanArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let state = StateDir::system();
    let mut removed = 0;
    if state.dir().exists() {
        match StateLock::acquire(state.dir()) {
            Ok(_lock) => {
                removed += clean_state(&SieRuntime::system(), &state, args.dry_run, out)?;
            }
            // A user emptying their own build cache need not be root.
            Err(LockError::Io { source, .. })
                if args.cache && source.kind() == io::ErrorKind::PermissionDenied =>
            {
                writeln!(
                    out,
                    "skipped the load records in {}: reading them needs root",
                    state.dir().display()
                )?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if args.cache {
        let cache = Cache::from_env().context("finding the build cache")?;
        removed += clean_cache(cache.root(), args.dry_run, out)?;
    }
    if removed == 0 {
        writeln!(out, "nothing to clean")?;
    }
    Ok(())
}

/// Removes stale records and interrupted record writes; names tunables pinned without a
/// record. How many things it removed (or would).
fn clean_state(
    runtime: &SieRuntime,
    state: &StateDir,
    dry_run: bool,
    out: &mut impl Write,
) -> anyhow::Result<usize> {
    let verb = if dry_run { "would remove" } else { "removed" };
    let pinned = state::pinned_tunables(runtime)?;
    let mut removed = 0;
    for name in state.recorded()? {
        if pinned.contains(&name) {
            continue;
        }
        if !dry_run {
            state.remove(&name)?;
        }
        writeln!(out, "{verb} the stale record of {name} (it is not pinned)")?;
        removed += 1;
    }
    for path in state.interrupted_writes()? {
        if !dry_run {
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
        writeln!(
            out,
            "{verb} {} (a record write was interrupted)",
            path.display()
        )?;
        removed += 1;
    }
    for name in &pinned {
        if state.read(name)?.is_none() {
            writeln!(
                out,
                "left {name} alone: pinned without a load record (a load was interrupted); \
                 `kernelx unload --all` detaches it"
            )?;
        }
    }
    Ok(removed)
}

/// Removes the build cache's artefact directories under `root`. How many it removed (or
/// would).
fn clean_cache(root: &Path, dry_run: bool, out: &mut impl Write) -> anyhow::Result<usize> {
    let verb = if dry_run { "would remove" } else { "removed" };
    let mut removed = 0;
    for name in CACHE_ARTEFACTS {
        let dir = root.join(name);
        if !dir.exists() {
            continue;
        }
        let (files, bytes) = usage(&dir).with_context(|| format!("reading {}", dir.display()))?;
        if !dry_run {
            fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        writeln!(
            out,
            "{verb} {} ({files} files, {:.1} MiB)",
            dir.display(),
            bytes as f64 / (1024.0 * 1024.0)
        )?;
        removed += 1;
    }
    Ok(removed)
}

/// Files and bytes under `dir` (symlinks not followed).
fn usage(dir: &Path) -> io::Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        if metadata.is_dir() {
            let (f, b) = usage(&entry.path())?;
            files += f;
            bytes += b;
        } else {
            files += 1;
            bytes += metadata.len();
        }
    }
    Ok((files, bytes))
}

#[cfg(test)]
mod tests {
    use kernelx_runtime::state::LoadRecord;

    use super::*;

    fn record(name: &str) -> LoadRecord {
        kernelx_runtime::state::testing::pipe_record(name, 32)
    }

    fn text(out: Vec<u8>) -> String {
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn stale_records_go_and_a_pinned_tunables_record_stays() {
        let temp = tempfile::tempdir().unwrap();
        let runtime = SieRuntime::new(temp.path().join("bpf"));
        let state = StateDir::new(temp.path().join("run"));
        // LOADED is pinned with its record; STALE has a record only; HALF has pins only.
        for name in ["LOADED", "STALE"] {
            state.write(&record(name)).unwrap();
        }
        for name in ["LOADED", "HALF"] {
            fs::create_dir_all(runtime.dir(name).unwrap()).unwrap();
        }
        let half_written = temp.path().join("run/tunables/.X.json.new");
        fs::write(&half_written, "{").unwrap();

        let mut out = Vec::new();
        assert_eq!(clean_state(&runtime, &state, true, &mut out).unwrap(), 2);
        let dry = text(out);
        assert!(
            dry.contains("would remove the stale record of STALE (it is not pinned)"),
            "{dry}"
        );
        assert_eq!(state.recorded().unwrap(), ["LOADED", "STALE"], "--dry-run");
        assert!(half_written.exists(), "--dry-run");

        let mut out = Vec::new();
        assert_eq!(clean_state(&runtime, &state, false, &mut out).unwrap(), 2);
        let done = text(out);
        assert!(done.contains("removed the stale record of STALE"), "{done}");
        assert!(done.contains("a record write was interrupted"), "{done}");
        assert!(
            done.contains("left HALF alone") && done.contains("kernelx unload --all"),
            "{done}"
        );
        assert!(!done.contains("LOADED"), "{done}");
        assert_eq!(state.recorded().unwrap(), ["LOADED"]);
        assert!(!half_written.exists());
        assert!(
            runtime.dir("HALF").unwrap().is_dir(),
            "pins are never removed"
        );

        let mut out = Vec::new();
        assert_eq!(clean_state(&runtime, &state, false, &mut out).unwrap(), 0);
    }

    #[test]
    fn the_cache_loses_its_artefacts_and_keeps_the_rest() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path();
        fs::create_dir_all(root.join("objects/ab")).unwrap();
        fs::write(root.join("objects/ab/abcd.o"), [0u8; 1024]).unwrap();
        fs::create_dir_all(root.join("memo/commands")).unwrap();
        fs::write(root.join("memo/commands/k.json"), "{}").unwrap();
        fs::create_dir_all(root.join("lab")).unwrap();

        let mut out = Vec::new();
        assert_eq!(clean_cache(root, true, &mut out).unwrap(), 2);
        assert!(text(out).contains(&format!(
            "would remove {} (1 files, 0.0 MiB)",
            root.join("objects").display()
        )));
        assert!(root.join("objects/ab/abcd.o").exists(), "--dry-run");

        let mut out = Vec::new();
        assert_eq!(clean_cache(root, false, &mut out).unwrap(), 2);
        assert!(!root.join("objects").exists() && !root.join("memo").exists());
        assert!(root.join("lab").is_dir(), "not a build artefact");
    }

    #[test]
    fn the_artefact_directories_are_the_caches() {
        let layout = include_str!("../../kbuild/src/cache.rs");
        for name in CACHE_ARTEFACTS {
            assert!(
                layout.contains(&format!("//! <root>/{name}/")),
                "{name}/ is not in the cache layout of crates/kbuild/src/cache.rs"
            );
        }
    }
}
