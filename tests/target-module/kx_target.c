// SPDX-License-Identifier: GPL-2.0
/*
 * kx_target - a kernel module with known constants, the oracle of KernelX.
 *
 * Every KX_TARGET_* constant below reaches the machine code of exactly the
 * functions that name it, in one form KernelX's analysis must handle:
 * immediate loads, combining ops, compares, folded division and modulo, a
 * constant shared by two functions and an inlined helper, and a function that
 * blocks while a value derived from its constant is live.  Each function has
 * a file in /sys/kernel/debug/kx_target/ named like the function without its
 * kx_target_ prefix: write a number (decimal, 0x hex or negative) to set the
 * input, read to call the function on it and get the result.  The functions
 * are only ever called through the table at the end, so none is inlined,
 * cloned or specialised for a known input.
 *
 * In the comments, V is the constant's source value and IV the immediate the
 * compiler emitted for it; README.md lists the sites in the built module.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/compiler.h>
#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/kernel.h>
#include <linux/ktime.h>
#include <linux/minmax.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/percpu.h>
#include <linux/preempt.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/wait.h>

/* Immediate loads. */
#define KX_TARGET_IMM_REG	0x5eed1
#define KX_TARGET_IMM_REG64	0x1badcafe5eedf00dULL
#define KX_TARGET_IMM_ARG	0x3a7
#define KX_TARGET_STORE8	0xa7
#define KX_TARGET_STORE16	0xbeef
#define KX_TARGET_STORE32	0xc0ffee
#define KX_TARGET_STORE64	(-0x1234567LL)
#define KX_TARGET_PCPU		0x7e57

/* Combining ops. */
#define KX_TARGET_ADD		0x2a5
#define KX_TARGET_SUB		0x1d3
#define KX_TARGET_LEA		0x3c1
#define KX_TARGET_IMUL		1237
#define KX_TARGET_SHL		7
#define KX_TARGET_SHR		5
#define KX_TARGET_SAR		3
#define KX_TARGET_AND		0xff0ff0
#define KX_TARGET_OR		0x90000
#define KX_TARGET_XOR		0x5a5a5

/* Compares. */
#define KX_TARGET_CMP8		0x9c
#define KX_TARGET_CMP16		0x7abc
#define KX_TARGET_CMP32		0x13579
#define KX_TARGET_CMP64		0x2468ace0
#define KX_TARGET_TEST		0xf0f000

/* Division and modulo, compiled to multiplications by a magic reciprocal. */
#define KX_TARGET_DIV		13
#define KX_TARGET_MOD		1009
#define KX_TARGET_SDIV		7

/* One constant, two functions, one inlined helper. */
#define KX_TARGET_SHARED	0x5a5

/* Live across a sleep. */
#define KX_TARGET_BLOCK		0x6b1d

/* One constant in fifteen functions: a plan with many sites. */
#define KX_TARGET_FAN		0x1f5

/* Sizes of the arrays the stores index (not analysed). */
#define KX_SLOTS		8

/* The most calls one read of the loop file makes (not analysed). */
#define KX_LOOP_MAX		100000000ULL

/**
 * struct kx_target_rec - a record that kx_target_store64() writes into.
 * @tag: untouched, keeps @q off offset 0 so the store has a displacement.
 * @q: the 64-bit field that receives KX_TARGET_STORE64.
 */
struct kx_target_rec {
	u64 tag;
	s64 q;
};

struct kx_target_case;

/*
 * The loop file: which function a read of it runs, and how often.  Set by a
 * write, read by the next reads; the lock keeps the pair consistent.  Defined
 * before the variables the stores use, which gcc then lays out at the same
 * .bss offsets as before the loop file existed (README.md names them).
 */
static DEFINE_MUTEX(kx_target_loop_lock);
static struct kx_target_case *kx_target_loop_case;
static u64 kx_target_loop_count;
/* Where the loop's results go, so that no call's result is unused. */
static u64 kx_target_loop_sink;

static u8 kx_target_bytes[KX_SLOTS];
static u16 kx_target_words[KX_SLOTS];
static u32 kx_target_global32;
static struct kx_target_rec kx_target_recs[KX_SLOTS];
static DEFINE_PER_CPU(u32, kx_target_pcpu_val);

