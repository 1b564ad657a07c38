/* Seeds as gcc compiles them: one function per form, built once per value of V by
 * gen-gcc-vectors.py (the kernel's codegen flags, see there). */
#ifndef V
#define V 16
#endif
struct s {
	unsigned int a;
	unsigned short b[8];
	signed char c;
	unsigned long d;
};

/* alloc_pipe_info: size > PIPE_DEF_BUFFERS * PAGE_SIZE - 1 */
int pipe_cmp(unsigned int size) { return size > V * 4096 - 1 ? 3 : 7; }
void store32(struct s *p) { p->a = V; }
void store16_indexed(struct s *p, long i) { p->b[i] = V * 3; }
void store8(struct s *p) { p->c = V + 100; }
void store_percpu(void) { *(volatile __seg_gs unsigned int *)0x30 = V; }
unsigned int load_imm(void) { return V * 4096; }
unsigned long add64(unsigned long x) { return x + V * 16; }
unsigned int mask_low(unsigned int x) { return x & ((1u << V) - 1); }
unsigned int shift_left(unsigned int x) { return x << V; }
unsigned long shift_right(unsigned long x) { return x >> V; }
long scaled_lea(long i, long j) { return i + j * 4 + V * 8 - 1; }
int mul_odd(int x) { return x * (V * 4 + 1); }
int signed_byte_cmp(struct s *p) { return p->c > V; }
unsigned int udiv32(unsigned int x) { return x / V; }
unsigned long udiv64(unsigned long x) { return x / V; }
unsigned int udiv_pow2(unsigned int x) { return x / V; }
long sdiv64(long x) { return x / V; }
/* The target module's division forms: the dividend loaded between the multiplier and the
 * mul; the 33-bit magic's add fix-up; signed division with a negative imm32 multiplier. */
unsigned long udiv64_load(const unsigned long *p) { return *(volatile const unsigned long *)p / V; }
unsigned int umod32(const unsigned long *p) { return (unsigned int)*(volatile const unsigned long *)p % V; }
int sdiv32(int x) { return x / V; }
extern void slow_path(void);
/* A branch consumer (kernel style: if (n > LIMIT) slow_path()). */
int branch_cmp(int n) { if (n > V) { slow_path(); return 1; } return 0; }
/* test $imm with a jump. */
int jump_test(unsigned char *flags) { if (*flags & V) { slow_path(); return 1; } return 0; }
/* A 16-bit store through a 32-bit register loaded with V sign-extended (gcc avoids movw $imm);
 * %ecx is dead after the store: the ret hands on %rax = i. */
unsigned long store16_narrow(struct s *p, unsigned long i) { p->b[i & 7] = V; return i; }
/* The same, but the register is %edx, which a ret may hand on (as the high half of a
 * 128-bit result): all 32 bits count. */
int store16_sum(struct s *p, int x) { short v = V; p->b[x & 7] = v; return x * v; }
/* A byte store; V larger than a byte is truncated. */
void store_byte(unsigned char *p) { *p = V; }
