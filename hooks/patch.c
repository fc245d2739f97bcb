/* x86-64 entry patching: capstone decodes a function's first instructions, they move (relocated exactly) to a trampoline within +-2 GB, and a jmp rel32 replaces them. */
#include "patch.h"

#if defined(__x86_64__)

#include <capstone/capstone.h>
#include <dlfcn.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define JMP_LEN    5                 /* jmp rel32: what the entry becomes */
#define MOVED_MAX  8                 /* instructions a 5-byte window can hold, with room */
#define TRAMP_SIZE 128
#define CHUNK_SIZE (64u * 1024u)
#define REACH      ((int64_t)1 << 31) /* what a rel32 reaches */

/* capstone, looked up only when TRACEAGENT_FUNCTIONS is set: other processes never load it. */
static struct {
	cs_err (*open)(cs_arch, cs_mode, csh *);
	cs_err (*option)(csh, cs_opt_type, size_t);
	size_t (*disasm)(csh, const uint8_t *, size_t, uint64_t, size_t, cs_insn **);
	void (*free)(cs_insn *, size_t);
	csh h;
	bool ok;
} cs;

const char *patch_init(void)
{
	if (cs.ok)
		return NULL;
	void *lib = dlopen("libcapstone.so.4", RTLD_NOW | RTLD_LOCAL);
	if (!lib)
		return "the x86-64 decoder libcapstone.so.4 (Debian package libcapstone4) is not installed";
	cs.open = (cs_err(*)(cs_arch, cs_mode, csh *))dlsym(lib, "cs_open");
	cs.option = (cs_err(*)(csh, cs_opt_type, size_t))dlsym(lib, "cs_option");
	cs.disasm = (size_t(*)(csh, const uint8_t *, size_t, uint64_t, size_t, cs_insn **))dlsym(lib, "cs_disasm");
	cs.free = (void (*)(cs_insn *, size_t))dlsym(lib, "cs_free");
	if (!cs.open || !cs.option || !cs.disasm || !cs.free || cs.open(CS_ARCH_X86, CS_MODE_64, &cs.h) != CS_ERR_OK ||
	    cs.option(cs.h, CS_OPT_DETAIL, CS_OPT_ON) != CS_ERR_OK)
		return "libcapstone.so.4 could not be used";
	cs.ok = true;
	return NULL;
}

enum moved_kind { MOVE_COPY, MOVE_RIPREL, MOVE_JMP, MOVE_JCC, MOVE_CALL };

struct moved {
	uint8_t bytes[16];
	uint8_t size;
	uint8_t kind;        /* enum moved_kind */
	uint8_t cc;          /* MOVE_JCC: the condition nibble */
	uint8_t disp_at;     /* MOVE_RIPREL: offset of the rel32 displacement */
	uint64_t target;     /* the absolute address it refers to */
};

/* What the entry patch displaces: from start (after an endbr64, which stays
 * so indirect calls still land on it) for len bytes. */
struct plan {
	uintptr_t start;
	size_t len;
	unsigned n;
	struct moved m[MOVED_MAX];
};

static bool has_group(const cs_insn *in, uint8_t g)
{
	for (unsigned i = 0; i < in->detail->groups_count; i++)
		if (in->detail->groups[i] == g)
			return true;
	return false;
}

static bool is_branch(const cs_insn *in)
{
	return has_group(in, X86_GRP_JUMP) || has_group(in, X86_GRP_CALL);
}

/* The target of a relative branch (an immediate operand), or 0. */
static uint64_t branch_target(const cs_insn *in)
{
	const cs_x86 *x = &in->detail->x86;
	return is_branch(in) && x->op_count == 1 && x->operands[0].type == X86_OP_IMM ? (uint64_t)x->operands[0].imm : 0;
}

