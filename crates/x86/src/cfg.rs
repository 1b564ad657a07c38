//! Control-flow graphs of single functions, for data-flow slices (Safe Spans).
//!
//! Blocks start at the function's entry, at every intra-function branch target and after
//! every instruction that ends a block (`jmp`, `jcc`, `ret`, indirect `jmp`, `ud2`, `int3`).
//! Calls do not end blocks: a call to a function that never returns is not known from the
//! object, so the call is treated as falling through (conservative for a forward slice).
//!
//! Kernel builds replace some instructions by calls to thunks; they are recognised by name:
//! `jmp __x86_return_thunk` is a return (`-mfunction-return=thunk-extern`), and
//! `jmp __x86_indirect_thunk_<reg>` an indirect jump (retpolines). A `jmp` (or `jcc`) to
//! another symbol is an exit: a tail call, or a jump into the function's `.cold` part.

use std::ops::Range;

use iced_x86::{FlowControl, Mnemonic};

use crate::decode::{Insn, Target, index_at};
use crate::elf::{Function, ObjectFile};

/// Index of a block in [`Cfg::blocks`].
pub type BlockId = u32;

/// Where control goes when it leaves the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exit {
    /// `ret`, or `jmp __x86_return_thunk`.
    Return,
    /// A direct `jmp`/`jcc` to another symbol: a tail call or the function's `.cold` part.
    /// Names the instruction.
    Jump {
        /// Index of the jumping instruction.
        insn: u32,
    },
    /// An indirect `jmp` (`jmp *%rax`, `jmp __x86_indirect_thunk_rax`): targets unknown.
    IndirectJump {
        /// Index of the jumping instruction.
        insn: u32,
    },
    /// `ud2` or `int3`: `BUG()`, a speculation trap after a `ret`/`jmp`, or a `WARN()` (which
    /// resumes after its `ud2`; such blocks also fall through).
    Trap {
        /// Index of the trapping instruction.
        insn: u32,
    },
    /// Execution runs past the function's last byte (e.g. after a call to a `noreturn`
    /// function).
    FallsOffEnd,
    /// A branch into the middle of an instruction of this function (only in malformed code).
    BadTarget {
        /// Index of the branching instruction.
        insn: u32,
    },
}

/// An edge out of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Successor {
    /// To the next block in address order, without a taken branch.
    FallThrough(BlockId),
    /// To a block through a taken branch.
    Branch(BlockId),
    /// Out of the function.
    Exit(Exit),
}

/// A basic block: a run of instructions entered only at its first one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Indices of its instructions in the decoded function.
    pub insns: Range<usize>,
    /// Where control goes after the last instruction.
    pub succs: Vec<Successor>,
    /// Blocks with an edge into this one.
    pub preds: Vec<BlockId>,
}

/// The control-flow graph of one function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cfg {
    blocks: Vec<Block>,
    block_of: Vec<BlockId>,
}

/// What one instruction does to control flow.
enum Flow {
    Next,
    /// Ends the block, with these edges out.
    End(Vec<Edge>),
}

#[derive(Clone, Copy)]
enum Edge {
    Next,
    To(usize),
    Exit(Exit),
}

