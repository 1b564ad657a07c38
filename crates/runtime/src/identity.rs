//! Which kernel build is running, and whether it is the one a plan was built for.
//!
//! A plan's offsets and bytes belong to one build. The release (`uname -r`) names a kernel
//! version and flavour; the GNU build-id (a hash the linker writes into the `NT_GNU_BUILD_ID`
//! note) tells two builds of one release apart. The running kernel exposes its notes in
//! `/sys/kernel/notes`, and a loaded module's in `/sys/module/<name>/notes/.note.gnu.build-id`.

use std::path::{Path, PathBuf};

use kernelx_plan::{HexBytes, KernelIdentity, ModuleIdentity};
use serde::Serialize;

use crate::host::{HostError, HostView};

/// The running kernel's ELF notes.
pub const KERNEL_NOTES: &str = "/sys/kernel/notes";

/// `NT_GNU_BUILD_ID`, in notes named `GNU`.
const NT_GNU_BUILD_ID: u32 = 3;

/// Why the running kernel's identity could not be read or does not fit a plan.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// A file could not be read.
    #[error(transparent)]
    Host(#[from] HostError),
    /// A notes file is not a sequence of ELF notes.
    #[error("{}: not a sequence of ELF notes: {reason}", path.display())]
    Notes {
        /// The notes file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// The releases differ.
    #[error(
        "the plan is for kernel {plan}, but the running kernel is {live}: build a plan for \
         this kernel (`kernelx build`) or boot {plan}"
    )]
    ReleaseMismatch {
        /// The plan's release.
        plan: String,
        /// The running kernel's.
        live: String,
    },
    /// Same release, another build.
    #[error(
        "the plan is for {release} with build-id {plan}, but the running {release} has \
         build-id {live}: it is another build of that release; build a plan against the \
         running kernel's vmlinux"
    )]
    BuildIdMismatch {
        /// The release (equal on both sides).
        release: String,
        /// The plan's build-id.
        plan: HexBytes,
        /// The running kernel's.
        live: HexBytes,
    },
    /// The plan names a build-id, the running kernel shows none.
    #[error(
        "the plan is for the build with build-id {plan}, but {} holds no GNU build-id note, \
         so KernelX cannot tell whether the running kernel is that build",
        path.display()
    )]
    NoLiveBuildId {
        /// Where the running kernel's build-id should be.
        path: PathBuf,
        /// The plan's build-id.
        plan: HexBytes,
    },
    /// The module name is not one the kernel could have.
    #[error("`{module}` is not a module name (letters, digits, `_` and `-` only)")]
    BadModuleName {
        /// The name given.
        module: String,
    },
    /// The module the plan is for is not loaded.
    #[error(
        "the plan is for module {module}, which is not loaded (no /sys/module/{module}): load it first"
    )]
    ModuleNotLoaded {
        /// The module's name.
        module: String,
    },
    /// The loaded module is another build.
    #[error(
        "the plan is for module {module} with build-id {plan}, but the loaded {module} has \
         build-id {live}: build a plan against the loaded module"
    )]
    ModuleBuildIdMismatch {
        /// The module's name.
        module: String,
        /// The plan's build-id.
        plan: HexBytes,
        /// The loaded module's.
        live: HexBytes,
    },
}

/// The running kernel's identity, as it reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveIdentity {
    /// `uname -r`.
    pub release: String,
    /// The GNU build-id from `/sys/kernel/notes`, `None` when the kernel has none.
    pub build_id: Option<HexBytes>,
}

impl LiveIdentity {
    /// Reads the running kernel's release and build-id.
    pub fn read(host: &HostView) -> Result<LiveIdentity, IdentityError> {
        let release = host.kernel_release()?;
        let build_id = read_build_id(host, Path::new(KERNEL_NOTES))?;
        Ok(LiveIdentity { release, build_id })
    }
}

/// The identity checks a plan passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct VerifiedIdentity {
    /// The running kernel.
    pub live: LiveIdentity,
    /// Whether the build-ids were compared (`false`: the plan names none, so only the release
    /// and the code at every site vouch for the build).
    pub build_id_compared: bool,
    /// The module the sites are in, when there is one.
    pub module: Option<VerifiedModule>,
}

/// A loaded module that passed the identity check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct VerifiedModule {
    /// Its name.
    pub name: String,
    /// Its build-id, `None` when it has no build-id note.
    pub build_id: Option<HexBytes>,
    /// Whether the build-ids were compared.
    pub build_id_compared: bool,
}