/* Bumped by the compares' taken branches so that the branches stay branches. */
static atomic64_t kx_target_above;

static DECLARE_WAIT_QUEUE_HEAD(kx_target_gate);
static atomic_long_t kx_target_releases;
static atomic_t kx_target_waiters;

/**
 * kx_target_imm_reg() - immediate load to a 32-bit register.
 * @in: the input.
 *
 * The constant is materialised in a register (mov $IV,%r32, IV = V) and only
 * then added, register to register, so the seed is the load itself.
 *
 * Return: @in + KX_TARGET_IMM_REG.
 */
static noinline u64 kx_target_imm_reg(const u64 *in)
{
	u64 v = KX_TARGET_IMM_REG;

	OPTIMIZER_HIDE_VAR(v);
	return READ_ONCE(*in) + v;
}

/**
 * kx_target_imm_reg64() - immediate load of a full 64-bit value to a register.
 * @in: the input.
 *
 * As kx_target_imm_reg(), but V needs all 64 bits: movabs $IV,%r64, IV = V.
 *
 * Return: @in + KX_TARGET_IMM_REG64 (mod 2^64).
 */
static noinline u64 kx_target_imm_reg64(const u64 *in)
{
	u64 v = KX_TARGET_IMM_REG64;

	OPTIMIZER_HIDE_VAR(v);
	return READ_ONCE(*in) + v;
}

/**
 * kx_target_sum() - an out-of-line adder that no caller's constant reaches.
 * @a: first addend.
 * @b: second addend.
 *
 * __noipa keeps gcc from propagating kx_target_imm_arg()'s constant into it.
 *
 * Return: @a + @b.
 */
static __noipa u64 kx_target_sum(u64 a, u64 b)
{
	return a + b;
}

/**
 * kx_target_imm_arg() - immediate load to an argument register before a call.
 * @in: the input.
 *
 * mov $IV,%esi (IV = V) right before the call to kx_target_sum(): the value
 * leaves the function through a call, the way a size reaches kmalloc().
 *
 * Return: 2 * (@in + KX_TARGET_IMM_ARG).
 */
static noinline u64 kx_target_imm_arg(const u64 *in)
{
	return 2 * kx_target_sum(READ_ONCE(*in), KX_TARGET_IMM_ARG);
}

/**
 * kx_target_store8() - 8-bit immediate store into an indexed global array.
 * @in: the slot, taken modulo KX_SLOTS.
 *
 * movb $IV,kx_target_bytes(%reg), IV = V.
 *
 * Return: the byte read back, KX_TARGET_STORE8.
 */
static noinline u64 kx_target_store8(const u64 *in)
{
	unsigned int slot = READ_ONCE(*in) % KX_SLOTS;

	WRITE_ONCE(kx_target_bytes[slot], KX_TARGET_STORE8);
	return READ_ONCE(kx_target_bytes[slot]);
}

/**
 * kx_target_store16() - 16-bit immediate store into an indexed global array.
 * @in: the slot, taken modulo KX_SLOTS.
 *
 * gcc tuned for speed avoids movw $imm16 (a length-changing prefix), so this
 * is mov $IV,%r32 with IV = V sign-extended from 16 bits, then a 16-bit
 * register store into kx_target_words[].
 *
 * Return: the word read back, KX_TARGET_STORE16.
 */
static noinline u64 kx_target_store16(const u64 *in)
{
	unsigned int slot = READ_ONCE(*in) % KX_SLOTS;

	WRITE_ONCE(kx_target_words[slot], KX_TARGET_STORE16);
	return READ_ONCE(kx_target_words[slot]);
}

/**
 * kx_target_store32() - 32-bit immediate store to a global variable.
 * @in: ignored.
 *
 * movl $IV,kx_target_global32(%rip), IV = V.
 *
 * Return: the value read back, KX_TARGET_STORE32.
 */
static noinline u64 kx_target_store32(const u64 *in)
{
	WRITE_ONCE(kx_target_global32, KX_TARGET_STORE32);
	return READ_ONCE(kx_target_global32);
}

/**
 * kx_target_store64() - 64-bit immediate store through a pointer.
 * @in: the record, taken modulo KX_SLOTS.
 *
 * movq $IV,disp(%reg) with a sign-extended imm32, IV = V (negative).
 *
 * Return: the field read back, KX_TARGET_STORE64 as a signed number.
 */
