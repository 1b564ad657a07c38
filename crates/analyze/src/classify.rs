//! Which effects of the constant fail a tunable and which only warn.
//!
//! SIE rewrites machine state where an instruction used the constant. It cannot change code
//! structure, so every code effect (instructions added or removed, branches or references
//! elsewhere, a different stack frame, changed code outside functions, constant pools that
//! instructions read, functions present in some builds only) fails the whole tunable. Initial
//! values of variables and string literals are data: the plan records them as uncovered, the
//! build warns, and the user decides (e.g. set `pipe_user_pages_soft` through its sysctl).

use kernelx_x86::{UncoveredEffect, UncoveredKind};

/// Whether an effect is on code (fails the tunable) rather than on data (a warning).
pub fn is_code_effect(kind: UncoveredKind, section: &str) -> bool {
    match kind {
        UncoveredKind::InstructionsChanged
        | UncoveredKind::BranchTarget
        | UncoveredKind::ReferenceTarget
        | UncoveredKind::FrameLayout
        | UncoveredKind::UnattributedCode => true,
        // An excluded unit is the user's decision, recorded in the plan; it fails nothing.
        UncoveredKind::DataValue
        | UncoveredKind::DataSize
        | UncoveredKind::DataReference
        | UncoveredKind::ExcludedUnit => false,
        // Merged constants (`.rodata.cst16`, ...) are what instructions load as operands;
        // strings and other unnamed bytes are data.
        UncoveredKind::SectionData => section.starts_with(".rodata.cst"),
    }
}

/// Whether a code effect is the compiler choosing another form for the same code (an
/// immediate that no longer fits a byte, a multiplication that is no longer a shift, blocks
/// laid out elsewhere), which other probe values may avoid; a stack frame sized by the value
/// or a constant pool changes whatever the values are.
pub fn is_form_effect(kind: UncoveredKind) -> bool {
    matches!(
        kind,
        UncoveredKind::InstructionsChanged | UncoveredKind::BranchTarget
    )
}

/// The plan's record of an effect in `unit`.
pub fn plan_effect(unit: &str, e: &UncoveredEffect) -> kernelx_plan::UncoveredEffect {
    kernelx_plan::UncoveredEffect {
        kind: e.kind,
        unit: unit.to_owned(),
        symbol: e.symbol.clone(),
        section: e.section.clone(),
        offset: e.offset,
        builds: e.builds.clone(),
        detail: e.detail.clone(),
        values: e.values.clone(),
    }
}

/// One line naming an effect within its unit: `symbol+0xoff (section): kind: detail`.
pub fn describe_in_unit(e: &UncoveredEffect) -> String {
    let at = match e.offset {
        Some(off) => format!("{}+{off:#x}", e.symbol),
        None => e.symbol.clone(),
    };
    format!("{at} ({}): {}: {}", e.section, e.kind, e.detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_effects_fail_and_data_effects_warn() {
        for kind in [
            UncoveredKind::InstructionsChanged,
            UncoveredKind::BranchTarget,
            UncoveredKind::ReferenceTarget,
            UncoveredKind::FrameLayout,
            UncoveredKind::UnattributedCode,
        ] {
            assert!(is_code_effect(kind, ".text"), "{kind}");
        }
        for kind in [
            UncoveredKind::DataValue,
            UncoveredKind::DataSize,
            UncoveredKind::DataReference,
        ] {
            assert!(!is_code_effect(kind, ".data"), "{kind}");
        }
        assert!(!is_code_effect(UncoveredKind::ExcludedUnit, ""));
        assert!(is_code_effect(UncoveredKind::SectionData, ".rodata.cst16"));
        assert!(!is_code_effect(
            UncoveredKind::SectionData,
            ".rodata.str1.1"
        ));
    }

    #[test]
    fn only_form_changes_are_worth_other_values() {
        let retried: Vec<UncoveredKind> = UncoveredKind::ALL
            .into_iter()
            .filter(|&k| is_form_effect(k))
            .collect();
        assert_eq!(
            retried,
            [
                UncoveredKind::InstructionsChanged,
                UncoveredKind::BranchTarget
            ]
        );
    }

    #[test]
    fn effects_keep_their_names_in_the_plan() {
        let e = UncoveredEffect {
            kind: UncoveredKind::FrameLayout,
            symbol: "tracing_splice_read_pipe".to_owned(),
            section: ".text".to_owned(),
            offset: Some(0x1d),
            builds: vec![1, 2],
            detail: "sub $0x1b0,%rsp: frame size".to_owned(),
            values: None,
        };
        let planned = plan_effect("kernel/trace/trace.c", &e);
        assert_eq!(
            (planned.kind, planned.unit.as_str()),
            (UncoveredKind::FrameLayout, "kernel/trace/trace.c")
        );
        assert_eq!(
            describe_in_unit(&e),
            "tracing_splice_read_pipe+0x1d (.text): frame_layout: sub $0x1b0,%rsp: frame size"
        );
    }
}
