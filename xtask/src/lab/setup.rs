//! `cargo xtask lab setup`: everything the lab needs on this machine, installed or fetched only
//! when missing, so a second run takes seconds.
//!
//! Steps, each idempotent and safe to interrupt (work happens in `*.partial` paths that are
//! renamed into place, or is redone when its completion marker is missing):
//! 1. Debian packages the host lacks (QEMU, busybox-static, the kernel build tools, the lab
//!    kernel's headers package so modules build against `/usr/src/linux-headers-<release>`);
//! 2. virtiofsd, built with cargo into the cache (this kernel has no 9p, so the host file system
//!    reaches the VM over virtio-fs);
//! 3. the kernel's packages (image, debug symbols, source), downloaded into the cache;
//! 4. the image and the debug vmlinux extracted; the image's modules indexed with depmod;
//! 5. the source tree extracted, configured with the image's config and `make prepare`d with
//!    the compiler Debian used, so single objects rebuild byte-identically.

use std::fs;
use std::num::NonZeroUsize;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use kernelx_kbuild::{KernelTree, Toolchain, make_command};

use super::kernel::{Cache, KernelFiles, LabKernel, SOURCE_PACKAGE};
use crate::process;

/// virtiofsd is built from crates.io; pinned so every machine runs the same daemon.
const VIRTIOFSD_VERSION: &str = "1.14.0";

/// Host packages the lab needs, with the reason shown when they are installed.
const HOST_PACKAGES: &[(&str, &str)] = &[
    ("qemu-system-x86", "boots the lab kernel (TCG)"),
    ("busybox-static", "the lab VM's init"),
    ("kmod", "depmod for the image's modules"),
    ("make", "kbuild"),
    ("gcc-12", "the compiler Debian built 6.12 with"),
    ("flex", "kbuild prepare"),
    ("bison", "kbuild prepare"),
    ("bc", "kbuild prepare"),
    (
        "libelf-dev",
        "kbuild prepare (objtool); libbpf (kernelx-runtime)",
    ),
    ("libssl-dev", "kbuild prepare (sign-file)"),
    ("dwarves", "pahole, for module BTF"),
    ("xz-utils", "unpacking the source tarball"),
    ("cpio", "the initramfs writer's test lists archives with it"),
    ("libseccomp-dev", "building virtiofsd"),
    ("libcap-ng-dev", "building virtiofsd"),
    (
        "pkg-config",
        "building virtiofsd and libbpf (kernelx-runtime)",
    ),
    (
        "clang",
        "compiling the SIE BPF program (kernelx-runtime build.rs)",
    ),
    ("zlib1g-dev", "libbpf (kernelx-runtime)"),
    (
        "fio",
        "the block workloads of the demo and the catalog evaluation",
    ),
];

/// Which optional parts `setup` prepares.
#[derive(Debug, Clone, Copy)]
pub struct SetupParts {
    /// The `-dbg` vmlinux (341 MB on disk).
    pub debug_vmlinux: bool,
    /// The prepared source tree (1.7 GB on disk, about a minute to unpack).
    pub source: bool,
}

impl SetupParts {
    /// Everything: what building plans on the host and the lab tests need.
    pub const ALL: SetupParts = SetupParts {
        debug_vmlinux: true,
        source: true,
    };
}

/// Installs and fetches whatever is missing for `kernel`.
pub fn setup(cache: &Cache, kernel: &LabKernel, parts: SetupParts) -> Result<()> {
    fs::create_dir_all(cache.root())
        .with_context(|| format!("creating the lab cache {}", cache.root().display()))?;
    // Two setups at once would unpack into the same partial directories; the second waits.
    let lock_path = cache.root().join("setup.lock");
    let lock = fs::File::create(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    let files = cache.kernel(kernel);
    step("host packages", || install_host_packages(kernel))?;
    step("virtiofsd", || install_virtiofsd(cache))?;
    step("kernel packages", || download_debs(cache, kernel, parts))?;
    step("kernel image", || extract_image(cache, kernel, &files))?;
    if parts.debug_vmlinux {
        step("debug vmlinux", || {
            extract_debug_vmlinux(cache, kernel, &files)
        })?;
    }
    if parts.source {
        step("source tree", || prepare_source(cache, kernel, &files))?;
    }
    Ok(())
}

/// Runs one setup step under a spinner and reports what it did and how long it took.
fn step(title: &str, work: impl FnOnce() -> Result<Outcome>) -> Result<()> {
    let spinner = ProgressBar::new_spinner()
        .with_style(
            ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("valid template"),
        )
        .with_message(title.to_owned());
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    let start = Instant::now();
    let result = work();
    spinner.finish_and_clear();
    let outcome = result.with_context(|| format!("lab setup: {title}"))?;
    let elapsed = start.elapsed().as_secs_f64();
    match outcome {
        Outcome::Present => eprintln!("  ok    {title}: already there"),
        Outcome::Done(what) => eprintln!("  done  {title}: {what} ({elapsed:.1}s)"),
    }
    Ok(())
}

enum Outcome {
    Present,
    Done(String),
}

fn is_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev}", package])
        .output()
        .map(|out| out.status.success() && out.stdout.starts_with(b"ii"))
        .unwrap_or(false)
}