static noinline u64 kx_target_store64(const u64 *in)
{
	struct kx_target_rec *rec = &kx_target_recs[READ_ONCE(*in) % KX_SLOTS];

	WRITE_ONCE(rec->q, KX_TARGET_STORE64);
	return READ_ONCE(rec->q);
}

/**
 * kx_target_pcpu() - immediate store to a per-CPU variable.
 * @in: ignored.
 *
 * this_cpu_write() of the constant: movl $IV,%gs:kx_target_pcpu_val, IV = V.
 *
 * Return: this CPU's copy read back, KX_TARGET_PCPU.
 */
static noinline u64 kx_target_pcpu(const u64 *in)
{
	u64 v;

	preempt_disable();
	this_cpu_write(kx_target_pcpu_val, KX_TARGET_PCPU);
	v = this_cpu_read(kx_target_pcpu_val);
	preempt_enable();
	return v;
}

/**
 * kx_target_add() - add $IV to a register holding another input.
 * @in: the input.
 *
 * add $IV,%r64 after the load of *@in, IV = V.
 *
 * Return: @in + KX_TARGET_ADD (mod 2^64).
 */
static noinline u64 kx_target_add(const u64 *in)
{
	return READ_ONCE(*in) + KX_TARGET_ADD;
}

/**
 * kx_target_sub() - sub $IV from a register holding another input.
 * @in: the input.
 *
 * sub $IV,%r64 (or add $-IV), IV = V.
 *
 * Return: @in - KX_TARGET_SUB (mod 2^64).
 */
static noinline u64 kx_target_sub(const u64 *in)
{
	return READ_ONCE(*in) - KX_TARGET_SUB;
}

/**
 * kx_target_lea() - the constant as the displacement of a scaled lea.
 * @in: the input.
 *
 * lea IV(,%reg,4),%r64, IV = V.
 *
 * Return: 4 * @in + KX_TARGET_LEA (mod 2^64).
 */
static noinline u64 kx_target_lea(const u64 *in)
{
	return READ_ONCE(*in) * 4 + KX_TARGET_LEA;
}

/**
 * kx_target_imul() - multiplication by the constant.
 * @in: the input.
 *
 * imul $IV,%reg,%r64, IV = V.
 *
 * Return: @in * KX_TARGET_IMUL (mod 2^64).
 */
static noinline u64 kx_target_imul(const u64 *in)
{
	return READ_ONCE(*in) * KX_TARGET_IMUL;
}

/**
 * kx_target_shl() - left shift by the constant.
 * @in: the input.
 *
 * shl $IV,%r64, IV = V.
 *
 * Return: @in << KX_TARGET_SHL (mod 2^64).
 */
static noinline u64 kx_target_shl(const u64 *in)
{
	return READ_ONCE(*in) << KX_TARGET_SHL;
}

/**
 * kx_target_shr() - logical right shift by the constant.
 * @in: the input.
 *
 * shr $IV,%r64, IV = V (the form of ca->delay_min >> 3).
 *
 * Return: @in >> KX_TARGET_SHR.
 */
static noinline u64 kx_target_shr(const u64 *in)
{
	return READ_ONCE(*in) >> KX_TARGET_SHR;
}

/**
 * kx_target_sar() - arithmetic right shift of a 32-bit value.
 * @in: the input; its low 32 bits are used as a signed int.
 *
 * sar $IV,%r32, IV = V, then sign extension to 64 bits.
 *
 * Return: (s32)@in >> KX_TARGET_SAR, as a signed number.
 */
static noinline u64 kx_target_sar(const u64 *in)
{
	s32 x = READ_ONCE(*in);

	return (s64)(x >> KX_TARGET_SAR);
}

/**
 * kx_target_and() - mask with the constant.
 * @in: the input.
 *
 * and $IV,%r32 (32 bits suffice: the mask clears the upper half), IV = V.
 *
 * Return: @in & KX_TARGET_AND.
 */
static noinline u64 kx_target_and(const u64 *in)
{
	return READ_ONCE(*in) & KX_TARGET_AND;
}

/**
 * kx_target_or() - or with the constant.
 * @in: the input.
 *
 * or $IV,%r64, IV = V.
 *
 * Return: @in | KX_TARGET_OR.
 */
