// SPDX-License-Identifier: GPL-2.0
/*
 * Per object: a value chosen from an argument of the probed function.
 *
 * For KX_TARGET_ADD of the lab's target module (tests/target-module):
 * kx_target_add(const u64 *in) returns *in + KX_TARGET_ADD. The policy
 * saves the function's arguments at its entry (KX_SAVE_ARGS), reads the
 * object the first one points to, and gives inputs at or above `large`
 * the value `large_value`, every other input the default.
 *
 *   kernelx load tests/..../KX_TARGET_ADD.plan.json --policy examples/policies/per_object.bpf.c
 *
 * The same pattern picks a value per socket (a struct sock * argument) or
 * per shrinker (a struct shrinker *), reading fields with BPF_CORE_READ.
 */
#include "kernelx_policy.h"

/* Inputs from this one up get large_value. */
KX_PARAM(__u64, large, 1000);
KX_PARAM(__s64, large_value, 0x1000);

KX_SAVE_ARGS(kx_target_add)

KX_POLICY(ctx, probe, dflt)
{
	const __u64 *in = (const __u64 *)kx_arg(0);
	__u64 x = 0;

	if (!in || bpf_probe_read_kernel(&x, sizeof(x), in))
		return dflt;
	return x >= large ? large_value : dflt;
}
