/* SPDX-License-Identifier: GPL-2.0 */
/*
 * KernelX X-tune policies: the value of a tunable chosen per trigger by BPF
 * code of your own, applied through the tunable's SIE update.
 *
 *	#include "kernelx_policy.h"
 *
 *	KX_PARAM(__u64, cgroup, 0);	// `kernelx set T --param cgroup=N` changes it live
 *
 *	KX_POLICY(ctx, probe, dflt)
 *	{
 *		if (kx_cgroup_id() == cgroup)
 *			return 64;
 *		return dflt;
 *	}
 *
 * `kernelx gen <tunable>` writes such a file for a tunable, with its probes;
 * `kernelx load <tunable> --policy file.bpf.c` compiles it against the running
 * kernel's BTF (vmlinux.h, which this header includes, so every kernel type
 * and libbpf's CO-RE macros are at hand) and loads it.
 *
 * What the runtime guarantees, whatever the policy does:
 *  - The policy is asked only where a task may take a new value: at a probe
 *    where none of the task's frames is inside a safe span of the tunable
 *    (the probe's own span at the probe's own address aside). Every other
 *    probe the task reaches inside that span uses the value chosen there, so
 *    one execution of the span never mixes values.
 *  - A value outside the tunable's valid range (`kernelx table query`) is
 *    rejected (the trigger uses the default) or clamped into the range, as
 *    `kernelx load --out-of-range reject|clamp` says; `kernelx status`
 *    counts both and shows the last such value.
 *  - The policy runs as its own BPF program (it replaces the runtime's
 *    kx_policy function, freplace): it sees its arguments and returns a
 *    number, and has no access to the runtime's maps. Calls to the kernelx
 *    module's kfuncs are refused at load.
 *
 * The policy body runs in kprobe context: it must not sleep, and every
 * helper of kprobe programs is available (bpf_get_current_task_btf(),
 * bpf_probe_read_kernel(), BPF_CORE_READ(), maps of your own...). Further
 * programs in the file (SEC("kprobe/..."), SEC("kretprobe/..."),
 * SEC("tracepoint/...")) are attached with the policy and detached with it:
 * use them to observe the kernel and feed the policy through maps or
 * globals.
 */
#ifndef KERNELX_POLICY_H
#define KERNELX_POLICY_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

/*
 * The policy: a function body that returns V' for this trigger.
 *  @ctx:   the registers at the probe (struct pt_regs *; the probe is inside
 *          the function, so argument registers may no longer hold arguments:
 *          see KX_SAVE_ARGS)
 *  @probe: the probe's index (`kernelx gen` names them, KX_PROBE_*)
 *  @dflt:  the tunable's default: `--value` at load, `kernelx set T V`
 *          later, the compiled value when neither was given
 */
#define KX_POLICY(ctx, probe, dflt)                                            \
	char LICENSE[] SEC("license") = "GPL";                                 \
	static __always_inline __s64 kx_policy_decide(struct pt_regs *ctx,     \
						      __u32 probe,             \
						      __s64 dflt);             \
	SEC("freplace/kx_policy")                                              \
	__s64 kx_policy(struct pt_regs *ctx, __u64 probe, __s64 dflt)          \
	{                                                                      \
		return kx_policy_decide(ctx, (__u32)probe, dflt);              \
	}                                                                      \
	static __always_inline __s64 kx_policy_decide(struct pt_regs *ctx,     \
						      __u32 probe, __s64 dflt)

/*
 * A parameter of the policy: an integer global (1, 2, 4 or 8 bytes) that
 * `kernelx set <tunable> --param name=value` changes while the policy runs,
 * and `kernelx status` shows. Read it as a plain variable.
 */
#define KX_PARAM(type, name, value)                                            \
	volatile type name SEC(".data.kx_params") = (value)

/* The current task, its process id (tgid), thread id, cgroup (v2) and CPU. */
static __always_inline struct task_struct *kx_task(void)
{
	return bpf_get_current_task_btf();
}

static __always_inline __u32 kx_pid(void)
{
	return bpf_get_current_pid_tgid() >> 32;
}

static __always_inline __u32 kx_tid(void)
{
	return (__u32)bpf_get_current_pid_tgid();
}

static __always_inline __u64 kx_cgroup_id(void)
{
	return bpf_get_current_cgroup_id();
}

static __always_inline __u32 kx_cpu(void)
{
	return bpf_get_smp_processor_id();
}

/*
 * The arguments of a probed function, saved at its entry by
 * KX_SAVE_ARGS(function) (one line at file scope) and read by kx_arg(n),
 * n = 0..5, in the policy. One set per task: the last saved function entry
 * of the task (a recursive call overwrites its caller's). 0 when the task
 * has not entered the function.
 */
struct kx_saved_args {
	__u64 arg[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct kx_saved_args);
} kx_args SEC(".maps");

#define KX_SAVE_ARGS(function)                                                 \
	SEC("kprobe/" #function)                                               \
	int kx_save_args_##function(struct pt_regs *ctx)                       \
	{                                                                      \
		struct kx_saved_args *a = bpf_task_storage_get(               \
			&kx_args, bpf_get_current_task_btf(), 0,               \
			BPF_LOCAL_STORAGE_GET_F_CREATE);                       \
		if (a) {                                                       \
			a->arg[0] = PT_REGS_PARM1(ctx);                        \
			a->arg[1] = PT_REGS_PARM2(ctx);                        \
			a->arg[2] = PT_REGS_PARM3(ctx);                        \
			a->arg[3] = PT_REGS_PARM4(ctx);                        \
			a->arg[4] = PT_REGS_PARM5(ctx);                        \
			a->arg[5] = PT_REGS_PARM6(ctx);                        \
		}                                                              \
		return 0;                                                      \
	}

static __always_inline __u64 kx_arg(int n)
{
	struct kx_saved_args *a;

	if (n < 0 || n > 5)
		return 0;
	a = bpf_task_storage_get(&kx_args, bpf_get_current_task_btf(), 0, 0);
	return a ? a->arg[n] : 0;
}

#endif /* KERNELX_POLICY_H */
