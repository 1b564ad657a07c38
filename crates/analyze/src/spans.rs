//! A site's safe span: the slice the binary gives, or the spec's `[[safe_spans]]` override.

use kernelx_plan::{CodeRange, ExitKind, SafeSpan, SpanExit, SpanOrigin};
use kernelx_x86::{FunctionCode, SafeSpanSlice, SliceOptions, slice_span};

/// The safe span `id` of the critical span `cs` of `code`'s function. A spec span for the
/// function (`overrides`, as `(start, end)`) that contains `cs` wins; its exits are the derived
/// slice's exits inside it (none when the slice cannot be computed). Errors are sentences.
pub fn safe_span(
    code: &FunctionCode<'_, '_>,
    cs: std::ops::Range<u32>,
    overrides: &[(u32, u32)],
    id: String,
) -> Result<SafeSpan, String> {
    let slice = slice_span(code, cs.clone(), SliceOptions::default()).map_err(|e| e.to_string());
    let function = code.function.name.to_owned();
    if !overrides.is_empty() {
        let Some(&(start, end)) = overrides
            .iter()
            .find(|(s, e)| *s <= cs.start && cs.end <= *e)
        else {
            return Err(format!(
                "the spec's [[safe_spans]] for {function} do not contain the critical span \
                 {:#x}..{:#x}",
                cs.start, cs.end
            ));
        };
        let exits = slice
            .map(|s| exits(&s))
            .unwrap_or_default()
            .into_iter()
            .filter(|e| (start..end).contains(&e.offset))
            .collect();
        return Ok(SafeSpan {
            id,
            function,
            ranges: vec![CodeRange { start, end }],
            exits,
            origin: SpanOrigin::Spec,
            conservative: Vec::new(),
        });
    }
    let slice = slice?;
    Ok(SafeSpan {
        id,
        function,
        ranges: slice
            .ranges
            .iter()
            .map(|r| CodeRange {
                start: r.start,
                end: r.end,
            })
            .collect(),
        exits: exits(&slice),
        origin: SpanOrigin::Derived,
        conservative: slice.conservative.iter().map(ToString::to_string).collect(),
    })
}

fn exits(slice: &SafeSpanSlice) -> Vec<SpanExit> {
    use kernelx_x86::ExitKind as X;
    slice
        .exits
        .iter()
        .map(|(offset, kind)| {
            let (kind, target) = match kind {
                X::Return => (ExitKind::Return, None),
                X::TailCall { target } => (ExitKind::TailCall, Some(target.clone())),
                X::Cold { target } => (ExitKind::Cold, Some(target.clone())),
                X::IndirectJump => (ExitKind::IndirectJump, None),
                X::Trap => (ExitKind::Trap, None),
                X::FallsOffEnd => (ExitKind::FallsOffEnd, None),
            };
            SpanExit {
                offset: *offset,
                kind,
                target,
            }
        })
        .collect()
}
