// SPDX-License-Identifier: GPL-2.0
/*
 * Scoped Indirect Execution: one kprobe program attached at every probe of a
 * tunable. The attach cookie names the probe's entry in a slot of kx_probes,
 * which the loader (crates/runtime/src/sie) fills with what that probe does and
 * with IV' already computed from V'; changing V' is a map write and a move of
 * tasks to the new slot's generation, as the tunable's consistency mode says.
 *
 * Only what this file uses is declared here (x86-64), so building it needs
 * clang and nothing else.
 */

typedef unsigned char __u8;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;
typedef long long __s64;

#include "sie.h"

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name
#define __ksym __attribute__((section(".ksyms")))
#define __always_inline inline __attribute__((always_inline))

/* x86-64 struct pt_regs, as the kernel lays it out. */
struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	unsigned long ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};

/* Read through CO-RE (libbpf relocates the offsets against the kernel's BTF). */
struct task_struct {
	int pid;
	int on_cpu;
	int exit_state;
} __attribute__((preserve_access_index));

struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
} __attribute__((preserve_access_index));

struct bpf_iter__task {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
} __attribute__((preserve_access_index));

/* Helper ids from include/uapi/linux/bpf.h. */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static __u64 (*bpf_get_current_pid_tgid)(void) = (void *)14;
static long (*bpf_get_stack)(void *ctx, void *buf, __u32 size,
			     __u64 flags) = (void *)67;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size,
				     const void *src) = (void *)113;
static void *(*bpf_task_storage_get)(void *map, struct task_struct *task,
				     void *value, __u64 flags) = (void *)156;
static struct task_struct *(*bpf_get_current_task_btf)(void) = (void *)158;
static long (*bpf_seq_write)(struct seq_file *m, const void *data,
			     __u32 len) = (void *)127;
static long (*bpf_get_task_stack)(struct task_struct *task, void *buf,
				  __u32 size, __u64 flags) = (void *)141;
static __u64 (*bpf_get_attach_cookie)(void *ctx) = (void *)174;
static long (*bpf_loop)(__u32 nr_loops, void *callback_fn, void *callback_ctx,
			__u64 flags) = (void *)181;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static void *(*bpf_ringbuf_reserve)(void *ringbuf, __u64 size,
				    __u64 flags) = (void *)131;
static void (*bpf_ringbuf_submit)(void *data, __u64 flags) = (void *)132;

#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_RINGBUF 27
#define BPF_MAP_TYPE_TASK_STORAGE 29
#define BPF_F_NO_PREALLOC 1
#define BPF_LOCAL_STORAGE_GET_F_CREATE 1

/* The kernelx module's kfuncs (kmod/kernelx.c). */
extern int kernelx_set_reg(struct pt_regs *regs, __u32 reg, __u64 value) __ksym;
extern int kernelx_set_flags(struct pt_regs *regs, __u64 mask, __u64 value) __ksym;
extern int kernelx_set_stored(struct pt_regs *regs, __u64 operand, __s64 disp,
			      __u64 value) __ksym;
extern __u64 kernelx_active_gen(__u64 key) __ksym;

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KX_SLOTS * KX_MAX_PROBES);
	__type(key, __u32);
	__type(value, struct kx_probe);
} kx_probes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KX_MAX_RANGES);
	__type(key, __u32);
	__type(value, struct kx_span_range);
} kx_ranges SEC(".maps");

/* Per task (per-task mode): the generation it uses, once it has one of its own. */
struct kx_task_gen {
	__u64 gen;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct kx_task_gen);
} kx_task_gens SEC(".maps");

/* Per CPU: room for a stack (too big for the BPF stack). */
struct kx_frames {
	__u64 addr[KX_STACK_DEPTH];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kx_frames);
} kx_frames SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kx_control);
} kx_control SEC(".maps");

/* Per probe: how often it ran, and how often the update failed. */
struct kx_probe_stats {
	__u64 hits;
	__u64 errors;
	__s64 last_error;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KX_MAX_PROBES);
	__type(key, __u32);
	__type(value, struct kx_probe_stats);
} kx_stats SEC(".maps");

/* Per task: the sites whose pre-probe it passed and whose post-probe it has not. */
struct kx_marks {
	__u64 bits[KX_MAX_MARKS / 64];
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct kx_marks);
} kx_entered SEC(".maps");

