//! Diffs builds of one object and prints what it finds, for looking at real objects by hand:
//!
//! ```text
//! cargo run -p kernelx-x86 --example diff -- pipe-16.o:16 pipe-32.o:32 pipe-64.o:64 [--json]
//! ```

use std::process::ExitCode;

use kernelx_x86::{ObjectFile, diff_builds};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let builds: Vec<(&str, i64)> = match args
        .iter()
        .filter(|a| *a != "--json")
        .map(|a| {
            let (path, value) = a.rsplit_once(':').ok_or(a)?;
            Ok((path, value.parse().map_err(|_| a)?))
        })
        .collect::<Result<_, &String>>()
    {
        Ok(b) => b,
        Err(bad) => {
            eprintln!("usage: diff <object>:<value> <object>:<value> ... [--json] (bad: {bad})");
            return ExitCode::FAILURE;
        }
    };
    let bytes: Vec<Vec<u8>> = match builds.iter().map(|(p, _)| std::fs::read(p)).collect() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("reading objects: {e}");
            return ExitCode::FAILURE;
        }
    };
    let run = || -> Result<(), Box<dyn std::error::Error>> {
        let objects: Vec<ObjectFile<'_>> = builds
            .iter()
            .zip(&bytes)
            .map(|((path, _), b)| ObjectFile::parse(*path, b))
            .collect::<Result<_, _>>()?;
        let refs: Vec<&ObjectFile<'_>> = objects.iter().collect();
        let values: Vec<i64> = builds.iter().map(|(_, v)| *v).collect();
        let diff = diff_builds(&refs, &values)?;
        if json {
            println!("{}", serde_json::to_string_pretty(&diff)?);
            return Ok(());
        }
        for s in &diff.seeds {
            let asm: Vec<&str> = s.instances.iter().map(|i| i.asm.as_str()).collect();
            println!("seed {}+{:#x}: {}", s.function, s.offset, asm.join(" | "));
        }
        for u in &diff.uncovered {
            let at = u.offset.map(|o| format!("+{o:#x}")).unwrap_or_default();
            println!("uncovered {} {}{}: {}", u.kind, u.symbol, at, u.detail);
        }
        for m in &diff.unmatched {
            println!("unmatched {:?} {} in {:?}", m.kind, m.name, m.present_in);
        }
        println!("{:?}", diff.stats);
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