fn install_host_packages(kernel: &LabKernel) -> Result<Outcome> {
    let headers = kernel.headers_package();
    let mut wanted: Vec<&str> = HOST_PACKAGES.iter().map(|(name, _)| *name).collect();
    wanted.push(&headers);
    let missing: Vec<&str> = wanted.into_iter().filter(|p| !is_installed(p)).collect();
    if missing.is_empty() {
        return Ok(Outcome::Present);
    }
    let log = std::env::temp_dir().join("kernelx-lab-apt.log");
    process::run_logged(Command::new("apt-get").args(["update", "-q"]), &log)?;
    process::run_logged(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing),
        &log,
    )
    .context("installing the lab's Debian packages (the lab needs root and Debian 12 archives)")?;
    Ok(Outcome::Done(format!("installed {}", missing.join(" "))))
}

fn install_virtiofsd(cache: &Cache) -> Result<Outcome> {
    if cache.virtiofsd().is_file() {
        return Ok(Outcome::Present);
    }
    fs::create_dir_all(cache.tools())?;
    let log = cache.tools().join("virtiofsd-build.log");
    process::run_logged(
        Command::new("cargo")
            .args([
                "install",
                "--locked",
                "--version",
                VIRTIOFSD_VERSION,
                "--root",
            ])
            .arg(cache.tools())
            .arg("virtiofsd"),
        &log,
    )?;
    Ok(Outcome::Done(format!(
        "built virtiofsd {VIRTIOFSD_VERSION}"
    )))
}

/// The packages a setup downloads, by name (pinned to the kernel's version).
fn debs_wanted(kernel: &LabKernel, parts: SetupParts) -> Vec<String> {
    let mut names = vec![kernel.image_package()];
    if parts.debug_vmlinux {
        names.push(kernel.dbg_package());
    }
    if parts.source {
        names.push(SOURCE_PACKAGE.to_owned());
    }
    names
}

/// The downloaded `.deb` of `package` at `kernel`'s version, if present.
fn deb_path(cache: &Cache, kernel: &LabKernel, package: &str) -> Option<PathBuf> {
    let prefix = format!("{package}_{}_", kernel.version);
    fs::read_dir(cache.debs())
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
}

fn require_deb(cache: &Cache, kernel: &LabKernel, package: &str) -> Result<PathBuf> {
    deb_path(cache, kernel, package).with_context(|| {
        format!(
            "{package} {} is not in {}; run `cargo xtask lab setup`",
            kernel.version,
            cache.debs().display()
        )
    })
}

fn download_debs(cache: &Cache, kernel: &LabKernel, parts: SetupParts) -> Result<Outcome> {
    let missing: Vec<String> = debs_wanted(kernel, parts)
        .into_iter()
        .filter(|p| deb_path(cache, kernel, p).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(Outcome::Present);
    }
    // Download beside the cache and move in afterwards: a half-downloaded file never looks done.
    let partial = cache.debs().join(".partial");
    let _ = fs::remove_dir_all(&partial);
    fs::create_dir_all(&partial)?;
    let log = partial.join("download.log");
    let specs: Vec<String> = missing
        .iter()
        .map(|p| format!("{p}={}", kernel.version))
        .collect();
    process::run_logged(
        Command::new("apt-get")
            .arg("download")
            .args(&specs)
            .current_dir(&partial),
        &log,
    )
    .with_context(|| {
        format!(
            "downloading Debian kernel {} (if the archive dropped it, pick another with \
             KERNELX_LAB_KERNEL=<version> from `cargo xtask lab versions`)",
            kernel.version
        )
    })?;
    for entry in fs::read_dir(&partial)?.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "deb") {
            fs::rename(&path, cache.debs().join(entry.file_name()))?;
        }
    }
    fs::remove_dir_all(&partial)?;
    Ok(Outcome::Done(format!("downloaded {}", missing.join(" "))))
}