/* One displaced instruction: NULL, or why it cannot move. */
static const char *classify(const cs_insn *in, struct moved *m)
{
	const cs_x86 *x = &in->detail->x86;
	memset(m, 0, sizeof *m);
	memcpy(m->bytes, in->bytes, in->size);
	m->size = (uint8_t)in->size;
	if (has_group(in, X86_GRP_RET) || has_group(in, X86_GRP_INT) || has_group(in, X86_GRP_IRET))
		return "it returns within the bytes the patch replaces (too short)";
	uint64_t t = branch_target(in);
	if (t) {
		m->target = t;
		const uint8_t *b = in->bytes;
		if (in->id == X86_INS_JMP && (b[0] == 0xeb || b[0] == 0xe9))
			m->kind = MOVE_JMP;
		else if (in->id == X86_INS_CALL && b[0] == 0xe8)
			m->kind = MOVE_CALL;
		else if (b[0] >= 0x70 && b[0] <= 0x7f)
			m->kind = MOVE_JCC, m->cc = b[0] & 0xf;
		else if (b[0] == 0x0f && b[1] >= 0x80 && b[1] <= 0x8f)
			m->kind = MOVE_JCC, m->cc = b[1] & 0xf;
		else
			return "a relative branch in its first bytes that cannot be moved (loop, jrcxz or a prefixed form)";
		return NULL;
	}
	/* Its return address would point into the trampoline, where an unwinder
	 * finds no unwind information (a C++ exception would terminate). */
	if (has_group(in, X86_GRP_CALL))
		return "an indirect call in the bytes the patch replaces";
	for (unsigned i = 0; i < x->op_count; i++) {
		if (x->operands[i].type != X86_OP_MEM || x->operands[i].mem.base != X86_REG_RIP)
			continue;
		if (x->encoding.disp_size != 4 || !x->encoding.disp_offset)
			return "a RIP-relative operand capstone gives no displacement for";
		m->kind = MOVE_RIPREL;
		m->disp_at = x->encoding.disp_offset;
		m->target = in->address + in->size + (uint64_t)(int64_t)x->disp;
		return NULL;
	}
	m->kind = MOVE_COPY;
	return NULL;
}

/*
 * The length of a CET shadow-stack instruction, or 0: rdssp (F3 [REX] 0F 1E
 * /1), which capstone 4 does not know, and incssp (F3 [REX] 0F AE /5), which
 * it decodes as lfence with the right length (kept here should another
 * version not), each with a register operand. libgcc's unwinder uses them;
 * neither is a branch.
 */
static size_t shadow_stack_insn(const uint8_t *b, size_t n)
{
	size_t i = n > 1 && (b[1] & 0xf0) == 0x40 ? 2 : 1;
	if (n < i + 3 || b[0] != 0xf3 || b[i] != 0x0f)
		return 0;
	uint8_t op = b[i + 1], modrm = b[i + 2] & 0xf8;
	return (op == 0x1e && modrm == 0xc8) || (op == 0xae && modrm == 0xe8) ? i + 3 : 0;
}

/* Plans the move of the instructions the jump displaces, and checks that no
 * branch of the whole function lands inside them. capstone stops at an
 * instruction it does not know: the body is decoded in runs, stepping over
 * shadow-stack instructions, which the displaced bytes may not hold. */
static const char *plan_make(uintptr_t addr, uint64_t size, struct plan *p)
{
	static const uint8_t endbr64[4] = { 0xf3, 0x0f, 0x1e, 0xfa };
	if (!cs.ok)
		return "the decoder is not loaded";
	if (size == 0)
		return "its size is unknown (no st_size in the symbol table)";
	memset(p, 0, sizeof *p);
	p->start = addr + (size >= 4 && memcmp((const void *)addr, endbr64, 4) == 0 ? 4 : 0);
	uintptr_t at = p->start, end = (uintptr_t)(addr + size);
	if (end - at < JMP_LEN)
		return "it is shorter than the 5-byte jump the patch writes";
	const char *why = NULL;
	for (;;) {
		cs_insn *ins = NULL;
		size_t n = cs.disasm(cs.h, (const uint8_t *)at, end - at, at, 0, &ins);
		/* The first run holds the displaced instructions, or the plan fails. */
		for (size_t i = 0; i < n && p->len < JMP_LEN && !why; i++) {
			if (p->n == MOVED_MAX)
				why = "too many instructions in its first bytes";
			else if (!(why = classify(&ins[i], &p->m[p->n++])))
				p->len += ins[i].size;
		}
		/* A branch landing inside the displaced bytes would land in the
		 * middle of the jump. A branch to the entry itself is a call or tail
		 * call of the function (recursion): a real entry, with the return
		 * address on top. */
		for (size_t i = 0; i < n && !why; i++) {
			uint64_t t = branch_target(&ins[i]);
			if (t > addr && t < p->start + p->len)
				why = "a jump back into the bytes the patch replaces";
			at += ins[i].size;
		}
		if (n)
			cs.free(ins, n);
		if (why || at >= end)
			break;
		size_t skip = p->len >= JMP_LEN ? shadow_stack_insn((const uint8_t *)at, end - at) : 0;
		if (!skip) {
			why = "it holds an instruction the decoder does not know";
			break;
		}
		at += skip;
	}
	return why;
}

