//! `kernelx run`: `kernelx build` into the plan store, then `kernelx load` of each tunable built.

use std::io::Write;

use crate::args::{BuildArgs, RunArgs};
use crate::load::{self, LoadRequest};
use crate::{build, policy, transition};

/// Runs `kernelx run`: the build report to `err` (stdout is the load's), then each load.
pub fn run(args: &RunArgs, out: &mut impl Write, err: &mut impl Write) -> anyhow::Result<()> {
    // Refused before a build that may take minutes.
    let (mode, timeout) = transition::load_mode(&args.transition)?;
    let build_args = BuildArgs {
        spec: args.target.clone(),
        kernel_dir: args.kernel_dir.clone(),
        vmlinux: None,
        module_dir: None,
        module_ko: None,
        output: None,
        tunables: Vec::new(),
        jobs: None,
        exclude_units: args.exclude_units.clone(),
        json: false,
    };
    // The build's report goes to stderr after its warnings: stdout is the loads'.
    let mut report = Vec::new();
    let plan = build::run(&build_args, &mut report, err)?;
    err.write_all(&report)?;
    for tunable in &plan.tunables {
        load::load(
            &LoadRequest {
                plan: &plan,
                tunable: &tunable.name,
                value: args.value,
                mode,
                timeout,
                module: args.module.module.as_deref(),
                policy: policy::requested(&args.policy),
                json: args.json,
            },
            out,
            err,
        )?;
    }
    Ok(())
}
