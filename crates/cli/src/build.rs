//! `kernelx build`: read the spec, analyse each selected tunable on the kernel tree (with the
//! command line's excluded units and its own), write the plan (to `-o`, or one file per tunable
//! in the plan store) and print the report. A tunable that is refused does not stop the others.

use std::io::Write;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use kernelx_analyze::{
    AnalyzeError, AnalyzeOptions, analyze, default_vmlinux, kernel_identity, render_report,
};
use kernelx_kbuild::{
    BuiltUnits, Cache, KernelTree, ModuleTree, SourceTree, Toolchain, VariantOptions,
};
use kernelx_plan::Plan;
use kernelx_spec::{EnvOverrides, Parsed, Tunable, TunableSource, from_argument};

use crate::args::BuildArgs;
use crate::progress::BuildProgress;
use crate::table::plan_store;

/// Runs `kernelx build`: the report (or `--json` plan) to `out`, progress and warnings to `err`.
/// Returns the plan (for `kernelx run`).
pub fn run(args: &BuildArgs, out: &mut impl Write, err: &mut impl Write) -> anyhow::Result<Plan> {
    let parsed = check_spec(args, err)?;
    let tunables: Vec<&Tunable> = selected(args, &parsed).collect();
    let Some(dir) = parsed.spec.kernel_dir.clone() else {
        if let Some(module_dir) = &args.module_dir {
            bail!(
                "no kernel build directory to build the module in {} against: give --kernel-dir \
                 DIR, e.g. /lib/modules/<release>/build or /usr/src/linux-headers-<release>",
                module_dir.display()
            );
        }
        bail!(
            "no kernel source tree: give --kernel-dir DIR (or set KERNEL_DIR, or `kernel_dir` in \
             the spec) pointing at the source of the running kernel, prepared with `make prepare`"
        );
    };
    let toolchain = Toolchain::debian_gcc12();
    let cache = Cache::from_env().context("opening the build cache")?;
    let (kernel_tree, module_tree);
    let (tree, built, vmlinux): (SourceTree<'_>, BuiltUnits, Option<PathBuf>) =
        match &args.module_dir {
            Some(module_dir) => {
                module_tree = ModuleTree::open(
                    module_dir,
                    &dir,
                    args.module_ko.as_deref(),
                    &toolchain,
                    &cache,
                )
                .with_context(|| {
                    format!(
                        "opening the module in {} against the kernel build directory {}",
                        module_dir.display(),
                        dir.display()
                    )
                })?;
                // The module's units are its own; a --vmlinux only adds the kernel's build-id.
                let built = module_tree.units().clone();
                (SourceTree::from(&module_tree), built, args.vmlinux.clone())
            }
            None => {
                kernel_tree = KernelTree::open(&dir)
                    .with_context(|| format!("opening the kernel tree {}", dir.display()))?;
                let tree = SourceTree::from(&kernel_tree);
                let vmlinux = match &args.vmlinux {
                    Some(v) => Some(v.clone()),
                    None => Some(default_vmlinux(&tree.release())).filter(|p| p.is_file()),
                };
                let built = match &vmlinux {
                    Some(v) => BuiltUnits::from_debug_info(&[v.as_path()])
                        .with_context(|| format!("reading the units of {}", v.display()))?,
                    None => BuiltUnits::Unrestricted,
                };
                (tree, built, vmlinux)
            }
        };
    let (kernel, identity_warnings) = kernel_identity(tree, vmlinux.as_deref())?;
    for w in &identity_warnings {
        writeln!(err, "warning: {w}")?;
    }
    let mut options = AnalyzeOptions::new(VariantOptions {
        toolchain,
        jobs: args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)),
        cache,
        built,
    });
    // A tunable refused in a multi-tunable build does not stop the others: each build takes
    // minutes, and the plans of the good ones are worth keeping.
    let mut plans = Vec::new();
    let mut refused: Vec<&str> = Vec::new();
    for tunable in &tunables {
        options.exclude_units = excluded_units(args, tunable);
        let progress = BuildProgress::new(&tunable.name);
        let result = analyze(tree, tunable, &options, &progress);
        progress.finish();
        match result {
            Ok(plan) => plans.push(plan),
            Err(error) => {
                let error = refusal(args, &parsed.spec.path, tunable, error);
                if tunables.len() == 1 {
                    return Err(error);
                }
                writeln!(err, "error: {error}")?;
                for cause in error.chain().skip(1) {
                    writeln!(err, "caused by: {cause}")?;
                }
                refused.push(&tunable.name);
            }
        }
    }
    let plan = Plan::new(kernel, plans);
    let written = match &args.output {
        // One file stands for the whole spec: a partial one would pass for it.
        Some(path) if !refused.is_empty() => {
            writeln!(
                err,
                "not writing {}: it would lack the refused tunables; fix them, or leave them out \
                 with --tunable",
                path.display()
            )?;
            Vec::new()
        }
        Some(path) => {
            plan.write(path)
                .with_context(|| format!("writing the plan {}", path.display()))?;
            vec![path.clone()]
        }
        None => {
            let store = plan_store()?;
            plan.tunables
                .iter()
                .map(|t| store.save(&plan.kernel, t))
                .collect::<Result<Vec<_>, _>>()
                .context("writing to the plan store")?
        }
    };
    if args.json {
        // The JSON is the plan as written; nothing was written when -o refused.
        if !written.is_empty() {
            out.write_all(plan.to_json()?.as_bytes())?;
        }
    } else {
        for t in &plan.tunables {
            write!(out, "{}", render_report(t))?;
        }
    }
    for path in written {
        writeln!(err, "wrote {}", path.display())?;
    }
    if !refused.is_empty() {
        bail!(
            "built {} of {} tunables; refused: {}",
            plan.tunables.len(),
            tunables.len(),
            refused.join(", ")
        );
    }
    Ok(plan)
}

