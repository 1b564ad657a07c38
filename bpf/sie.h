/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The layout bpf/sie.bpf.c shares with its loader
 * (crates/runtime/src/sie/abi.rs mirrors it; the loader checks the map's
 * value size against it before writing anything).
 */
#ifndef KERNELX_SIE_H
#define KERNELX_SIE_H

#include "kernelx_abi.h"

/* Attach cookies are KX_COOKIE_BASE + the probe's index in a kx_probes slot. */
#define KX_COOKIE_BASE 1
#define KX_MAX_PROBES 256
/*
 * kx_probes holds two slots of KX_MAX_PROBES entries: generation g of the
 * tunable's value uses slot g % KX_SLOTS. A transition writes the slot no task
 * uses, then moves tasks to its generation, so at most two are in use.
 */
#define KX_SLOTS 2
/* Safe-span address ranges a consistency check compares frames with (as many as
 * the module takes for a global commit: COMPACT_CLUSTER_MAX has 71). */
#define KX_MAX_RANGES 256
#define KX_NO_SPAN 0xffffffffU
/* Frames of a stack a consistency check looks at (deeper ones are not read). */
#define KX_STACK_DEPTH 64
/* Mark slots, one per site whose post-probe needs its pre-probe first. */
#define KX_MAX_MARKS 256
#define KX_NO_MARK 0xffffffffU

enum kx_action {
	/* A free slot, or a probe whose work is not written yet: do nothing. */
	KX_ACT_NONE = 0,
	/* Pre-probe: note that this task entered the site's critical span. */
	KX_ACT_MARK = 1,
	/* reg = IV' at the operand's width (32-bit zero-extends, 8/16 merge). */
	KX_ACT_LOAD_REG = 2,
	/* The stored memory operand = IV'. */
	KX_ACT_LOAD_MEM = 3,
	/* Flags of cmp/test of a register with IV'. */
	KX_ACT_COMPARE_REG = 4,
	/* Flags of cmp/test of a memory operand with IV'. */
	KX_ACT_COMPARE_MEM = 5,
	/* Pre-probe: mark, and save reg (its view: high8 shifted down) with %rsp. */
	KX_ACT_SAVE_REG = 6,
	/* reg = op(input, IV') at the operand's width, and the flags in `flags`. */
	KX_ACT_COMBINE_REG = 7,
	/*
	 * The registers a magic division (op: enum kx_divide_form) leaves: reg gets
	 * the quotient, temp the other register, from the multiplier and shift of V'.
	 */
	KX_ACT_DIVIDE = 8,
};

/* What a combine computes; undoing a seed uses ADD, SUB, XOR and IMUL too. */
enum kx_combine_op {
	KX_OP_ADD = 0,
	KX_OP_SUB = 1,
	KX_OP_AND = 2,
	KX_OP_OR = 3,
	KX_OP_XOR = 4,
	KX_OP_SHL = 5,
	KX_OP_SHR = 6,
	KX_OP_SAR = 7,
	KX_OP_IMUL = 8,
};

/* Where a combine's other operand comes from. */
enum kx_input {
	/* input_reg at the post-probe. */
	KX_IN_REG = 0,
	/* The value the site's pre-probe saved (KX_ACT_SAVE_REG, same mark). */
	KX_IN_SAVED = 1,
	/* undo_op(input_reg, undo_value): the seed's input recovered from its result. */
	KX_IN_UNDO = 2,
	/* The memory operand `operand`/`disp` at the post-probe (divide only). */
	KX_IN_MEM = 3,
};

/*
 * The magic division sequences (crates/plan/src/magic.rs, MagicForm), x the
 * dividend, m the multiplier, s the shift of V':
 *   IMUL:     reg = (x * m) >> s (64-bit product; s = 32 + post-shift)
 *   IMUL_REG: the same, and temp32 = m (the register m was loaded into)
 *   MUL:      %rax = low and %rdx = high half of x * m, reg = high >> s
 *   IMUL_ADD: h = (x * m) >> 32, temp = h, reg32 = (h + ((x32 - h) >> 1)) >> s
 *   IMUL_ADD_HIGH: the same, but temp32 = (x32 - h) >> 1
 *   SIGNED_ADD: h = high 32 bits of (s64)(s32)x32 * (s32)m,
 *            temp32 = x32 >> 31 (arithmetic), reg32 = ((h + x32) >> s) - temp32
 */
