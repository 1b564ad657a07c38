//! Behaviour of the accepted forms beyond the prototype's files: the short (macro) form, safe
//! spans, `lines`, `kernel_dir` resolution, unknown-key warnings and the JSON shape.

use std::path::{Path, PathBuf};

use kernelx_spec::{EnvOverrides, Parsed, SpecError, Tunable, TunableSource, load, parse_str};

fn env() -> EnvOverrides {
    EnvOverrides {
        kernel_dir: None,
        home: Some(PathBuf::from("/home/kx")),
    }
}

#[track_caller]
fn parse(text: &str) -> Parsed {
    parse_str(text, "t.toml", &env()).unwrap_or_else(|e| panic!("{e}"))
}

#[track_caller]
fn parse_err(text: &str) -> String {
    match parse_str(text, "t.toml", &env()) {
        Ok(parsed) => panic!("accepted: {parsed:?}"),
        Err(e) => e.to_string(),
    }
}

#[track_caller]
fn only(parsed: &Parsed) -> &Tunable {
    match parsed.spec.tunables.as_slice() {
        [tunable] => tunable,
        other => panic!("expected one tunable, got {}", other.len()),
    }
}

#[track_caller]
fn macro_source(tunable: &Tunable) -> (&str, Option<&Path>, Option<[i64; 3]>) {
    match &tunable.source {
        TunableSource::Macro {
            macro_name,
            file,
            values,
            ..
        } => (macro_name, file.as_deref(), *values),
        other => panic!("expected the macro form, found {other:?}"),
    }
}

const PATTERN: &str = r##"
name = "SHRINK_BATCH"
[source]
file = "mm/shrinker.c"
original = "#define SHRINK_BATCH 128"
modified = ["#define SHRINK_BATCH 32", "#define SHRINK_BATCH 64"]
values = [128, 32, 64]
"##;

#[test]
fn short_form_needs_only_the_macro() {
    let parsed = parse("macro = \"PIPE_DEF_BUFFERS\"\n");
    let tunable = only(&parsed);
    assert_eq!(tunable.name, "PIPE_DEF_BUFFERS");
    assert_eq!(tunable.description, "");
    assert_eq!(macro_source(tunable), ("PIPE_DEF_BUFFERS", None, None));
    assert_eq!(parsed.spec.kernel_dir, None);
    assert_eq!(
        *tunable,
        Tunable::from_macro_name("PIPE_DEF_BUFFERS").unwrap()
    );
}

#[test]
fn short_form_takes_file_values_name_and_description() {
    let parsed = parse(
        r##"
        name = "pipe_bufs"
        description = "default pipe ring size"
        macro = "PIPE_DEF_BUFFERS"
        file = "include/linux/pipe_fs_i.h"
        values = [16, 32, 8]
        "##,
    );
    let tunable = only(&parsed);
    assert_eq!(tunable.name, "pipe_bufs");
    assert_eq!(tunable.description, "default pipe ring size");
    let file = Path::new("include/linux/pipe_fs_i.h");
    assert_eq!(
        macro_source(tunable),
        ("PIPE_DEF_BUFFERS", Some(file), Some([16, 32, 8]))
    );
    assert_eq!(tunable.values(), Some([16, 32, 8]));
    assert_eq!(tunable.file(), Some(file));
}

#[test]
fn short_form_in_a_list_and_mixed_with_patterns() {
    let parsed = parse(
        r##"
        [[tunables]]
        macro = "PIPE_DEF_BUFFERS"

        [[tunables]]
        macro = "MAX_SOFTIRQ_RESTART"
        file = "kernel/softirq.c"

        [[tunables]]
        name = "tcp_cubic"
        file = "net/ipv4/tcp_cubic.c"
        original = "ca->delay_min >> 3"
        modified = ["ca->delay_min >> 2", "ca->delay_min >> 1"]
        values = [3, 2, 1]
        "##,
    );
    let names: Vec<&str> = parsed
        .spec
        .tunables
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["PIPE_DEF_BUFFERS", "MAX_SOFTIRQ_RESTART", "tcp_cubic"]
    );
    assert_eq!(
        macro_source(&parsed.spec.tunables[1]).1,
        Some(Path::new("kernel/softirq.c"))
    );
    assert!(matches!(
        parsed.spec.tunables[2].source,
        TunableSource::Pattern { .. }
    ));
}