/// Checks that the running kernel (and the module the plan's sites are in, if any) is the
/// build `expected` names.
pub fn verify_identity(
    host: &HostView,
    expected: &KernelIdentity,
    live: &LiveIdentity,
) -> Result<VerifiedIdentity, IdentityError> {
    if expected.release != live.release {
        return Err(IdentityError::ReleaseMismatch {
            plan: expected.release.clone(),
            live: live.release.clone(),
        });
    }
    let build_id_compared =
        match BuildIdCheck::of(expected.build_id.as_ref(), live.build_id.as_ref()) {
            BuildIdCheck::Compared(compared) => compared,
            BuildIdCheck::Unconfirmed { plan } => {
                return Err(IdentityError::NoLiveBuildId {
                    path: KERNEL_NOTES.into(),
                    plan,
                });
            }
            BuildIdCheck::Differs {
                plan,
                live: running,
            } => {
                return Err(IdentityError::BuildIdMismatch {
                    release: live.release.clone(),
                    plan,
                    live: running,
                });
            }
        };
    let module = expected
        .module
        .as_ref()
        .map(|m| verify_module(host, m))
        .transpose()?;
    Ok(VerifiedIdentity {
        live: live.clone(),
        build_id_compared,
        module,
    })
}

fn verify_module(
    host: &HostView,
    target: &ModuleIdentity,
) -> Result<VerifiedModule, IdentityError> {
    let module = target.name.as_str();
    // The name becomes a path under /sys/module.
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if module.is_empty() || !module.chars().all(valid) {
        return Err(IdentityError::BadModuleName {
            module: module.to_owned(),
        });
    }
    if !host.exists(format!("/sys/module/{module}")) {
        return Err(IdentityError::ModuleNotLoaded {
            module: module.to_owned(),
        });
    }
    let path = PathBuf::from(format!("/sys/module/{module}/notes/.note.gnu.build-id"));
    let live = read_build_id(host, &path)?;
    let build_id_compared = match BuildIdCheck::of(target.build_id.as_ref(), live.as_ref()) {
        BuildIdCheck::Compared(compared) => compared,
        BuildIdCheck::Unconfirmed { plan } => {
            return Err(IdentityError::NoLiveBuildId { path, plan });
        }
        BuildIdCheck::Differs { plan, live } => {
            return Err(IdentityError::ModuleBuildIdMismatch {
                module: module.to_owned(),
                plan,
                live,
            });
        }
    };
    Ok(VerifiedModule {
        name: module.to_owned(),
        build_id: live,
        build_id_compared,
    })
}

/// A plan's build-id against the running one.
enum BuildIdCheck {
    /// They agree: `true` when compared, `false` when the plan names none.
    Compared(bool),
    /// They differ.
    Differs { plan: HexBytes, live: HexBytes },
    /// The plan names one, the kernel shows none.
    Unconfirmed { plan: HexBytes },
}

impl BuildIdCheck {
    fn of(plan: Option<&HexBytes>, live: Option<&HexBytes>) -> BuildIdCheck {
        match (plan, live) {
            (None, _) => BuildIdCheck::Compared(false),
            (Some(plan), Some(live)) if plan == live => BuildIdCheck::Compared(true),
            (Some(plan), Some(live)) => BuildIdCheck::Differs {
                plan: plan.clone(),
                live: live.clone(),
            },
            (Some(plan), None) => BuildIdCheck::Unconfirmed { plan: plan.clone() },
        }
    }
}