/// The units `tunable` leaves at the compiled value: `--exclude-unit`'s, then its own
/// `exclude_units` (a unit in both is excluded once).
fn excluded_units(args: &BuildArgs, tunable: &Tunable) -> Vec<PathBuf> {
    let mut units = args.exclude_units.clone();
    for unit in &tunable.exclude_units {
        if !units.contains(unit) {
            units.push(unit.clone());
        }
    }
    units
}

/// Why `tunable` was refused. An exclusion of a unit the constant does not reach also says who
/// asked for it, since the fix is there: the command line's flag, or the spec's list.
fn refusal(args: &BuildArgs, spec: &Path, tunable: &Tunable, error: AnalyzeError) -> anyhow::Error {
    let origin = match &error {
        AnalyzeError::ExcludedUnitNotReached { unit, .. } => {
            let unit = Path::new(unit);
            let by_flag = args.exclude_units.iter().any(|u| u == unit);
            let by_spec = tunable.exclude_units.iter().any(|u| u == unit);
            let flag = "--exclude-unit, which applies to every selected tunable (drop it, or move \
                        it to the `exclude_units` of the tunables it concerns)";
            let list = format!(
                "`exclude_units` of {} in {} (remove it there)",
                tunable.name,
                spec.display()
            );
            match (by_flag, by_spec) {
                (true, true) => Some(format!("{flag} and by the {list}")),
                (true, false) => Some(flag.to_owned()),
                (false, true) => Some(format!("the {list}")),
                (false, false) => None,
            }
            .map(|origin| format!("{} is excluded by {origin}", unit.display()))
        }
        _ => None,
    };
    let context = match origin {
        Some(origin) => format!("building {}: {origin}", tunable.name),
        None => format!("building {}", tunable.name),
    };
    anyhow::Error::new(error).context(context)
}

/// Validates `args.spec` (file or macro name) and the `--tunable` selection, printing warnings
/// and a summary of what will be built to `err`.
pub fn check_spec(args: &BuildArgs, err: &mut impl Write) -> anyhow::Result<Parsed> {
    let env = EnvOverrides {
        kernel_dir: args.kernel_dir.kernel_dir.clone(),
        ..EnvOverrides::from_process_env()
    };
    let parsed = match from_argument(&args.spec, &env) {
        Ok(parsed) => parsed,
        Err(spec_error) => {
            // The spec error carries its own `path:line:col: error:` prefix, as compilers print.
            writeln!(err, "{spec_error}")?;
            bail!("{} is not a valid tunable spec", args.spec);
        }
    };
    for warning in &parsed.warnings {
        writeln!(err, "{warning}")?;
    }
    let names: Vec<&str> = parsed
        .spec
        .tunables
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    for wanted in &args.tunables {
        if !names.contains(&wanted.as_str()) {
            bail!(
                "--tunable {wanted}: {} has no such tunable; it has {}",
                args.spec,
                names.join(", ")
            );
        }
    }
    writeln!(err, "{}: valid spec", parsed.spec.path.display())?;
    for tunable in selected(args, &parsed) {
        writeln!(err, "  {}", describe(tunable))?;
        for unit in &tunable.exclude_units {
            writeln!(
                err,
                "    excluding {}: it keeps the compiled value (the spec's `exclude_units`)",
                unit.display()
            )?;
        }
    }
    for unit in &args.exclude_units {
        writeln!(
            err,
            "  excluding {}: it keeps the compiled value",
            unit.display()
        )?;
    }
    Ok(parsed)
}

fn selected<'p>(args: &'p BuildArgs, parsed: &'p Parsed) -> impl Iterator<Item = &'p Tunable> {
    parsed
        .spec
        .tunables
        .iter()
        .filter(|t| args.tunables.is_empty() || args.tunables.contains(&t.name))
}

/// One line per tunable: its name, where it comes from and its values.
fn describe(tunable: &Tunable) -> String {
    let values = |v: Option<[i64; 3]>| match v {
        Some([v1, v2, v3]) => format!("values {v1}, {v2}, {v3}"),
        None => "values chosen at build time".to_owned(),
    };
    match &tunable.source {
        TunableSource::Pattern {
            file, values: v, ..
        } => {
            format!(
                "{} ({}, {})",
                tunable.name,
                file.display(),
                values(Some(*v))
            )
        }
        TunableSource::Macro {
            macro_name,
            file,
            values: v,
            ..
        } => {
            let place = file
                .as_ref()
                .map_or("definition found in the tree".to_owned(), |f| {
                    f.display().to_string()
                });
            format!(
                "{} (macro {macro_name}, {place}, {})",
                tunable.name,
                values(*v)
            )
        }
    }
}
