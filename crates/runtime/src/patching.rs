//! Places the kernel rewrites at run time, which a plan's bytes cannot predict.
//!
//! A plan's bytes come from the V1 object; the running kernel patches some of its code after
//! linking:
//!
//! * `endbr64` at a function's entry (IBT) becomes a 4-byte NOP (`66 0f 1f 00`) when the
//!   function's address is never taken ("sealing"), and a CPU without IBT runs it as a NOP.
//! * ftrace's `call __fentry__` right after it (or at +0 without IBT) is a 5-byte NOP until a
//!   tracer attaches, then a call to a trampoline.
//! * static keys (jump labels) flip a `jmp` and a NOP; alternatives and static calls rewrite
//!   instructions to fit the CPU and the configuration; kprobes put an `int3` or, once
//!   optimized, a 5-byte `jmp` at the probed address.
//!
//! The analysis never places a site or a probe at such a place (their bytes differ between the
//! object and the kernel, so they are uncovered code, not sites), and the kernel refuses a
//! kprobe at a jump label, static call or alternative anyway (`-EBUSY`). The verifier
//! therefore treats them as follows: a site or probe in a function's entry patch area is
//! refused with a message naming it ([`entry_patch_area`]); a seed whose masked bytes differ is
//! refused, and when the live bytes look like one of these patches the message says which
//! ([`explain_mismatch`]). Nothing is ever accepted because it "looks patched".

use std::ops::Range;

const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];
/// What the kernel writes over a sealed `endbr64` (`gen_endbr_poison`, arch/x86/include/asm/ibt.h).
const ENDBR_POISON: [u8; 4] = [0x66, 0x0f, 0x1f, 0x00];
/// The 5-byte NOP ftrace leaves at an untraced `__fentry__` call (`x86_nops[5]`).
const NOP5: [u8; 5] = [0x0f, 0x1f, 0x44, 0x00, 0x00];
const CALL_REL32: u8 = 0xe8;
const JMP_REL32: u8 = 0xe9;
const JMP_REL8: u8 = 0xeb;
const INT3: u8 = 0xcc;

/// How many bytes of a function's start [`entry_patch_area`] needs.
pub const ENTRY_HEAD_LEN: usize = 9;

/// The offsets at the start of a function (from its live first [`ENTRY_HEAD_LEN`] bytes) that
/// the kernel patches: `endbr64` and the ftrace call site after it. `None` when the function
/// starts with neither.
pub fn entry_patch_area(head: &[u8]) -> Option<Range<u32>> {
    let endbr = head
        .get(..4)
        .is_some_and(|b| *b == ENDBR64 || *b == ENDBR_POISON);
    let fentry_at = if endbr { 4 } else { 0 };
    let fentry = head
        .get(fentry_at..fentry_at + 5)
        .is_some_and(|b| *b == NOP5 || b[0] == CALL_REL32);
    let end = fentry_at + if fentry { 5 } else { 0 };
    (end > 0).then_some(0..end as u32)
}

/// What probably rewrote a seed whose live bytes `found` differ from the plan's `expected`,
/// as a sentence; `None` when the bytes do not look like a run-time patch.
pub fn explain_mismatch(expected: &[u8], found: &[u8]) -> Option<&'static str> {
    let (Some(&want), Some(&got)) = (expected.first(), found.first()) else {
        return None;
    };
    if got == INT3 {
        return Some(
            "an int3 is there: a kprobe (or another breakpoint, e.g. a text_poke in progress) \
             sits on this instruction",
        );
    }
    if expected.starts_with(&ENDBR64) {
        return Some(
            "the plan's instruction is an endbr64, which the kernel seals into a NOP at run time",
        );
    }
    if want == CALL_REL32 && found.starts_with(&NOP5) {
        return Some(
            "the plan's instruction is a call the kernel turned into a 5-byte NOP: ftrace's \
             call __fentry__ (or a static call)",
        );
    }
    let is_jump = |b: u8| b == JMP_REL32 || b == JMP_REL8;
    if (is_jump(want) && is_nop(found)) || (is_nop(expected) && is_jump(got)) {
        return Some("a static key (jump label) flips this place between a jmp and a NOP");
    }
    if got == JMP_REL32 {
        return Some(
            "a 5-byte jmp is there: a jump-optimized kprobe (or a static key) covers this \
             instruction",
        );
    }
    if is_nop(found) {
        return Some("the kernel rewrote this place at run time (an alternative or a static call)");
    }
    None
}

/// Whether `code` starts with one of the kernel's NOP encodings (`x86_nops`, the endbr poison).
fn is_nop(code: &[u8]) -> bool {
    matches!(
        code,
        [0x90, ..]
            | [0x0f, 0x1f, ..]
            | [0x66, 0x90, ..]
            | [0x66, 0x0f, 0x1f, ..]
            | [0x66, 0x2e, 0x0f, 0x1f, ..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_endbr_and_the_ftrace_call_at_a_function_start() {
        // alloc_pipe_info in the lab kernel: endbr64 (or its seal), then the fentry NOP.
        let live = [0xf3, 0x0f, 0x1e, 0xfa, 0x0f, 0x1f, 0x44, 0x00, 0x00];
        assert_eq!(entry_patch_area(&live), Some(0..9));
        let sealed_and_traced = [0x66, 0x0f, 0x1f, 0x00, 0xe8, 1, 2, 3, 4];
        assert_eq!(entry_patch_area(&sealed_and_traced), Some(0..9));
        let no_ibt = [0x0f, 0x1f, 0x44, 0x00, 0x00, 0x55, 0x48, 0x89, 0xe5];
        assert_eq!(entry_patch_area(&no_ibt), Some(0..5));
        let notrace = [0xf3, 0x0f, 0x1e, 0xfa, 0x55, 0x48, 0x89, 0xe5, 0x90];
        assert_eq!(entry_patch_area(&notrace), Some(0..4));
        let plain = [0x55, 0x48, 0x89, 0xe5, 0x90, 0x90, 0x90, 0x90, 0x90];
        assert_eq!(entry_patch_area(&plain), None);
    }

    #[test]
    fn names_the_patch_that_explains_a_mismatch() {
        let cases: [(&[u8], &[u8], Option<&str>); 7] = [
            (&[0xbd, 0x0a, 0, 0, 0], &[0xcc, 0x0a, 0, 0, 0], Some("int3")),
            (&ENDBR64, &ENDBR_POISON, Some("endbr64")),
            (&[0xe8, 0, 0, 0, 0], &NOP5, Some("__fentry__")),
            (&[0xe9, 0, 0, 0, 0], &NOP5, Some("static key")),
            (
                &[0x81, 0xfd, 0xff, 0xff, 0, 0],
                &[0xe9, 1, 2, 3, 4, 0],
                Some("jump-optimized"),
            ),
            (
                &[0x48, 0x89, 0xc2],
                &[0x0f, 0x1f, 0x00],
                Some("alternative"),
            ),
            (
                &[0x81, 0xfd, 0xff, 0xff, 0, 0],
                &[0x81, 0xfd, 0xff, 0xff, 1, 0],
                None,
            ),
        ];
        for (expected, found, want) in cases {
            let got = explain_mismatch(expected, found);
            match want {
                Some(word) => assert!(
                    got.is_some_and(|text| text.contains(word)),
                    "{expected:02x?} vs {found:02x?}: {got:?}"
                ),
                None => assert_eq!(got, None, "{expected:02x?} vs {found:02x?}"),
            }
        }
    }
}
