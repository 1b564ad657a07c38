// SPDX-License-Identifier: GPL-2.0
/*
 * Feedback: switch the value after a kernel signal was seen N times in a row.
 *
 * For PIPE_DEF_BUFFERS: a process whose non-blocking writes find its pipe
 * full (pipe_write() returns -EAGAIN) `threshold` times in a row, without a
 * write that went through in between, shows that the default pipe is too
 * small for its producer; from then on new pipes get `grown` pages. The
 * switch latches (`kernelx set PIPE_DEF_BUFFERS --param switched=0` resets
 * it) and `kernelx status` shows it.
 *
 *   kernelx load PIPE_DEF_BUFFERS --policy examples/policies/feedback.bpf.c
 */
#include "kernelx_policy.h"

#define EAGAIN 11

/* Full-pipe writes in a row that switch the value. */
KX_PARAM(__u64, threshold, 8);
/* The value after the switch. */
KX_PARAM(__s64, grown, 64);
/* Set once a process reached the threshold. */
KX_PARAM(__u64, switched, 0);

/* Per process (tgid): full-pipe writes since its last write that went through. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} full_in_a_row SEC(".maps");

/* The signal: how pipe_write() ended. */
SEC("kretprobe/pipe_write")
int BPF_KRETPROBE(pipe_write_done, long ret)
{
	__u32 pid = kx_pid();
	__u64 one = 1, *streak;

	if (ret > 0) {
		bpf_map_delete_elem(&full_in_a_row, &pid);
		return 0;
	}
	if (ret != -EAGAIN)
		return 0;
	streak = bpf_map_lookup_elem(&full_in_a_row, &pid);
	if (streak)
		__sync_fetch_and_add(streak, 1);
	else
		bpf_map_update_elem(&full_in_a_row, &pid, &one, BPF_ANY);
	streak = bpf_map_lookup_elem(&full_in_a_row, &pid);
	if (streak && *streak >= threshold)
		switched = 1;
	return 0;
}

KX_POLICY(ctx, probe, dflt)
{
	return switched ? grown : dflt;
}
