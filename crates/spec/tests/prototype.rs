//! The prototype's tunable files must parse unchanged (spec §2). They are read in place from
//! the shared compat directory, never copied into this repository.

mod common;

use std::path::{Path, PathBuf};

use common::{prototype_dir, prototype_files};
use kernelx_spec::{EnvOverrides, Parsed, SpecError, Tunable, TunableSource, load};

fn home_env() -> EnvOverrides {
    EnvOverrides {
        kernel_dir: None,
        home: Some(PathBuf::from("/home/kx")),
    }
}

#[track_caller]
fn load_prototype(name: &str, env: &EnvOverrides) -> Parsed {
    let path = prototype_dir().join(name);
    load(&path, env).unwrap_or_else(|e| panic!("{name} must parse: {e}"))
}

/// The pattern form's fields: file, original, modified, values, lines as (first, last).
type PatternFields<'a> = (
    &'a Path,
    &'a str,
    &'a [String; 2],
    [i64; 3],
    Option<Vec<(u32, u32)>>,
);

/// The pattern form's fields, for assertions.
#[track_caller]
fn pattern(tunable: &Tunable) -> PatternFields<'_> {
    match &tunable.source {
        TunableSource::Pattern {
            file,
            original,
            modified,
            values,
            lines,
            ..
        } => {
            let lines = lines
                .as_ref()
                .map(|sels| sels.iter().map(|s| (s.first, s.last)).collect());
            (file, original, modified, *values, lines)
        }
        other => panic!(
            "{}: expected the pattern form, found {other:?}",
            tunable.name
        ),
    }
}

#[track_caller]
fn find<'a>(parsed: &'a Parsed, name: &str) -> &'a Tunable {
    parsed
        .spec
        .tunables
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no tunable named {name} in {}", parsed.spec.path.display()))
}

#[test]
fn every_prototype_file_parses_without_warnings() {
    let files = prototype_files();
    for file in &files {
        let parsed = load(file, &home_env()).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !parsed.spec.tunables.is_empty(),
            "{}: no tunables",
            file.display()
        );
        assert_eq!(
            parsed.warnings,
            [],
            "{}: unexpected warnings",
            file.display()
        );
        assert_eq!(parsed.spec.path, *file);
        for tunable in &parsed.spec.tunables {
            assert!(
                tunable.safe_spans.is_empty(),
                "{}: {}",
                file.display(),
                tunable.name
            );
            pattern(tunable);
        }
    }
}

#[test]
fn single_form_blk_max_request_count() {
    let parsed = load_prototype("blk_max_request_count.toml", &home_env());
    assert_eq!(
        parsed.spec.kernel_dir,
        Some(PathBuf::from("/home/kx/linux-6.8.0"))
    );
    let [tunable] = parsed.spec.tunables.as_slice() else {
        panic!("expected one tunable, got {:?}", parsed.spec.tunables)
    };
    assert_eq!(tunable.name, "BLK_MAX_REQUEST_COUNT");
    assert_eq!(tunable.description, "block/blk-mq.c BLK_MAX_REQUEST_COUNT");
    let (file, original, modified, values, lines) = pattern(tunable);
    assert_eq!(file, Path::new("block/blk-mq.c"));
    assert_eq!(original, "BLK_MAX_REQUEST_COUNT");
    assert_eq!(modified, &["8".to_owned(), "16".to_owned()]);
    assert_eq!(values, [32, 8, 16]);
    assert_eq!(lines, None);
}

#[test]
fn single_form_files_keep_their_values_and_kernel_dir() {
    let cases = [
        (
            "max_softirq_restart.toml",
            "MAX_SOFTIRQ_RESTART",
            "kernel/softirq.c",
            [10, 5, 3],
            "linux-6.8.0",
        ),
        (
            "nr_max_batched_migration.toml",
            "NR_MAX_BATCHED_MIGRATION",
            "mm/migrate.c",
            [512, 256, 1024],
            "linux-6.14.8-061408-generic",
        ),
        (
            "shrink_batch.toml",
            "SHRINK_BATCH",
            "mm/shrinker.c",
            [128, 32, 64],
            "linux-6.14.8-061408-generic",
        ),
    ];
    for (file_name, name, source_file, want_values, tree) in cases {
        let parsed = load_prototype(file_name, &home_env());
        assert_eq!(
            parsed.spec.kernel_dir,
            Some(Path::new("/home/kx").join(tree)),
            "{file_name}"
        );
        let [tunable] = parsed.spec.tunables.as_slice() else {
            panic!("{file_name}: expected one tunable")
        };
        assert_eq!(tunable.name, name);
        let (file, original, modified, values, _) = pattern(tunable);
        assert_eq!(file, Path::new(source_file), "{file_name}");
        assert_eq!(values, want_values, "{file_name}");
        assert!(original.starts_with("#define "), "{file_name}: {original}");
        assert!(
            modified.iter().all(|m| m.starts_with("#define ")),
            "{file_name}"
        );
    }
    let migration = load_prototype("nr_max_batched_migration.toml", &home_env());
    let (_, original, modified, _, _) = pattern(&migration.spec.tunables[0]);
    assert_eq!(original, "#define NR_MAX_BATCHED_MIGRATION\tHPAGE_PMD_NR");
    assert_eq!(modified[1], "#define NR_MAX_BATCHED_MIGRATION\t1024");
}