static noinline u64 kx_target_or(const u64 *in)
{
	return READ_ONCE(*in) | KX_TARGET_OR;
}

/**
 * kx_target_xor() - xor with the constant.
 * @in: the input.
 *
 * xor $IV,%r64, IV = V.
 *
 * Return: @in ^ KX_TARGET_XOR.
 */
static noinline u64 kx_target_xor(const u64 *in)
{
	return READ_ONCE(*in) ^ KX_TARGET_XOR;
}

/**
 * kx_target_cmp8() - 8-bit compare with a memory operand feeding setcc.
 * @in: the input; its low byte is compared.
 *
 * cmpb $IV,(%rdi) then seta, IV = V (an imm8 with the sign bit set).
 *
 * Return: 1 if (u8)@in > KX_TARGET_CMP8, else 0.
 */
static noinline u64 kx_target_cmp8(const u64 *in)
{
	return *(const u8 *)in > KX_TARGET_CMP8;
}

/**
 * kx_target_cmp16() - 16-bit compare feeding a conditional branch.
 * @in: the input; its low 16 bits are compared.
 *
 * cmp $IV,%r16 then ja/jbe, IV = V.  The taken side counts in
 * kx_target_above, which keeps gcc from turning the branch into setcc.
 *
 * Return: 1 if (u16)@in > KX_TARGET_CMP16, else 0.
 */
static noinline u64 kx_target_cmp16(const u64 *in)
{
	u16 x = READ_ONCE(*in);

	if (x > KX_TARGET_CMP16) {
		atomic64_inc(&kx_target_above);
		return 1;
	}
	return 0;
}

/**
 * kx_target_cmp32() - 32-bit compare feeding setcc, folded to V - 1.
 * @in: the input; its low 32 bits are compared.
 *
 * x < V becomes cmp $IV,%r32 then setbe, IV = V - 1.
 *
 * Return: 1 if (u32)@in < KX_TARGET_CMP32, else 0.
 */
static noinline u64 kx_target_cmp32(const u64 *in)
{
	u32 x = READ_ONCE(*in);

	return x < KX_TARGET_CMP32;
}

/**
 * kx_target_cmp64() - 64-bit compare feeding a conditional branch.
 * @in: the input.
 *
 * x >= V becomes cmp $IV,%r64 (sign-extended imm32) then ja/jbe, IV = V - 1.
 *
 * Return: 1 if @in >= KX_TARGET_CMP64, else 0.
 */
static noinline u64 kx_target_cmp64(const u64 *in)
{
	if (READ_ONCE(*in) >= KX_TARGET_CMP64) {
		atomic64_inc(&kx_target_above);
		return 1;
	}
	return 0;
}

/**
 * kx_target_test() - test with the constant as a bit mask, feeding setcc.
 * @in: the input.
 *
 * test $IV,%r32 then setne, IV = V.
 *
 * Return: 1 if @in & KX_TARGET_TEST is non-zero, else 0.
 */
static noinline u64 kx_target_test(const u64 *in)
{
	return (READ_ONCE(*in) & KX_TARGET_TEST) != 0;
}

/**
 * kx_target_div() - unsigned 64-bit division by the constant.
 * @in: the input.
 *
 * A multiply by the magic reciprocal of V (movabs + mul) and a shift of the
 * high half: neither immediate is an affine function of V.
 *
 * Return: @in / KX_TARGET_DIV.
 */
static noinline u64 kx_target_div(const u64 *in)
{
	return READ_ONCE(*in) / KX_TARGET_DIV;
}

/**
 * kx_target_mod() - unsigned 32-bit modulo by the constant.
 * @in: the input; its low 32 bits are used.
 *
 * The quotient by magic multiply and shift, then imul $IV (IV = V) and a
 * subtraction: the constant appears both folded and plain.
 *
 * Return: (u32)@in % KX_TARGET_MOD.
 */
static noinline u64 kx_target_mod(const u64 *in)
{
	u32 x = READ_ONCE(*in);

	return x % KX_TARGET_MOD;
}

/**
 * kx_target_sdiv() - signed 32-bit division by the constant.
 * @in: the input; its low 32 bits are used as a signed int.
 *
 * Magic multiply, shift and the sign correction of signed division.
 *
 * Return: (s32)@in / KX_TARGET_SDIV (rounded toward zero), as a signed number.
 */