#[test]
fn macro_in_a_source_table_is_accepted() {
    let parsed = parse("[source]\nmacro = \"SHRINK_BATCH\"\nvalues = [128, 32, 64]\n");
    assert_eq!(
        macro_source(only(&parsed)),
        ("SHRINK_BATCH", None, Some([128, 32, 64]))
    );
}

#[test]
fn single_form_accepts_source_keys_at_the_top_level_like_the_prototype() {
    // The prototype reads source keys from `[source]` or, failing that, from the top level.
    let flat = parse(
        r##"
        name = "SHRINK_BATCH"
        file = "mm/shrinker.c"
        original = "#define SHRINK_BATCH 128"
        modified = ["#define SHRINK_BATCH 32", "#define SHRINK_BATCH 64"]
        values = [128, 32, 64]
        "##,
    );
    assert_eq!(flat.spec.tunables, parse(PATTERN).spec.tunables);
}

#[test]
fn multi_form_accepts_a_source_sub_table_and_inline_tables() {
    let parsed = parse(
        r##"
        [[tunables]]
        name = "SHRINK_BATCH"
        [tunables.source]
        file = "mm/shrinker.c"
        original = "#define SHRINK_BATCH 128"
        modified = ["#define SHRINK_BATCH 32", "#define SHRINK_BATCH 64"]
        values = [128, 32, 64]
        "##,
    );
    assert_eq!(parsed.spec.tunables, parse(PATTERN).spec.tunables);
    let inline = parse(
        r##"
        name = "SHRINK_BATCH"
        source = { file = "mm/shrinker.c", original = "#define SHRINK_BATCH 128", modified = ["#define SHRINK_BATCH 32", "#define SHRINK_BATCH 64"], values = [128, 32, 64] }
        "##,
    );
    assert_eq!(inline.spec.tunables, parse(PATTERN).spec.tunables);
}

#[test]
fn safe_spans_accept_integers_and_hex_strings() {
    let text = format!(
        "{PATTERN}\n[[safe_spans]]\nfunction = \"do_shrink_slab\"\nstart_offset = \"0x10\"\nend_offset = \"0X9f\"\n\n[[safe_spans]]\nfunction = \"shrink_slab\"\nstart_offset = 0\nend_offset = 0x6b\n"
    );
    let parsed = parse(&text);
    let spans: Vec<(&str, u32, u32)> = only(&parsed)
        .safe_spans
        .iter()
        .map(|s| (s.function.as_str(), s.start_offset, s.end_offset))
        .collect();
    assert_eq!(
        spans,
        [("do_shrink_slab", 0x10, 0x9f), ("shrink_slab", 0, 0x6b)]
    );
}

#[test]
fn multi_form_safe_spans_belong_to_their_tunable() {
    let parsed = parse(
        r##"
        [[tunables]]
        macro = "PIPE_DEF_BUFFERS"
        [[tunables.safe_spans]]
        function = "alloc_pipe_info"
        start_offset = "0x6b"
        end_offset = "0x81"

        [[tunables]]
        macro = "SHRINK_BATCH"
        "##,
    );
    assert_eq!(parsed.spec.tunables[0].safe_spans.len(), 1);
    assert_eq!(parsed.spec.tunables[0].safe_spans[0].start_offset, 0x6b);
    assert!(parsed.spec.tunables[1].safe_spans.is_empty());
}