enum kx_divide_form {
	KX_DIV_IMUL = 0,
	KX_DIV_IMUL_REG = 1,
	KX_DIV_MUL = 2,
	KX_DIV_IMUL_ADD = 3,
	KX_DIV_IMUL_ADD_HIGH = 4,
	KX_DIV_SIGNED_ADD = 5,
};

enum kx_compare_op {
	KX_CMP = 0,
	KX_TEST = 1,
};

enum kx_mode {
	/* Every trigger uses target_gen. */
	KX_MODE_IMMEDIATE = 0,
	/*
	 * A task moves to target_gen at a trigger, or in a sweep, when none of
	 * its frames is inside a safe span; until then it keeps its generation.
	 */
	KX_MODE_PER_TASK = 1,
	/* Every trigger uses the generation the kernelx module activated. */
	KX_MODE_GLOBAL = 2,
};

enum kx_transition {
	KX_TRANSITION_DONE = 0,
	KX_TRANSITION_PENDING = 1,
	KX_TRANSITION_ABORTED = 2,
};

/* What a slot of kx_probes holds (the loader's record). */
enum kx_slot_kind {
	KX_SLOT_VALUE = 0,	/* V' = slot_value */
	KX_SLOT_COMPILED = 1,	/* nothing to do: V is compiled in */
	KX_SLOT_POLICY = 2,	/* a policy chooses; slot_value is its default */
};

/*
 * kx_control[0]. The loader arms it after writing every entry and disarms it
 * before detaching. The program reads the first six fields; the rest is the
 * loader's record of the tunable's transitions, kept here so that any later
 * process reads it from the kernel.
 */
struct kx_control {
	__u64 armed;
	__u64 mode;	/* enum kx_mode */
	__u64 key;	/* global: the module's key (this map's id) */
	__u64 target_gen;	/* the generation tasks move to */
	__u64 stable_gen;	/* per-task: every task has reached it */
	__u64 ranges;	/* entries of kx_ranges in use */
	__u64 transition;	/* enum kx_transition, of the last transition */
	__u64 started_ns;	/* CLOCK_MONOTONIC when it began */
	__u64 latency_ns;	/* until it was done (or aborted) */
	__s64 slot_value[KX_SLOTS];	/* V' of each slot */
	__u64 slot_kind[KX_SLOTS];	/* enum kx_slot_kind */
};

/*
 * Tracing (`kernelx trace`). kx_trace[KX_TRACE_UNTIL] is a lease: while
 * bpf_ktime_get_ns() (CLOCK_MONOTONIC) is below it, triggers and task moves
 * are written to the kx_events ring buffer; 0 or a past time: nothing is. The
 * one trace session of a tunable renews it and clears it when it ends, so a
 * killed session stops the events within KX_TRACE_LEASE_NS.
 * kx_trace[KX_TRACE_DROPPED] counts the events a full ring buffer refused.
 */
#define KX_TRACE_UNTIL 0
#define KX_TRACE_DROPPED 1
#define KX_TRACE_ENTRIES 2
#define KX_TRACE_LEASE_NS 2000000000
/* Bytes of kx_events (a power-of-2 number of pages). */
#define KX_EVENTS_BYTES 262144

enum kx_event_type {
	KX_EVENT_TRIGGER = 1,
	KX_EVENT_TASK_MOVE = 2,
};

/* A probe ran (armed). Every field is 64 bits wide: no padding to mirror. */
struct kx_trigger_event {
	__u64 type;	/* KX_EVENT_TRIGGER */
	__u64 ktime_ns;	/* bpf_ktime_get_ns() */
	__u64 pid_tgid;	/* tgid << 32 | thread id */
	__u64 probe;	/* the probe's index */
	__u64 gen;	/* the generation it used */
	__u64 action;	/* enum kx_action of that generation's entry */
	__u64 skipped;	/* a post-probe reached without its pre-probe: left alone */
	__s64 result;	/* 0, or the update's negative errno */
};

/* Per-task mode: a task moved to another generation. */
struct kx_move_event {
	__u64 type;	/* KX_EVENT_TASK_MOVE */
	__u64 ktime_ns;
	__u64 pid;	/* the task's thread id */
	__u64 from_gen;
	__u64 to_gen;
	__u64 sweep;	/* moved by a sweep (1) or at its own trigger (0) */
};

