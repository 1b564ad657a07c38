//! The command line, as clap types. Parsing only: what each command does lives in the crates.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Make hard-coded Linux kernel constants tunable at run time.
#[derive(Debug, Parser)]
#[command(
    name = "kernelx",
    version,
    about = "Make hard-coded Linux kernel constants tunable at run time",
    long_about = "Make hard-coded Linux kernel constants tunable at run time.\n\n\
KernelX turns a compile-time constant of the running kernel (a macro such as PIPE_DEF_BUFFERS, \
a literal, a `static const`) into a knob: no kernel rebuild, no reboot, no source patch. \
Kprobes at the instructions that use the constant rewrite their result as if the kernel had \
been built with the new value.",
    after_help = "\
Workflow:
  1. Describe the constant in a TOML file (or just name the macro).
  2. `kernelx build SPEC --kernel-dir DIR` analyses the source tree of the running kernel and
     writes a plan: every instruction to patch, and the valid range of values.
  3. `kernelx load PLAN --value V` puts it in the kernel; `kernelx set TUNABLE V` changes the
     value (a map write); `kernelx unload TUNABLE` restores the built-in value.
  4. Optionally `kernelx gen TUNABLE -o p.bpf.c`, edit it, and `kernelx load TUNABLE --policy
     p.bpf.c`: an X-tune policy (BPF C) chooses the value per trigger.
  `kernelx doctor` checks that this host can do all of that.

Examples:
  kernelx doctor
  kernelx build pipe.toml --kernel-dir /usr/src/linux-source-6.12
  kernelx load PIPE_DEF_BUFFERS --value 32
  kernelx set PIPE_DEF_BUFFERS 64
  kernelx status
  kernelx unload --all"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Every command. Names follow the prototype's, plus `set` and `get`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Analyse a kernel source tree and write a plan for the tunables of a spec.
    #[command(after_help = "\
Builds the kernel objects that use the constant with two probe values, diffs their machine code
per function, and writes a plan: every site, its synthesis, the valid range of values, the safe
spans, and the effects a plan cannot cover (e.g. initial values in .data). The tree is never
modified. Unless the spec gives `values`, KernelX picks the probe values, and picks values closer
to the default when its first ones only make the compiler choose other instruction forms.

When the constant changes code no probe can patch in some unit (e.g. it sizes an on-stack array
there), the build fails naming it. --exclude-unit UNIT then tunes the constant in the other
units and leaves UNIT at the compiled value; the plan records what stays untuned there.

Constants of an out-of-tree module are analysed the same way: give the module's source
directory (with its Kbuild or Makefile) as --module-dir, and as --kernel-dir the kernel build
directory the module is built against (/lib/modules/<release>/build, or
/usr/src/linux-headers-<release>). Macro names are then looked up in the module's sources.

Examples:
  kernelx build pipe.toml --kernel-dir /usr/src/linux-source-6.12
  KERNEL_DIR=/usr/src/linux-source-6.12 kernelx build tunables/6.12.toml -o plans/
  kernelx build PIPE_DEF_BUFFERS --kernel-dir ~/src/linux --json
  kernelx build PIPE_DEF_BUFFERS --kernel-dir ~/src/linux --exclude-unit kernel/trace/trace.c
  kernelx build KX_TARGET_ADD --module-dir tests/target-module \\
      --kernel-dir /usr/src/linux-headers-6.12.117+deb12-cloud-amd64 \\
      --module-ko tests/target-module/build/kx_target.ko")]
    Build(BuildArgs),

    /// Build a plan and load it: `build` followed by `load`.
    #[command(after_help = "\
Builds every tunable of the spec into the plan store, as `kernelx build` does, then loads each
with --value, as `kernelx load` does (a spec of several tunables loads them all, or stops at
the first that fails; the ones loaded before stay loaded).