impl Cfg {
    /// Builds the CFG of a decoded function.
    pub fn build(object: &ObjectFile<'_>, function: &Function<'_>, insns: &[Insn]) -> Self {
        let flows: Vec<Flow> = insns
            .iter()
            .enumerate()
            .map(|(n, insn)| flow(object, function, insns, n, insn))
            .collect();

        let mut leader = vec![false; insns.len()];
        if let Some(first) = leader.first_mut() {
            *first = true;
        }
        for (n, f) in flows.iter().enumerate() {
            if let Flow::End(edges) = f {
                if n + 1 < insns.len() {
                    leader[n + 1] = true;
                }
                for e in edges {
                    if let Edge::To(t) = e {
                        leader[*t] = true;
                    }
                }
            }
        }

        let mut blocks = Vec::new();
        let mut block_of = vec![0; insns.len()];
        let mut start = 0;
        for n in 0..insns.len() {
            block_of[n] = blocks.len() as BlockId;
            if n + 1 == insns.len() || leader[n + 1] {
                blocks.push(Block {
                    insns: start..n + 1,
                    succs: Vec::new(),
                    preds: Vec::new(),
                });
                start = n + 1;
            }
        }

        let next_block = |last: usize| -> Successor {
            if last + 1 < insns.len() {
                Successor::FallThrough(block_of[last + 1])
            } else {
                Successor::Exit(Exit::FallsOffEnd)
            }
        };
        for block in &mut blocks {
            let last = block.insns.end - 1;
            let succs = match &flows[last] {
                Flow::Next => vec![next_block(last)],
                Flow::End(edges) => edges
                    .iter()
                    .map(|e| match *e {
                        Edge::Next => next_block(last),
                        Edge::To(t) => Successor::Branch(block_of[t]),
                        Edge::Exit(x) => Successor::Exit(x),
                    })
                    .collect(),
            };
            let mut unique: Vec<Successor> = Vec::with_capacity(succs.len());
            for s in succs {
                if !unique.contains(&s) {
                    unique.push(s);
                }
            }
            block.succs = unique;
        }
        for b in 0..blocks.len() {
            for s in blocks[b].succs.clone() {
                if let Successor::FallThrough(t) | Successor::Branch(t) = s {
                    let preds = &mut blocks[t as usize].preds;
                    if !preds.contains(&(b as BlockId)) {
                        preds.push(b as BlockId);
                    }
                }
            }
        }
        Self { blocks, block_of }
    }

    /// The blocks, in address order; block 0 is the entry (if the function has any code).
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// The block holding instruction `insn`.
    ///
    /// # Panics
    ///
    /// If `insn` is not an instruction index of the function.
    pub fn block_of(&self, insn: usize) -> BlockId {
        self.block_of[insn]
    }

    /// The blocks reachable from the entry, as a mask over [`Cfg::blocks`].
    pub fn reachable(&self) -> Vec<bool> {
        let mut seen = vec![false; self.blocks.len()];
        let mut stack: Vec<BlockId> = if self.blocks.is_empty() {
            vec![]
        } else {
            vec![0]
        };
        while let Some(b) = stack.pop() {
            if std::mem::replace(&mut seen[b as usize], true) {
                continue;
            }
            for s in &self.blocks[b as usize].succs {
                if let Successor::FallThrough(t) | Successor::Branch(t) = *s {
                    stack.push(t);
                }
            }
        }
        seen
    }

    /// Every exit of the function with the block it leaves from.
    pub fn exits(&self) -> impl Iterator<Item = (BlockId, Exit)> + '_ {
        self.blocks.iter().enumerate().flat_map(|(b, block)| {
            block.succs.iter().filter_map(move |s| match *s {
                Successor::Exit(x) => Some((b as BlockId, x)),
                _ => None,
            })
        })
    }
}