static noinline u64 kx_target_sdiv(const u64 *in)
{
	s32 x = READ_ONCE(*in);

	return (s64)(x / KX_TARGET_SDIV);
}

/*
 * Inlined into both kx_target_shared_a() and kx_target_shared_b(): its copies
 * are sites of the constant in each of them.
 */
static __always_inline u64 kx_target_shared_cap(u64 x)
{
	return min_t(u64, x, KX_TARGET_SHARED);
}

/**
 * kx_target_shared_a() - a shared constant through an inlined helper.
 * @in: the input.
 *
 * kx_target_shared_cap() inlined: mov $IV,%r32 (IV = V) read by a
 * register cmp and the cmov that picks the minimum.
 *
 * Return: min(@in, KX_TARGET_SHARED).
 */
static noinline u64 kx_target_shared_a(const u64 *in)
{
	return kx_target_shared_cap(READ_ONCE(*in));
}

/**
 * kx_target_shared_b() - the same constant, inlined helper plus a direct use.
 * @in: the input.
 *
 * kx_target_shared_cap() inlined as in kx_target_shared_a(), then an add of
 * the same constant, IV = V everywhere.
 *
 * Return: min(@in, KX_TARGET_SHARED) + KX_TARGET_SHARED.
 */
static noinline u64 kx_target_shared_b(const u64 *in)
{
	return kx_target_shared_cap(READ_ONCE(*in)) + KX_TARGET_SHARED;
}

/*
 * kx_target_fan1() ... kx_target_fan15() - one constant in fifteen functions.
 * @in: the input.
 *
 * xor $n,%r64 (n = 1..15, which keeps the functions distinct so that none is
 * folded into another), then add $IV,%r64, IV = V.
 *
 * Return: (@in ^ n) + KX_TARGET_FAN (mod 2^64).
 */
#define KX_FAN_FN(n)							\
	static noinline u64 kx_target_fan##n(const u64 *in)		\
	{								\
		return (READ_ONCE(*in) ^ n) + KX_TARGET_FAN;		\
	}

KX_FAN_FN(1)
KX_FAN_FN(2)
KX_FAN_FN(3)
KX_FAN_FN(4)
KX_FAN_FN(5)
KX_FAN_FN(6)
KX_FAN_FN(7)
KX_FAN_FN(8)
KX_FAN_FN(9)
KX_FAN_FN(10)
KX_FAN_FN(11)
KX_FAN_FN(12)
KX_FAN_FN(13)
KX_FAN_FN(14)
KX_FAN_FN(15)

static bool kx_target_released(long generation)
{
	return atomic_long_read(&kx_target_releases) != generation;
}

/**
 * kx_target_block() - sleep while a value derived from the constant is live.
 * @in: the input.
 *
 * Computes @in + V (IV = V) into a callee-saved register, then sleeps until
 * the next write to debugfs ``release`` (or a signal), then returns the value.
 * A task blocked here has a return address inside the constant's safe span;
 * its open file keeps the module loaded.
 *
 * Context: process context, sleeps.
 * Return: @in + KX_TARGET_BLOCK (mod 2^64).
 */
static noinline u64 kx_target_block(const u64 *in)
{
	u64 budget = READ_ONCE(*in) + KX_TARGET_BLOCK;
	long generation = atomic_long_read(&kx_target_releases);

	atomic_inc(&kx_target_waiters);
	wait_event_interruptible(kx_target_gate,
				 kx_target_released(generation));
	atomic_dec(&kx_target_waiters);
	return budget;
}

/**
 * struct kx_target_case - one debugfs file and the function behind it.
 * @name: the file's name.
 * @fn: the function; it reads its input through the pointer it is given.
 * @is_signed: the result is printed as a signed number.
 * @in: the value last written to the file.
 */
struct kx_target_case {
	const char *name;
	u64 (*fn)(const u64 *in);
	bool is_signed;
	u64 in;
};

#define KX_CASE(_name, _fn, _signed) \
	{ .name = _name, .fn = _fn, .is_signed = _signed }

