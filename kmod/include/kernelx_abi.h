/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The interface between the kernelx module's kfuncs and the BPF programs that
 * call them: register numbers and the packed description of a memory operand.
 * Included by kmod/kernelx.c and bpf/sie.bpf.c, mirrored by
 * crates/runtime/src/sie/abi.rs (whose tests pin the values).
 */
#ifndef KERNELX_ABI_H
#define KERNELX_ABI_H

/*
 * General-purpose registers, numbered as x86-64 encodes them (the plan's
 * Gpr order). KX_REG_RSP is a valid address base but never a write target.
 */
enum kernelx_reg {
	KX_REG_RAX = 0,
	KX_REG_RCX = 1,
	KX_REG_RDX = 2,
	KX_REG_RBX = 3,
	KX_REG_RSP = 4,
	KX_REG_RBP = 5,
	KX_REG_RSI = 6,
	KX_REG_RDI = 7,
	KX_REG_R8 = 8,
	KX_REG_R9 = 9,
	KX_REG_R10 = 10,
	KX_REG_R11 = 11,
	KX_REG_R12 = 12,
	KX_REG_R13 = 13,
	KX_REG_R14 = 14,
	KX_REG_R15 = 15,
	KX_REG_COUNT = 16,
};

/* The arithmetic flags, the only RFLAGS bits kernelx_set_flags() writes. */
#define KX_FLAG_CF 0x001ULL
#define KX_FLAG_PF 0x004ULL
#define KX_FLAG_AF 0x010ULL
#define KX_FLAG_ZF 0x040ULL
#define KX_FLAG_SF 0x080ULL
#define KX_FLAG_OF 0x800ULL
#define KX_FLAGS_ARITH                                                       \
	(KX_FLAG_CF | KX_FLAG_PF | KX_FLAG_AF | KX_FLAG_ZF | KX_FLAG_SF |    \
	 KX_FLAG_OF)

/*
 * A memory operand `seg:disp(base,index,scale)` of the probed code, packed in
 * a u64 (the displacement travels separately):
 *   bits  0..7   access size in bytes: 1, 2, 4 or 8
 *   bits  8..15  base register (enum kernelx_reg) or KX_OPERAND_NO_REG
 *   bits 16..23  index register or KX_OPERAND_NO_REG
 *   bits 24..31  scale: 1, 2, 4 or 8
 *   bit  32      %gs: the address is in this CPU's per-CPU area
 *   bit  33      RIP-relative: disp is relative to the probe's address
 * Every other bit must be zero.
 */
#define KX_OPERAND_NO_REG 0xffULL
#define KX_OPERAND_GS (1ULL << 32)
#define KX_OPERAND_RIP (1ULL << 33)
#define KX_OPERAND_KNOWN_BITS (0xffffffffULL | KX_OPERAND_GS | KX_OPERAND_RIP)

#define KX_OPERAND_SIZE(op) ((op) & 0xff)
#define KX_OPERAND_BASE(op) (((op) >> 8) & 0xff)
#define KX_OPERAND_INDEX(op) (((op) >> 16) & 0xff)
#define KX_OPERAND_SCALE(op) (((op) >> 24) & 0xff)

#endif /* KERNELX_ABI_H */