#[test]
fn lines_accept_numbers_and_ranges() {
    let text = PATTERN.replace(
        "values = [128, 32, 64]",
        "values = [128, 32, 64]\nlines = \"10-20, 156 ,248\"",
    );
    let parsed = parse(&text);
    let TunableSource::Pattern {
        lines: Some(lines), ..
    } = &only(&parsed).source
    else {
        panic!("no lines")
    };
    let got: Vec<(u32, u32)> = lines.iter().map(|s| (s.first, s.last)).collect();
    assert_eq!(got, [(10, 20), (156, 156), (248, 248)]);
    assert!(lines[0].contains(15) && !lines[0].contains(21));
    // An empty string means "everywhere", as in the prototype.
    let text = PATTERN.replace(
        "values = [128, 32, 64]",
        "values = [128, 32, 64]\nlines = \"\"",
    );
    assert!(matches!(
        only(&parse(&text)).source,
        TunableSource::Pattern { lines: None, .. }
    ));
}

#[test]
fn unknown_keys_are_warnings_with_positions() {
    let text = r##"
kernel_dir = "/usr/src/linux"
author = "kx"
name = "SHRINK_BATCH"
colour.shade = "dark"
when = 1979-05-27

[source]
file = "mm/shrinker.c"
original = "#define SHRINK_BATCH 128"
modified = ["#define SHRINK_BATCH 32", "#define SHRINK_BATCH 64"]
valeus = [1, 2]
values = [128, 32, 64]

[[safe_spans]]
function = "do_shrink_slab"
start_offset = 1
end_offset = 2
note = { why = "measured" }

[extra.deep]
x = 1
"##;
    let parsed = parse(text);
    let got: Vec<String> = parsed.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "t.toml:3:1: warning: unknown key `author` at the top level is ignored",
            "t.toml:5:1: warning: unknown key `colour` at the top level is ignored",
            "t.toml:6:1: warning: unknown key `when` at the top level is ignored",
            "t.toml:12:1: warning: unknown key `valeus` in [source] is ignored; did you mean `values`?",
            "t.toml:19:1: warning: unknown key `note` in [[safe_spans]] entry 1 is ignored",
            "t.toml:21:2: warning: unknown key `extra` at the top level is ignored",
        ]
    );
    assert_eq!(parsed.warnings[3].key, "valeus");
    assert_eq!((parsed.warnings[3].line, parsed.warnings[3].col), (12, 1));
    assert_eq!(only(&parsed).name, "SHRINK_BATCH");
}

#[test]
fn unknown_keys_in_tunables_entries_are_warnings() {
    let parsed =
        parse("[[tunables]]\nmacro = \"A\"\n\n[[tunables]]\nmacro = \"B\"\nNAME = \"b\"\n");
    let got: Vec<String> = parsed.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "t.toml:6:1: warning: unknown key `NAME` in [[tunables]] entry 2 is ignored; did you mean `name`?"
        ]
    );
}

#[test]
fn relative_kernel_dir_is_taken_from_the_file_directory() {
    let text = "kernel_dir = \"../linux\"\nmacro = \"X\"\n";
    let parsed = parse_str(text, "/etc/kernelx/t.toml", &env()).unwrap();
    assert_eq!(
        parsed.spec.kernel_dir,
        Some(PathBuf::from("/etc/kernelx/../linux"))
    );
    let parsed = parse_str(
        "kernel_dir = \"/usr/src/linux\"\nmacro = \"X\"\n",
        "t.toml",
        &env(),
    )
    .unwrap();
    assert_eq!(
        parsed.spec.kernel_dir,
        Some(PathBuf::from("/usr/src/linux"))
    );
}

#[test]
fn kernel_dir_override_applies_without_a_kernel_dir_key() {
    let env = EnvOverrides {
        kernel_dir: Some(PathBuf::from("/srv/linux")),
        home: None,
    };
    let parsed = parse_str("macro = \"X\"\n", "t.toml", &env).unwrap();
    assert_eq!(parsed.spec.kernel_dir, Some(PathBuf::from("/srv/linux")));
}