static struct kx_target_case kx_target_cases[] = {
	KX_CASE("imm_reg", kx_target_imm_reg, false),
	KX_CASE("imm_reg64", kx_target_imm_reg64, false),
	KX_CASE("imm_arg", kx_target_imm_arg, false),
	KX_CASE("store8", kx_target_store8, false),
	KX_CASE("store16", kx_target_store16, false),
	KX_CASE("store32", kx_target_store32, false),
	KX_CASE("store64", kx_target_store64, true),
	KX_CASE("pcpu", kx_target_pcpu, false),
	KX_CASE("add", kx_target_add, false),
	KX_CASE("sub", kx_target_sub, false),
	KX_CASE("lea", kx_target_lea, false),
	KX_CASE("imul", kx_target_imul, false),
	KX_CASE("shl", kx_target_shl, false),
	KX_CASE("shr", kx_target_shr, false),
	KX_CASE("sar", kx_target_sar, true),
	KX_CASE("and", kx_target_and, false),
	KX_CASE("or", kx_target_or, false),
	KX_CASE("xor", kx_target_xor, false),
	KX_CASE("cmp8", kx_target_cmp8, false),
	KX_CASE("cmp16", kx_target_cmp16, false),
	KX_CASE("cmp32", kx_target_cmp32, false),
	KX_CASE("cmp64", kx_target_cmp64, false),
	KX_CASE("test", kx_target_test, false),
	KX_CASE("div", kx_target_div, false),
	KX_CASE("mod", kx_target_mod, false),
	KX_CASE("sdiv", kx_target_sdiv, true),
	KX_CASE("shared_a", kx_target_shared_a, false),
	KX_CASE("shared_b", kx_target_shared_b, false),
	KX_CASE("block", kx_target_block, false),
	KX_CASE("fan1", kx_target_fan1, false),
	KX_CASE("fan2", kx_target_fan2, false),
	KX_CASE("fan3", kx_target_fan3, false),
	KX_CASE("fan4", kx_target_fan4, false),
	KX_CASE("fan5", kx_target_fan5, false),
	KX_CASE("fan6", kx_target_fan6, false),
	KX_CASE("fan7", kx_target_fan7, false),
	KX_CASE("fan8", kx_target_fan8, false),
	KX_CASE("fan9", kx_target_fan9, false),
	KX_CASE("fan10", kx_target_fan10, false),
	KX_CASE("fan11", kx_target_fan11, false),
	KX_CASE("fan12", kx_target_fan12, false),
	KX_CASE("fan13", kx_target_fan13, false),
	KX_CASE("fan14", kx_target_fan14, false),
	KX_CASE("fan15", kx_target_fan15, false),
};

static ssize_t kx_target_case_read(struct file *file, char __user *buf,
				   size_t len, loff_t *ppos)
{
	struct kx_target_case *c = file->private_data;
	char text[24];
	u64 in, out;
	int n;

	/* One result per read from the start: cat's second read sees EOF. */
	if (*ppos)
		return 0;
	in = READ_ONCE(c->in);
	out = c->fn(&in);
	if (signal_pending(current))
		return -EINTR;
	if (c->is_signed)
		n = scnprintf(text, sizeof(text), "%lld\n", (s64)out);
	else
		n = scnprintf(text, sizeof(text), "%llu\n", out);
	return simple_read_from_buffer(buf, len, ppos, text, n);
}

static ssize_t kx_target_case_write(struct file *file, const char __user *buf,
				    size_t len, loff_t *ppos)
{
	struct kx_target_case *c = file->private_data;
	u64 in;
	s64 sin;
	int err;

	err = kstrtou64_from_user(buf, len, 0, &in);
	if (err) {
		err = kstrtos64_from_user(buf, len, 0, &sin);
		if (err)
			return err;
		in = sin;
	}
	WRITE_ONCE(c->in, in);
	return len;
}

static const struct file_operations kx_target_case_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.read = kx_target_case_read,
	.write = kx_target_case_write,
	.llseek = default_llseek,
};

static ssize_t kx_target_release_write(struct file *file,
				       const char __user *buf, size_t len,
				       loff_t *ppos)
{
	atomic_long_inc(&kx_target_releases);
	wake_up_all(&kx_target_gate);
	return len;
}

static const struct file_operations kx_target_release_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.write = kx_target_release_write,
	.llseek = noop_llseek,
};

