//! The plan store: the plans `kernelx build` wrote, one file per tunable, found by name.
//!
//! A directory holding `<tunable>.plan.json` files, each a [`Plan`] with exactly one tunable.
//! Its place is `$KERNELX_PLANS`, else `$XDG_DATA_HOME/kernelx/plans`, else
//! `~/.local/share/kernelx/plans` ([`PlanStore::default_dir`]). `kernelx build` writes there
//! unless given `-o`; `kernelx table` and (later) `kernelx load <tunable>` read there.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::PlanError;
use crate::format::{KernelIdentity, Plan, TunablePlan};

/// The file suffix of stored plans.
const SUFFIX: &str = ".plan.json";

/// A directory of plans, one per tunable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanStore {
    dir: PathBuf,
}

impl PlanStore {
    /// The store in `dir` (created on the first [`PlanStore::save`]).
    pub fn new(dir: impl Into<PathBuf>) -> PlanStore {
        PlanStore { dir: dir.into() }
    }

    /// Where the store is, from the values of `KERNELX_PLANS`, `XDG_DATA_HOME` and `HOME` (the
    /// caller reads the environment); `None` when none is set.
    pub fn default_dir(
        plans: Option<OsString>,
        xdg_data_home: Option<OsString>,
        home: Option<OsString>,
    ) -> Option<PathBuf> {
        let set = |v: Option<OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
        set(plans)
            .or_else(|| set(xdg_data_home).map(|d| d.join("kernelx/plans")))
            .or_else(|| set(home).map(|h| h.join(".local/share/kernelx/plans")))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of tunable `name`.
    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}{SUFFIX}"))
    }

    /// Writes `tunable`'s plan for `kernel` (replacing an older one atomically); returns the
    /// file.
    pub fn save(
        &self,
        kernel: &KernelIdentity,
        tunable: &TunablePlan,
    ) -> Result<PathBuf, PlanError> {
        fs::create_dir_all(&self.dir).map_err(|source| PlanError::Store {
            path: self.dir.clone(),
            source,
        })?;
        let path = self.path_of(&tunable.name);
        Plan::new(kernel.clone(), vec![tunable.clone()]).write(&path)?;
        Ok(path)
    }

    /// The plan of tunable `name`.
    pub fn load(&self, name: &str) -> Result<Plan, PlanError> {
        let path = self.path_of(name);
        if !path.is_file() {
            return Err(self.not_in_store(name));
        }
        Plan::read(path)
    }

    /// The names of the stored tunables, sorted; empty when the directory does not exist.
    pub fn list(&self) -> Result<Vec<String>, PlanError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(PlanError::Store {
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| PlanError::Store {
                path: self.dir.clone(),
                source,
            })?;
            if let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(SUFFIX))
            {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Deletes the plan of tunable `name`; returns the file removed.
    pub fn delete(&self, name: &str) -> Result<PathBuf, PlanError> {
        let path = self.path_of(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(self.not_in_store(name)),
            Err(source) => Err(PlanError::Store { path, source }),
        }
    }

    fn not_in_store(&self, name: &str) -> PlanError {
        PlanError::NotInStore {
            name: name.to_owned(),
            dir: self.dir.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_dir_follows_the_environment() {
        let s = |v: &str| Some(OsString::from(v));
        assert_eq!(
            PlanStore::default_dir(s("/p"), s("/x"), s("/h")),
            Some(PathBuf::from("/p"))
        );
        assert_eq!(
            PlanStore::default_dir(None, s("/x"), s("/h")),
            Some(PathBuf::from("/x/kernelx/plans"))
        );
        assert_eq!(
            PlanStore::default_dir(s(""), None, s("/h")),
            Some(PathBuf::from("/h/.local/share/kernelx/plans"))
        );
        assert_eq!(PlanStore::default_dir(None, None, None), None);
    }

    #[test]
    fn save_list_load_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = PlanStore::new(dir.path().join("plans"));
        assert_eq!(store.list().unwrap(), Vec::<String>::new());
        let example = Plan::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/example.plan.json"
        ))
        .unwrap();
        let path = store.save(&example.kernel, &example.tunables[0]).unwrap();
        assert_eq!(path, store.path_of("PIPE_DEF_BUFFERS"));
        assert_eq!(store.list().unwrap(), ["PIPE_DEF_BUFFERS"]);
        assert_eq!(store.load("PIPE_DEF_BUFFERS").unwrap(), example);
        assert!(matches!(store.load("X"), Err(PlanError::NotInStore { .. })));
        store.delete("PIPE_DEF_BUFFERS").unwrap();
        assert!(matches!(
            store.delete("PIPE_DEF_BUFFERS"),
            Err(PlanError::NotInStore { .. })
        ));
        assert!(store.list().unwrap().is_empty());
    }
}