Examples:
  kernelx run PIPE_DEF_BUFFERS --kernel-dir /usr/src/linux-source-6.12 \\
      --exclude-unit fs/splice.c --exclude-unit kernel/trace/trace.c --value 32
  kernelx run pipe.toml --kernel-dir /usr/src/linux-source-6.12 --value 32 --json")]
    Run(RunArgs),

    /// Load a plan (or a built tunable) into the running kernel and activate a value.
    #[command(after_help = "\
In order: takes the state lock (/run/kernelx/lock; a concurrent kernelx that changes tunables
fails at once, naming its pid), loads the kernelx module if needed (from --module or
$KERNELX_MODULE; `kernelx setup` builds one), verifies the running kernel (its build-id must be
the plan's, every site must hold the plan's bytes), checks that the runtime can apply every
site and that V is in the plan's range, then attaches every probe at its verified address or
none. Prints the probes: where, kind (pre/post), whether the kernel can jump-optimize them.

Modes (--mode, also 0/1/2 as the prototype numbered them): immediate (the next use of the
constant by any task sees the value), per-task (each task switches once none of its frames is
inside a safe span; tasks inside keep the old value until they leave), global (no task switches
until no task is inside any safe span, then all at once, with every CPU stopped for the check).
--timeout S (default 10) bounds a per-task or global transition: per-task returns with the
tasks still inside listed (they switch as they leave; `kernelx status` completes it); global
aborts and nothing is loaded. The mode stays with the tunable for `set` and `unload`.
The state is pinned under /sys/fs/bpf/kernelx/<TUNABLE>/ and outlives this process; loading a
loaded tunable is an error (`kernelx unload` it first).

--policy FILE loads an X-tune policy (BPF C, see `kernelx gen`) that chooses the value per
trigger; --value is then its default. It is compiled first with clang against the running
kernel's BTF (vmlinux.h, generated once into ~/.cache/kernelx/btf/); a compile error is shown
with its file:line and nothing is loaded. The policy is asked only where a task may take a new
value (outside every safe span); the task keeps that value through the span. A value outside
the plan's range is rejected (the trigger uses the default) or, with --out-of-range clamp,
clamped; `kernelx status` counts both.

Examples:
  kernelx load PIPE_DEF_BUFFERS --value 32
  kernelx load plans/pipe.plan.json --tunable PIPE_DEF_BUFFERS --value 32 --json
  kernelx load PIPE_DEF_BUFFERS --value 32 --module kmod/build/kernelx.ko
  kernelx load PIPE_DEF_BUFFERS --policy examples/policies/cgroup_hint.bpf.c --mode per-task")]
    Load(LoadArgs),

    /// Change the value of a loaded tunable (a map write: no reload, no compiler).
    #[command(after_help = "\
Follows the mode the tunable was loaded in: immediate (every task at once), per-task (each task
once it is outside every safe span), global (all at once, when nobody is inside; a timeout
aborts and the old value stays). The new value goes into a generation no task uses, so sites
never mix old and new values within one task. A per-task transition still waiting for tasks
refuses a new value (except going back to the value they use). A value outside the range the
plan allows is refused with the reason, and nothing changes. Takes the state lock, as `kernelx
load` does.

With a policy: VALUE changes the policy's default (as a new generation, like a value), and
--param NAME=V changes a parameter the policy declared with KX_PARAM (a write the policy sees at
its next decision; `kernelx status` shows them).

Examples:
  kernelx set PIPE_DEF_BUFFERS 64
  kernelx set PIPE_DEF_BUFFERS 0x40
  kernelx set PIPE_DEF_BUFFERS --param cgroup=4242 --param value=64")]
    Set(SetArgs),

    /// Print the current value of a loaded tunable.
    #[command(after_help = "\
