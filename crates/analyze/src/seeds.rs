//! From a seed of the diff to the input of synthesis: the seed's basic block in each build,
//! decoded with function offsets as `ip` (the frame recipes and plans use).

use std::ops::Range;

use iced_x86::{Decoder, DecoderOptions, Instruction};
use kernelx_x86::{Cfg, Function, Insn, index_at};

/// The instructions synthesis sees around the seed at index `seed`: its basic block, which
/// holds the instructions that may have copied its inputs before it and the flag consumers
/// after it (a block ends at the first branch).
pub fn seed_window(cfg: &Cfg, seed: usize) -> Range<usize> {
    cfg.blocks()[cfg.block_of(seed) as usize].insns.clone()
}

/// One build's decoded window: the instructions and the seed's index among them.
#[derive(Debug, Clone)]
pub struct Window {
    /// The window's instructions; `ip()` is the offset from the function's start.
    pub block: Vec<Instruction>,
    /// Index of the seed in `block`.
    pub seed: usize,
}

/// Re-decodes `insns[window]` of `function` with `ip` = offset in the function, and finds the
/// instruction at `seed_offset`. `None` when the window does not hold an instruction there.
pub fn decode_window(
    function: &Function<'_>,
    insns: &[Insn],
    window: Range<usize>,
    seed_offset: u32,
) -> Option<Window> {
    let first = insns.get(window.start)?;
    let last = insns.get(window.end.checked_sub(1)?)?;
    let (start, end) = (first.offset as usize, last.end() as usize);
    let bytes = function.bytes.get(start..end)?;
    let block: Vec<Instruction> = Decoder::with_ip(64, bytes, start as u64, DecoderOptions::NONE)
        .into_iter()
        .collect();
    let seed = block
        .iter()
        .position(|i| i.ip() == u64::from(seed_offset))?;
    Some(Window { block, seed })
}

/// The window of the instruction at `offset` of a decoded function.
pub fn window_at(
    function: &Function<'_>,
    insns: &[Insn],
    cfg: &Cfg,
    offset: u32,
) -> Option<Window> {
    let n = index_at(insns, offset)?;
    decode_window(function, insns, seed_window(cfg, n), offset)
}

#[cfg(test)]
mod tests {
    use kernelx_x86::{Disassembler, ObjectFile};

    use super::*;

    #[test]
    fn the_window_is_the_seeds_block_with_function_offsets() {
        // 0: test %edi,%edi; 2: je 0xe; 4: mov %edi,%ebp; 6: cmp $0xffff,%ebp;
        // c: jbe 0xe; e: ret
        let bytes = [
            0x85, 0xff, 0x74, 0x0a, 0x89, 0xfd, 0x81, 0xfd, 0xff, 0xff, 0, 0, 0x76, 0x00, 0xc3,
        ];
        let object = ObjectFile::from_code("t", &[("f", &bytes)]);
        let function = &object.functions()[0];
        let insns = Disassembler::new().decode(function);
        let cfg = Cfg::build(&object, function, &insns);
        let w = window_at(function, &insns, &cfg, 6).expect("a window");
        let ips: Vec<u64> = w.block.iter().map(Instruction::ip).collect();
        assert_eq!(ips, [4, 6, 0xc]);
        assert_eq!(w.seed, 1);
        assert!(
            window_at(function, &insns, &cfg, 7).is_none(),
            "not an instruction start"
        );
    }
}
