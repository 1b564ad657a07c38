//! Readers reject a plan of another format version, naming both versions, before they look at
//! anything else in it.

use kernelx_plan::{FORMAT_VERSION, Plan, PlanError};

const EXAMPLE: &str = include_str!("../testdata/example.plan.json");

#[test]
fn rejects_an_unknown_format_version_naming_both() {
    let newer = EXAMPLE.replacen("\"format_version\": 2,", "\"format_version\": 3,", 1);
    assert_ne!(newer, EXAMPLE);
    let err = Plan::from_json(&newer).unwrap_err();
    assert!(
        matches!(
            err,
            PlanError::UnsupportedVersion {
                found: 3,
                supported: FORMAT_VERSION,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("format version 3") && text.contains("format version 2"),
        "{text}"
    );
}

/// Version 1 had no `kernel.module`: a version-1 reader would apply a module's sites to
/// vmlinux functions of the same name, so version-1 plans are refused by name, and a
/// version-1 reader refuses version-2 plans the same way.
#[test]
fn version_1_plans_are_refused() {
    assert_eq!(FORMAT_VERSION, 2);
    let older = EXAMPLE.replacen("\"format_version\": 2,", "\"format_version\": 1,", 1);
    assert_ne!(older, EXAMPLE);
    let err = Plan::from_json(&older).unwrap_err();
    assert!(
        matches!(err, PlanError::UnsupportedVersion { found: 1, .. }),
        "{err:?}"
    );
}

#[test]
fn the_version_is_checked_before_the_fields() {
    // A future format may look nothing like this one.
    let err = Plan::from_json(r#"{"format_version": 7, "targets": {}}"#).unwrap_err();
    assert!(
        matches!(err, PlanError::UnsupportedVersion { found: 7, .. }),
        "{err:?}"
    );
    let err = Plan::from_json(r#"{"format_version": 0}"#).unwrap_err();
    assert!(
        matches!(err, PlanError::UnsupportedVersion { found: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn read_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.plan.json");
    std::fs::write(
        &path,
        EXAMPLE.replacen("\"format_version\": 2,", "\"format_version\": 99,", 1),
    )
    .unwrap();
    let text = Plan::read(&path).unwrap_err().to_string();
    assert!(
        text.starts_with(&path.display().to_string()) && text.contains("99"),
        "{text}"
    );

    let missing = dir.path().join("missing.json");
    let err = Plan::read(&missing).unwrap_err();
    assert!(matches!(err, PlanError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.json"), "{err}");
}

#[test]
fn a_plan_without_a_version_is_not_a_plan() {
    let err = Plan::from_json(r#"{"kernel": {}}"#).unwrap_err();
    assert!(matches!(err, PlanError::Parse { .. }), "{err:?}");
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(source.contains("format_version"), "{source}");
    let err = Plan::from_json("not json").unwrap_err();
    assert!(
        matches!(err, PlanError::Parse { path: None, .. }),
        "{err:?}"
    );
}

#[test]
fn plans_in_memory_are_checked_too() {
    let mut plan = Plan::from_json(EXAMPLE).unwrap();
    plan.format_version = 3;
    let err = plan.to_json().unwrap_err().to_string();
    assert!(
        err.contains("format version 3") && err.contains("format version 2"),
        "{err}"
    );
}
