//! The process environment's say in a tunable file, passed in as data so tests never mutate
//! the real environment.

use std::path::{Path, PathBuf};

/// Environment values that change how a file is read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvOverrides {
    /// Replaces the file's `kernel_dir` when set, used as is (the `KERNEL_DIR` variable, as in
    /// the prototype).
    pub kernel_dir: Option<PathBuf>,
    /// Expands a leading `~` in the file's `kernel_dir` (the `HOME` variable).
    pub home: Option<PathBuf>,
}

impl EnvOverrides {
    /// Reads `KERNEL_DIR` and `HOME`; an empty variable counts as unset, and a leading `~` in
    /// `KERNEL_DIR` is expanded (a quoted `KERNEL_DIR="~/linux"` reaches us unexpanded).
    pub fn from_process_env() -> Self {
        let var = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let home = var("HOME");
        let kernel_dir = var("KERNEL_DIR").map(|dir| match expand_home(&dir, home.as_deref()) {
            Expanded::Path(path) => path,
            Expanded::NoHome | Expanded::OtherUser => dir,
        });
        EnvOverrides { kernel_dir, home }
    }
}

/// The result of expanding a leading `~`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Expanded {
    Path(PathBuf),
    /// The path starts with `~` but no home directory is known.
    NoHome,
    /// `~user/...`: would need the password database; not worth it for one key.
    OtherUser,
}

/// Expands `~` and `~/...` with `home`; other paths come back unchanged.
pub(crate) fn expand_home(path: &Path, home: Option<&Path>) -> Expanded {
    let Some(text) = path.to_str().filter(|t| t.starts_with('~')) else {
        return Expanded::Path(path.to_owned());
    };
    let rest = &text[1..];
    if !rest.is_empty() && !rest.starts_with('/') {
        return Expanded::OtherUser;
    }
    match home {
        // `join("")` would add a trailing slash to a bare `~`.
        Some(home) if rest.trim_start_matches('/').is_empty() => Expanded::Path(home.to_owned()),
        Some(home) => Expanded::Path(home.join(rest.trim_start_matches('/'))),
        None => Expanded::NoHome,
    }
}

#[cfg(test)]
mod tests {
    use super::{EnvOverrides, Expanded, expand_home};
    use std::path::{Path, PathBuf};

    #[test]
    fn expands_a_leading_tilde_only() {
        let home = Some(Path::new("/home/kx"));
        let expand = |p: &str| expand_home(Path::new(p), home);
        assert_eq!(expand("~"), Expanded::Path(PathBuf::from("/home/kx")));
        assert_eq!(expand("~/"), Expanded::Path(PathBuf::from("/home/kx")));
        assert_eq!(
            expand("~/linux-6.8.0"),
            Expanded::Path(PathBuf::from("/home/kx/linux-6.8.0"))
        );
        assert_eq!(
            expand("/src/~/x"),
            Expanded::Path(PathBuf::from("/src/~/x"))
        );
        assert_eq!(expand("linux"), Expanded::Path(PathBuf::from("linux")));
        assert_eq!(expand("~kx/linux"), Expanded::OtherUser);
        assert_eq!(expand_home(Path::new("~/linux"), None), Expanded::NoHome);
    }

    #[test]
    fn from_process_env_treats_empty_as_unset() {
        // Reads the real environment without changing it; only the invariant is checked.
        let env = EnvOverrides::from_process_env();
        assert!(env.kernel_dir.is_none_or(|d| !d.as_os_str().is_empty()));
        assert!(env.home.is_none_or(|h| !h.as_os_str().is_empty()));
    }
}
