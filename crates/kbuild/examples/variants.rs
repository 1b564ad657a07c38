//! Builds the variants of one tunable and prints what discovery found and how long it took.
//!
//! ```text
//! cargo run --release -p kernelx-kbuild --example variants -- <tree> <debug vmlinux> <MACRO | spec.toml> [--discover-only]
//! ```
//!
//! Used for the timings in the README; the CLI's `kernelx build` does the same with progress
//! bars.

use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Instant;

use kernelx_kbuild::{
    BuiltUnits, Cache, Event, KernelTree, Stage, Toolchain, VariantOptions, build_variants,
    discover,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (tree, vmlinux, spec, discover_only) = match args.as_slice() {
        [tree, vmlinux, spec] => (tree, vmlinux, spec, false),
        [tree, vmlinux, spec, flag] if flag == "--discover-only" => (tree, vmlinux, spec, true),
        _ => {
            return Err(
                "usage: variants <tree> <debug vmlinux> <MACRO | spec.toml> [--discover-only]"
                    .into(),
            );
        }
    };
    let started = Instant::now();
    let tree = KernelTree::open(tree)?;
    let parsed = kernelx_spec::from_argument(spec, &kernelx_spec::EnvOverrides::default())?;
    let built = BuiltUnits::from_debug_info(&[Path::new(vmlinux)])?;
    eprintln!(
        "[{:6.2}s] built units read",
        started.elapsed().as_secs_f64()
    );
    let options = VariantOptions {
        toolchain: Toolchain::debian_gcc12(),
        jobs: std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
        cache: Cache::from_env()?,
        built,
    };
    let progress = |event: Event<'_>| match event {
        Event::Started { stage, total } => {
            eprintln!(
                "[{:6.2}s] {stage} ({total})",
                started.elapsed().as_secs_f64()
            )
        }
        Event::Step {
            stage: Stage::Compile | Stage::Preprocess,
            item,
            variant,
            cached,
        } => eprintln!(
            "[{:6.2}s]   {} V{}{}",
            started.elapsed().as_secs_f64(),
            item.display(),
            variant.map_or(0, |v| v + 1),
            if cached { " (cached)" } else { "" }
        ),
        _ => {}
    };
    for tunable in &parsed.spec.tunables {
        if discover_only {
            let discovery = discover(&tree, tunable, &options, &progress)?;
            println!("{}: {}", tunable.name, discovery.change().summary);
            println!("{}", discovery.report());
            println!("timings: {:?}", discovery.report().timings);
            continue;
        }
        let set = build_variants(&tree, tunable, &options, &progress)?;
        println!("{}: {}", tunable.name, set.change);
        println!("{}", set.discovery);
        println!("timings: {:?}", set.discovery.timings);
        println!(
            "compile: {} compiled, {} cached, {:.2} s",
            set.stats.compiled, set.stats.cached, set.stats.seconds
        );
        for unit in &set.units {
            println!("{} -> {:?}", unit.object.display(), unit.builds);
        }
    }
    eprintln!("[{:6.2}s] done", started.elapsed().as_secs_f64());
    Ok(())
}