static ssize_t kx_target_waiters_read(struct file *file, char __user *buf,
				      size_t len, loff_t *ppos)
{
	char text[16];
	int n;

	n = scnprintf(text, sizeof(text), "%d\n",
		      atomic_read(&kx_target_waiters));
	return simple_read_from_buffer(buf, len, ppos, text, n);
}

static const struct file_operations kx_target_waiters_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.read = kx_target_waiters_read,
	.llseek = default_llseek,
};

static ssize_t kx_target_loop_write(struct file *file, const char __user *buf,
				    size_t len, loff_t *ppos)
{
	struct kx_target_case *found = NULL;
	char text[48], *name, *count_text;
	u64 count;
	size_t i;
	int err;

	if (len >= sizeof(text))
		return -EINVAL;
	if (copy_from_user(text, buf, len))
		return -EFAULT;
	text[len] = '\0';
	name = strim(text);
	count_text = strchr(name, ' ');
	if (!count_text)
		return -EINVAL;
	*count_text++ = '\0';
	err = kstrtou64(strim(count_text), 0, &count);
	if (err)
		return err;
	if (!count || count > KX_LOOP_MAX)
		return -ERANGE;
	for (i = 0; i < ARRAY_SIZE(kx_target_cases); i++)
		if (!strcmp(kx_target_cases[i].name, name))
			found = &kx_target_cases[i];
	/* block sleeps until released: a loop of it would hang. */
	if (!found || found->fn == kx_target_block)
		return -EINVAL;
	mutex_lock(&kx_target_loop_lock);
	kx_target_loop_case = found;
	kx_target_loop_count = count;
	mutex_unlock(&kx_target_loop_lock);
	return len;
}

static ssize_t kx_target_loop_read(struct file *file, char __user *buf,
				   size_t len, loff_t *ppos)
{
	struct kx_target_case *c;
	u64 count, i, in, sink = 0, start, elapsed;
	char text[24];
	int n;

	if (*ppos)
		return 0;
	mutex_lock(&kx_target_loop_lock);
	c = kx_target_loop_case;
	count = kx_target_loop_count;
	mutex_unlock(&kx_target_loop_lock);
	if (!c)
		return -ENODATA;
	in = READ_ONCE(c->in);
	start = ktime_get_ns();
	for (i = 0; i < count; i++) {
		sink += c->fn(&in);
		/* Long loops must let others run (no soft lockup). */
		if ((i & 1023) == 1023)
			cond_resched();
	}
	elapsed = ktime_get_ns() - start;
	WRITE_ONCE(kx_target_loop_sink, sink);
	n = scnprintf(text, sizeof(text), "%llu\n", elapsed);
	return simple_read_from_buffer(buf, len, ppos, text, n);
}

static const struct file_operations kx_target_loop_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.read = kx_target_loop_read,
	.write = kx_target_loop_write,
	.llseek = default_llseek,
};

static struct dentry *kx_target_dir;

static int __init kx_target_init(void)
{
	size_t i;

	kx_target_dir = debugfs_create_dir(KBUILD_MODNAME, NULL);
	if (IS_ERR(kx_target_dir)) {
		pr_err("cannot create debugfs directory: %ld\n",
		       PTR_ERR(kx_target_dir));
		return PTR_ERR(kx_target_dir);
	}
	for (i = 0; i < ARRAY_SIZE(kx_target_cases); i++)
		debugfs_create_file(kx_target_cases[i].name, 0600,
				    kx_target_dir, &kx_target_cases[i],
				    &kx_target_case_fops);
	debugfs_create_file("release", 0200, kx_target_dir, NULL,
			    &kx_target_release_fops);
	debugfs_create_file("waiters", 0400, kx_target_dir, NULL,
			    &kx_target_waiters_fops);
	debugfs_create_file("loop", 0600, kx_target_dir, NULL,
			    &kx_target_loop_fops);
	pr_info("%zu functions under debugfs %s/\n",
		ARRAY_SIZE(kx_target_cases), KBUILD_MODNAME);
	return 0;
}

/*
 * No task can sleep in kx_target_block() here: its open file holds a
 * reference to the module (.owner), so rmmod fails with EBUSY until the
 * reader is released.
 */
static void __exit kx_target_exit(void)
{
	debugfs_remove(kx_target_dir);
}

module_init(kx_target_init);
module_exit(kx_target_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("KernelX target: functions with known constants, for tests");
