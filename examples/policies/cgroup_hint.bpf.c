// SPDX-License-Identifier: GPL-2.0
/*
 * Application hint: one value for the tasks of one cgroup, the default for
 * everyone else, at the same time.
 *
 * For PIPE_DEF_BUFFERS: new pipes of processes in the cgroup get `hinted`
 * pages (64: 262144 bytes), every other new pipe keeps the default (16:
 * 65536 bytes).
 *
 *   kernelx load PIPE_DEF_BUFFERS --policy examples/policies/cgroup_hint.bpf.c
 *   kernelx set PIPE_DEF_BUFFERS --param cgroup=$(stat -c %i /sys/fs/cgroup/big-pipes)
 *
 * A cgroup (v2) is named by its id, the inode number of its directory.
 */
#include "kernelx_policy.h"

/* The cgroup whose tasks get the hint; 0: nobody. */
KX_PARAM(__u64, cgroup, 0);
/* The value they get. */
KX_PARAM(__s64, hinted, 64);

KX_POLICY(ctx, probe, dflt)
{
	if (cgroup && kx_cgroup_id() == cgroup)
		return hinted;
	return dflt;
}
