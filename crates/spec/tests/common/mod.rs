//! Helpers shared by the integration tests.

use std::fs;
use std::path::{Path, PathBuf};

/// `shared/compat/prototype-tunables`, found from this crate. Its absence fails the test: a
/// silent skip would hide the loss of the compatibility check.
#[track_caller]
pub fn prototype_dir() -> PathBuf {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/compat/prototype-tunables");
    assert!(
        dir.is_dir(),
        "prototype tunable files not found at {}; the compatibility tests need the shared compat directory (shared/compat/prototype-tunables next to the repository)",
        dir.display()
    );
    dir
}

/// The `.toml` files of the prototype, sorted.
#[track_caller]
pub fn prototype_files() -> Vec<PathBuf> {
    let dir = prototype_dir();
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 7,
        "expected the 7 prototype files in {}, found {}",
        dir.display(),
        files.len()
    );
    files
}
