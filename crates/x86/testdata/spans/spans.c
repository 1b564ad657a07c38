/* Probe placement (tests/placement.rs) and Safe Spans (tests/slice.rs) of every seed: a cmp
 * consumed by a jcc, an immediate load used three instructions later (with and without an
 * lfence in between), values stored to a global, passed to a call, returned on two paths,
 * passed to a tail call, live into a .cold part, kept in a stack slot across a call, and a
 * seed inside a .cold part. */
// values: 16 32 64
// expect: place cmp_jcc+0x9..0xf -> 0xf int3 [0xf:int3] stop consumer@0xf  # ja reads the flags
// expect: place imm_use+0x9..0xe -> 0xe optimized [0xe:optimized 0x11:optimized 0x15:int3] stop consumer@0x15
// expect: place fence_between+0x9..0xe -> 0x11 optimized [0xe:int3 0x11:optimized 0x14:optimized 0x18:int3] stop consumer@0x18  # lfence at 0xe
// expect: place store_global+0x9..0xc -> 0xc optimized [0xc:optimized] stop consumer@0xc
// expect: place pass_to_call+0xb..0xe -> 0xe int3 [0xe:int3] stop consumer@0xe  # the call reads %edi
// expect: place two_returns+0xa..0xd -> 0xd int3 [0xd:int3 0x10:int3] stop transfer@0x10  # jg in both regions
// expect: place tail_call+0x9..0xe -> 0xe int3 [0xe:int3] stop consumer@0xe
// expect: place cold_part+0xb..0xe -> 0xe optimized [0xe:optimized] stop consumer@0xe  # cmp rewrites the flags
// expect: place stack_slot+0x11..0x19 -> 0x19 int3 [0x19:int3] stop consumer@0x19
// expect: place cold_seed.cold+0x1..0x6 -> 0x6 int3 [0x6:int3 0xa:int3] stop consumer@0xa  # a seed in a .cold part
// expect: probe cmp_jcc+0x0 ftrace at 0x4 ftrace-site
// expect: probe cmp_jcc+0x2 refused not-boundary
// expect: probe cmp_jcc+0x9 optimized  # the cmp itself: 6 bytes
// expect: probe cmp_jcc+0xf int3 not-boostable:ja@0xf not-boostable:jmp@0x13 +reloc:__x86_return_thunk@0x13
// expect: probe store_global+0xc optimized +reloc:global_count@0xc +rip@0xc
// expect: span cmp_jcc+0x9..0xf ranges 0x9..0x18,0x20..0x31 exits 0x13:return,0x2c:return escapes 0x13:returned(rax),0x2c:returned(rax) branches 0xf
// expect: span imm_use+0x9..0xe ranges 0x9..0x1d exits 0x18:return escapes 0x18:returned(rax)
// expect: span fence_between+0x9..0xe ranges 0x9..0x20 exits 0x1b:return escapes 0x1b:returned(rax)
// expect: span store_global+0x9..0xc ranges 0x9..0x17 exits 0x12:return escapes 0xc:stored
// expect: span pass_to_call+0xb..0xe ranges 0xb..0x1b exits 0x16:return escapes 0xe:call:callee(rdi),0x16:returned(rax)
// expect: span two_returns+0xa..0xd ranges 0xa..0x1d,0x20..0x30 exits 0x18:return,0x2b:return escapes 0x18:returned(rax),0x2b:returned(rax)
// expect: span tail_call+0x9..0xe ranges 0x9..0x13 exits 0xe:tail:callee escapes 0xe:tail:callee(rsi)
// expect: span cold_part+0xb..0xe ranges 0xb..0x22 exits 0x14:cold:cold_part.cold,0x1d:return escapes 0x14:cold:cold_part.cold,0x1d:returned(rax)
// expect: span cold_seed.cold+0x1..0x6 ranges 0x1..0x19 exits 0x14:return escapes 0xa:call:slow_path2(rsi)
// expect: span stack_slot+0x11..0x19 ranges 0x11..0x2e exits 0x29:return escapes 0x29:returned(rax)  # via the slot at 0x4(%rsp), across the call

extern int sink(int x);
extern int callee(int a, int b);
extern void slow_path(int x) __attribute__((cold));
extern void slow_path2(int x, int v) __attribute__((cold));
int global_count;

int cmp_jcc(unsigned int n, int *p)
{
	if (n >= V * 4096)
		return p[1] + sink(n);
	return p[0];
}

long imm_use(long a, long b)
{
	long k = V;

	asm volatile("" : "+r"(k));
	return (a + b) * 3 + k;
}

long fence_between(long a, long b)
{
	long k = V;

	asm volatile("" : "+r"(k));
	asm volatile("lfence");
	return (a + b) * 3 + k;
}

void store_global(int n)
{
	global_count = n * V;
}

int pass_to_call(int n)
{
	return callee(n + V, n) + 1;
}

int two_returns(int a, int b)
{
	int x = a + V;

	if (b > 100)
		return sink(b) * x;
	return x * b;
}

int tail_call(int a)
{
	return callee(a, V);
}

int cold_part(int a)
{
	int x = a * V;

	if (a > 1000) {
		slow_path(x);
		return -1;
	}
	return x + 1;
}

int stack_slot(int a, int *p)
{
	volatile int k = V;

	sink(a);
	return k + *p;
}

int cold_seed(int x)
{
	if (x > 1000) {
		slow_path2(x, V);
		return x;
	}
	return x + 1;
}