#[test]
fn multi_form_all_has_eight_tunables_in_order() {
    let parsed = load_prototype("all.toml", &home_env());
    let names: Vec<&str> = parsed
        .spec
        .tunables
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "tcp_cubic",
            "hystart_delay_max",
            "BLK_MQ_RESOURCE_DELAY",
            "IO_LOCAL_TW_DEFAULT_MAX",
            "tcp_recovery",
            "BLK_MQ_BUDGET_DELAY",
            "BLK_MQ_CPU_WORK_BATCH",
            "BLK_MAX_REQUEST_COUNT",
        ]
    );
    assert_eq!(
        parsed.spec.kernel_dir,
        Some(PathBuf::from("/home/kx/linux-6.8.0"))
    );

    let (file, original, modified, values, lines) = pattern(find(&parsed, "BLK_MQ_BUDGET_DELAY"));
    assert_eq!(file, Path::new("block/blk-mq-sched.c"));
    assert_eq!(original, "#define BLK_MQ_BUDGET_DELAY\t3");
    assert_eq!(
        modified,
        &[
            "#define BLK_MQ_BUDGET_DELAY\t5".to_owned(),
            "#define BLK_MQ_BUDGET_DELAY\t7".to_owned()
        ]
    );
    assert_eq!(values, [3, 5, 7]);
    assert_eq!(lines, Some(vec![(156, 156), (248, 248)]));

    let (_, original, _, values, lines) = pattern(find(&parsed, "hystart_delay_max"));
    assert_eq!(original, "#define HYSTART_DELAY_MAX\t(16000U)");
    assert_eq!(values, [16000, 32000, 24000]);
    assert_eq!(lines, None);

    let tcp_cubic = find(&parsed, "tcp_cubic");
    assert_eq!(tcp_cubic.description, "delay_min shift amount");
    assert_eq!(pattern(tcp_cubic).1, "ca->delay_min >> 3");
    assert_eq!(
        pattern(find(&parsed, "BLK_MAX_REQUEST_COUNT")).3,
        [32, 8, 16]
    );
    assert_eq!(
        pattern(find(&parsed, "BLK_MQ_CPU_WORK_BATCH")).2,
        &["16".to_owned(), "32".to_owned()]
    );
    assert_eq!(pattern(find(&parsed, "tcp_recovery")).3, [2, 1, 3]);
}

#[test]
fn figure_files_parse() {
    let fig12 = load_prototype("fig12_hystart.toml", &home_env());
    let names: Vec<&str> = fig12
        .spec
        .tunables
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(names, ["tcp_cubic", "hystart_delay_max"]);

    let fig18 = load_prototype("fig18_process_backlog.toml", &home_env());
    let [tunable] = fig18.spec.tunables.as_slice() else {
        panic!("fig18: expected one tunable")
    };
    assert_eq!(tunable.name, "process_backlog_threshold");
    let (file, original, _, values, _) = pattern(tunable);
    assert_eq!(file, Path::new("net/ipv4/tcp.c"));
    assert_eq!(original, "if (unlikely(process_backlog >= 16)) {");
    assert_eq!(values, [16, 32, 8]);
}

#[test]
fn kernel_dir_environment_variable_overrides_the_file() {
    let env = EnvOverrides {
        kernel_dir: Some(PathBuf::from("/srv/linux-6.12")),
        home: Some(PathBuf::from("/home/kx")),
    };
    for name in [
        "all.toml",
        "blk_max_request_count.toml",
        "shrink_batch.toml",
    ] {
        let parsed = load_prototype(name, &env);
        assert_eq!(
            parsed.spec.kernel_dir,
            Some(PathBuf::from("/srv/linux-6.12")),
            "{name}"
        );
    }
    // Without HOME the file's `~` cannot be expanded, but the override makes that moot.
    let env = EnvOverrides {
        kernel_dir: Some(PathBuf::from("/srv/linux-6.12")),
        home: None,
    };
    assert_eq!(
        load_prototype("all.toml", &env).spec.kernel_dir,
        Some(PathBuf::from("/srv/linux-6.12"))
    );
}

#[test]
fn tilde_without_home_is_an_error_naming_the_key() {
    let path = prototype_dir().join("all.toml");
    let err = load(&path, &EnvOverrides::default()).unwrap_err();
    assert!(
        matches!(
            err,
            SpecError::BadKernelDir {
                line: 1,
                col: 14,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("HOME is not set"), "{err}");
}
