//! Properties of the symbolic layer: evaluation, decoding + execution and synthesis never
//! panic on arbitrary input; relations found are the ones that generated the points; magic
//! multipliers divide exactly.

use iced_x86::{Decoder, DecoderOptions, Instruction};
use kernelx_x86::symex::expr::{BinOp, CastOp, UnOp};
use kernelx_x86::symex::flags::FlagOp;
use kernelx_x86::symex::magic::{UnsignedDivision, unsigned_division};
use kernelx_x86::symex::{
    Expr, Flag, Gpr, MachineState, Relation, SeedContext, SeedVersion, Var, Width, sem, synthesize,
};
use proptest::prelude::*;

fn width() -> impl Strategy<Value = Width> {
    prop::sample::select(vec![
        Width::W1,
        Width::W8,
        Width::W16,
        Width::W32,
        Width::W64,
    ])
}

fn gpr() -> impl Strategy<Value = Gpr> {
    prop::sample::select(Gpr::ALL.to_vec())
}

fn flag() -> impl Strategy<Value = Flag> {
    prop::sample::select(Flag::ALL.to_vec())
}

fn leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        (width(), any::<u64>()).prop_map(|(w, v)| Expr::constant(w, v)),
        gpr().prop_map(Expr::reg),
        flag().prop_map(Expr::flag_var),
        width().prop_map(|width| Expr::Var(Var::Iv { width })),
        width().prop_map(|width| Expr::Var(Var::Saved { width })),
        Just(Expr::Var(Var::SpanStart)),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    let binops = vec![
        BinOp::Add,
        BinOp::Sub,
        BinOp::And,
        BinOp::Or,
        BinOp::Xor,
        BinOp::Shl,
        BinOp::Shr,
        BinOp::Sar,
        BinOp::MulLo,
        BinOp::MulHiU,
        BinOp::MulHiS,
        BinOp::UDiv,
        BinOp::URem,
        BinOp::Eq,
        BinOp::Ult,
        BinOp::Slt,
    ];
    let flagops = vec![
        FlagOp::Add,
        FlagOp::Sub,
        FlagOp::Logic,
        FlagOp::Inc,
        FlagOp::Dec,
        FlagOp::Shl,
        FlagOp::Shr,
        FlagOp::Sar,
        FlagOp::Imul,
        FlagOp::Mul,
    ];
    leaf().prop_recursive(5, 48, 3, move |inner| {
        let binops = binops.clone();
        let flagops = flagops.clone();
        prop_oneof![
            (width(), inner.clone()).prop_map(|(w, a)| Expr::load(w, a)),
            (
                prop::sample::select(vec![UnOp::Not, UnOp::Neg]),
                inner.clone()
            )
                .prop_map(|(op, a)| Expr::unary(op, a)),
            (prop::sample::select(binops), inner.clone(), inner.clone())
                .prop_map(|(op, a, b)| Expr::binary(op, a, b)),
            (
                prop::sample::select(vec![
                    CastOp::ZeroExtend,
                    CastOp::SignExtend,
                    CastOp::Truncate
                ]),
                width(),
                inner.clone()
            )
                .prop_map(|(op, w, a)| Expr::cast(op, w, a)),
            (inner.clone(), inner.clone(), inner.clone()).prop_map(|(c, a, b)| Expr::ite(c, a, b)),
            (flag(), prop::sample::select(flagops), inner.clone(), inner)
                .prop_map(|(f, op, a, b)| Expr::flag(f, op, a, b)),
        ]
    })
}

fn state() -> impl Strategy<Value = MachineState> {
    (
        prop::array::uniform16(any::<u64>()),
        any::<u64>(),
        any::<u64>(),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(gpr, rflags, gs, bytes)| {
            let mut s = MachineState {
                gpr,
                rflags,
                gs_base: gs,
                ..MachineState::default()
            };
            // Some memory at an address registers may hold.
            s.memory.map(gpr[3] & !0xf, bytes);
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn evaluation_never_panics(e in expr(), s in state()) {
        let w = e.width();
        if let Ok(v) = e.eval(&s) {
            // A value is only produced for well-typed expressions, at their width.
            prop_assert_eq!(Ok(v.width()), w);
        }
    }

    #[test]
    fn decoding_and_executing_never_panics(bytes in prop::collection::vec(any::<u8>(), 1..16), mut s in state()) {
        let insn = Decoder::with_ip(64, &bytes, 0x1000, DecoderOptions::NONE).decode();
        if let Ok(fx) = sem::effects(&insn) {
            for e in &fx {
                if let sem::Effect::Reg { dest, value } = e {
                    // A register write is typed at the destination's width.
                    prop_assert_eq!(value.width(), Ok(dest.width));
                }
            }
        }
        let _ = sem::execute(&insn, &mut s);
    }

    #[test]
    fn synthesis_never_panics(
        blocks in prop::array::uniform3(prop::collection::vec(any::<u8>(), 1..24)),
        values in prop::array::uniform3(-100i64..100),
        seed in 0usize..3,
    ) {
        let decoded: Vec<Vec<Instruction>> =
            blocks.iter().map(|b| Decoder::with_ip(64, b, 0, DecoderOptions::NONE).into_iter().collect()).collect();
        let ctx = SeedContext {
            versions: [0, 1, 2].map(|k| SeedVersion { value: values[k], block: &decoded[k], seed }),
        };
        let _ = synthesize(&ctx);
    }

    #[test]
    fn fitting_recovers_the_generating_relation(
        a in -5000i64..5000,
        b in -100_000i64..100_000,
        v in prop::array::uniform3(-1000i64..1000),
    ) {
        prop_assume!(a != 0 && v[0] != v[1] && v[0] != v[2] && v[1] != v[2]);
        let r = Relation::Affine { a, b };
        let points = v.map(|v| (v, r.eval(v).unwrap()));
        prop_assert_eq!(Relation::fit(points), Some(r));
        // Perturbing one point by one breaks every fit of that form.
        let mut bad = points;
        bad[2].1 += 1;
        prop_assert_ne!(Relation::fit(bad), Some(r));
    }

    #[test]
    fn exp2_relations_are_recovered(k in -64i64..64, b in -1000i64..1000, v in prop::array::uniform3(0i64..40)) {
        prop_assume!(k != 0 && v[0] != v[1] && v[0] != v[2] && v[1] != v[2]);
        let r = Relation::Exp2 { k, b };
        let points = v.map(|v| (v, r.eval(v).unwrap()));
        prop_assert_eq!(Relation::fit(points), Some(r));
    }

    #[test]
    fn magic_multipliers_divide_exactly(d in 2u64..u64::MAX, x in any::<u64>(), narrow in any::<bool>()) {
        let (w, d, x) = if narrow { (Width::W32, d & 0xffff_ffff, x & 0xffff_ffff) } else { (Width::W64, d, x) };
        prop_assume!(d >= 2);
        let q = match unsigned_division(d, w).unwrap() {
            UnsignedDivision::Identity => x,
            UnsignedDivision::Shift { shift } => x >> shift,
            UnsignedDivision::Compare => u64::from(x >= d),
            UnsignedDivision::Multiply { pre_shift, multiplier, post_shift } => {
                (((u128::from(x >> pre_shift) * u128::from(multiplier)) >> w.bits()) as u64) >> post_shift
            }
            UnsignedDivision::MultiplyAdd { multiplier, post_shift } => {
                let t = ((u128::from(x) * u128::from(multiplier)) >> w.bits()) as u64;
                (t + ((x - t) >> 1)) >> (post_shift - 1)
            }
        };
        prop_assert_eq!(q, x / d);
    }
}
