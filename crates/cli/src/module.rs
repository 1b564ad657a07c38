//! The kernelx module from the command line: `kernelx setup` builds and loads it; `load` loads
//! a given one when it is missing.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use kernelx_runtime::host::HostView;
use kernelx_runtime::kallsyms::Kallsyms;
use kernelx_runtime::kmod;
use kernelx_runtime::lock::StateLock;
use kernelx_runtime::state::StateDir;

use crate::args::SetupArgs;

/// Makes sure the kernelx module is loaded: when it is not, inserts `ko` (from `--module` or
/// `$KERNELX_MODULE`), or says how to get one. Returns whether it inserted it.
pub fn ensure_loaded(
    host: &HostView,
    ko: Option<&Path>,
    err: &mut impl Write,
) -> anyhow::Result<bool> {
    if kmod::is_loaded(host) {
        return Ok(false);
    }
    let Some(ko) = ko else {
        bail!(
            "the kernelx module is not loaded ({} is missing) and no module file was given: \
             run `kernelx setup` (builds it for the running kernel and loads it), or pass \
             --module KO (or set KERNELX_MODULE) to a kernelx.ko built for this kernel; nothing \
             was loaded",
            kmod::MODULE_SYSFS
        );
    };
    if !ko.is_file() {
        bail!(
            "the kernelx module file {} does not exist: build it with `kernelx setup`, or fix \
             --module / KERNELX_MODULE; nothing was loaded",
            ko.display()
        );
    }
    insert(host, ko, err)?;
    Ok(true)
}

fn insert(host: &HostView, ko: &Path, err: &mut impl Write) -> anyhow::Result<()> {
    let kallsyms = Kallsyms::read(host).context("reading /proc/kallsyms (needs root)")?;
    let address = kmod::current_kprobe_addr(&kallsyms)?;
    kmod::insert(ko, address)
        .with_context(|| format!("loading the kernelx module {}", ko.display()))?;
    writeln!(err, "loaded the kernelx module {}", ko.display())?;
    Ok(())
}

/// Removes the module `ensure_loaded` inserted for a load that then failed; says so when it
/// cannot (a program's last reference may still hold it for a moment).
pub fn remove_after_failure(err: &mut impl Write) -> anyhow::Result<()> {
    match kmod::remove() {
        Ok(()) => writeln!(err, "removed the kernelx module again")?,
        Err(e) => writeln!(
            err,
            "warning: the kernelx module inserted for this load stays loaded ({e}); `rmmod \
             kernelx` removes it"
        )?,
    }
    Ok(())
}

/// Runs `kernelx setup`: progress and the result to `err`, the module's path to `out`.
pub fn setup(args: &SetupArgs, out: &mut impl Write, err: &mut impl Write) -> anyhow::Result<()> {
    let host = HostView::system();
    let release = host.kernel_release()?;
    let kdir = args
        .kernel_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/lib/modules/{release}/build")));
    let dir = cache_dir(&release)?;
    if kmod::is_loaded(&host) {
        writeln!(out, "the kernelx module is loaded already: nothing to do")?;
        return Ok(());
    }
    let make = kmod::make_command(&dir, &kdir);
    if args.dry_run {
        writeln!(
            out,
            "would write the kernelx module's source to {}",
            dir.display()
        )?;
        writeln!(out, "would run: {}", kmod::render(&make))?;
        writeln!(
            out,
            "would run: insmod {} current_kprobe_addr=0x<current_kprobe in /proc/kallsyms>",
            kmod::built_module(&dir).display()
        )?;
        return Ok(());
    }
    if !kdir.join(".config").is_file() {
        bail!(
            "no configured kernel build directory at {}: install the headers of the running \
             kernel (Debian: apt install linux-headers-{release}) or give --kernel-dir KDIR",
            kdir.display()
        );
    }
    writeln!(
        err,
        "building the kernelx module in {} against {}",
        dir.display(),
        kdir.display()
    )?;
    let ko = kmod::build(&dir, &kdir).context("building the kernelx module")?;
    let _lock = StateLock::acquire(StateDir::system().dir())?;
    // Another kernelx may have loaded it while this one was building.
    if kmod::is_loaded(&host) {
        writeln!(err, "the kernelx module is loaded already")?;
    } else {
        insert(&host, &ko, err)?;
    }
    writeln!(out, "{}", ko.display())?;
    Ok(())
}

/// Where `setup` builds the module for `release`.
fn cache_dir(release: &str) -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .context("no cache directory for the module build: set XDG_CACHE_HOME or HOME")?;
    Ok(base.join("kernelx/kmod").join(release))
}