const char *patch_check(uintptr_t addr, uint64_t size)
{
	struct plan p;
	return plan_make(addr, size, &p);
}

/* --- trampolines, in chunks mapped near the code they serve --- */

struct chunk {
	uintptr_t base;
	size_t used;
};

static struct chunk chunks[64];
static unsigned nchunks;

static bool reaches(uintptr_t from, uintptr_t to)
{
	int64_t d = (int64_t)(to - from);
	return d > -REACH + (int64_t)CHUNK_SIZE && d < REACH - (int64_t)CHUNK_SIZE;
}

static uint8_t *near_alloc(uintptr_t addr)
{
	for (unsigned i = 0; i < nchunks; i++)
		if (reaches(addr, chunks[i].base) && chunks[i].used + TRAMP_SIZE <= CHUNK_SIZE) {
			uint8_t *t = (uint8_t *)chunks[i].base + chunks[i].used;
			chunks[i].used += TRAMP_SIZE;
			return t;
		}
	if (nchunks == sizeof chunks / sizeof chunks[0])
		return NULL;
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	/* Tried from near to far, above then below: the kernel takes a hint
	 * only where the range is free (MAP_FIXED_NOREPLACE never moves a mapping). */
	for (int64_t d = 1 << 20; d < REACH / 2; d *= 2)
		for (int sign = 1; sign >= -1; sign -= 2) {
			uintptr_t hint = (addr + (uintptr_t)(sign * d)) & ~(page - 1);
			void *m = mmap((void *)hint, CHUNK_SIZE, PROT_READ | PROT_EXEC,
				       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
			if (m == MAP_FAILED)
				continue;
			if (!reaches(addr, (uintptr_t)m)) {
				munmap(m, CHUNK_SIZE);   /* an old kernel took the flag for a plain hint */
				continue;
			}
			chunks[nchunks].base = (uintptr_t)m;
			chunks[nchunks].used = TRAMP_SIZE;
			nchunks++;
			return m;
		}
	return NULL;
}

static bool put_rel32(uint8_t *at, uintptr_t next_ip, uint64_t target)
{
	int64_t d = (int64_t)(target - next_ip);
	if (d < -REACH || d >= REACH)
		return false;
	int32_t v = (int32_t)d;
	memcpy(at, &v, 4);
	return true;
}

/* jmp *0(%rip) followed by the absolute address: reaches anywhere. */
static uint8_t *put_jmp_abs(uint8_t *o, uint64_t target)
{
	static const uint8_t jmp_ind[6] = { 0xff, 0x25, 0, 0, 0, 0 };
	memcpy(o, jmp_ind, 6);
	memcpy(o + 6, &target, 8);
	return o + 14;
}

/*
 * Writes the trampoline into buf, as it will run at address at:
 *     push %r11; movabs $desc, %r11; call *entry_stub; pop %r11
 *     the displaced instructions, relocated; jmp back after them
 * r11 is kept: gcc's -fipa-ra lets a caller in the same file keep values in
 * any register the callee is known not to touch, so every register must
 * come out as it went in. The stub's address is the trampoline's last 8 bytes.
 */
static bool emit(const struct plan *p, uint8_t *buf, uintptr_t at, const void *desc, const void *entry_stub)
{
	uint8_t *o = buf;
	*o++ = 0x41, *o++ = 0x53;
	*o++ = 0x49, *o++ = 0xbb;
	uint64_t d = (uint64_t)(uintptr_t)desc;
	memcpy(o, &d, 8);
	o += 8;
	*o++ = 0xff, *o++ = 0x15;
	int32_t to_stub = (int32_t)(TRAMP_SIZE - 8 - (o + 4 - buf));
	memcpy(o, &to_stub, 4);
	o += 4;
	*o++ = 0x41, *o++ = 0x5b;
	uint64_t stub = (uint64_t)(uintptr_t)entry_stub;
	memcpy(buf + TRAMP_SIZE - 8, &stub, 8);
	for (unsigned i = 0; i < p->n; i++) {
		const struct moved *m = &p->m[i];
		uintptr_t here = at + (uintptr_t)(o - buf);
		switch (m->kind) {
		case MOVE_COPY:
			memcpy(o, m->bytes, m->size);
			o += m->size;
			break;
		case MOVE_RIPREL:
			memcpy(o, m->bytes, m->size);
			if (!put_rel32(o + m->disp_at, here + m->size, m->target))
				return false;
			o += m->size;
			break;
		case MOVE_CALL: {
			/* The return address pushed is the original one (the call ends
			 * the window): an unwinder or a backtrace finds the function's
			 * own unwind information there, not the trampoline. lea, not
			 * sub: the flags stay as they were. */
			static const uint8_t lea_rsp[5] = { 0x48, 0x8d, 0x64, 0x24, 0xf8 };
			uint64_t ret = p->start + p->len;
			uint32_t lo = (uint32_t)ret, hi = (uint32_t)(ret >> 32);
			memcpy(o, lea_rsp, 5);
			o[5] = 0xc7, o[6] = 0x04, o[7] = 0x24;
			memcpy(o + 8, &lo, 4);
			o[12] = 0xc7, o[13] = 0x44, o[14] = 0x24, o[15] = 0x04;
			memcpy(o + 16, &hi, 4);
			o += 20;
			here += 20;
			__attribute__((fallthrough));   /* then a jump to the callee */
		}
		case MOVE_JMP:
			*o = 0xe9;
			if (!put_rel32(o + 1, here + 5, m->target))
				return false;
			o += 5;
			break;
		case MOVE_JCC:
			o[0] = 0x0f, o[1] = (uint8_t)(0x80 | m->cc);
			if (!put_rel32(o + 2, here + 6, m->target))
				return false;
			o += 6;
			break;
		}
	}
	o = put_jmp_abs(o, p->start + p->len);
	return o - buf <= TRAMP_SIZE - 8;
}

/* Makes [addr, addr+len) writable while it is written, executable throughout:
 * another thread may be running code on the same pages. */
static bool write_code(uintptr_t addr, const void *src, size_t len)
{
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t lo = addr & ~(page - 1), hi = (addr + len + page - 1) & ~(page - 1);
	if (mprotect((void *)lo, hi - lo, PROT_READ | PROT_WRITE | PROT_EXEC) != 0)
		return false;
	memcpy((void *)addr, src, len);
	mprotect((void *)lo, hi - lo, PROT_READ | PROT_EXEC);
	return true;
}

const char *patch_apply(uintptr_t addr, uint64_t size, const void *desc, const void *entry_stub)
{
	struct plan p;
	const char *why = plan_make(addr, size, &p);
	if (why)
		return why;
	uint8_t *t = near_alloc(addr);
	if (!t)
		return "no memory for a trampoline within 2 GB of it";
	uint8_t buf[TRAMP_SIZE] = { 0 };
	if (!emit(&p, buf, (uintptr_t)t, desc, entry_stub))
		return "an operand of its first instructions does not reach from the trampoline";
	if (!write_code((uintptr_t)t, buf, TRAMP_SIZE))
		return "the trampoline could not be written (mprotect refused)";
	uint8_t jmp[JMP_LEN] = { 0xe9 };
	if (!put_rel32(jmp + 1, p.start + JMP_LEN, (uintptr_t)t))
		return "its trampoline is out of reach";
	if (!write_code(p.start, jmp, JMP_LEN))
		return "its code could not be made writable (mprotect refused)";
	return NULL;
}

#else /* not x86-64 */

const char *patch_init(void)
{
	return "function tracing patches x86-64 code only; this process is another architecture";
}

const char *patch_check(uintptr_t addr, uint64_t size)
{
	(void)addr, (void)size;
	return "not x86-64";
}

const char *patch_apply(uintptr_t addr, uint64_t size, const void *desc, const void *entry_stub)
{
	(void)addr, (void)size, (void)desc, (void)entry_stub;
	return "not x86-64";
}

#endif
