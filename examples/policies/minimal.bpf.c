// SPDX-License-Identifier: GPL-2.0
/*
 * The smallest useful X-tune policy: tasks of one cgroup (v2 id) get `value`,
 * every other task the tunable's default.
 *
 *	kernelx load T --policy minimal.bpf.c --param cgroup=$(stat -c %i /sys/fs/cgroup/x)
 *	kernelx set T --param value=128
 */
#include "kernelx_policy.h"

KX_PARAM(__u64, cgroup, 0);
KX_PARAM(__s32, value, 64);

KX_POLICY(ctx, probe, dflt)
{
	if (cgroup && kx_cgroup_id() == cgroup)
		return value;
	return dflt;
}
