//! `kernelx build`, first half: read and validate the tunable spec, so a user learns about a bad
//! file now. Building the plan itself comes with the analysis (see `unavailable`).

use std::io::Write;

use anyhow::bail;
use kernelx_spec::{EnvOverrides, Tunable, TunableSource, from_argument};

use crate::args::BuildArgs;

/// Validates `args.spec` (file or macro name) and the `--tunable` selection, printing warnings
/// and a summary of what would be built to `err`.
pub fn check_spec(args: &BuildArgs, err: &mut impl Write) -> anyhow::Result<()> {
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
    let selected = parsed
        .spec
        .tunables
        .iter()
        .filter(|t| args.tunables.is_empty() || args.tunables.contains(&t.name));
    writeln!(err, "{}: valid spec", parsed.spec.path.display())?;
    for tunable in selected {
        writeln!(err, "  {}", describe(tunable))?;
    }
    Ok(())
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
