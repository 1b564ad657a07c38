//! Booting the lab kernel under QEMU (TCG) and running one job inside it.
//!
//! The host's `/` is shared read-only over virtio-fs (virtiofsd; the kernel has no 9p), the
//! guest's init (`init.sh`) mounts it, chroots and runs the job. The job's output and its exit
//! code come back through virtio-serial ports backed by files in the run directory, so nothing
//! is scraped from the console; the console log is only searched for kernel problems (panic,
//! oops, BUG, WARNING, lockups), which fail the run.

use std::fmt;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use kernelx_kbuild::shell_quote;

use super::initramfs;
use super::kernel::{Cache, LabKernel};
use super::setup::check_bootable;

/// Memory given to the guest; the host shares it with virtiofsd, so it is a memfd.
const GUEST_MEMORY_MIB: u32 = 2048;
/// How long virtiofsd may take to create its socket.
const VIRTIOFSD_START: Duration = Duration::from_secs(10);
/// How often the host looks at the guest's output files.
const POLL: Duration = Duration::from_millis(50);

/// What to run inside the VM.
#[derive(Debug, Clone)]
pub struct Job {
    /// A `/bin/sh` script body, run with `cwd` as working directory.
    pub script: String,
    /// Working directory inside the guest (the host's path; the host's `/` is the guest's `/`).
    pub cwd: PathBuf,
    /// Extra environment variables for the script.
    pub env: Vec<(String, String)>,
    /// The whole run (boot included) is stopped after this long.
    pub timeout: Duration,
}

/// How a job that ran to completion inside the VM ended.
#[derive(Debug)]
pub struct Finished {
    /// The job's exit code.
    pub exit_code: i32,
    /// From QEMU's start until the guest reported its file systems mounted.
    pub boot: Duration,
    /// From QEMU's start until the VM powered off.
    pub total: Duration,
}

/// Ways a VM run fails before the job could report an exit code, or because the kernel broke.
#[derive(Debug)]
pub enum VmError {
    /// QEMU or the guest init gave up before the job started.
    Boot {
        reason: String,
        console_tail: String,
        run_dir: PathBuf,
    },
    /// The kernel printed a panic, oops, BUG, WARNING or lockup.
    KernelProblem {
        lines: Vec<String>,
        console: PathBuf,
    },
    /// The run did not finish in time; the VM was killed.
    Timeout {
        after: Duration,
        phase: Phase,
        console_tail: String,
        run_dir: PathBuf,
    },
}

impl fmt::Display for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmError::Boot {
                reason,
                console_tail,
                run_dir,
            } => write!(
                f,
                "the lab VM failed before the job finished: {reason}\nrun files: {}\nconsole tail:\n{console_tail}",
                run_dir.display()
            ),
            VmError::KernelProblem { lines, console } => write!(
                f,
                "the lab kernel reported a problem (full console: {}):\n{}",
                console.display(),
                lines.join("\n")
            ),
            VmError::Timeout {
                after,
                phase,
                console_tail,
                run_dir,
            } => write!(
                f,
                "the lab VM timed out after {}s while {phase}; killed it\nrun files: {}\nconsole tail:\n{console_tail}",
                after.as_secs(),
                run_dir.display()
            ),
        }
    }
}

impl std::error::Error for VmError {}

/// Where a run was when something happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Booting,
    Mounted,
    Running,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Booting => "booting",
            Phase::Mounted => "setting up the guest",
            Phase::Running => "running the job",
        })
    }
}

/// One line the guest's init wrote to the `kx.control` port.
#[derive(Debug, PartialEq, Eq)]
enum ControlMessage {
    Mounted,
    Started,
    Exit(i32),
    Error(String),
}

fn parse_control(line: &str) -> Option<ControlMessage> {
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    match word {
        "mounted" => Some(ControlMessage::Mounted),
        "started" => Some(ControlMessage::Started),
        "exit" => rest.trim().parse().ok().map(ControlMessage::Exit),
        "error" => Some(ControlMessage::Error(rest.to_owned())),
        _ => None,
    }
}

/// Console lines that mean the kernel is not healthy.
const KERNEL_PROBLEMS: &[&str] = &[
    "Kernel panic",
    "Oops:",
    "BUG:",
    "WARNING:",
    "soft lockup",
    "hard LOCKUP",
    "rcu_sched self-detected stall",
    "rcu: INFO:",
    "general protection fault",
];

fn kernel_problems(console: &str) -> Vec<String> {
    console
        .lines()
        .filter(|line| KERNEL_PROBLEMS.iter().any(|p| line.contains(p)))
        .map(str::to_owned)
        .collect()
}

/// Kills the processes of a run when the run ends, whichever way it ends.
struct Reaper(Vec<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A file the guest appends to, read incrementally by the host.
struct Tail {
    file: File,
    offset: u64,
}

impl Tail {
    fn open(path: &Path) -> Result<Self> {
        File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self {
            file: File::open(path)?,
            offset: 0,
        })
    }

    fn read_new(&mut self) -> Result<Vec<u8>> {
        self.file.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = Vec::new();
        self.file.read_to_end(&mut bytes)?;
        self.offset += bytes.len() as u64;
        Ok(bytes)
    }
}

