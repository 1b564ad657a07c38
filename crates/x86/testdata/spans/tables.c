/* The kernel tables and sections that decide probe sites, in top-level assembly so that the
 * offsets are exact: a .cold part jumping back into a probe's five bytes, an exception-table
 * entry, static-key / static-call / alternative / SMP-lock sites, blacklisted sections and
 * symbols, and the inclusive bound of insn_jump_into_range. */
// values: 16 32 64
// expect: place asm_cold+0x8..0xd -> none [0xd:unsafe] stop target@0xf  # .cold re-enters at 0xf
// expect: span asm_cold+0x8..0xd ranges 0x8..0x17 exits 0x16:return escapes 0x16:returned(rax)
// expect: probe asm_cold+0x2 int3 not-boostable:js@0x2 +reloc:asm_cold.cold@0x2
// expect: probe asm_cold+0xd unsafe foreign-jump:asm_cold.cold+0x2->0xf
// expect: probe asm_cold.cold+0x0 int3 not-boostable:jmp@0x2 +reloc:asm_cold+0xf@0x2
// expect: probe asm_patched+0x0 ftrace at 0x4 ftrace-site  # past endbr64, onto __fentry__
// expect: probe asm_patched+0x4 ftrace ftrace-site
// expect: probe asm_patched+0x9 optimized +up-lock@0xc  # region 0x9..0xf; lock incl boosts
// expect: probe asm_patched+0xc int3 reserved-jump-label@0xf +up-lock@0xc
// expect: probe asm_patched+0xf refused on-jump-label@0xf
// expect: probe asm_patched+0x14 refused on-static-call@0x14
// expect: probe asm_patched+0x19 optimized +alt@0x19..0x1c
// expect: probe asm_patched+0x1c int3 too-close:4
// expect: probe asm_extable+0x0 int3 extable@0x3
// expect: probe asm_jumps+0x4 int3 jump-into:0x2->0x9  # 0x9 = 0x4 + 5: inclusive bound
// expect: probe asm_jumps+0x9 optimized
// expect: probe asm_nokprobe+0x0 refused nokprobe:asm_nokprobe
// expect: probe asm_noinstr+0x0 refused blacklisted:.noinstr.text

#define STR_(x) #x
#define STR(x) STR_(x)

asm(
"	.pushsection .text, \"ax\"\n"
/* asm_cold: the post-probe's only candidate (0xd) is unsafe: asm_cold.cold jumps back to 0xf,
 * inside the jump an optimized probe at 0xd writes, and the kernel does not look there. */
"	.globl asm_cold\n"
"	.type asm_cold, @function\n"
"asm_cold:\n"
"	test %edi, %edi\n"			/* 0x0 */
"	js asm_cold.cold\n"			/* 0x2 */
"	mov $" STR(V) ", %eax\n"		/* 0x8: the seed */
"	mov %edi, %ecx\n"			/* 0xd */
".Lback:\n"
"	lea 1(%rcx), %edx\n"			/* 0xf */
"	add %eax, %edx\n"			/* 0x12 */
"	mov %edx, %eax\n"			/* 0x14 */
"	ret\n"					/* 0x16 */
"	.size asm_cold, .-asm_cold\n"
"	.pushsection .text.unlikely, \"ax\"\n"
"	.type asm_cold.cold, @function\n"
"asm_cold.cold:\n"
"	xor %ecx, %ecx\n"
"	jmp .Lback\n"
"	.size asm_cold.cold, .-asm_cold.cold\n"
"	.popsection\n"

/* asm_patched: text the kernel patches or reserves. */
"	.globl asm_patched\n"
"	.type asm_patched, @function\n"
"asm_patched:\n"
"	endbr64\n"				/* 0x0 */
"	call __fentry__\n"			/* 0x4: ftrace site */
"	mov %rdi, %rax\n"			/* 0x9 */
".Llock:\n"
"	lock incl (%rdx)\n"			/* 0xc: .smp_locks */
".Lkey:\n"
"	.byte 0x0f, 0x1f, 0x44, 0x00, 0x00\n"	/* 0xf: static-key NOP, __jump_table */
"	call __SCT__tp_func_x\n"		/* 0x14: static call */
".Lalt:\n"
"	mov %rsi, %rcx\n"			/* 0x19: alternative */
"	add %rcx, %rax\n"			/* 0x1c */
".Lkey_target:\n"
"	ret\n"					/* 0x1f */
"	.size asm_patched, .-asm_patched\n"
"	.pushsection .smp_locks, \"a\"\n"
"	.balign 4\n"
"	.long .Llock - .\n"
"	.popsection\n"
"	.pushsection __jump_table, \"aw\"\n"
"	.balign 8\n"
"	.long .Lkey - ., .Lkey_target - .\n"
"	.quad 0\n"
"	.popsection\n"
"	.pushsection .altinstr_replacement, \"ax\"\n"
".Lrepl:\n"
"	mov %rdx, %rcx\n"
"	.popsection\n"
"	.pushsection .altinstructions, \"a\"\n"
"	.long .Lalt - ., .Lrepl - .\n"
"	.4byte 0\n"
"	.byte 3, 3\n"
"	.popsection\n"

/* asm_extable: an exception-table entry anywhere keeps the whole function from optimizing. */
"	.globl asm_extable\n"
"	.type asm_extable, @function\n"
"asm_extable:\n"
"	mov %rdi, %rax\n"			/* 0x0 */
".Lfault:\n"
"	mov (%rsi), %ecx\n"			/* 0x3 */
"	add %ecx, %eax\n"			/* 0x5 */
"	nopl 0x0(%rax,%rax,1)\n"		/* 0x7 */
"	ret\n"					/* 0xc */
"	.size asm_extable, .-asm_extable\n"
"	.pushsection __ex_table, \"a\"\n"
"	.balign 4\n"
"	.long .Lfault - ., .Lfault - ., 0\n"
"	.popsection\n"

/* asm_jumps: a jump to exactly probe + 5 blocks the optimization (inclusive bound). */
"	.globl asm_jumps\n"
"	.type asm_jumps, @function\n"
"asm_jumps:\n"
"	test %edi, %edi\n"			/* 0x0 */
"	je .Lskip\n"				/* 0x2 */
"	mov $1, %eax\n"				/* 0x4 */
".Lskip:\n"
"	mov %esi, %edx\n"			/* 0x9 */
"	add %edx, %eax\n"			/* 0xb */
"	nopl 0x0(%rax,%rax,1)\n"		/* 0xd */
"	ret\n"					/* 0x12 */
"	.size asm_jumps, .-asm_jumps\n"

/* NOKPROBE_SYMBOL(asm_nokprobe) */
"	.globl asm_nokprobe\n"
"	.type asm_nokprobe, @function\n"
"asm_nokprobe:\n"
"	mov %rdi, %rax\n"
"	nopl 0x0(%rax,%rax,1)\n"
"	ret\n"
"	.size asm_nokprobe, .-asm_nokprobe\n"
"	.pushsection _kprobe_blacklist, \"aw\"\n"
"	.balign 8\n"
"	.quad asm_nokprobe\n"
"	.popsection\n"
"	.popsection\n"

/* noinstr */
"	.pushsection .noinstr.text, \"ax\"\n"
"	.globl asm_noinstr\n"
"	.type asm_noinstr, @function\n"
"asm_noinstr:\n"
"	mov %rdi, %rax\n"
"	nopl 0x0(%rax,%rax,1)\n"
"	ret\n"
"	.size asm_noinstr, .-asm_noinstr\n"
"	.popsection\n"
);