Prints V. --json prints {\"tunable\", \"value\", \"default\", \"mode\"}.

Examples:
  kernelx get PIPE_DEF_BUFFERS
  kernelx get PIPE_DEF_BUFFERS --json")]
    Get(GetArgs),

    /// Detach a tunable (or all of them) and return to the built-in value.
    #[command(after_help = "\
The way back follows the tunable's mode: per-task waits until no task using the value is inside
a safe span (--timeout; if some still are, the tunable stays loaded, moving back, and a later
`unload` resumes), global switches everyone back at once when nobody is inside (a timeout
keeps the value). Then the probes are disarmed and detached. --force detaches at once, whatever
the mode (tasks inside a span see the built-in value at their next site). `--all` also cleans up after a kernelx that was killed mid-load: it removes
everything KernelX pinned under /sys/fs/bpf/kernelx, loaded completely or not. Takes the state
lock, as `kernelx load` does.

Examples:
  kernelx unload PIPE_DEF_BUFFERS
  kernelx unload PIPE_DEF_BUFFERS --timeout 30
  kernelx unload --all")]
    Unload(UnloadArgs),

    /// Show the loaded tunables: value, mode, transition state, probes (and which are optimized).
    #[command(after_help = "\
Read from the kernel: a tunable is loaded while its pins under /sys/fs/bpf/kernelx exist; hits
and errors are its probes' counters; [OPTIMIZED] comes from /sys/kernel/debug/kprobes/list
(the kernel optimizes a probe a moment after it is attached). Mode, value and the last
transition come from the tunable's pinned control map: done (with its latency), pending (per
task: a sweep of every task's stack lists those still inside a safe span, which keep the old
value; global: a commit is running, or its kernelx was killed and the next set/unload settles
it) or aborted (the old value stays). The plan is kept at load in /run/kernelx/tunables/ (root
only). A tunable whose load was interrupted is listed as incomplete. Status never takes the
state lock. --json prints {\"tunables\": [{\"name\", \"pin_dir\", \"links\", \"incomplete\",
\"mode\", \"value\", \"default\", \"transition\": {\"mode\", \"target\", \"previous\", \"state\",
\"latency\" (seconds), \"inside\": [{\"pid\", \"address\"}]}, \"probes\": [{\"site\", \"role\",
\"function\", \"offset\", \"address\", \"optimizable\", \"optimized\", \"hits\", \"errors\"}],
\"policy\": null or {\"source\", \"source_hash\", \"out_of_range\", \"decisions\", \"rejected\",
\"clamped\", \"last_out_of_range\": [value, \"function+offset\"] or null, \"last_value\",
\"params\": [{\"name\", \"size\", \"bits\"}]}}]}.

Examples:
  kernelx status
  kernelx status PIPE_DEF_BUFFERS --json")]
    Status(StatusArgs),

    /// Inspect the plans that were built: list, query, delete, critical spans, safe spans.
    #[command(after_help = "\
Examples:
  kernelx table list
  kernelx table query pipe_def_buffers
  kernelx table cs pipe_def_buffers --json
  kernelx table delete pipe_def_buffers")]
    Table(TableArgs),

    /// Stream live events of loaded tunables: probe hits, task moves, transitions.
    #[command(after_help = "\
One line per event until Ctrl-C, --duration or --count: each probe hit (time in seconds since
the trace started, tunable, probe as function+offset, pid/tid, the generation and value it
used, and what it did: applied, failed with an errno, marked, skipped, or idle at the built-in
value), each per-task move of a task to another generation, each transition (a `set`, an
`unload`, a per-task transition completing, a global one aborting), and events lost to a full
ring buffer. Without TUNABLE it traces every loaded tunable, and those loaded while it runs.

The probes write events only while a trace runs (a lease the trace renews; a killed trace's
lease ends within 2 s), and each tunable has one trace at a time: a second one is refused.
Needs root; reads the pins under /sys/fs/bpf/kernelx and the records in /run/kernelx, and does
not take the state lock. --json prints one object per line: {\"event\": \"state\" |
\"trigger\" | \"task-move\" | \"transition\" | \"dropped\" | \"unloaded\", \"time\",
\"tunable\", ...}; a trigger has \"probe\", \"function\", \"offset\", \"site\", \"role\",
\"pid\", \"tid\", \"generation\", \"setting\" and \"outcome\".

Examples:
  kernelx trace
  kernelx trace PIPE_DEF_BUFFERS --duration 10 --json
  kernelx trace PIPE_DEF_BUFFERS --count 20")]
    Trace(TraceArgs),

    /// Write an X-tune policy stub (BPF C) for a tunable, to edit and load with --policy.
    #[command(after_help = "\
The stub includes kernelx_policy.h (the API: KX_POLICY, KX_PARAM, KX_SAVE_ARGS, kx_cgroup_id(),
kx_pid(), kx_cpu(), kx_task(), kx_arg(n); its comments are the reference), names every probe
that asks the policy with its site, and returns a parameter that holds the tunable's default: it
compiles and loads as written, and changes nothing until edited or its parameter is set.
A tunable whose sites no policy can drive (a division by the value) is refused with the site.

Examples:
  kernelx gen PIPE_DEF_BUFFERS -o pipe_policy.bpf.c
  kernelx gen PIPE_DEF_BUFFERS -o -          # to stdout
  kernelx load PIPE_DEF_BUFFERS --policy pipe_policy.bpf.c")]
    Gen(GenArgs),

    /// Remove what KernelX left behind that nothing uses: stale load records, build artefacts.
    #[command(after_help = "\
Removes the load records in /run/kernelx/tunables of tunables that are not pinned (after a
reboot, or pins removed by other means) and record writes a killed kernelx left half done.
Never touches a loaded tunable: its pins and its record stay. A tunable pinned without a record
(a load killed midway) is named and left attached: `kernelx unload --all` detaches it. Takes
the state lock, as `kernelx load` does. Plans in the plan store stay (`kernelx table delete`
removes one).

--cache also empties the build cache ($KERNELX_CACHE, else $XDG_CACHE_HOME/kernelx, else
~/.cache/kernelx) of its variant objects, memos, source overlays and scratch directories: the
next `kernelx build` compiles again. The rest of that directory stays (e.g. the lab's
downloads, the module `kernelx setup` built). Do not run it while a `kernelx build` runs. As a
user without access to /run/kernelx, only the cache is cleaned.

Examples:
  kernelx clean --dry-run
  kernelx clean
  kernelx clean --cache")]
    Clean(CleanArgs),

    /// Check that this host can run KernelX, and say what to fix.
    #[command(after_help = "\
Checks, by id: root, kprobes, optprobes, btf, kfunc-hook, bpffs, tracefs, kcore, modules,
kernel-headers, source-tree (only with --kernel-dir or KERNEL_DIR). Exits with status 1 when a
check fails. --json prints {\"checks\": [{\"id\", \"title\", \"status\", \"detail\", \"fix\"}]},
status being pass, warn, fail or skip.

Examples:
  kernelx doctor
  kernelx doctor --kernel-dir /usr/src/linux-source-6.12
  kernelx doctor --json | jq '.checks[] | select(.status == \"fail\")'")]
    Doctor(DoctorArgs),

    /// Build and load the kernelx module (its source is part of this binary).
    #[command(after_help = "\
Writes the module's source to the cache ($XDG_CACHE_HOME/kernelx/kmod/<release>, default
~/.cache/...), builds it there with the kernel's build directory (--kernel-dir, default
/lib/modules/<release>/build: the linux-headers package of the running kernel) and loads it
with the address of current_kprobe from /proc/kallsyms. Does nothing when it is loaded.

Examples:
  kernelx setup --dry-run
  kernelx setup
  kernelx setup --kernel-dir /usr/src/linux-headers-6.12.117+deb12-cloud-amd64")]
    Setup(SetupArgs),
}

