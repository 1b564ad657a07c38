//! The cache directory: compiled objects by content, and the memos that let a warm run skip
//! `make -n` and the preprocessor.
//!
//! ```text
//! <root>/objects/<k[..2]>/<k>.o     objects; k = sha256(compiler, command, preprocessed text)
//! <root>/overlays/<h>/<tree path>   modified sources (and their copies); h = sha256(contents)
//! <root>/memo/<kind>/<k>.json       kbuild commands, preprocessing results (see `Memo`)
//! <root>/tmp/                       scratch; anything here is garbage once no run is active
//! ```
//!
//! Every file is written under `tmp/` first and renamed into place, so an interrupted run
//! leaves no half-written entry. Entries are never modified once in place.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest as _, Sha256};

use crate::KbuildError;

/// KernelX's cache directory (variant objects, overlays, memos).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// A cache rooted at `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    /// The cache the lab and the CLI share: `$KERNELX_CACHE`, else `$XDG_CACHE_HOME/kernelx`,
    /// else `~/.cache/kernelx`.
    ///
    /// # Errors
    ///
    /// [`KbuildError::Write`] naming `~/.cache/kernelx` when none of the variables is set.
    pub fn from_env() -> Result<Cache, KbuildError> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let root = if let Some(dir) = var("KERNELX_CACHE") {
            PathBuf::from(dir)
        } else if let Some(dir) = var("XDG_CACHE_HOME") {
            PathBuf::from(dir).join("kernelx")
        } else if let Some(home) = var("HOME") {
            PathBuf::from(home).join(".cache/kernelx")
        } else {
            return Err(KbuildError::write(
                "~/.cache/kernelx",
                std::io::Error::other("neither KERNELX_CACHE, XDG_CACHE_HOME nor HOME is set"),
            ));
        };
        Ok(Cache { root })
    }

    /// The cache's top directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn subdir(&self, name: &str) -> Result<PathBuf, KbuildError> {
        let dir = self.root.join(name);
        fs::create_dir_all(&dir).map_err(|e| KbuildError::write(&dir, e))?;
        Ok(dir)
    }

    /// A fresh scratch directory under `tmp/`, removed when dropped.
    ///
    /// A run killed by a signal cannot remove its scratch directory; those older than a day
    /// (longer than any build) are removed here.
    pub(crate) fn scratch(&self) -> Result<tempfile::TempDir, KbuildError> {
        let tmp = self.subdir("tmp")?;
        sweep_stale(&tmp, std::time::Duration::from_secs(24 * 3600));
        tempfile::Builder::new()
            .prefix("run-")
            .tempdir_in(&tmp)
            .map_err(|e| KbuildError::write(&tmp, e))
    }

    /// Where the object with key `key` lives (whether or not it exists yet).
    pub(crate) fn object_path(&self, key: &str) -> PathBuf {
        self.root
            .join("objects")
            .join(&key[..2])
            .join(format!("{key}.o"))
    }

    /// Moves a freshly built object into the cache under `key`, read-only.
    pub(crate) fn store_object(&self, key: &str, built: &Path) -> Result<PathBuf, KbuildError> {
        let target = self.object_path(key);
        let dir = target.parent().expect("objects have a directory");
        fs::create_dir_all(dir).map_err(|e| KbuildError::write(dir, e))?;
        fs::set_permissions(built, fs::Permissions::from_mode(0o444))
            .map_err(|e| KbuildError::write(built, e))?;
        fs::rename(built, &target).map_err(|e| KbuildError::write(&target, e))?;
        Ok(target)
    }

    fn memo_path(&self, kind: &str, key: &str) -> PathBuf {
        self.root
            .join("memo")
            .join(kind)
            .join(format!("{key}.json"))
    }

    /// A memo of `kind` under `key`, if present and readable (a damaged one is ignored).
    pub(crate) fn read_memo<T: DeserializeOwned>(&self, kind: &str, key: &str) -> Option<T> {
        let text = fs::read(self.memo_path(kind, key)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Stores a memo atomically.
    pub(crate) fn write_memo<T: Serialize>(
        &self,
        kind: &str,
        key: &str,
        value: &T,
    ) -> Result<(), KbuildError> {
        let target = self.memo_path(kind, key);
        let text = serde_json::to_vec(value).expect("memos serialize");
        self.write_atomically(&target, &text)
    }

    /// Writes `bytes` to `target` through a temporary file in `tmp/` and a rename.
    pub(crate) fn write_atomically(&self, target: &Path, bytes: &[u8]) -> Result<(), KbuildError> {
        let dir = target.parent().expect("cache files have a directory");
        fs::create_dir_all(dir).map_err(|e| KbuildError::write(dir, e))?;
        let tmp = self.subdir("tmp")?;
        let mut file =
            tempfile::NamedTempFile::new_in(&tmp).map_err(|e| KbuildError::write(&tmp, e))?;
        file.write_all(bytes)
            .map_err(|e| KbuildError::write(file.path(), e))?;
        file.persist(target)
            .map_err(|e| KbuildError::write(target, e.error))?;
        Ok(())
    }
}

/// Removes the entries of `dir` not modified for `age`; errors are ignored (another run may
/// be sweeping too).
fn sweep_stale(dir: &Path, age: std::time::Duration) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let now = std::time::SystemTime::now();
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).is_ok_and(|d| d > age));
        if stale {
            let path = entry.path();
            let _ = fs::remove_dir_all(&path).or_else(|_| fs::remove_file(&path));
        }
    }
}