/* One address range of a safe span: [start, end). */
struct kx_span_range {
	__u64 start;
	__u64 end;
	__u64 span;	/* the span's index */
};

/* What a sweep reports (bpf_seq_write) for a task still inside a span. */
struct kx_inside {
	__u64 pid;
	__u64 addr;	/* the frame inside, or 0: its stack could not be read */
};

/*
 * What one probe does. Every field is 64 bits wide: no padding to mirror.
 * In a policy generation an update probe's V' is chosen per trigger by an
 * X-tune policy: IV' = rel(V') & iv_mask replaces `value`. Valid V' are
 * [vmin, vmax] (and powers of two with KX_V_POW2); `dflt` is the default the
 * policy is given and a rejected value falls back to.
 */
struct kx_probe {
	__u64 action;	/* enum kx_action */
	__u64 value;	/* IV', truncated to its width */
	__u64 reg;	/* register: enum kernelx_reg */
	__u64 width;	/* operand width in bytes: 1, 2, 4, 8 */
	__u64 high8;	/* register is %ah, %ch, %dh or %bh */
	__u64 operand;	/* memory operand (kernelx_abi.h) */
	__s64 disp;	/* its displacement; RIP-relative from the probe */
	__u64 op;	/* enum kx_compare_op, kx_combine_op or kx_divide_form */
	__u64 flags;	/* RFLAGS bits a compare or combine writes */
	__u64 mark;	/* mark slot (pre sets, post needs), or KX_NO_MARK */
	__u64 input;	/* combine or divide: enum kx_input */
	__u64 input_reg;	/* its register: enum kernelx_reg */
	__u64 input_width;	/* its width in bytes */
	__u64 input_high8;	/* it is %ah, %ch, %dh or %bh */
	__u64 undo_op;	/* KX_IN_UNDO: enum kx_combine_op */
	__u64 undo_value;	/* KX_IN_UNDO: its constant */
	__u64 span;	/* the site's safe span (index), or KX_NO_SPAN */
	__u64 multiplier;	/* KX_ACT_DIVIDE: m of V' */
	__u64 shift;	/* KX_ACT_DIVIDE: s of V' */
	__u64 temp;	/* KX_ACT_DIVIDE: the other register (enum kernelx_reg) */
	__u64 policy;	/* 1: V' comes from the policy (below) */
	__u64 rel;	/* enum kx_relation */
	__s64 rel_a;
	__s64 rel_b;
	__u64 iv_mask;	/* IV' bits at the operand's width */
	__s64 vmin;
	__s64 vmax;
	__u64 vflags;	/* KX_V_* */
	__s64 dflt;
};

/* IV' = f(V') of a policy entry (crates/plan/src/relation.rs, Relation). */
enum kx_relation {
	KX_REL_AFFINE = 1,	/* rel_a * V + rel_b */
	KX_REL_EXP2 = 2,	/* rel_a * 2^V + rel_b */
	KX_REL_LOG2 = 3,	/* rel_a * log2(V) + rel_b, V a power of two */
};

/* Out-of-range policy values are clamped (else rejected); V' must be 2^k. */
#define KX_V_CLAMP 1
#define KX_V_POW2 2

/* kx_policy_stats[0]: what the policy chose, and what was refused. */
struct kx_policy_stats {
	__u64 decisions;	/* times the policy was asked */
	__u64 rejected;	/* values outside the range, replaced by dflt */
	__u64 clamped;	/* values outside the range, clamped */
	__s64 last_bad;	/* the last value rejected or clamped */
	__u64 last_bad_probe;	/* at which probe */
	__s64 last_value;	/* the last value applied */
};

/*
 * What a magic division sequence leaves. Pure arithmetic on 64-bit values
 * (BPF has no 128-bit multiply), kept here so that a host test compiles the
 * very code the program runs (crates/runtime/src/sie/program.rs).
 */
struct kx_quotient {
	__u64 q;	/* reg */
	__u64 temp;	/* temp (IMUL_REG, IMUL_ADD*, SIGNED_ADD) */
	__u64 lo;	/* MUL: %rax */
	__u64 hi;	/* MUL: %rdx */
};

