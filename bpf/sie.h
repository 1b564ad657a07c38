/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The layout bpf/sie.bpf.c shares with its loader
 * (crates/runtime/src/sie/entry.rs mirrors it; the loader checks the map's
 * value size against it before writing anything).
 */
#ifndef KERNELX_SIE_H
#define KERNELX_SIE_H

#include "kernelx_abi.h"

/* Attach cookies are KX_COOKIE_BASE + the probe's index in kx_probes. */
#define KX_COOKIE_BASE 1
#define KX_MAX_PROBES 256
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
};

enum kx_compare_op {
	KX_CMP = 0,
	KX_TEST = 1,
};

/*
 * kx_control[0]: whether the probes act at all. The loader arms it after
 * writing every entry and disarms it before detaching, so entries never change
 * under a probe on the way in or out (a `set` changes only `value`).
 */
struct kx_control {
	__u64 armed;
};

/* What one probe does. Every field is 64 bits wide: no padding to mirror. */
struct kx_probe {
	__u64 action;	/* enum kx_action */
	__u64 value;	/* IV', truncated to its width */
	__u64 reg;	/* register: enum kernelx_reg */
	__u64 width;	/* operand width in bytes: 1, 2, 4, 8 */
	__u64 high8;	/* register is %ah, %ch, %dh or %bh */
	__u64 operand;	/* memory operand (kernelx_abi.h) */
	__s64 disp;	/* its displacement; RIP-relative from the probe */
	__u64 op;	/* enum kx_compare_op */
	__u64 flags;	/* RFLAGS bits a compare writes */
	__u64 mark;	/* mark slot (pre sets, post needs), or KX_NO_MARK */
};

#endif /* KERNELX_SIE_H */
