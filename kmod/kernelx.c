// SPDX-License-Identifier: GPL-2.0
/*
 * kernelx: the narrow kernel-write primitives of KernelX's Scoped Indirect
 * Execution, as kfuncs for kprobe BPF programs, and the quiescence check of
 * its global consistency mode.
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
 *
 * Global mode (/dev/kernelx) keeps one active generation per tunable, which
 * the probes read with kernelx_active_gen(); a new generation becomes active
 * only inside a stop_machine() callback that found no task inside the
 * tunable's safe spans. The only memory this part writes is its own table.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bpf.h>
#include <linux/btf.h>
#include <linux/btf_ids.h>
#include <linux/capability.h>
#include <linux/fs.h>
#include <linux/kprobes.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/percpu.h>
#include <linux/ptrace.h>
#include <linux/rcupdate.h>
#include <linux/sched/signal.h>
#include <linux/sched/task_stack.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/stop_machine.h>
#include <linux/string.h>
#include <linux/timekeeping.h>
#include <linux/uaccess.h>
#include <asm/pgtable_types.h>
#include <asm/unwind.h>

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

/*
 * The active generation of each tunable in global mode. A slot is free while
 * its key is 0 (BPF map ids start at 1). Slots are taken and freed under
 * kx_global_lock; a gen changes only in kx_commit_stopped(), while every CPU
 * is stopped, which is what makes a switch atomic for all tasks.
 */
struct kx_gen_slot {
	u64 key;
	u64 gen;
};

static struct kx_gen_slot kx_gens[KX_GLOBAL_MAX_TUNABLES];

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

/**
 * kernelx_active_gen() - The active generation of a tunable in global mode.
 * @key: the tunable's key, the id of its kx_control map.
 *
 * Reads only this module's table, without locks: a slot's gen is written
 * before its key is published (kx_gen_slot_get()), so a reader that sees the
 * key sees that gen or a later one.
 *
 * Context: any, including kprobe programs in atomic context.
 * Return: the generation last committed for @key, 0 if none was (the values
 * the kernel was compiled with).
 */
__bpf_kfunc u64 kernelx_active_gen(u64 key)
{
	int i;

	if (!key)
		return 0;
	for (i = 0; i < KX_GLOBAL_MAX_TUNABLES; i++)
		/* Pairs with smp_store_release() in kx_gen_slot_get(). */
		if (smp_load_acquire(&kx_gens[i].key) == key)
			return READ_ONCE(kx_gens[i].gen);
	return 0;
}

__bpf_kfunc_end_defs();

BTF_KFUNCS_START(kernelx_kfunc_ids)
BTF_ID_FLAGS(func, kernelx_set_reg)
BTF_ID_FLAGS(func, kernelx_set_flags)
BTF_ID_FLAGS(func, kernelx_set_stored)
BTF_ID_FLAGS(func, kernelx_active_gen)
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

/* --- Global consistency: /dev/kernelx --- */

/*
 * A commit, step by step (kx_ioc_commit()):
 *  1. copy in the ranges, check them, sort and merge them (binary search later);
 *  2. under kx_global_lock, find or take the key's slot (gen 0 when new);
 *  3. stop_machine(): every online CPU spins in its stopper with interrupts
 *     off, so no task runs and every task but the stoppers is switched out
 *     with its registers saved on its stack; one CPU runs kx_commit_stopped(),
 *     which unwinds every task and, if none is inside, writes the new gen;
 *  4. the machine resumes: from their next instruction on, all tasks read the
 *     new gen, or all read the old one.
 */

static DEFINE_MUTEX(kx_global_lock);

/* The safe spans of one commit, sorted by start and disjoint. */
struct kx_spans {
	struct kx_range *r;
	u32 n;
};

/* One commit, as kx_commit_stopped() sees it. */
struct kx_commit_run {
	struct kx_spans spans;
	struct kx_gen_slot *slot;
	u64 gen;
	/* The task in the ioctl, asleep in stop_machine(). */
	struct task_struct *caller;
	/* Out. */
	pid_t blocker_pid;
	unsigned long blocker_addr;
	u64 tasks;
	u64 stopped_ns;
};

