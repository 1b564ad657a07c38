//! `kernelx gen`: an X-tune policy stub for a built tunable, that compiles and loads as it is
//! (it returns a parameter holding the tunable's default) and names every probe that asks it.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use kernelx_plan::{Plan, TunablePlan};
use kernelx_runtime::sie::{ProbeRole, SieProgram};

use crate::args::GenArgs;
use crate::load::{pick_tunable, read_plan};

/// Runs `kernelx gen`.
pub fn run(args: &GenArgs, out: &mut impl Write, err: &mut impl Write) -> anyhow::Result<()> {
    let plan = read_plan(&args.target)?;
    let name = pick_tunable(&plan, &args.target, args.tunable.as_deref())?;
    let tunable = plan
        .tunable(&name)
        .with_context(|| format!("the plan has no tunable named `{name}`"))?;
    let stub = stub(&plan, tunable)?;
    let path = match &args.output {
        Some(path) if path == Path::new("-") => return Ok(out.write_all(stub.as_bytes())?),
        Some(path) => path.clone(),
        None => PathBuf::from(format!("{}.bpf.c", name.to_lowercase())),
    };
    if path.exists() && !args.force {
        bail!(
            "{} exists: choose another file with -o FILE, or overwrite it with --force",
            path.display()
        );
    }
    std::fs::write(&path, &stub).with_context(|| format!("writing {}", path.display()))?;
    writeln!(
        err,
        "wrote {}: edit KX_POLICY, then `kernelx load {name} --policy {}`",
        path.display(),
        path.display()
    )?;
    Ok(())
}

/// The stub's C text: refuses a tunable no policy can drive (the same check `load` makes).
pub fn stub(plan: &Plan, tunable: &TunablePlan) -> anyhow::Result<String> {
    let program = SieProgram::from_plan(tunable)?;
    program.check_policy()?;
    let name = &tunable.name;
    let range = &tunable.range;
    let mut c = String::new();
    let _ = write!(
        c,
        "// SPDX-License-Identifier: GPL-2.0\n\
         /*\n \
         * X-tune policy for {name}: {description}.\n \
         * Kernel {release}. Written by `kernelx gen {name}`.\n \
         *\n \
         * Default {default}; valid values {min}..={max}{pow2}. A value outside is rejected\n \
         * (the trigger uses the default), or clamped with `--out-of-range clamp`.\n \
         *\n \
         *   kernelx load {name} --policy THIS_FILE [--value DEFAULT] [--mode per-task]\n \
         *   kernelx set {name} --param value=N      # a parameter, changed live\n \
         *   kernelx status {name}                   # decisions, rejected, parameters\n \
         */\n\
         #include \"kernelx_policy.h\"\n\n",
        description = tunable.description.trim_end_matches('.'),
        release = plan.kernel.release,
        default = tunable.default,
        min = range.min,
        max = range.max,
        pow2 = if range.restrictions.is_empty() {
            ""
        } else {
            " (with the restrictions `kernelx table query` shows)"
        },
    );
    c.push_str(
        "/*\n * The probes that ask the policy (its `probe` argument). It is asked where a task\n \
         * may take a new value; the task keeps that value through the site's safe span.\n */\n\
         enum {\n",
    );
    let mut names: Vec<String> = Vec::new();
    for (index, probe) in program.probes().iter().enumerate() {
        if probe.role() != ProbeRole::Post {
            continue;
        }
        let site = tunable
            .sites
            .iter()
            .find(|s| s.id == probe.site())
            .expect("the program's probes come from the plan's sites");
        let mut constant = format!(
            "KX_PROBE_{}_{:X}",
            probe.function().to_uppercase().replace('.', "_"),
            probe.offset()
        );
        if names.contains(&constant) {
            constant = format!("{constant}_{index}");
        }
        let _ = writeln!(
            c,
            "\t/* {unit}: {function}+{site_offset:#x} `{asm}`, IV = {relation}; safe span {span} */\n\
             \t{constant} = {index},",
            unit = site.unit,
            function = site.function,
            site_offset = site.offset,
            asm = site.asm,
            relation = site.recipe.relation,
            span = site.safe_span,
        );
        names.push(constant);
    }
    let _ = write!(
        c,
        "}};\n\n\
         /* `kernelx set {name} --param value=N` changes it while the policy runs. */\n\
         KX_PARAM(__s64, value, {default});\n\n\
         KX_POLICY(ctx, probe, dflt)\n\
         {{\n\
         \t/*\n\
         \t * Decide here, e.g. from kx_cgroup_id(), kx_pid(), kx_cpu(), kx_task(),\n\
         \t * kx_arg(n) (with KX_SAVE_ARGS(function) above), or maps of your own.\n\
         \t */\n\
         \treturn value;\n\
         }}\n",
        default = tunable.default,
    );
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe_plan() -> Plan {
        let text = include_str!("../../analyze/testdata/golden/pipe_def_buffers_fs.plan.json");
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn the_stub_names_every_post_probe_and_returns_the_default() {
        let plan = pipe_plan();
        let tunable = &plan.tunables[0];
        let program = SieProgram::from_plan(tunable).unwrap();
        let text = stub(&plan, tunable).unwrap();
        let posts: Vec<usize> = program
            .probes()
            .iter()
            .enumerate()
            .filter(|(_, p)| p.role() == ProbeRole::Post)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(posts.len(), tunable.sites.len());
        for (index, probe) in program.probes().iter().enumerate() {
            let line = format!(
                "KX_PROBE_{}_{:X}",
                probe.function().to_uppercase(),
                probe.offset()
            );
            assert_eq!(
                text.contains(&format!("{line} = {index},")),
                posts.contains(&index),
                "{line} in\n{text}"
            );
        }
        assert!(
            text.contains(&format!("KX_PARAM(__s64, value, {});", tunable.default)),
            "{text}"
        );
        assert!(text.contains("KX_POLICY(ctx, probe, dflt)"), "{text}");
        assert!(text.contains("#include \"kernelx_policy.h\""), "{text}");
    }
}