/*
 * Per task: the value each saving pre-probe captured (by mark slot), with the
 * stack pointer it ran at. A post-probe uses it only at the same stack pointer,
 * so an interrupt that passed the same pre-probe cannot hand over its value.
 */
struct kx_saved {
	__u64 value[KX_MAX_MARKS];
	__u64 sp[KX_MAX_MARKS];
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct kx_saved);
} kx_saved SEC(".maps");

/* Policy generations: what the policy chose, and what was refused (sie.h). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kx_policy_stats);
} kx_policy_stats SEC(".maps");

/* Per task (policy generations): the value chosen at its last decision. */
struct kx_choice {
	__u64 gen;	/* the generation it was chosen in */
	__s64 value;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct kx_choice);
} kx_choices SEC(".maps");

/* What `kernelx trace` reads: struct kx_trigger_event and struct kx_move_event. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, KX_EVENTS_BYTES);
} kx_events SEC(".maps");

/* The trace lease and the dropped-event count (sie.h). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KX_TRACE_ENTRIES);
	__type(key, __u32);
	__type(value, __u64);
} kx_trace SEC(".maps");

/*
 * Room for a @size-byte event while a trace session's lease runs (the time in
 * @now), else NULL; a full ring buffer counts a dropped event.
 */
static __always_inline void *event_reserve(__u64 size, __u64 *now)
{
	__u32 key = KX_TRACE_UNTIL;
	__u64 *until, *dropped;
	void *e;

	until = bpf_map_lookup_elem(&kx_trace, &key);
	if (!until || !*until)
		return 0;
	*now = bpf_ktime_get_ns();
	if (*now >= *until)
		return 0;
	e = bpf_ringbuf_reserve(&kx_events, size, 0);
	if (!e) {
		key = KX_TRACE_DROPPED;
		dropped = bpf_map_lookup_elem(&kx_trace, &key);
		if (dropped)
			__sync_fetch_and_add(dropped, 1);
	}
	return e;
}

/*
 * Traces a trigger of the current task. Global functions (here and below):
 * the verifier checks each once, and a trigger not traced pays one call, one
 * lookup and a compare.
 */