/// When tasks switch to a new value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// The next use of the constant, by any task, sees the new value.
    #[value(alias = "0")]
    Immediate,
    /// A task switches once none of its frames is inside a safe span.
    #[value(alias = "1")]
    PerTask,
    /// No task switches until no task is inside any safe span; then all at once.
    #[value(alias = "2")]
    Global,
}

// `--kernel-dir`, shared by the commands that read a kernel source tree. (A `//` comment: a doc
// comment on a flattened struct would replace the about text of the command using it.)
#[derive(Debug, Clone, Args)]
pub struct KernelDirArg {
    /// The source tree of the running kernel (default: $KERNEL_DIR).
    #[arg(long, value_name = "DIR", env = "KERNEL_DIR")]
    pub kernel_dir: Option<PathBuf>,
}

// How a value is activated, shared by `load` and `run`.
#[derive(Debug, Args)]
pub struct TransitionArgs {
    /// When tasks switch to the new value (and back on unload).
    #[arg(long, value_enum, default_value_t = Mode::Immediate)]
    pub mode: Mode,
    #[command(flatten)]
    pub wait: WaitArgs,
}

// How long a per-task or global transition may take, shared by `load`, `run`, `set`, `unload`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Per-task or global: wait at most S seconds for the transition (default 10).
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// A tunable spec (TOML, the prototype's format is accepted) or a macro name.
    #[arg(value_name = "SPEC")]
    pub spec: String,
    #[command(flatten)]
    pub kernel_dir: KernelDirArg,
    /// The kernel's debug vmlinux: which units it was built from, and its build-id (default:
    /// /usr/lib/debug/boot/vmlinux-<release>, when present).
    #[arg(long, value_name = "FILE")]
    pub vmlinux: Option<PathBuf>,
    /// Analyse an out-of-tree kernel module instead of the kernel: its source directory (the
    /// one holding its Kbuild or Makefile). --kernel-dir is then the kernel build directory
    /// the module is built against.
    #[arg(long, value_name = "DIR")]
    pub module_dir: Option<PathBuf>,
    /// With --module-dir: the built module, for its build-id and to check that it was built
    /// for that kernel (default: <module dir>/<name>.ko, when present).
    #[arg(long, value_name = "FILE", requires = "module_dir")]
    pub module_ko: Option<PathBuf>,
    /// Write one plan file holding every selected tunable here, instead of one file per
    /// tunable in the plan store ($KERNELX_PLANS, default ~/.local/share/kernelx/plans).
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Build only these tunables of a multi-tunable spec (repeatable).
    #[arg(long = "tunable", value_name = "NAME")]
    pub tunables: Vec<String>,
    /// Parallel compiler jobs (default: the number of CPUs).
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<std::num::NonZeroUsize>,
    /// Leave this translation unit (relative to the kernel tree, e.g. kernel/trace/trace.c) at
    /// the compiled value and tune the constant in the others (repeatable). The unit is still
    /// built and diffed; the plan lists what stays untuned there as `excluded_unit`. It must be
    /// a unit the constant of every selected tunable reaches (a spec's tunable can list its
    /// own in `exclude_units`).
    #[arg(long = "exclude-unit", value_name = "UNIT")]
    pub exclude_units: Vec<PathBuf>,
    /// Print the plan (format: crates/plan/src/format.rs) instead of the report.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A tunable spec (TOML) or a macro name.
    #[arg(value_name = "SPEC|TUNABLE")]
    pub target: String,
    #[command(flatten)]
    pub kernel_dir: KernelDirArg,
    /// The value to activate.
    #[arg(long, value_name = "V", allow_negative_numbers = true, value_parser = parse_value)]
    pub value: Option<i64>,
    #[command(flatten)]
    pub transition: TransitionArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// As `kernelx build --exclude-unit` (repeatable).
    #[arg(long = "exclude-unit", value_name = "UNIT")]
    pub exclude_units: Vec<PathBuf>,
    #[command(flatten)]
    pub module: ModuleArg,
    /// Print each loaded tunable as JSON (the format of `kernelx status --json`).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// A plan file (`*.json`, or any existing file), or the name of a tunable in the plan store
    /// (`kernelx table list`).
    #[arg(value_name = "PLAN|TUNABLE")]
    pub target: String,
    /// Which tunable of a plan file holding several.
    #[arg(long, value_name = "NAME")]
    pub tunable: Option<String>,
    /// The value to activate (default: the plan's source value, i.e. no change yet).
    #[arg(long, value_name = "V", allow_negative_numbers = true, value_parser = parse_value)]
    pub value: Option<i64>,
    #[command(flatten)]
    pub transition: TransitionArgs,
    #[command(flatten)]
    pub module: ModuleArg,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Print the loaded tunable as JSON (the format of `kernelx status --json`).
    #[arg(long)]
    pub json: bool,
}