/// The per-run scratch directory under the cache: job script, sockets, port files, console.
struct RunDir(PathBuf);

impl RunDir {
    fn create(cache: &Cache) -> Result<Self> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let dir = cache.runs().join(format!("{}-{stamp}", std::process::id()));
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

/// Renders the job as the script the guest runs (`/bin/sh job.sh` inside the chroot).
fn job_script(job: &Job) -> String {
    let mut script = String::from("# written by cargo xtask lab; run by the lab VM's init\n");
    script.push_str("export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n");
    script.push_str("export KERNELX_LAB=1\n");
    for (key, value) in &job.env {
        script.push_str(&format!("export {key}={}\n", shell_quote(value)));
    }
    script.push_str(&format!("cd {} || exit 125\n", shell_quote(&job.cwd)));
    script.push_str(&job.script);
    script.push('\n');
    script
}

fn qemu_command(kernel_image: &Path, initrd: &Path, run: &RunDir, cmdline: &str) -> Command {
    let mut qemu = Command::new("qemu-system-x86_64");
    let memory = format!("{GUEST_MEMORY_MIB}M");
    let cpus = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    // Single-threaded TCG: with one host thread per vCPU, a vCPU can run a stale translation of
    // code another vCPU is patching with text_poke_bp (static keys, kprobe optimization) and
    // take an int3 the kernel no longer expects; seen as "Oops: int3" at boot.
    qemu.args([
        "-accel",
        "tcg,thread=single",
        "-cpu",
        "max",
        "-smp",
        &cpus.to_string(),
        "-m",
        &memory,
    ])
    .args([
        "-object",
        &format!("memory-backend-memfd,id=mem,size={memory},share=on"),
    ])
    .args(["-numa", "node,memdev=mem"])
    .args([
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ])
    .arg("-kernel")
    .arg(kernel_image)
    .arg("-initrd")
    .arg(initrd)
    .args(["-append", cmdline])
    .arg("-serial")
    .arg(format!("file:{}", run.path("console.log").display()))
    .arg("-chardev")
    .arg(format!(
        "socket,id=hostroot,path={}",
        run.path("virtiofs.sock").display()
    ))
    .args(["-device", "vhost-user-fs-pci,chardev=hostroot,tag=hostroot"])
    .args(["-device", "virtio-serial-pci,id=ports"]);
    for port in ["control", "stdout", "stderr"] {
        qemu.arg("-chardev")
            .arg(format!("file,id={port},path={}", run.path(port).display()))
            .args([
                "-device",
                &format!("virtserialport,bus=ports.0,chardev={port},name=kx.{port}"),
            ]);
    }
    qemu
}

fn start_virtiofsd(cache: &Cache, run: &RunDir) -> Result<Child> {
    let socket = run.path("virtiofs.sock");
    let log = File::create(run.path("virtiofsd.log"))?;
    let child = Command::new(cache.virtiofsd())
        .arg("--socket-path")
        .arg(&socket)
        .args([
            "--shared-dir",
            "/",
            "--readonly",
            // One file system for the guest: the overlay over it does not cross submounts.
            "--no-announce-submounts",
            "--sandbox",
            "none",
            "--cache",
            "auto",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", cache.virtiofsd().display()))?;
    let start = Instant::now();
    while !socket.exists() {
        if start.elapsed() > VIRTIOFSD_START {
            bail!(
                "virtiofsd did not create {} (log: {})",
                socket.display(),
                run.path("virtiofsd.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}

/// The image ships modules xz-compressed; the guest's busybox insmod needs them plain.
fn overlay_module(compressed: &Path) -> Result<Vec<u8>> {
    let out = Command::new("xz")
        .arg("-dc")
        .arg(compressed)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running xz on {}", compressed.display()))?;
    if !out.status.success() {
        bail!(
            "xz could not decompress {}: {}",
            compressed.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

fn console_tail(run: &RunDir) -> String {
    let text = fs::read_to_string(run.path("console.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Boots `kernel`, runs `job` inside with its output streamed to ours, and powers off.
pub fn run(cache: &Cache, kernel: &LabKernel, job: &Job) -> Result<Finished> {
    check_bootable(cache, kernel)?;
    let files = cache.kernel(kernel);
    let run = RunDir::create(cache)?;
    fs::write(run.path("job.sh"), job_script(job))?;
    let initrd = run.path("initramfs.cpio");
    let overlay = overlay_module(&files.overlay_module())?;
    fs::write(
        &initrd,
        initramfs::build(Path::new("/bin/busybox"), &overlay)?,
    )?;
    let cmdline = format!(
        "console=ttyS0 panic=-1 kx.job={} kx.image={}",
        run.0.display(),
        files.image().display()
    );

    let mut control = Tail::open(&run.path("control"))?;
    let mut stdout = Tail::open(&run.path("stdout"))?;
    let mut stderr = Tail::open(&run.path("stderr"))?;
    let mut children = Reaper(vec![start_virtiofsd(cache, &run)?]);
    let mut qemu = qemu_command(&files.vmlinuz(), &initrd, &run, &cmdline);
    let qemu_log = File::create(run.path("qemu.log"))?;
    children.0.push(
        qemu.stdin(Stdio::null())
            .stdout(qemu_log.try_clone()?)
            .stderr(qemu_log)
            .spawn()
            .context("starting qemu-system-x86_64 (run `cargo xtask lab setup`)")?,
    );

    let progress = ProgressBar::new_spinner()
        .with_style(
            ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("valid template"),
        )
        .with_message(format!("booting {} under QEMU TCG", kernel.release()));
    progress.enable_steady_tick(Duration::from_millis(200));

    let start = Instant::now();
    let mut phase = Phase::Booting;
    let mut boot = None;
    let mut exit_code = None;
    let mut pending = String::new();
    let qemu_status = loop {
        pending.push_str(&String::from_utf8_lossy(&control.read_new()?));
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            match parse_control(line.trim_end()) {
                Some(ControlMessage::Mounted) => {
                    phase = Phase::Mounted;
                    boot = Some(start.elapsed());
                }
                Some(ControlMessage::Started) => {
                    phase = Phase::Running;
                    progress.finish_and_clear();
                    eprintln!(
                        "lab: {} booted in {:.1}s; running the job",
                        kernel.release(),
                        start.elapsed().as_secs_f64()
                    );
                }
                Some(ControlMessage::Exit(code)) => exit_code = Some(code),
                Some(ControlMessage::Error(reason)) => {
                    return Err(VmError::Boot {
                        reason,
                        console_tail: console_tail(&run),
                        run_dir: run.0,
                    }
                    .into());
                }
                None => bail!("unexpected line from the guest's init: {line:?}"),
            }
        }
        std::io::stdout().write_all(&stdout.read_new()?)?;
        std::io::stderr().write_all(&stderr.read_new()?)?;
        if let Some(status) = children.0[1].try_wait()? {
            break status;
        }
        if start.elapsed() > job.timeout {
            progress.finish_and_clear();
            return Err(VmError::Timeout {
                after: job.timeout,
                phase,
                console_tail: console_tail(&run),
                run_dir: run.0,
            }
            .into());
        }
        std::thread::sleep(POLL);
    };
    progress.finish_and_clear();
    std::io::stdout().write_all(&stdout.read_new()?)?;
    std::io::stderr().write_all(&stderr.read_new()?)?;
    // The last control lines may land after the last poll.
    pending.push_str(&String::from_utf8_lossy(&control.read_new()?));
    if let Some(ControlMessage::Exit(code)) = pending.lines().filter_map(parse_control).next_back()
    {
        exit_code = Some(code);
    }
    let total = start.elapsed();

    let console = fs::read_to_string(run.path("console.log")).unwrap_or_default();
    let problems = kernel_problems(&console);
    if !problems.is_empty() {
        return Err(VmError::KernelProblem {
            lines: problems,
            console: run.path("console.log"),
        }
        .into());
    }
    let Some(exit_code) = exit_code else {
        let qemu_log = fs::read_to_string(run.path("qemu.log")).unwrap_or_default();
        return Err(VmError::Boot {
            reason: format!(
                "QEMU exited ({qemu_status}) before the job reported an exit code; qemu said: {}",
                qemu_log.trim()
            ),
            console_tail: console_tail(&run),
            run_dir: run.0,
        }
        .into());
    };
    drop(children);
    let _ = fs::remove_dir_all(&run.0);
    Ok(Finished {
        exit_code,
        boot: boot.unwrap_or(total),
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_control_lines() {
        assert_eq!(parse_control("mounted"), Some(ControlMessage::Mounted));
        assert_eq!(parse_control("started"), Some(ControlMessage::Started));
        assert_eq!(parse_control("exit 3"), Some(ControlMessage::Exit(3)));
        assert_eq!(
            parse_control("error mounting /proc"),
            Some(ControlMessage::Error("mounting /proc".into()))
        );
        assert_eq!(parse_control("exit x"), None);
        assert_eq!(parse_control("hello"), None);
    }

    #[test]
    fn finds_kernel_problems_in_console() {
        let console = "[    0.1] Linux version 6.12\n[    2.0] WARNING: CPU: 0 PID: 1 at mm/x.c:1\n[ 3.0] ok\n";
        assert_eq!(
            kernel_problems(console),
            ["[    2.0] WARNING: CPU: 0 PID: 1 at mm/x.c:1"]
        );
        assert!(kernel_problems("[ 0.1] all fine\n").is_empty());
    }

    #[test]
    fn job_script_quotes_and_changes_directory() {
        let job = Job {
            script: "uname -r".into(),
            cwd: PathBuf::from("/work/it's"),
            env: vec![("A".into(), "b c".into())],
            timeout: Duration::from_secs(1),
        };
        let script = job_script(&job);
        assert!(script.contains("export A='b c'\n"), "{script}");
        assert!(
            script.contains(r"cd '/work/it'\''s' || exit 125"),
            "{script}"
        );
        assert!(script.ends_with("uname -r\n"), "{script}");
    }
}
