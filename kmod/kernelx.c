// SPDX-License-Identifier: GPL-2.0
/*
 * kernelx: the narrow kernel-write primitives of KernelX's Scoped Indirect
 * Execution, as kfuncs for kprobe BPF programs.
 *
 * A KernelX probe sits right after an instruction that a constant reached and
 * rewrites the state that instruction left (a register, the arithmetic flags,
 * or the memory it just stored) so that the kernel continues as if it had been
 * built with another value. The kfuncs below write only the probed context:
 * the pt_regs the verifier passes as the program's context, and only while
 * this CPU is handling the kprobe those registers belong to.
 *
 * The kernel does not export current_kprobe (what kprobe_running() reads), so
 * its per-CPU address comes in as a module parameter, read by the loader from
 * /proc/kallsyms, and is checked at load time by a kprobe on this module's own
 * code before any kfunc can use it.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bpf.h>
#include <linux/btf.h>
#include <linux/btf_ids.h>
#include <linux/kprobes.h>
#include <linux/module.h>
#include <linux/percpu.h>
#include <linux/ptrace.h>
#include <linux/uaccess.h>
#include <asm/pgtable_types.h>

#include "include/kernelx_abi.h"

static unsigned long current_kprobe_addr;
module_param(current_kprobe_addr, ulong, 0400);
MODULE_PARM_DESC(current_kprobe_addr,
		 "per-CPU address of current_kprobe, from /proc/kallsyms (required)");

/* Set once the self-test proved current_kprobe_addr right. */
static struct kprobe *__percpu *kx_current_kprobe;

/* The probe this CPU is handling, as kprobe_running() would return it. */
static struct kprobe *kx_kprobe_running(void)
{
	return this_cpu_read(*kx_current_kprobe);
}

/*
 * Whether @regs are the registers of the kprobe this CPU is handling. Both
 * INT3 and jump-optimized probes show their handlers ip = probe address + 1
 * (the INT3 the optimized path pretends to have hit).
 */
static bool kx_in_probe(struct pt_regs *regs)
{
	struct kprobe *p = kx_kprobe_running();

	return p && !user_mode(regs) &&
	       regs->ip == (unsigned long)p->addr + INT3_INSN_SIZE;
}

static unsigned long *kx_gpr(struct pt_regs *regs, u32 reg)
{
	switch (reg) {
	case KX_REG_RAX: return &regs->ax;
	case KX_REG_RCX: return &regs->cx;
	case KX_REG_RDX: return &regs->dx;
	case KX_REG_RBX: return &regs->bx;
	case KX_REG_RSP: return &regs->sp;
	case KX_REG_RBP: return &regs->bp;
	case KX_REG_RSI: return &regs->si;
	case KX_REG_RDI: return &regs->di;
	case KX_REG_R8: return &regs->r8;
	case KX_REG_R9: return &regs->r9;
	case KX_REG_R10: return &regs->r10;
	case KX_REG_R11: return &regs->r11;
	case KX_REG_R12: return &regs->r12;
	case KX_REG_R13: return &regs->r13;
	case KX_REG_R14: return &regs->r14;
	case KX_REG_R15: return &regs->r15;
	default: return NULL;
	}
}