// `--policy` and what happens to its out-of-range values, shared by `load` and `run`.
#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    /// An X-tune policy (BPF C) choosing the value per trigger; --value is its default.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// What a policy's value outside the plan's range does: reject (the trigger uses the
    /// default) or clamp (the nearest valid value).
    #[arg(
        long,
        value_name = "ACTION",
        value_enum,
        default_value = "reject",
        requires = "policy"
    )]
    pub out_of_range: OutOfRangeArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutOfRangeArg {
    Reject,
    Clamp,
}

// `--module`, shared by the commands that may have to load the kernelx module.
#[derive(Debug, Clone, Args)]
pub struct ModuleArg {
    /// The kernelx module to insmod when it is not loaded (default: $KERNELX_MODULE; `kernelx
    /// setup` builds and loads it instead).
    #[arg(long = "module", value_name = "KO", env = "KERNELX_MODULE")]
    pub module: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// A loaded tunable.
    #[arg(value_name = "TUNABLE")]
    pub tunable: String,
    /// The new value (decimal or 0x-hex); with a policy, its default.
    #[arg(
        value_name = "VALUE",
        allow_negative_numbers = true,
        value_parser = parse_value,
        required_unless_present = "params"
    )]
    pub value: Option<i64>,
    /// A policy parameter, NAME=V (repeatable; decimal, negative or 0x-hex).
    #[arg(long = "param", value_name = "NAME=V")]
    pub params: Vec<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// A loaded tunable.
    #[arg(value_name = "TUNABLE")]
    pub tunable: String,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UnloadArgs {
    /// The tunable to unload.
    #[arg(
        value_name = "TUNABLE",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub tunable: Option<String>,
    /// Unload every tunable, including leftovers of an interrupted kernelx.
    #[arg(long)]
    pub all: bool,
    /// Detach at once, without the mode's way back.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Show only this tunable.
    #[arg(value_name = "TUNABLE")]
    pub tunable: Option<String>,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TableArgs {
    #[command(subcommand)]
    pub command: TableCommand,
}

/// `kernelx table` subcommands.
#[derive(Debug, Subcommand)]
pub enum TableCommand {
    /// List the built tunables.
    #[command(after_help = "Examples:\n  kernelx table list\n  kernelx table list --json")]
    List {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show everything a tunable's plan holds.
    #[command(after_help = "Examples:\n  kernelx table query pipe_def_buffers")]
    Query {
        /// A built tunable.
        #[arg(value_name = "TUNABLE")]
        tunable: String,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a tunable's plan.
    #[command(after_help = "Examples:\n  kernelx table delete pipe_def_buffers")]
    Delete {
        /// A built tunable.
        #[arg(value_name = "TUNABLE")]
        tunable: String,
    },
    /// Show a tunable's critical spans (where the constant enters machine state).
    #[command(after_help = "Examples:\n  kernelx table cs pipe_def_buffers --json")]
    Cs {
        /// A built tunable.
        #[arg(value_name = "TUNABLE")]
        tunable: String,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a tunable's safe spans (where a value derived from it is still live).
    #[command(after_help = "Examples:\n  kernelx table ss pipe_def_buffers")]
    Ss {
        /// A built tunable.
        #[arg(value_name = "TUNABLE")]
        tunable: String,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Trace only these tunables (default: every loaded one).
    #[arg(value_name = "TUNABLE")]
    pub tunables: Vec<String>,
    /// Stop after S seconds (default: until interrupted).
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    pub duration: Option<Duration>,
    /// Stop after N events (lines).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Print one JSON object per event.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GenArgs {
    /// A plan file, or the name of a tunable in the plan store (`kernelx table list`).
    #[arg(value_name = "PLAN|TUNABLE")]
    pub target: String,
    /// Which tunable of a plan file holding several.
    #[arg(long, value_name = "NAME")]
    pub tunable: Option<String>,
    /// Where to write the stub (default: <tunable>.bpf.c, lowercase; `-`: stdout).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Overwrite the file if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Also empty the build cache of its artefacts (variant objects, memos, overlays,
    /// scratch).
    #[arg(long)]
    pub cache: bool,
    /// Print what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub kernel_dir: KernelDirArg,
    /// Print the checks as JSON (format: see `kernelx doctor --help`).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// The kernel build directory to build the kernelx module against (default:
    /// /lib/modules/<running release>/build).
    #[arg(long, value_name = "KDIR")]
    pub kernel_dir: Option<PathBuf>,
    /// Print what would be done, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// A tunable value: decimal (optionally negative) or `0x` hex.
fn parse_value(text: &str) -> Result<i64, String> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let magnitude = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => i128::from_str_radix(hex, 16),
        None => digits.parse::<i128>(),
    }
    .map_err(|e| format!("`{text}` is not a number: {e}"))?;
    let value = if negative { -magnitude } else { magnitude };
    i64::try_from(value).map_err(|_| format!("`{text}` does not fit in 64 bits"))
}

/// Seconds, possibly fractional: `5`, `0.5`.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn values_accept_decimal_negative_and_hex() {
        assert_eq!(parse_value("32"), Ok(32));
        assert_eq!(parse_value("-1"), Ok(-1));
        assert_eq!(parse_value("0xffff"), Ok(0xffff));
        assert_eq!(parse_value("-0x10"), Ok(-16));
        assert!(parse_value("x").is_err());
        assert!(parse_value("0x1_0000_0000_0000_0000").is_err());
        assert!(parse_value("99999999999999999999").is_err());
    }

    #[test]
    fn seconds_accept_fractions_and_reject_negatives() {
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("soon").is_err());
    }

    #[test]
    fn modes_accept_the_prototypes_numbers() {
        let cli = Cli::try_parse_from(["kernelx", "load", "t", "--mode", "2"]).unwrap();
        let Command::Load(load) = cli.command else {
            panic!("parsed {cli:?}")
        };
        assert_eq!(load.transition.mode, Mode::Global);
        let cli = Cli::try_parse_from(["kernelx", "load", "t", "--mode", "per-task"]).unwrap();
        let Command::Load(load) = cli.command else {
            panic!("parsed {cli:?}")
        };
        assert_eq!(load.transition.mode, Mode::PerTask);
    }

    #[test]
    fn set_follows_the_loaded_mode() {
        let err = Cli::try_parse_from(["kernelx", "set", "t", "5", "--mode", "2"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
        let cli = Cli::try_parse_from(["kernelx", "set", "t", "5", "--timeout", "2.5"]).unwrap();
        let Command::Set(set) = cli.command else {
            panic!("parsed {cli:?}")
        };
        assert_eq!(set.wait.timeout, Some(Duration::from_millis(2500)));
        assert_eq!(set.value, Some(5));
    }
}
