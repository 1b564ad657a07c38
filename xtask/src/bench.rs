//! `cargo xtask bench build`: how long `kernelx build` takes on the prepared lab tree, cold
//! (an empty object cache) and warm (the same cache again), per constant. Results are printed
//! and written as JSON to `target/bench/build.json`, and drawn with that JSON into
//! `docs/bench/` ([`chart`]). `cargo xtask bench runtime` is in [`runtime`].

pub mod chart;
pub mod runtime;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::cargo;
use crate::lab::{Cache, LabKernel};

#[derive(Args)]
pub struct BenchArgs {
    /// Warm runs per constant (the cold run is always one).
    #[arg(long, default_value_t = 3)]
    warm_runs: usize,
}

/// One timed `kernelx build`.
struct Case {
    /// The name in the results.
    name: &'static str,
    spec: Spec,
    /// Further `kernelx build` arguments.
    args: &'static [&'static str],
}

/// The constants timed: single-unit ones in the prototype's format, and header macros that
/// reach several units (PIPE_DEF_BUFFERS whole, which is refused, and as the demo tunes it;
/// BLK_MAX_REQUEST_COUNT, whose first probe values are retried).
const CASES: &[Case] = &[
    Case {
        name: "MAX_SOFTIRQ_RESTART",
        spec: Spec::PrototypeFile("max_softirq_restart.toml"),
        args: &[],
    },
    Case {
        name: "SHRINK_BATCH",
        spec: Spec::PrototypeFile("shrink_batch.toml"),
        args: &[],
    },
    Case {
        name: "PIPE_DEF_BUFFERS",
        spec: Spec::Macro("PIPE_DEF_BUFFERS"),
        args: &[],
    },
    Case {
        name: "PIPE_DEF_BUFFERS (fs/pipe.c)",
        spec: Spec::Macro("PIPE_DEF_BUFFERS"),
        args: &[
            "--exclude-unit",
            "fs/splice.c",
            "--exclude-unit",
            "kernel/trace/trace.c",
        ],
    },
    Case {
        name: "BLK_MAX_REQUEST_COUNT",
        spec: Spec::Macro("BLK_MAX_REQUEST_COUNT"),
        args: &[],
    },
];

#[derive(Clone, Copy)]
enum Spec {
    /// A file of `../shared/compat/prototype-tunables`.
    PrototypeFile(&'static str),
    /// A macro named on the command line.
    Macro(&'static str),
}

#[derive(Deserialize, Serialize)]
struct Timing {
    constant: String,
    /// Whether `kernelx build` produced a plan (a refusal is timed too: it is the whole analysis).
    planned: bool,
    cold_seconds: f64,
    warm_seconds: Vec<f64>,
}

pub fn run(args: BenchArgs) -> Result<ExitCode> {
    let repo = crate::lab::repo_root()?;
    // A missing spec file would be timed as a refusal of a few milliseconds.
    for case in CASES {
        if let Spec::PrototypeFile(_) = case.spec {
            let file = spec_argument(&repo, case.spec);
            anyhow::ensure!(
                file.is_file(),
                "{} (the spec of {}) is missing: the bench expects the shared directory beside the \
                 repository",
                file.display(),
                case.name
            );
        }
    }
    let files = Cache::from_env()?.kernel(&LabKernel::selected()?);
    let kernelx = cargo::kernelx(true)?;
    let scratch = repo.join("target/bench");
    let mut timings = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let constant = case.name.to_owned();
        let cache = scratch.join(format!("cache-{i}"));
        let _ = std::fs::remove_dir_all(&cache);
        let run = || -> Result<(bool, f64)> {
            let mut build = Command::new(&kernelx);
            build
                .arg("build")
                .arg(spec_argument(&repo, case.spec))
                .args(case.args)
                .arg("--kernel-dir")
                .arg(files.source())
                .arg("--vmlinux")
                .arg(files.vmlinux())
                .arg("--json")
                .env("KERNELX_CACHE", &cache)
                .env("KERNELX_PLANS", cache.join("plans"))
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let start = Instant::now();
            let status = build.status().context("running kernelx build")?;
            Ok((status.success(), start.elapsed().as_secs_f64()))
        };
        let (planned, cold_seconds) = run()?;
        let warm_seconds = (0..args.warm_runs)
            .map(|_| run().map(|(_, seconds)| seconds))
            .collect::<Result<Vec<_>>>()?;
        eprintln!(
            "{constant:<28} {:<8} cold {cold_seconds:6.2} s   warm {}",
            if planned { "plan" } else { "refused" },
            warm_seconds
                .iter()
                .map(|s| format!("{s:.2} s"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        timings.push(Timing {
            constant,
            planned,
            cold_seconds,
            warm_seconds,
        });
    }
    let out = scratch.join(chart::BUILD_JSON);
    let json = serde_json::to_string_pretty(&timings)?;
    std::fs::write(&out, &json).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("wrote {}", out.display());
    let docs = repo.join(chart::DIR);
    chart::keep_json(&docs, chart::BUILD_JSON, &json)?;
    eprintln!("wrote {}", chart::build(&timings, &docs)?.display());
    Ok(ExitCode::SUCCESS)
}

fn spec_argument(repo: &Path, spec: Spec) -> PathBuf {
    match spec {
        Spec::PrototypeFile(name) => repo.join("../shared/compat/prototype-tunables").join(name),
        Spec::Macro(name) => PathBuf::from(name),
    }
}