/// A file's identity for memo validation: size and modification time. kbuild itself trusts
/// mtimes; an edit that keeps both is the one case a memo misses, as with make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub(crate) struct Stamp {
    pub size: u64,
    pub mtime_ns: i128,
}

impl Stamp {
    pub(crate) fn of(path: &Path) -> Option<Stamp> {
        let meta = fs::metadata(path).ok()?;
        Some(Stamp {
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        })
    }
}

/// SHA-256 over a sequence of length-prefixed fields, as lowercase hex.
#[derive(Clone, Default)]
pub(crate) struct KeyHasher(Sha256);

impl KeyHasher {
    pub(crate) fn new(kind: &str) -> Self {
        let mut h = KeyHasher(Sha256::new());
        h.field(kind.as_bytes());
        h
    }

    pub(crate) fn field(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    pub(crate) fn str(&mut self, s: impl AsRef<std::ffi::OsStr>) -> &mut Self {
        use std::os::unix::ffi::OsStrExt as _;
        self.field(s.as_ref().as_bytes())
    }

    pub(crate) fn finish(&self) -> String {
        hex(&self.0.clone().finalize())
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        write!(s, "{b:02x}").expect("writing to a String");
    }
    s
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_fields() {
        let a = KeyHasher::new("k").str("ab").str("c").finish();
        let b = KeyHasher::new("k").str("a").str("bc").finish();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(a, KeyHasher::new("k").str("ab").str("c").finish());
    }

    #[test]
    fn memos_and_objects_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        assert_eq!(cache.read_memo::<Vec<u32>>("t", "k"), None);
        cache.write_memo("t", "k", &vec![1u32, 2]).unwrap();
        assert_eq!(cache.read_memo::<Vec<u32>>("t", "k"), Some(vec![1, 2]));

        let scratch = cache.scratch().unwrap();
        let built = scratch.path().join("x.o");
        fs::write(&built, b"obj").unwrap();
        let key = sha256(b"key");
        let stored = cache.store_object(&key, &built).unwrap();
        assert_eq!(stored, cache.object_path(&key));
        assert_eq!(fs::read(&stored).unwrap(), b"obj");
        assert!(fs::metadata(&stored).unwrap().permissions().readonly());
    }

    #[test]
    fn sweeping_removes_only_old_entries() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("run-old")).unwrap();
        fs::write(dir.path().join("run-old/x"), b"").unwrap();
        fs::write(dir.path().join("new"), b"").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(48 * 3600);
        let times = fs::FileTimes::new().set_modified(old);
        fs::File::open(dir.path().join("run-old"))
            .unwrap()
            .set_times(times)
            .unwrap();
        sweep_stale(dir.path(), std::time::Duration::from_secs(24 * 3600));
        assert!(!dir.path().join("run-old").exists());
        assert!(dir.path().join("new").exists());
    }

    #[test]
    fn stamps_change_with_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, b"1").unwrap();
        let a = Stamp::of(&p).unwrap();
        fs::write(&p, b"22").unwrap();
        assert_ne!(Some(a), Stamp::of(&p));
        assert_eq!(Stamp::of(&dir.path().join("missing")), None);
    }
}