fn flow(
    object: &ObjectFile<'_>,
    function: &Function<'_>,
    insns: &[Insn],
    n: usize,
    insn: &Insn,
) -> Flow {
    let i = &insn.instruction;
    let me = n as u32;
    // Where a direct branch goes, as an edge.
    let target_edge = || match insn.branch_target(object, function) {
        Some(Target::Internal(off)) => match index_at(insns, off) {
            Some(t) => Edge::To(t),
            None => Edge::Exit(Exit::BadTarget { insn: me }),
        },
        Some(Target::External(r)) if r.name == "__x86_return_thunk" => Edge::Exit(Exit::Return),
        Some(Target::External(r)) if is_indirect_thunk(r.name) => {
            Edge::Exit(Exit::IndirectJump { insn: me })
        }
        _ => Edge::Exit(Exit::Jump { insn: me }),
    };
    if i.is_invalid() {
        return Flow::End(vec![Edge::Exit(Exit::Trap { insn: me })]);
    }
    match i.flow_control() {
        FlowControl::Next | FlowControl::Call | FlowControl::IndirectCall => Flow::Next,
        FlowControl::XbeginXabortXend => Flow::Next,
        FlowControl::UnconditionalBranch => Flow::End(vec![target_edge()]),
        FlowControl::ConditionalBranch => Flow::End(vec![Edge::Next, target_edge()]),
        FlowControl::IndirectBranch => Flow::End(vec![Edge::Exit(Exit::IndirectJump { insn: me })]),
        FlowControl::Return => Flow::End(vec![Edge::Exit(Exit::Return)]),
        FlowControl::Interrupt if i.mnemonic() == Mnemonic::Int3 => {
            Flow::End(vec![Edge::Exit(Exit::Trap { insn: me })])
        }
        FlowControl::Interrupt => Flow::Next,
        // ud2: BUG() stops, WARN() resumes after it; keep both.
        FlowControl::Exception => Flow::End(vec![Edge::Exit(Exit::Trap { insn: me }), Edge::Next]),
    }
}

fn is_indirect_thunk(name: &str) -> bool {
    name.starts_with("__x86_indirect_thunk_") || name.starts_with("__x86_indirect_jump_thunk_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Disassembler;

    fn cfg_of(bytes: &[u8]) -> Cfg {
        let object = ObjectFile::from_code("t", &[("f", bytes)]);
        let f = &object.functions()[0];
        let insns = Disassembler::new().decode(f);
        Cfg::build(&object, f, &insns)
    }

    #[test]
    fn splits_at_branches_and_targets() {
        // 0: cmp $0xffff,%ebp; 6: jbe 0xd; 8: mov $0x10,%eax; d: ret; e: int3
        let cfg = cfg_of(&[
            0x81, 0xfd, 0xff, 0xff, 0, 0, 0x76, 0x05, 0xb8, 0x10, 0, 0, 0, 0xc3, 0xcc,
        ]);
        let b = cfg.blocks();
        assert_eq!(b.len(), 4);
        assert_eq!(b[0].insns, 0..2);
        assert_eq!(
            b[0].succs,
            [Successor::FallThrough(1), Successor::Branch(2)]
        );
        assert_eq!(b[1].succs, [Successor::FallThrough(2)]);
        assert_eq!(b[2].preds, [0, 1]);
        assert_eq!(b[2].succs, [Successor::Exit(Exit::Return)]);
        assert_eq!(b[3].succs, [Successor::Exit(Exit::Trap { insn: 4 })]);
        assert_eq!(cfg.reachable(), [true, true, true, false]);
        assert_eq!(cfg.block_of(3), 2);
    }

    #[test]
    fn loops_and_exits() {
        // 0: dec %edi; 2: jne 0x0; 4: jmp *%rax; 6: jmp 0x10 (outside: a tail call)
        let cfg = cfg_of(&[0xff, 0xcf, 0x75, 0xfc, 0xff, 0xe0, 0xeb, 0x08]);
        let b = cfg.blocks();
        assert_eq!(
            b[0].succs,
            [Successor::FallThrough(1), Successor::Branch(0)]
        );
        assert_eq!(b[0].preds, [0]);
        let exits: Vec<_> = cfg.exits().collect();
        assert_eq!(
            exits,
            [
                (1, Exit::IndirectJump { insn: 2 }),
                (2, Exit::Jump { insn: 3 })
            ]
        );
    }

    #[test]
    fn flags_bad_targets_and_falling_off() {
        // 0: jmp 0x1 (middle of itself); 2: nop
        let cfg = cfg_of(&[0xeb, 0xff, 0x90]);
        let exits: Vec<_> = cfg.exits().collect();
        assert_eq!(
            exits,
            [(0, Exit::BadTarget { insn: 0 }), (1, Exit::FallsOffEnd)]
        );
    }
}