/* The address a memory operand names in @regs, or 0 when it is malformed. */
static unsigned long kx_operand_address(struct pt_regs *regs, u64 operand,
					s64 disp)
{
	u64 size = KX_OPERAND_SIZE(operand);
	u64 base = KX_OPERAND_BASE(operand);
	u64 index = KX_OPERAND_INDEX(operand);
	u64 scale = KX_OPERAND_SCALE(operand);
	unsigned long addr = disp;
	unsigned long *r;

	if (operand & ~KX_OPERAND_KNOWN_BITS)
		return 0;
	if (size != 1 && size != 2 && size != 4 && size != 8)
		return 0;
	if (scale != 1 && scale != 2 && scale != 4 && scale != 8)
		return 0;
	if (base != KX_OPERAND_NO_REG) {
		r = kx_gpr(regs, base);
		if (!r)
			return 0;
		addr += *r;
	}
	if (index != KX_OPERAND_NO_REG) {
		/* x86 has no %rsp index. */
		r = index == KX_REG_RSP ? NULL : kx_gpr(regs, index);
		if (!r)
			return 0;
		addr += *r * scale;
	}
	if (operand & KX_OPERAND_RIP) {
		if (base != KX_OPERAND_NO_REG || index != KX_OPERAND_NO_REG)
			return 0;
		addr += regs->ip - INT3_INSN_SIZE;
	}
	if (operand & KX_OPERAND_GS)
		addr += this_cpu_read(this_cpu_off);
	return addr;
}

/* Only writable, non-executable kernel data: never text, never user memory. */
static bool kx_writable_data(unsigned long addr, u64 size)
{
	unsigned int level;
	pte_t *pte;

	if (addr < TASK_SIZE_MAX || addr + size - 1 < addr)
		return false;
	/* Both ends: an unaligned store may cross into the next page. */
	pte = lookup_address(addr, &level);
	if (!pte || !pte_present(*pte) || !pte_write(*pte) || pte_exec(*pte))
		return false;
	pte = lookup_address(addr + size - 1, &level);
	return pte && pte_present(*pte) && pte_write(*pte) && !pte_exec(*pte);
}

__bpf_kfunc_start_defs();

/**
 * kernelx_set_reg() - Write a general-purpose register of the probed code.
 * @regs: the program's context.
 * @reg: which register (enum kernelx_reg); never %rsp.
 * @value: its new 64-bit value.
 *
 * Context: kprobe programs only, while this CPU handles the kprobe whose
 * registers @regs are; the probed code continues with @value.
 * Return: 0, -EPERM outside such a probe, -EINVAL for a bad register.
 */
__bpf_kfunc int kernelx_set_reg(struct pt_regs *regs, u32 reg, u64 value)
{
	unsigned long *r;

	if (!kx_in_probe(regs))
		return -EPERM;
	r = reg == KX_REG_RSP ? NULL : kx_gpr(regs, reg);
	if (!r)
		return -EINVAL;
	*r = value;
	return 0;
}

/**
 * kernelx_set_flags() - Write arithmetic flags of the probed code.
 * @regs: the program's context.
 * @mask: the RFLAGS bits to write; only CF, PF, AF, ZF, SF and OF.
 * @value: their new values (bits outside @mask are ignored).
 *
 * Context: kprobe programs only, as for kernelx_set_reg().
 * Return: 0, -EPERM outside such a probe, -EINVAL for other flags in @mask.
 */
__bpf_kfunc int kernelx_set_flags(struct pt_regs *regs, u64 mask, u64 value)
{
	if (!kx_in_probe(regs))
		return -EPERM;
	if (mask & ~KX_FLAGS_ARITH)
		return -EINVAL;
	regs->flags = (regs->flags & ~mask) | (value & mask);
	return 0;
}

/**
 * kernelx_set_stored() - Rewrite the memory the probed code just stored.
 * @regs: the program's context.
 * @operand: the store's memory operand, packed as kernelx_abi.h describes.
 * @disp: its displacement (RIP-relative: from the probe's address).
 * @value: the value to store, truncated to the operand's size.
 *
 * The address is computed here from @regs, never taken from the program.
 *
 * Context: kprobe programs only, as for kernelx_set_reg().
 * Return: 0, -EPERM outside such a probe, -EINVAL for a malformed operand,
 * -EFAULT for an address that is not writable kernel data (text, user memory,
 * unmapped), or when the store faults.
 */