static bool kx_in_spans(const struct kx_spans *s, unsigned long addr)
{
	u32 lo = 0, hi = s->n;

	while (lo < hi) {
		u32 mid = lo + (hi - lo) / 2;

		if (addr < s->r[mid].start)
			hi = mid;
		else if (addr >= s->r[mid].end)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

/*
 * Whether @t is inside @s: its interrupted instruction pointer or a return
 * address on its kernel stack lies in a span. Sets *@addr to that address, or
 * to 0 when the stack cannot be walked reliably, which counts as inside: a
 * task whose frames are not all known might be in a span (livepatch decides
 * the same for its transition), and a later attempt may find it elsewhere.
 *
 * The walk is arch_stack_walk_reliable()'s (not exported): the ORC unwinder
 * from the task's switch frame, through interrupt frames (whose ip is the
 * interrupted instruction), until user mode or the end of a kthread's stack.
 * stack_trace_save_tsk() would not do: it drops __sched functions and stops
 * silently on an unwinder error, so a task could look outside when it is not.
 *
 * Context: the machine is stopped and @t is not running, so its stack cannot
 * change or be freed under the walk (and no reference is needed, which is as
 * well: put_task_stack() is not exported).
 */
static bool kx_task_inside(struct task_struct *t, const struct kx_spans *s,
			   unsigned long *addr)
{
	struct unwind_state state;
	struct pt_regs *regs;
	unsigned long a;

	*addr = 0;
	/*
	 * No stack: the task died and made its last switch (finish_task_switch()
	 * released the stack); it never runs again.
	 */
	if (!refcount_read(&t->stack_refcount) || !task_stack_page(t))
		return false;
	for (unwind_start(&state, t, NULL, NULL);
	     !unwind_done(&state) && !unwind_error(&state);
	     unwind_next_frame(&state)) {
		regs = unwind_get_entry_regs(&state, NULL);
		if (regs && user_mode(regs))
			return false;
		a = unwind_get_return_address(&state);
		/* Code the kernel has no unwind data for (a trampoline...). */
		if (!a)
			return true;
		if (kx_in_spans(s, a)) {
			*addr = a;
			return true;
		}
	}
	return unwind_error(&state);
}

/*
 * Runs on one CPU while all are stopped. Tasks not walked:
 *  - the caller: it sleeps in this module's ioctl and, when it returns, leaves
 *    through the syscall path only; counting it would block every commit of a
 *    tunable whose spans cover the path it sleeps on (stop_machine(), the
 *    scheduler), by the very task asking for the commit;
 *  - tasks on a CPU (on_cpu): during stop_machine() those are exactly the
 *    stopper threads, which run nothing but stop_machine() code, and a running
 *    task's stack cannot be unwound from another CPU anyway;
 *  - idle tasks: they are not on the task list, and a module cannot reach them
 *    (idle_task() is not exported). An idle task switches out only in
 *    schedule_idle() from do_idle(), so its frames are the idle loop and the
 *    scheduler; a span there is not supported.
 */
static int kx_commit_stopped(void *data)
{
	struct kx_commit_run *run = data;
	u64 start = ktime_get_ns();
	struct task_struct *g, *t;
	unsigned long addr;
	int ret = 0;

	rcu_read_lock();
	for_each_process_thread(g, t) {
		if (t == run->caller || READ_ONCE(t->on_cpu))
			continue;
		run->tasks++;
		if (kx_task_inside(t, &run->spans, &addr)) {
			run->blocker_pid = task_pid_nr(t);
			run->blocker_addr = addr;
			ret = -EBUSY;
			goto out;
		}
	}
	/* The activation: nobody runs until every CPU leaves the stopper. */
	WRITE_ONCE(run->slot->gen, run->gen);
out:
	rcu_read_unlock();
	run->stopped_ns = ktime_get_ns() - start;
	return ret;
}

static struct kx_gen_slot *kx_gen_slot_find(u64 key)
{
	int i;

	lockdep_assert_held(&kx_global_lock);
	for (i = 0; i < KX_GLOBAL_MAX_TUNABLES; i++)
		if (kx_gens[i].key == key)
			return &kx_gens[i];
	return NULL;
}

/* The slot of @key, taken with gen 0 if it has none; NULL when all are taken. */
static struct kx_gen_slot *kx_gen_slot_get(u64 key)
{
	struct kx_gen_slot *slot = kx_gen_slot_find(key);

	if (slot)
		return slot;
	slot = kx_gen_slot_find(0);
	if (!slot)
		return NULL;
	WRITE_ONCE(slot->gen, 0);
	/* Pairs with smp_load_acquire() in kernelx_active_gen(). */
	smp_store_release(&slot->key, key);
	return slot;
}

static int kx_range_cmp(const void *a, const void *b)
{
	const struct kx_range *x = a, *y = b;

	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return 0;
}

/* Sorts @r and merges overlapping or touching ranges; returns the new count. */
static u32 kx_spans_normalize(struct kx_range *r, u32 n)
{
	u32 i, out = 0;

	sort(r, n, sizeof(*r), kx_range_cmp, NULL);
	for (i = 0; i < n; i++) {
		if (out && r[i].start <= r[out - 1].end)
			r[out - 1].end = max(r[out - 1].end, r[i].end);
		else
			r[out++] = r[i];
	}
	return out;
}

/**
 * kx_ioc_commit() - KX_IOC_COMMIT: switch a key to a generation if no task is
 * inside its ranges.
 * @uarg: the struct kx_commit; its out fields are written on success and on
 * -EBUSY.
 *
 * No ranges (count 0) is allowed: the switch is then unconditional, but still
 * atomic.
 *
 * Context: process context, sleeps; stops the machine for the walk.
 * Return: 0 when the new generation is active; -EBUSY when a task was inside
 * (nothing changed; blocker_pid and blocker_addr say where, blocker_addr 0 for
 * a stack that could not be unwound reliably); -EINVAL for key 0, more than
 * KX_GLOBAL_MAX_RANGES ranges, or a range that is empty, reversed or not in
 * the kernel half; -ENOSPC when the key is new and the table full; -EFAULT.
 * A key that was new keeps its slot at generation 0 after -EBUSY.
 */
static long kx_ioc_commit(struct kx_commit __user *uarg)
{
	struct kx_commit_run run = { .caller = current };
	struct kx_range *ranges = NULL;
	struct kx_commit c;
	long ret;
	u32 i;

	if (copy_from_user(&c, uarg, sizeof(c)))
		return -EFAULT;
	if (!c.key || c.count > KX_GLOBAL_MAX_RANGES)
		return -EINVAL;
	if (c.count) {
		ranges = memdup_array_user(u64_to_user_ptr(c.ranges), c.count,
					   sizeof(*ranges));
		if (IS_ERR(ranges))
			return PTR_ERR(ranges);
	}
	/*
	 * Only the kernel half (top bit set, whatever the paging depth): a user
	 * address (an offset passed for an address, say) would match no task and
	 * commit at once.
	 */
	for (i = 0; i < c.count; i++) {
		if (ranges[i].start >= ranges[i].end ||
		    !(ranges[i].start & BIT_ULL(63))) {
			ret = -EINVAL;
			goto out_free;
		}
	}
	run.spans.r = ranges;
	run.spans.n = kx_spans_normalize(ranges, c.count);
	run.gen = c.gen;

	ret = mutex_lock_killable(&kx_global_lock);
	if (ret)
		goto out_free;
	run.slot = kx_gen_slot_get(c.key);
	if (run.slot)
		ret = stop_machine(kx_commit_stopped, &run, NULL);
	else
		ret = -ENOSPC;
	mutex_unlock(&kx_global_lock);
	if (ret && ret != -EBUSY)
		goto out_free;

	c.blocker_pid = run.blocker_pid;
	c.blocker_addr = run.blocker_addr;
	c.stopped_ns = run.stopped_ns;
	c.tasks = run.tasks;
	/* On EFAULT after a commit, KX_IOC_ACTIVE still tells the outcome. */
	if (copy_to_user(uarg, &c, sizeof(c)))
		ret = -EFAULT;
out_free:
	kfree(ranges);
	return ret;
}

static long kx_ioc_active(struct kx_active __user *uarg)
{
	struct kx_gen_slot *slot;
	struct kx_active a;

	if (copy_from_user(&a, uarg, sizeof(a)))
		return -EFAULT;
	if (!a.key)
		return -EINVAL;
	mutex_lock(&kx_global_lock);
	slot = kx_gen_slot_find(a.key);
	a.gen = slot ? slot->gen : 0;
	mutex_unlock(&kx_global_lock);
	return copy_to_user(uarg, &a, sizeof(a)) ? -EFAULT : 0;
}

/*
 * Forgets @key: its generation reads 0 again, and a later tunable whose map
 * gets the same id starts there. Meant for a tunable whose probes are gone;
 * nothing is checked against spans.
 */
static long kx_ioc_release(u64 __user *uarg)
{
	struct kx_gen_slot *slot;
	u64 key;

	if (get_user(key, uarg))
		return -EFAULT;
	if (!key)
		return -EINVAL;
	mutex_lock(&kx_global_lock);
	slot = kx_gen_slot_find(key);
	if (slot)
		WRITE_ONCE(slot->key, 0);
	mutex_unlock(&kx_global_lock);
	return slot ? 0 : -ENOENT;
}

static long kx_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	void __user *uarg = (void __user *)arg;

	/* Also checked at open: a descriptor handed to another process. */
	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	switch (cmd) {
	case KX_IOC_COMMIT:
		return kx_ioc_commit(uarg);
	case KX_IOC_ACTIVE:
		return kx_ioc_active(uarg);
	case KX_IOC_RELEASE:
		return kx_ioc_release(uarg);
	default:
		return -ENOTTY;
	}
}

static int kx_open(struct inode *inode, struct file *file)
{
	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	return nonseekable_open(inode, file);
}

static const struct file_operations kx_fops = {
	.owner = THIS_MODULE,
	.open = kx_open,
	.unlocked_ioctl = kx_ioctl,
};

static struct miscdevice kx_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "kernelx",
	.fops = &kx_fops,
	.mode = 0600,
};

static int __init kernelx_init(void)
{
	int ret = kx_check_current_kprobe();

	if (ret)
		return ret;
	ret = register_btf_kfunc_id_set(BPF_PROG_TYPE_KPROBE, &kernelx_kfunc_set);
	if (ret) {
		pr_err("cannot register the kfuncs for kprobe programs: %d\n", ret);
		return ret;
	}
	ret = misc_register(&kx_misc);
	if (ret)
		pr_err("cannot register /dev/kernelx: %d\n", ret);
	return ret;
}

/*
 * Only the device to remove: module BTF (and with it the kfuncs) goes with the
 * module, and programs that call them, like open descriptors of the device,
 * hold a reference that blocks the unload.
 */
static void __exit kernelx_exit(void)
{
	misc_deregister(&kx_misc);
}

module_init(kernelx_init);
module_exit(kernelx_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("KernelX: kfuncs that rewrite a probed context's registers, flags and stored memory; global-mode activation");