#[test]
fn errors_carry_their_position() {
    let err = parse_str("macro = \"X\"\nvalues = [1, 1, 2]\n", "t.toml", &env()).unwrap_err();
    assert_eq!(err.location(), Some((Path::new("t.toml"), 2, 14)));
    assert!(
        matches!(
            err,
            SpecError::DuplicateValue {
                value: 1,
                first: 1,
                second: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        Tunable::from_macro_name("a b").unwrap_err().location(),
        None
    );
}

#[test]
fn columns_count_characters() {
    // `é` is two bytes but one column: the `3` after it is in column 18.
    let err = parse_err(
        "name = \"x\"\nfile = \"a.c\"\noriginal = \"o\"\nmodified = [\"é\", 3]\nvalues = [1, 2, 3]\n",
    );
    assert!(
        err.starts_with("t.toml:4:18: error: `modified` entry 2 must be a string"),
        "{err}"
    );
}

#[test]
fn load_names_an_unreadable_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let err = load(&missing, &env()).unwrap_err();
    assert!(
        matches!(&err, SpecError::Io { path, .. } if *path == missing),
        "{err:?}"
    );
    assert!(err.to_string().starts_with(&format!(
        "{}: error: cannot read the tunable file: ",
        missing.display()
    )));

    let file = dir.path().join("shrink.toml");
    std::fs::write(&file, PATTERN).unwrap();
    let parsed = load(&file, &env()).unwrap();
    assert_eq!(parsed.spec.path, file);
    let err = {
        std::fs::write(&file, "macro = 3\n").unwrap();
        load(&file, &env()).unwrap_err()
    };
    assert_eq!(
        err.to_string(),
        format!(
            "{}:1:9: error: `macro` must be a string, found an integer",
            file.display()
        )
    );
}

#[test]
fn serializes_to_json_for_the_cli() {
    let text = format!("kernel_dir = \"/usr/src/linux\"\n{PATTERN}\nlines = \"3-4\"\n");
    let json = serde_json::to_value(parse(&text)).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "spec": {
                "path": "t.toml",
                "kernel_dir": "/usr/src/linux",
                "tunables": [{
                    "name": "SHRINK_BATCH",
                    "description": "",
                    "source": {
                        "form": "pattern",
                        "file": "mm/shrinker.c",
                        "original": "#define SHRINK_BATCH 128",
                        "modified": ["#define SHRINK_BATCH 32", "#define SHRINK_BATCH 64"],
                        "values": [128, 32, 64],
                        "lines": [{ "first": 3, "last": 4 }]
                    },
                    "safe_spans": [],
                    "exclude_units": []
                }]
            },
            "warnings": []
        })
    );
    let json = serde_json::to_value(Tunable::from_macro_name("X").unwrap()).unwrap();
    assert_eq!(
        json["source"],
        serde_json::json!({ "form": "macro", "macro_name": "X", "file": null, "values": null })
    );
}

#[test]
fn command_line_argument_is_a_macro_or_a_file() {
    let env = EnvOverrides {
        kernel_dir: Some(PathBuf::from("/src/linux")),
        home: None,
    };
    let parsed = kernelx_spec::from_argument("PIPE_DEF_BUFFERS", &env).unwrap();
    assert_eq!(
        parsed.spec.kernel_dir.as_deref(),
        Some(Path::new("/src/linux"))
    );
    assert_eq!(macro_source(only(&parsed)).0, "PIPE_DEF_BUFFERS");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pipe");
    std::fs::write(&file, "macro = \"PIPE_DEF_BUFFERS\"\nname = \"pipe\"\n").unwrap();
    let parsed = kernelx_spec::from_argument(file.to_str().unwrap(), &env).unwrap();
    assert_eq!(only(&parsed).name, "pipe");
}