__bpf_kfunc int kernelx_set_stored(struct pt_regs *regs, u64 operand, s64 disp,
				   u64 value)
{
	unsigned long addr;
	int ret = 0;

	if (!kx_in_probe(regs))
		return -EPERM;
	addr = kx_operand_address(regs, operand, disp);
	if (!addr)
		return -EINVAL;
	if (!kx_writable_data(addr, KX_OPERAND_SIZE(operand)))
		return -EFAULT;

	pagefault_disable();
	switch (KX_OPERAND_SIZE(operand)) {
	case 1:
		__put_kernel_nofault((u8 *)addr, &(u8){ value }, u8, fault);
		break;
	case 2:
		__put_kernel_nofault((u16 *)addr, &(u16){ value }, u16, fault);
		break;
	case 4:
		__put_kernel_nofault((u32 *)addr, &(u32){ value }, u32, fault);
		break;
	case 8:
		__put_kernel_nofault((u64 *)addr, &value, u64, fault);
		break;
	}
	goto out;
fault:
	ret = -EFAULT;
out:
	pagefault_enable();
	return ret;
}

__bpf_kfunc_end_defs();

BTF_KFUNCS_START(kernelx_kfunc_ids)
BTF_ID_FLAGS(func, kernelx_set_reg)
BTF_ID_FLAGS(func, kernelx_set_flags)
BTF_ID_FLAGS(func, kernelx_set_stored)
BTF_KFUNCS_END(kernelx_kfunc_ids)

static const struct btf_kfunc_id_set kernelx_kfunc_set = {
	.owner = THIS_MODULE,
	.set = &kernelx_kfunc_ids,
};

/* --- Load-time check of current_kprobe_addr --- */

static bool kx_selftest_seen;

static int kx_selftest_pre(struct kprobe *p, struct pt_regs *regs)
{
	struct kprobe *running = NULL;

	/* A wrong address must fail the check, not oops: read it nofault. */
	if (!copy_from_kernel_nofault(&running,
				      this_cpu_ptr((struct kprobe *__percpu *)
						   current_kprobe_addr),
				      sizeof(running)))
		kx_selftest_seen = running == p &&
				   regs->ip == (unsigned long)p->addr + INT3_INSN_SIZE;
	return 0;
}

static noinline void kx_selftest_target(void)
{
	/* Keeps the call (and the probe's target) from being optimized away. */
	asm volatile("");
}

static int kx_check_current_kprobe(void)
{
	struct kprobe kp = {
		.addr = (kprobe_opcode_t *)kx_selftest_target,
		.pre_handler = kx_selftest_pre,
	};
	int ret;

	if (!current_kprobe_addr) {
		pr_err("current_kprobe_addr is required: load with current_kprobe_addr=0x<address of current_kprobe in /proc/kallsyms>\n");
		return -EINVAL;
	}
	ret = register_kprobe(&kp);
	if (ret) {
		pr_err("cannot place the self-test kprobe: %d\n", ret);
		return ret;
	}
	kx_selftest_target();
	unregister_kprobe(&kp);
	if (!kx_selftest_seen) {
		pr_err("current_kprobe_addr=%#lx is not current_kprobe: pass its address from /proc/kallsyms\n",
		       current_kprobe_addr);
		return -EINVAL;
	}
	kx_current_kprobe = (struct kprobe *__percpu *)current_kprobe_addr;
	return 0;
}

static int __init kernelx_init(void)
{
	int ret = kx_check_current_kprobe();

	if (ret)
		return ret;
	ret = register_btf_kfunc_id_set(BPF_PROG_TYPE_KPROBE, &kernelx_kfunc_set);
	if (ret)
		pr_err("cannot register the kfuncs for kprobe programs: %d\n", ret);
	return ret;
}

/* Nothing to undo: module BTF (and with it the kfuncs) goes with the module,
 * and programs that call them hold a reference that blocks the unload.
 */
static void __exit kernelx_exit(void)
{
}

module_init(kernelx_init);
module_exit(kernelx_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("KernelX: kfuncs that rewrite a probed context's registers, flags and stored memory");