/* The high 64 bits of the 128-bit product a * b, from 32-bit halves. */
static inline __attribute__((always_inline)) __u64 kx_mulhi(__u64 a, __u64 b)
{
	__u64 a0 = a & 0xffffffff, a1 = a >> 32;
	__u64 b0 = b & 0xffffffff, b1 = b >> 32;
	__u64 p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
	/* At most 3 * (2^32 - 1): the carry into the high half fits. */
	__u64 mid = (p00 >> 32) + (p01 & 0xffffffff) + (p10 & 0xffffffff);

	return p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
}

/* The registers form @form (enum kx_divide_form) leaves for dividend @x. */
static inline __attribute__((always_inline)) struct kx_quotient
kx_divide(__u64 form, __u64 x, __u64 m, __u64 s)
{
	struct kx_quotient r = { 0, 0, 0, 0 };
	__u64 x32 = x & 0xffffffff, h, half, sign;

	s &= 63;
	switch (form) {
	case KX_DIV_IMUL_REG:
		r.temp = m & 0xffffffff;
		/* fallthrough */
	case KX_DIV_IMUL:
		r.q = (x * m) >> s;
		break;
	case KX_DIV_MUL:
		r.lo = x * m;
		r.hi = kx_mulhi(x, m);
		r.q = r.hi >> s;
		break;
	case KX_DIV_IMUL_ADD:
	case KX_DIV_IMUL_ADD_HIGH:
		h = (x * m) >> 32;
		half = ((x32 - (h & 0xffffffff)) & 0xffffffff) >> 1;
		r.q = ((half + h) & 0xffffffff) >> s;
		r.temp = form == KX_DIV_IMUL_ADD ? h : half;
		break;
	case KX_DIV_SIGNED_ADD:
		h = ((__u64)((__s64)(__s32)x32 * (__s64)(__s32)m) >> 32) & 0xffffffff;
		sign = (__u64)((__s32)x32 >> 31) & 0xffffffff;
		r.q = ((__u64)((__s32)((h + x32) & 0xffffffff) >> (s & 31)) -
		       sign) & 0xffffffff;
		r.temp = sign;
		break;
	}
	return r;
}

/* log2 of @v, rounded down (0 for 0). */
static inline __attribute__((always_inline)) __u64 kx_log2(__u64 v)
{
	__u64 r = 0;

	if (v >> 32) {
		r += 32;
		v >>= 32;
	}
	if (v >> 16) {
		r += 16;
		v >>= 16;
	}
	if (v >> 8) {
		r += 8;
		v >>= 8;
	}
	if (v >> 4) {
		r += 4;
		v >>= 4;
	}
	if (v >> 2) {
		r += 2;
		v >>= 2;
	}
	return r + (v >> 1);
}

/*
 * IV' = rel(V') at the operand's width (@mask), V' already within the range
 * (so 2^V' and log2(V') are defined); wraps like the plan's relation truncated
 * to the width.
 */
static inline __attribute__((always_inline)) __u64
kx_policy_iv(__u64 rel, __s64 a, __s64 b, __u64 mask, __s64 v)
{
	__u64 x;

	switch (rel) {
	case KX_REL_EXP2:
		x = (__u64)a * (1ULL << (v & 63)) + (__u64)b;
		break;
	case KX_REL_LOG2:
		x = (__u64)a * kx_log2(v) + (__u64)b;
		break;
	default:
		x = (__u64)a * (__u64)v + (__u64)b;
		break;
	}
	return x & mask;
}

/*
 * Checks a policy's @v against [@min, @max] (and powers of two with
 * KX_V_POW2): 0 when valid (*@out = @v); else, with KX_V_CLAMP, 1 and the
 * nearest valid value in *@out; else -1 (rejected).
 */
static inline __attribute__((always_inline)) int
kx_policy_bound(__s64 v, __s64 min, __s64 max, __u64 flags, __s64 *out)
{
	__s64 c = v;

	if (c < min)
		c = min;
	if (c > max)
		c = max;
	if (flags & KX_V_POW2) {
		if (c < 1)
			return -1;
		/* The power of two at or below c, or the next one up if below min. */
		c = (__s64)(1ULL << kx_log2(c));
		if (c < min)
			c <<= 1;
	}
	if (c == v) {
		*out = v;
		return 0;
	}
	if (!(flags & KX_V_CLAMP))
		return -1;
	*out = c;
	return 1;
}

#endif /* KERNELX_SIE_H */