#[test]
fn command_line_argument_that_is_neither_says_so() {
    let err = kernelx_spec::from_argument("no such thing", &env()).unwrap_err();
    assert!(
        matches!(err, SpecError::NotASpecArgument { ref argument } if argument == "no such thing"),
        "{err:?}"
    );
    let missing = kernelx_spec::from_argument("tunables/missing.toml", &env()).unwrap_err();
    assert!(
        matches!(missing, SpecError::Io { ref path, .. } if path == Path::new("tunables/missing.toml")),
        "{missing:?}"
    );
}

#[test]
fn exclude_units_belong_to_the_tunable_in_every_form() {
    let units = |parsed: &Parsed| -> Vec<Vec<PathBuf>> {
        let tunables = &parsed.spec.tunables;
        tunables.iter().map(|t| t.exclude_units.clone()).collect()
    };
    let pipe = vec![
        PathBuf::from("fs/splice.c"),
        PathBuf::from("kernel/trace/trace.c"),
    ];

    let short = parse(
        "macro = \"PIPE_DEF_BUFFERS\"\nexclude_units = [\"fs/splice.c\", \"kernel/trace/trace.c\"]\n",
    );
    assert_eq!(units(&short), std::slice::from_ref(&pipe));

    let single = parse(&format!("exclude_units = [\"mm/vmscan.c\"]\n{PATTERN}"));
    assert_eq!(units(&single), [vec![PathBuf::from("mm/vmscan.c")]]);
    assert!(single.warnings.is_empty(), "{:?}", single.warnings);

    let multi = parse(
        r##"
[[tunables]]
macro = "PIPE_DEF_BUFFERS"
exclude_units = ["fs/splice.c", "kernel/trace/trace.c"]

[[tunables]]
macro = "MAX_SOFTIRQ_RESTART"

[[tunables]]
macro = "SHRINK_BATCH"
exclude_units = []
"##,
    );
    assert_eq!(units(&multi), [pipe, vec![], vec![]]);
    assert!(multi.warnings.is_empty(), "{:?}", multi.warnings);
}

#[test]
fn exclude_units_in_a_source_table_is_an_unknown_key() {
    // It says where the tunable applies, not where the constant is: `[source]` does not hold it.
    let parsed = parse(&format!("{PATTERN}exclude_units = [\"mm/vmscan.c\"]\n"));
    assert!(only(&parsed).exclude_units.is_empty());
    let got: Vec<String> = parsed.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        ["t.toml:8:1: warning: unknown key `exclude_units` in [source] is ignored"]
    );
}

#[test]
fn exclude_units_errors_point_at_the_entry() {
    let cases = [
        (
            "macro = \"X\"\nexclude_units = [\"fs/splice.c\", true]\n",
            "t.toml:2:33: error: `exclude_units` entry 2 must be a string, found a boolean",
        ),
        (
            "macro = \"X\"\nexclude_units = { unit = \"fs/splice.c\" }\n",
            "t.toml:2:17: error: `exclude_units` must be an array, found a table",
        ),
        (
            "macro = \"X\"\nexclude_units = [\"/fs/splice.c\"]\n",
            "t.toml:2:18: error: `exclude_units` entry 1 = \"/fs/splice.c\" is absolute",
        ),
        (
            "macro = \"X\"\nexclude_units = [\"../fs/splice.c\"]\n",
            "t.toml:2:18: error: `exclude_units` entry 1 = \"../fs/splice.c\" leaves the kernel tree through `..`",
        ),
        (
            "macro = \"X\"\nexclude_units = [\"fs/splice.c\", \"fs/splice.c\"]\n",
            "t.toml:2:33: error: `exclude_units` entry 2 repeats entry 1, \"fs/splice.c\"; list each unit once",
        ),
    ];
    for (text, expected) in cases {
        let err = parse_err(text);
        assert!(err.starts_with(expected), "{text:?}:\n{err}");
    }
}
