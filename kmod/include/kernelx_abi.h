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

/*
 * Global consistency (/dev/kernelx, root only). A tunable in global mode reads
 * its active generation with the kfunc kernelx_active_gen(key), where key is
 * the id of the tunable's kx_control map; a generation the module has never
 * been given reads as 0 (the values the kernel was compiled with).
 *
 * KX_IOC_COMMIT makes @gen the active generation of @key only if, with every
 * CPU stopped (stop_machine), no task's instruction pointer or return address
 * lies in any of the @count half-open address ranges at @ranges; otherwise it
 * fails with EBUSY and names one such task and address. Either way nothing
 * changes for anyone until the machine is released, so activation is atomic.
 * KX_IOC_ACTIVE reads @gen back; KX_IOC_RELEASE forgets @key.
 */
#define KX_GLOBAL_MAX_TUNABLES 64
#define KX_GLOBAL_MAX_RANGES 256

struct kx_range {
	__u64 start;
	__u64 end;
};

struct kx_commit {
	__u64 key;		/* in */
	__u64 gen;		/* in */
	__u64 ranges;		/* in: user address of struct kx_range[count] */
	__u32 count;		/* in: at most KX_GLOBAL_MAX_RANGES */
	__s32 blocker_pid;	/* out (EBUSY): a task inside a range */
	__u64 blocker_addr;	/* out (EBUSY): its address in the range */
	__u64 stopped_ns;	/* out: how long the machine was stopped */
	__u64 tasks;		/* out: how many tasks were checked */
};

struct kx_active {
	__u64 key;		/* in */
	__u64 gen;		/* out */
};

#define KX_IOC_MAGIC 'x'
#define KX_IOC_COMMIT _IOWR(KX_IOC_MAGIC, 1, struct kx_commit)
#define KX_IOC_ACTIVE _IOWR(KX_IOC_MAGIC, 2, struct kx_active)
#define KX_IOC_RELEASE _IOW(KX_IOC_MAGIC, 3, __u64)

#endif /* KERNELX_ABI_H */