/// The GNU build-id in notes file `path`, `None` when the file or the note does not exist.
fn read_build_id(host: &HostView, path: &Path) -> Result<Option<HexBytes>, IdentityError> {
    match host.read(path) {
        Ok(notes) => gnu_build_id(&notes).map_err(|reason| IdentityError::Notes {
            path: path.to_owned(),
            reason,
        }),
        // Without CONFIG_SYSFS, or for a module without notes, there is no file at all.
        Err(HostError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The desc of the first `GNU` note of type `NT_GNU_BUILD_ID` in a sequence of ELF notes
/// (each: namesz, descsz, type as native-endian u32, then name and desc padded to 4 bytes).
pub fn gnu_build_id(notes: &[u8]) -> Result<Option<HexBytes>, &'static str> {
    let mut rest = notes;
    while !rest.is_empty() {
        let word = |at: usize| -> Result<usize, &'static str> {
            let bytes = rest.get(at..at + 4).ok_or("a note header is cut short")?;
            Ok(u32::from_ne_bytes(bytes.try_into().expect("4 bytes")) as usize)
        };
        let (namesz, descsz, kind) = (word(0)?, word(4)?, word(8)?);
        let name_end = 12 + namesz;
        let desc_start = name_end.next_multiple_of(4);
        let desc_end = desc_start + descsz;
        let (name, desc) = match (rest.get(12..name_end), rest.get(desc_start..desc_end)) {
            (Some(name), Some(desc)) => (name, desc),
            _ => return Err("a note's name or desc runs past the end"),
        };
        if name == b"GNU\0" && kind == NT_GNU_BUILD_ID as usize {
            return Ok(Some(HexBytes::from(desc)));
        }
        rest = rest.get(desc_end.next_multiple_of(4)..).unwrap_or_default();
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_host::{FakeHost, note};

    const RELEASE: &str = "6.12.117+deb12-cloud-amd64";
    const BUILD_ID: [u8; 20] = [
        0x7f, 0x76, 0xf3, 0x9f, 0xaf, 0x07, 0xf3, 0x4c, 0xfa, 0x9f, 0xad, 0xd8, 0x01, 0xe1, 0x31,
        0xbf, 0xa8, 0xcb, 0x6d, 0xc3,
    ];

    fn expected(release: &str, build_id: Option<&[u8]>) -> KernelIdentity {
        KernelIdentity {
            release: release.into(),
            build_id: build_id.map(HexBytes::from),
            module: None,
        }
    }

    fn in_module(name: &str, build_id: Option<&[u8]>) -> KernelIdentity {
        KernelIdentity {
            module: Some(ModuleIdentity {
                name: name.into(),
                build_id: build_id.map(HexBytes::from),
            }),
            ..expected(RELEASE, Some(&BUILD_ID))
        }
    }

    #[track_caller]
    fn check(host: &FakeHost, plan: &KernelIdentity) -> Result<VerifiedIdentity, IdentityError> {
        let view = host.view();
        let live = LiveIdentity::read(&view).unwrap();
        verify_identity(&view, plan, &live)
    }

    #[test]
    fn finds_the_build_id_among_other_notes() {
        let host = FakeHost::new();
        host.kernel(RELEASE, &BUILD_ID);
        let live = LiveIdentity::read(&host.view()).unwrap();
        assert_eq!(live.release, RELEASE);
        assert_eq!(
            live.build_id.unwrap().to_string(),
            "7f76f39faf07f34cfa9fadd801e131bfa8cb6dc3"
        );
    }

    #[test]
    fn accepts_the_same_release_and_build_id() {
        let host = FakeHost::new();
        host.kernel(RELEASE, &BUILD_ID);
        let verified = check(&host, &expected(RELEASE, Some(&BUILD_ID))).unwrap();
        assert!(verified.build_id_compared);
        let unknown = check(&host, &expected(RELEASE, None)).unwrap();
        assert!(!unknown.build_id_compared);
    }

    #[test]
    fn names_both_builds_when_they_differ() {
        let host = FakeHost::new();
        let mut other = BUILD_ID;
        other[19] ^= 1;
        host.kernel(RELEASE, &other);
        let err = check(&host, &expected(RELEASE, Some(&BUILD_ID))).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, IdentityError::BuildIdMismatch { .. }),
            "{err:?}"
        );
        assert!(
            message.contains("7f76f39faf07f34cfa9fadd801e131bfa8cb6dc3"),
            "{message}"
        );
        assert!(
            message.contains("7f76f39faf07f34cfa9fadd801e131bfa8cb6dc2"),
            "{message}"
        );
    }

    #[test]
    fn names_both_releases_when_they_differ() {
        let host = FakeHost::new();
        host.kernel("6.1.0-28-cloud-amd64", &BUILD_ID);
        let err = check(&host, &expected(RELEASE, Some(&BUILD_ID))).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(RELEASE) && message.contains("6.1.0-28"),
            "{message}"
        );
    }

    #[test]
    fn refuses_a_plan_build_id_the_kernel_cannot_confirm() {
        let host = FakeHost::new();
        host.kernel(RELEASE, &BUILD_ID);
        host.write(KERNEL_NOTES, note(b"Linux\0", 0x101, &[6, 0, 0, 0]));
        let err = check(&host, &expected(RELEASE, Some(&BUILD_ID))).unwrap_err();
        assert!(
            matches!(err, IdentityError::NoLiveBuildId { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn rejects_truncated_notes() {
        let mut notes = note(b"GNU\0", 3, &BUILD_ID);
        notes.truncate(30);
        assert!(gnu_build_id(&notes).is_err());
        assert!(gnu_build_id(&notes[..7]).is_err());
        assert_eq!(gnu_build_id(&[]), Ok(None));
    }

    #[test]
    fn checks_a_module_by_name_and_build_id() {
        let host = FakeHost::new();
        host.kernel(RELEASE, &BUILD_ID);
        let module_id = [0xab; 20];
        host.write(
            "/sys/module/kx_target/notes/.note.gnu.build-id",
            note(b"GNU\0", 3, &module_id),
        );
        let verified = check(&host, &in_module("kx_target", Some(&module_id)))
            .unwrap()
            .module
            .unwrap();
        assert!(verified.build_id_compared);
        assert_eq!(verified.name, "kx_target");

        let err = check(&host, &in_module("kx_target", Some(&[0xcd; 20]))).unwrap_err();
        assert!(
            matches!(err, IdentityError::ModuleBuildIdMismatch { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains(&"ab".repeat(20)), "{err}");

        let err = check(&host, &in_module("absent", None)).unwrap_err();
        assert!(
            err.to_string().contains("absent, which is not loaded"),
            "{err}"
        );
    }
}