__attribute__((noinline)) int kx_emit_trigger(__u64 probe, __u64 gen,
					      __u64 action, __u64 skipped,
					      __s64 result)
{
	struct kx_trigger_event *e;
	__u64 now = 0;

	e = event_reserve(sizeof(*e), &now);
	if (!e)
		return 0;
	e->type = KX_EVENT_TRIGGER;
	e->ktime_ns = now;
	e->pid_tgid = bpf_get_current_pid_tgid();
	e->probe = probe;
	e->gen = gen;
	e->action = action;
	e->skipped = skipped;
	e->result = result;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* Traces the move of task @pid from generation @from to @to. */
__attribute__((noinline)) int kx_emit_move(__u64 pid, __u64 from, __u64 to,
					   __u64 sweep)
{
	struct kx_move_event *e;
	__u64 now = 0;

	e = event_reserve(sizeof(*e), &now);
	if (!e)
		return 0;
	e->type = KX_EVENT_TASK_MOVE;
	e->ktime_ns = now;
	e->pid = pid;
	e->from_gen = from;
	e->to_gen = to;
	e->sweep = sweep;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/*
 * The general-purpose registers in hardware order (enum kernelx_reg). The
 * verifier wants every context load at a constant offset from the unmodified
 * context pointer, so they are copied once; a switch over the context would
 * let clang compute the offset.
 */
static __always_inline void read_regs(struct pt_regs *ctx, __u64 *regs)
{
	regs[KX_REG_RAX] = ctx->ax;
	regs[KX_REG_RCX] = ctx->cx;
	regs[KX_REG_RDX] = ctx->dx;
	regs[KX_REG_RBX] = ctx->bx;
	regs[KX_REG_RSP] = ctx->sp;
	regs[KX_REG_RBP] = ctx->bp;
	regs[KX_REG_RSI] = ctx->si;
	regs[KX_REG_RDI] = ctx->di;
	regs[KX_REG_R8] = ctx->r8;
	regs[KX_REG_R9] = ctx->r9;
	regs[KX_REG_R10] = ctx->r10;
	regs[KX_REG_R11] = ctx->r11;
	regs[KX_REG_R12] = ctx->r12;
	regs[KX_REG_R13] = ctx->r13;
	regs[KX_REG_R14] = ctx->r14;
	regs[KX_REG_R15] = ctx->r15;
}

static __always_inline int read_reg(const __u64 *regs, __u64 reg, __u64 *out)
{
	if (reg >= KX_REG_COUNT)
		return -1;
	*out = regs[reg & (KX_REG_COUNT - 1)];
	return 0;
}

static __always_inline __u64 width_mask(__u64 bytes)
{
	return bytes >= 8 ? ~0ULL : (1ULL << (bytes * 8)) - 1;
}

/* The register after writing @value to its view, as x86 writes it. */
static __always_inline __u64 merge_reg(__u64 old, __u64 value, __u64 bytes,
				       __u64 high8)
{
	__u64 mask = width_mask(bytes);

	if (high8)
		return (old & ~0xff00ULL) | ((value & 0xff) << 8);
	if (bytes == 4) /* 32-bit writes zero the upper half */
		return value & mask;
	return (old & ~mask) | (value & mask);
}

/* ZF, SF and PF of the result @r (already @bytes wide). */
static __always_inline __u64 result_flags(__u64 r, __u64 bytes)
{
	__u64 flags = 0, parity;

	if (!r)
		flags |= KX_FLAG_ZF;
	if (r & (1ULL << (bytes * 8 - 1)))
		flags |= KX_FLAG_SF;
	parity = r & 0xff;
	parity ^= parity >> 4;
	parity ^= parity >> 2;
	parity ^= parity >> 1;
	if (!(parity & 1))
		flags |= KX_FLAG_PF;
	return flags;
}

/* The arithmetic flags sub (a - b) leaves at @bytes wide. */
static __always_inline __u64 sub_flags(__u64 a, __u64 b, __u64 bytes)
{
	__u64 mask = width_mask(bytes);
	__u64 sign = 1ULL << (bytes * 8 - 1);
	__u64 r, flags = 0;

	a &= mask;
	b &= mask;
	r = (a - b) & mask;
	if (a < b)
		flags |= KX_FLAG_CF;
	if ((a ^ b) & (a ^ r) & sign)
		flags |= KX_FLAG_OF;
	if ((a ^ b ^ r) & 0x10)
		flags |= KX_FLAG_AF;
	return flags | result_flags(r, bytes);
}

/* The arithmetic flags add (a + b) leaves at @bytes wide. */
static __always_inline __u64 add_flags(__u64 a, __u64 b, __u64 bytes)
{
	__u64 mask = width_mask(bytes);
	__u64 sign = 1ULL << (bytes * 8 - 1);
	__u64 r, flags = 0;

	a &= mask;
	b &= mask;
	r = (a + b) & mask;
	if (r < a)
		flags |= KX_FLAG_CF;
	if (~(a ^ b) & (a ^ r) & sign)
		flags |= KX_FLAG_OF;
	if ((a ^ b ^ r) & 0x10)
		flags |= KX_FLAG_AF;
	return flags | result_flags(r, bytes);
}

/* The arithmetic flags cmp (a - b) or test (a & b) leave at @bytes wide. */
static __always_inline __u64 compare_flags(__u64 a, __u64 b, __u64 bytes,
					   __u64 op)
{
	if (op == KX_CMP)
		return sub_flags(a, b, bytes);
	/* and, or, xor and test clear CF and OF. */
	return result_flags(a & b & width_mask(bytes), bytes);
}

/* op(a, b) at @bytes wide, as x86 computes it (shift counts masked like the CPU). */
static __always_inline __u64 combine(__u64 op, __u64 a, __u64 b, __u64 bytes)
{
	__u64 mask = width_mask(bytes);
	__u64 count = b & (bytes == 8 ? 63 : 31);
	__u64 unused = 64 - bytes * 8;

	a &= mask;
	b &= mask;
	switch (op) {
	case KX_OP_ADD:
		return (a + b) & mask;
	case KX_OP_SUB:
		return (a - b) & mask;
	case KX_OP_AND:
		return a & b;
	case KX_OP_OR:
		return a | b;
	case KX_OP_XOR:
		return a ^ b;
	case KX_OP_SHL:
		return (a << count) & mask;
	case KX_OP_SHR:
		return a >> count;
	case KX_OP_SAR:
		return ((__s64)(a << unused) >> unused >> count) & mask;
	case KX_OP_IMUL: /* the low half is the same signed or unsigned */
		return (a * b) & mask;
	}
	return 0;
}

/* The flags op(a, b) = @r leaves; the loader refuses flags of other ops. */
static __always_inline int combine_flags(__u64 op, __u64 a, __u64 b, __u64 r,
					 __u64 bytes, __u64 *out)
{
	switch (op) {
	case KX_OP_ADD:
		*out = add_flags(a, b, bytes);
		return 0;
	case KX_OP_SUB:
		*out = sub_flags(a, b, bytes);
		return 0;
	case KX_OP_AND:
	case KX_OP_OR:
	case KX_OP_XOR:
		*out = result_flags(r, bytes);
		return 0;
	}
	return -1;
}

/* Reads the memory operand @p names; %gs operands are refused at load. */
static __always_inline int read_operand(struct pt_regs *ctx, const __u64 *regs,
					struct kx_probe *p, __u64 *out)
{
	__u64 operand = p->operand, addr = p->disp, reg;
	__u32 size = KX_OPERAND_SIZE(operand);

	if (operand & KX_OPERAND_GS || size == 0 || size > 8)
		return -1;
	if (KX_OPERAND_BASE(operand) != KX_OPERAND_NO_REG) {
		if (read_reg(regs, KX_OPERAND_BASE(operand), &reg))
			return -1;
		addr += reg;
	}
	if (KX_OPERAND_INDEX(operand) != KX_OPERAND_NO_REG) {
		if (read_reg(regs, KX_OPERAND_INDEX(operand), &reg))
			return -1;
		addr += reg * KX_OPERAND_SCALE(operand);
	}
	if (operand & KX_OPERAND_RIP)
		addr += ctx->ip - 1; /* handlers see ip = probe address + 1 */
	*out = 0;
	return bpf_probe_read_kernel(out, size, (void *)addr) ? -1 : 0;
}

/* The word of @m holding mark @mark (< KX_MAX_MARKS, checked by the caller). */
static __always_inline __u64 *mark_word(struct kx_marks *m, __u64 mark)
{
	__u64 word = mark / 64;

	/* Hides the caller's bound from clang, so the mask stays for the verifier. */
	asm volatile("" : "+r"(word));
	return &m->bits[word & (KX_MAX_MARKS / 64 - 1)];
}

/* Pre-probe: remember that this task entered the span of site @mark. */
static __always_inline void mark_entered(__u64 mark)
{
	struct kx_marks *m;

	if (mark >= KX_MAX_MARKS)
		return;
	m = bpf_task_storage_get(&kx_entered, bpf_get_current_task_btf(), 0,
				 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (m)
		*mark_word(m, mark) |= 1ULL << (mark % 64);
}

/* Post-probe: whether this task came through site @mark's pre-probe (forgets it). */
static __always_inline int take_entered(__u64 mark)
{
	__u64 bit = 1ULL << (mark % 64);
	struct kx_marks *m;
	__u64 *word;

	if (mark >= KX_MAX_MARKS)
		return 0;
	m = bpf_task_storage_get(&kx_entered, bpf_get_current_task_btf(), 0, 0);
	if (!m)
		return 0;
	word = mark_word(m, mark);
	if (!(*word & bit))
		return 0;
	*word &= ~bit;
	return 1;
}

/* The slot of @mark in a per-mark array (< KX_MAX_MARKS, checked by the caller). */
static __always_inline __u64 mark_slot(__u64 mark)
{
	/* As in mark_word: keeps the mask for the verifier. */
	asm volatile("" : "+r"(mark));
	return mark & (KX_MAX_MARKS - 1);
}

/* The view of register @reg that is @bytes wide (%ah..%bh when @high8). */
static __always_inline int read_view(const __u64 *regs, __u64 reg, __u64 bytes,
				     __u64 high8, __u64 *out)
{
	if (read_reg(regs, reg, out))
		return -1;
	if (high8)
		*out >>= 8;
	*out &= width_mask(bytes);
	return 0;
}

/* Pre-probe: save the register view @p names for site @p->mark, then mark it. */
static __always_inline void save_entered(struct pt_regs *ctx, struct kx_probe *p)
{
	__u64 regs[KX_REG_COUNT], value, slot;
	struct kx_saved *s;

	if (p->mark >= KX_MAX_MARKS)
		return;
	read_regs(ctx, regs);
	if (read_view(regs, p->reg, p->width, p->high8, &value))
		return;
	s = bpf_task_storage_get(&kx_saved, bpf_get_current_task_btf(), 0,
				 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!s)
		return;
	slot = mark_slot(p->mark);
	s->value[slot] = value;
	s->sp[slot] = ctx->sp;
	mark_entered(p->mark);
}

/* Post-probe: the value saved for @mark at this stack pointer; -1 when none. */
static __always_inline int take_saved(struct pt_regs *ctx, __u64 mark, __u64 *out)
{
	struct kx_saved *s;
	__u64 slot;

	if (mark >= KX_MAX_MARKS)
		return -1;
	s = bpf_task_storage_get(&kx_saved, bpf_get_current_task_btf(), 0, 0);
	if (!s)
		return -1;
	slot = mark_slot(mark);
	if (s->sp[slot] != ctx->sp)
		return -1;
	*out = s->value[slot];
	return 0;
}

/* reg = op(input, IV'), and the flags the consumer reads. */
static __always_inline int apply_combine(struct pt_regs *ctx, const __u64 *regs,
					 struct kx_probe *p, __u64 iv)
{
	__u64 input, result, old, flags;
	int err;

	switch (p->input) {
	case KX_IN_SAVED:
		/* No value from this frame's pre-probe: leave the V1 result. */
		if (take_saved(ctx, p->mark, &input))
			return 0;
		break;
	case KX_IN_REG:
	case KX_IN_UNDO:
		if (read_view(regs, p->input_reg, p->input_width,
			      p->input_high8, &input))
			return -22;
		if (p->input == KX_IN_UNDO)
			input = combine(p->undo_op, input, p->undo_value,
					p->input_width);
		break;
	default:
		return -22;
	}
	if (read_reg(regs, p->reg, &old))
		return -22;
	result = combine(p->op, input, iv, p->width);
	if (p->flags) {
		if (combine_flags(p->op, input, iv, result, p->width, &flags))
			return -22;
		err = kernelx_set_flags(ctx, p->flags, flags);
		if (err)
			return err;
	}
	return kernelx_set_reg(ctx, p->reg,
			       merge_reg(old, result, p->width, p->high8));
}

/* The registers of the magic division @p names, recomputed for V' (kx_divide()). */
static __always_inline int apply_divide(struct pt_regs *ctx, const __u64 *regs,
					struct kx_probe *p)
{
	struct kx_quotient r;
	__u64 x;
	int err;

	switch (p->input) {
	case KX_IN_SAVED:
		/* No value from this frame's pre-probe: leave the V1 result. */
		if (take_saved(ctx, p->mark, &x))
			return 0;
		break;
	case KX_IN_REG:
		if (read_view(regs, p->input_reg, p->input_width,
			      p->input_high8, &x))
			return -22;
		break;
	case KX_IN_MEM:
		if (read_operand(ctx, regs, p, &x))
			return -14;
		break;
	default:
		return -22;
	}
	r = kx_divide(p->op, x, p->multiplier, p->shift);
	/*
	 * The loader refuses updates whose inputs it writes, so the other probe
	 * at this address (the sequence's other constant) recomputes the same.
	 */
	if (p->op == KX_DIV_MUL) {
		if (p->reg != KX_REG_RAX) {
			err = kernelx_set_reg(ctx, KX_REG_RAX, r.lo);
			if (err)
				return err;
		}
		if (p->reg != KX_REG_RDX) {
			err = kernelx_set_reg(ctx, KX_REG_RDX, r.hi);
			if (err)
				return err;
		}
	} else if (p->op != KX_DIV_IMUL) {
		err = kernelx_set_reg(ctx, p->temp, r.temp);
		if (err)
			return err;
	}
	return kernelx_set_reg(ctx, p->reg, r.q);
}

/* Probe @p's update with IV' = @iv (p->value, or what a policy's V' gives). */
static __always_inline int apply(struct pt_regs *ctx, struct kx_probe *p, __u64 iv)
{
	__u64 regs[KX_REG_COUNT], old;

	read_regs(ctx, regs);
	switch (p->action) {
	case KX_ACT_LOAD_REG:
		if (read_reg(regs, p->reg, &old))
			return -22; /* EINVAL */
		return kernelx_set_reg(ctx, p->reg,
				       merge_reg(old, iv, p->width, p->high8));
	case KX_ACT_LOAD_MEM:
		return kernelx_set_stored(ctx, p->operand, p->disp, iv);
	case KX_ACT_COMPARE_REG:
		if (read_reg(regs, p->reg, &old))
			return -22;
		if (p->high8)
			old >>= 8;
		return kernelx_set_flags(ctx, p->flags,
					 compare_flags(old, iv, p->width, p->op));
	case KX_ACT_COMPARE_MEM:
		if (read_operand(ctx, regs, p, &old))
			return -14; /* EFAULT */
		return kernelx_set_flags(ctx, p->flags,
					 compare_flags(old, iv, p->width, p->op));
	case KX_ACT_COMBINE_REG:
		return apply_combine(ctx, regs, p, iv);
	case KX_ACT_DIVIDE:
		return apply_divide(ctx, regs, p);
	}
	return 0;
}

/* What check_pair() looks for in the frames kx_frames holds. */
struct frame_walk {
	__u64 ranges;	/* entries of kx_ranges in use (not 0) */
	__u64 own_span;	/* frame 0's own span, which does not count */
	__u64 inside;	/* out: a frame is in a span, or the frames are unreadable */
	__u64 addr;	/* out: that frame */
};

/*
 * bpf_loop() callback: whether frame @k / ranges of this CPU's kx_frames lies in
 * range @k % ranges of kx_ranges. One small body for every (frame, range) pair
 * keeps the verifier's work independent of the number of frames and ranges.
 */
static long check_pair(__u64 k, void *data)
{
	struct frame_walk *w = data;
	struct kx_span_range *r;
	struct kx_frames *f;
	__u64 frame, addr;
	__u32 zero = 0, range;

	if (!w->ranges)
		return 1;
	frame = k / w->ranges;
	range = k % w->ranges;
	f = bpf_map_lookup_elem(&kx_frames, &zero);
	r = bpf_map_lookup_elem(&kx_ranges, &range);
	if (!f || !r || frame >= KX_STACK_DEPTH) {
		w->inside = 1; /* cannot tell: inside */
		return 1;
	}
	if (frame == 0 && r->span == w->own_span)
		return 0;
	addr = f->addr[frame & (KX_STACK_DEPTH - 1)];
	if (addr >= r->start && addr < r->end) {
		w->inside = 1;
		w->addr = addr;
		return 1;
	}
	return 0;
}

/*
 * Whether one of the @bytes / 8 frames in this CPU's kx_frames lies in one of
 * the first @ranges safe-span ranges (the frame in @addr). Frame 0 is where the
 * task is; the span @own_span does not count there (a probe of a site runs in
 * its own span's first instructions).
 */
static __always_inline int frame_inside(long bytes, __u64 own_span,
					__u64 ranges, __u64 *addr)
{
	struct frame_walk w = { .ranges = ranges, .own_span = own_span };
	__u64 frames = bytes / 8;

	if (frames > KX_STACK_DEPTH)
		frames = KX_STACK_DEPTH;
	if (ranges > KX_MAX_RANGES)
		ranges = KX_MAX_RANGES;
	if (!ranges)
		return 0;
	if (bpf_loop(frames * ranges, check_pair, &w, 0) < 0)
		return 1;
	*addr = w.addr;
	return w.inside != 0;
}

/* Whether the current task, stopped at probe @p, is inside a safe span. */
static __always_inline int current_inside(struct pt_regs *ctx,
					  struct kx_control *control,
					  struct kx_probe *p)
{
	struct kx_frames *f;
	__u32 zero = 0;
	__u64 addr;
	long bytes;

	f = bpf_map_lookup_elem(&kx_frames, &zero);
	if (!f)
		return 1;
	bytes = bpf_get_stack(ctx, f, sizeof(*f), 0);
	if (bytes <= 0)
		return 1; /* cannot tell: keep the task where it is */
	f->addr[0] -= 1; /* handlers see ip = probe address + 1 */
	return frame_inside(bytes, p->span, control->ranges, &addr);
}

/*
 * The generation the current task uses at probe @p (per-task mode): its own,
 * or the stable one, unless it is outside every safe span and may move to the
 * target generation now.
 */
static __always_inline __u64 task_gen(struct pt_regs *ctx,
				      struct kx_control *control,
				      struct kx_probe *p)
{
	__u64 target = control->target_gen, gen = control->stable_gen, from;
	struct kx_task_gen *t;

	if (gen == target)
		return gen;
	t = bpf_task_storage_get(&kx_task_gens, bpf_get_current_task_btf(), 0,
				 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!t)
		return gen;
	if (t->gen > gen)
		gen = t->gen;
	from = gen;
	if (gen != target && !current_inside(ctx, control, p)) {
		gen = target;
		kx_emit_move((__u32)bpf_get_current_pid_tgid(), from, gen, 0);
	}
	t->gen = gen;
	return gen;
}

/*
 * The generation probe @index (slot 0) uses for this trigger, by the tunable's
 * mode. A global function: the verifier checks it once, on its own, instead of
 * once for every path into each update below.
 */
__attribute__((noinline)) __u64 kx_current_gen(struct pt_regs *ctx, __u32 index)
{
	struct kx_control *control;
	struct kx_probe *p;
	__u32 zero = 0;

	control = bpf_map_lookup_elem(&kx_control, &zero);
	p = bpf_map_lookup_elem(&kx_probes, &index);
	if (!control || !p)
		return 0;
	switch (control->mode) {
	case KX_MODE_PER_TASK:
		return task_gen(ctx, control, p);
	case KX_MODE_GLOBAL:
		return kernelx_active_gen(control->key);
	}
	return control->target_gen;
}

/*
 * V' at probe @probe when an X-tune policy decides: a policy loaded with the
 * tunable replaces this function (freplace), so it sees only its arguments and
 * returns a number. Without one, the default. The empty asm keeps clang from
 * treating the result as @dflt at the call, or passing nothing for the
 * arguments this body ignores: the call must stay a call with its arguments.
 */
__attribute__((noinline)) __s64 kx_policy(struct pt_regs *ctx, __u64 probe,
					   __s64 dflt)
{
	asm volatile("" : "+r"(dflt) : "r"(ctx), "r"(probe));
	return dflt;
}

/*
 * V' for the current task at probe @index of generation @gen (a policy
 * entry). The policy is asked only where the task may take a new value (no
 * frame in a safe span, as a per-task move); inside one, the task keeps what
 * it was given for this generation, else the default @dflt (the entry's,
 * checked against the range at load). Whatever the policy returns goes
 * through the entry's range (reject or clamp) first; when anything needed
 * cannot be had, the answer is @dflt.
 */
__attribute__((noinline)) __s64 kx_policy_value(struct pt_regs *ctx,
						 __u32 index, __u64 gen,
						 __s64 dflt)
{
	__u32 zero = 0, slot = index + (gen % KX_SLOTS) * KX_MAX_PROBES;
	struct kx_policy_stats *stats;
	struct kx_control *control;
	struct kx_choice *choice;
	struct kx_probe *p;
	__s64 v, bounded;
	int verdict;

	control = bpf_map_lookup_elem(&kx_control, &zero);
	p = bpf_map_lookup_elem(&kx_probes, &slot);
	stats = bpf_map_lookup_elem(&kx_policy_stats, &zero);
	if (!control || !p || !stats)
		return dflt;
	choice = bpf_task_storage_get(&kx_choices, bpf_get_current_task_btf(), 0,
				      BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!choice)
		return dflt;
	if (current_inside(ctx, control, p))
		return choice->gen == gen ? choice->value : dflt;
	v = kx_policy(ctx, index, dflt);
	__sync_fetch_and_add(&stats->decisions, 1);
	verdict = kx_policy_bound(v, p->vmin, p->vmax, p->vflags, &bounded);
	if (verdict) {
		stats->last_bad = v;
		stats->last_bad_probe = index;
		if (verdict < 0) {
			__sync_fetch_and_add(&stats->rejected, 1);
			bounded = dflt;
		} else {
			__sync_fetch_and_add(&stats->clamped, 1);
		}
	}
	stats->last_value = bounded;
	choice->gen = gen;
	choice->value = bounded;
	return bounded;
}

SEC("kprobe")
int kx_sie(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	struct kx_probe_stats *stats;
	struct kx_control *control;
	struct kx_probe *p;
	__u32 index = 0, slot;
	__u64 gen, iv, skipped = 0;
	int err = 0;

	/* Cookie 0 (attached without one) and foreign cookies do nothing. */
	if (cookie < KX_COOKIE_BASE || cookie >= KX_COOKIE_BASE + KX_MAX_PROBES)
		return 0;
	/* Pairs with arm()/disarm() in crates/runtime/src/sie/loader.rs. */
	control = bpf_map_lookup_elem(&kx_control, &index);
	if (!control || !control->armed)
		return 0;
	index = cookie - KX_COOKIE_BASE;
	stats = bpf_map_lookup_elem(&kx_stats, &index);
	if (!stats)
		return 0;
	__sync_fetch_and_add(&stats->hits, 1);
	gen = kx_current_gen(ctx, index);
	slot = index + (gen % KX_SLOTS) * KX_MAX_PROBES;
	p = bpf_map_lookup_elem(&kx_probes, &slot);
	if (!p)
		return 0;

	if (p->action == KX_ACT_NONE) {
		/* This generation is the compiled value: nothing to do. */
	} else if (p->action == KX_ACT_MARK) {
		mark_entered(p->mark);
	} else if (p->action == KX_ACT_SAVE_REG) {
		save_entered(ctx, p);
	} else if (p->mark != KX_NO_MARK && !take_entered(p->mark)) {
		/* A post-probe at a join point: only paths through the span get the update. */
		skipped = 1;
	} else {
		iv = p->value;
		if (p->policy)
			iv = kx_policy_iv(p->rel, p->rel_a, p->rel_b, p->iv_mask,
					  kx_policy_value(ctx, index, gen, p->dflt));
		err = apply(ctx, p, iv);
		if (err) {
			__sync_fetch_and_add(&stats->errors, 1);
			stats->last_error = err;
		}
	}
	kx_emit_trigger(index, gen, p->action, skipped, err);
	return 0;
}

/*
 * Per-task mode: one pass over every task. A task still on an older generation
 * moves to the target one when none of its frames is in a safe span; otherwise
 * (or when its stack cannot be read: it runs on another CPU) the pass writes a
 * struct kx_inside for it. A pass that writes nothing means every task is on
 * the target generation. The loader pins the iterator's link; reading the pin
 * runs a pass.
 */
SEC("iter/task")
int kx_sweep(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct kx_control *control;
	struct kx_task_gen *t;
	struct kx_inside inside;
	struct kx_frames *f;
	__u64 gen, target;
	__u32 zero = 0;
	long bytes;

	if (!task)
		return 0;
	control = bpf_map_lookup_elem(&kx_control, &zero);
	if (!control || control->mode != KX_MODE_PER_TASK)
		return 0;
	target = control->target_gen;
	gen = control->stable_gen;
	if (gen == target)
		return 0;
	/* The task reading the iterator is in kernelx's own code. */
	if (task->pid == (__u32)bpf_get_current_pid_tgid())
		return 0;
	inside.pid = task->pid;
	inside.addr = 0;
	t = bpf_task_storage_get(&kx_task_gens, task, 0,
				 BPF_LOCAL_STORAGE_GET_F_CREATE);
	f = bpf_map_lookup_elem(&kx_frames, &zero);
	if (!t || !f) {
		/* Nowhere to record a move: the task counts as inside. */
		bpf_seq_write(ctx->meta->seq, &inside, sizeof(inside));
		return 0;
	}
	if (t->gen >= target)
		return 0;
	bytes = bpf_get_task_stack(task, f, sizeof(*f), 0);
	if (bytes > 0) {
		if (!frame_inside(bytes, KX_NO_SPAN, control->ranges, &inside.addr)) {
			kx_emit_move(task->pid, t->gen > gen ? t->gen : gen, target, 1);
			t->gen = target;
			return 0;
		}
	} else if (task->exit_state) {
		/* Exited: it runs no more kernel code of its own. */
		t->gen = target;
		return 0;
	}
	bpf_seq_write(ctx->meta->seq, &inside, sizeof(inside));
	return 0;
}