fn extract_image(cache: &Cache, kernel: &LabKernel, files: &KernelFiles) -> Result<Outcome> {
    let image = files.image();
    if files.vmlinuz().is_file() && files.modules().join("modules.dep").is_file() {
        return Ok(Outcome::Present);
    }
    let deb = require_deb(cache, kernel, &kernel.image_package())?;
    let partial = image.with_extension("partial");
    let _ = fs::remove_dir_all(&partial);
    fs::create_dir_all(&partial)?;
    process::output(Command::new("dpkg").arg("-x").arg(&deb).arg(&partial))?;
    // The image package leaves `build` to the headers package; the VM sees this tree at
    // /lib/modules/<release>, so point `build` where the headers package installed them.
    let modules = partial.join(format!("lib/modules/{}", kernel.release()));
    symlink(
        format!("/usr/src/linux-headers-{}", kernel.release()),
        modules.join("build"),
    )?;
    process::output(
        Command::new("depmod")
            .arg("-b")
            .arg(&partial)
            .arg(kernel.release()),
    )?;
    let _ = fs::remove_dir_all(&image);
    fs::rename(&partial, &image)?;
    // The VM shows the image's boot/ at /boot, which needs a mount point on the shared host root.
    fs::create_dir_all("/boot")?;
    Ok(Outcome::Done(format!("unpacked into {}", image.display())))
}

fn extract_debug_vmlinux(
    cache: &Cache,
    kernel: &LabKernel,
    files: &KernelFiles,
) -> Result<Outcome> {
    let vmlinux = files.vmlinux();
    if vmlinux.is_file() {
        return Ok(Outcome::Present);
    }
    let deb = require_deb(cache, kernel, &kernel.dbg_package())?;
    let partial = vmlinux.with_extension("partial");
    // Only one member of the 318 MB package is needed; stream it out rather than unpack all.
    let member = format!("./usr/lib/debug/boot/vmlinux-{}", kernel.release());
    process::output(
        Command::new("bash")
            .args([
                "-o",
                "pipefail",
                "-c",
                r#"dpkg --fsys-tarfile "$1" | tar -xO "$2" > "$3""#,
                "extract",
            ])
            .arg(&deb)
            .arg(&member)
            .arg(&partial),
    )?;
    fs::rename(&partial, &vmlinux)?;
    Ok(Outcome::Done(format!("extracted {}", vmlinux.display())))
}

/// Marks a source tree whose extraction and `make prepare` both finished.
const PREPARED_MARKER: &str = ".kernelx-prepared";

fn prepare_source(cache: &Cache, kernel: &LabKernel, files: &KernelFiles) -> Result<Outcome> {
    let tree = files.source();
    if tree.join(PREPARED_MARKER).is_file() {
        return Ok(Outcome::Present);
    }
    // kbuild writes absolute paths into what it generates, so the tree is prepared in place and
    // redone from scratch whenever the marker is missing.
    if tree.exists() {
        fs::remove_dir_all(&tree)
            .with_context(|| format!("removing unfinished {}", tree.display()))?;
    }
    let deb = require_deb(cache, kernel, SOURCE_PACKAGE)?;
    fs::create_dir_all(&files.dir)?;
    let tarball = format!("./usr/src/{SOURCE_PACKAGE}.tar.xz");
    process::output(
        Command::new("bash")
            .args([
                "-o",
                "pipefail",
                "-c",
                r#"dpkg --fsys-tarfile "$1" | tar -xO "$2" | tar -xJ -C "$3""#,
                "extract",
            ])
            .arg(&deb)
            .arg(&tarball)
            .arg(&files.dir),
    )?;
    if !tree.join("Makefile").is_file() {
        bail!(
            "{tarball} in {} did not unpack to {}",
            deb.display(),
            tree.display()
        );
    }
    fs::copy(files.config(), tree.join(".config"))
        .with_context(|| format!("copying {} into the tree", files.config().display()))?;
    let source = KernelTree::open(&tree)?;
    let toolchain = Toolchain::debian_gcc12();
    let jobs = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
    // Debian sets the release on make's command line; kbuild records it in kernel.release
    // and utsrelease.h, so the tree reports the same release as the image.
    let release = format!("KERNELRELEASE={}", kernel.release());
    for target in ["olddefconfig", "prepare"] {
        let log = files.dir.join(format!("{target}.log"));
        let make = make_command(&source, &toolchain, jobs, &[&release, target]);
        process::run_logged(&mut make.to_command(), &log)?;
    }
    fs::write(tree.join(PREPARED_MARKER), format!("{}\n", kernel.version))?;
    Ok(Outcome::Done(format!("prepared {}", tree.display())))
}

/// Whether `setup` has finished for `kernel` (the VM can boot).
pub fn check_bootable(cache: &Cache, kernel: &LabKernel) -> Result<()> {
    let files = cache.kernel(kernel);
    for (path, what) in [
        (files.vmlinuz(), "the kernel image"),
        (cache.virtiofsd(), "virtiofsd"),
        (PathBuf::from("/usr/bin/qemu-system-x86_64"), "QEMU"),
        (PathBuf::from("/bin/busybox"), "busybox-static"),
    ] {
        if !Path::new(&path).exists() {
            bail!(
                "{what} is missing ({}); run `cargo xtask lab setup` first",
                path.display()
            );
        }
    }
    Ok(())
}
