/* Business-logic spans: finds the functions TRACEAGENT_FUNCTIONS names, patches their entries, and keeps a per-thread shadow stack of the calls in flight. */
#include "funcs.h"

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/context.h"
#include "agent/dwarfline.h"
#include "agent/elfsym.h"
#include "agent/funcspec.h"
#include "agent/log.h"
#include "agent/perthread.h"
#include "agent/span.h"
#include "hooks/kernel.h"
#include "hooks/patch.h"

/* glibc's: a musl program must still load the agent (it is never called there). */
#pragma weak dladdr1

#define SPECS_MAX   64
#define OBJECTS_MAX 512    /* objects looked at once (by load base) */
#define DEPTH_MAX   64     /* traced calls in flight per thread; deeper ones make no span */

/* One patched function; its trampoline hands it to funcs_enter. */
struct target {
	enum funcspec_error error;
	uint8_t args;
	uint16_t name_len;
	uint32_t line;         /* code.line.number; 0: the object has no line table for it */
	const char *file;      /* code.file.path (within name's allocation), NULL with line 0 */
	uint16_t file_len;
	char name[];
};

/* A traced call in flight. */
struct frame {
	uintptr_t ret;         /* the caller's return address, replaced by funcs_return_stub */
	uintptr_t *slot;       /* where it is on the stack */
	struct span *span;
	const struct target *t;
	uint8_t span_id[8];
	bool attached;         /* its context was made current */
	bool unhooked;         /* its return address was put back for an exception's unwind */
	struct context_head saved;
};

/* A frame given up while its return address may still be on a live stack. */
struct given_up {
	uintptr_t *slot;
	uintptr_t ret;
};

#define GIVEN_UP_MAX 16

struct stack {
	unsigned depth;
	bool unwinding;                 /* a C++ exception is on its way: return addresses put back */
	unsigned given_up_next;         /* ring position in given_up[] */
	struct trace_context scratch;   /* span_start's output, used under the guard */
	struct frame f[DEPTH_MAX];
	struct given_up given_up[GIVEN_UP_MAX];
};

/* The shadow stack, made on a thread's first traced call (agent/perthread.h). */
static __thread struct stack *stack_tls AGENT_TLS;

static struct funcspec specs[SPECS_MAX];
static unsigned nspecs;
static unsigned found[SPECS_MAX];      /* functions each spec matched, over all objects */
static bool object_seen[SPECS_MAX];    /* an object the spec names was looked at */
static bool check_only;
static bool patch_ok;
/* Some spec names an object: dlopen() makes us look at what it loaded. */
static bool watch_dlopen;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uintptr_t seen[OBJECTS_MAX];    /* load bases already looked at */
static unsigned nseen;
static uintptr_t *patched;             /* entry addresses patched, for aliases and repeats */
static size_t npatched, patched_cap;

/* --- the stubs (x86-64): entry saves the argument registers, return keeps the return value --- */

void funcs_enter(const struct target *t, uintptr_t *slot, const uint64_t *regs) __attribute__((visibility("hidden")));
uintptr_t funcs_leave(uint64_t rax, uintptr_t *slot) __attribute__((visibility("hidden")));
/* Weak: only x86-64 defines them (below); elsewhere patch_init refuses, no
 * function is patched, and nothing reaches them. */
extern const char funcs_entry_stub[] __attribute__((visibility("hidden"), weak));
extern const char funcs_return_stub[] __attribute__((visibility("hidden"), weak));

#if defined(__x86_64__)
/*
 * Every register comes out of both stubs as it went in (gcc's -fipa-ra lets
 * a caller keep values in registers its callee is known not to touch), xmm
 * included. The stack is aligned before each call into C: gcc calls a
 * function it knows needs no alignment without aligning it (-fipa-stack-alignment).
 *
 * funcs_entry_stub is called by the trampoline (hooks/patch.c), r11 = the
 * struct target, the caller's r11 and return address above our own:
 * [rsp] the trampoline, [rsp+8] r11, [rsp+16] the traced call's return address.
 * regs[] as funcs_enter sees it: r10 rax r9 r8 rcx rdx rsi rdi.
 *
 * funcs_return_stub is where a traced function returns to: funcs_leave gives
 * back the caller's address, which the stack slot it had been taken from
 * receives again for the final ret.
 */
#define SAVE_XMM                                                                                   \
	"\tmovdqu %xmm0, 0(%rsp)\n\tmovdqu %xmm1, 16(%rsp)\n\tmovdqu %xmm2, 32(%rsp)\n"             \
	"\tmovdqu %xmm3, 48(%rsp)\n\tmovdqu %xmm4, 64(%rsp)\n\tmovdqu %xmm5, 80(%rsp)\n"            \
	"\tmovdqu %xmm6, 96(%rsp)\n\tmovdqu %xmm7, 112(%rsp)\n\tmovdqu %xmm8, 128(%rsp)\n"          \
	"\tmovdqu %xmm9, 144(%rsp)\n\tmovdqu %xmm10, 160(%rsp)\n\tmovdqu %xmm11, 176(%rsp)\n"       \
	"\tmovdqu %xmm12, 192(%rsp)\n\tmovdqu %xmm13, 208(%rsp)\n\tmovdqu %xmm14, 224(%rsp)\n"      \
	"\tmovdqu %xmm15, 240(%rsp)\n"
#define RESTORE_XMM                                                                                \
	"\tmovdqu 0(%rsp), %xmm0\n\tmovdqu 16(%rsp), %xmm1\n\tmovdqu 32(%rsp), %xmm2\n"             \
	"\tmovdqu 48(%rsp), %xmm3\n\tmovdqu 64(%rsp), %xmm4\n\tmovdqu 80(%rsp), %xmm5\n"            \
	"\tmovdqu 96(%rsp), %xmm6\n\tmovdqu 112(%rsp), %xmm7\n\tmovdqu 128(%rsp), %xmm8\n"          \
	"\tmovdqu 144(%rsp), %xmm9\n\tmovdqu 160(%rsp), %xmm10\n\tmovdqu 176(%rsp), %xmm11\n"       \
	"\tmovdqu 192(%rsp), %xmm12\n\tmovdqu 208(%rsp), %xmm13\n\tmovdqu 224(%rsp), %xmm14\n"      \
	"\tmovdqu 240(%rsp), %xmm15\n"
__asm__(".text\n"
	".globl funcs_entry_stub\n"
	".hidden funcs_entry_stub\n"
	".type funcs_entry_stub,@function\n"
	"funcs_entry_stub:\n"
	"\tpush %rbp\n"
	"\tmov %rsp, %rbp\n"
	"\tpush %rdi\n\tpush %rsi\n\tpush %rdx\n\tpush %rcx\n\tpush %r8\n\tpush %r9\n\tpush %rax\n\tpush %r10\n"
	"\tand $-16, %rsp\n"
	"\tsub $256, %rsp\n"
	SAVE_XMM
	"\tmov %r11, %rdi\n"
	"\tlea 24(%rbp), %rsi\n"    /* past rbp, the trampoline's return address and r11 */
	"\tlea -64(%rbp), %rdx\n"
	"\tcall funcs_enter\n"
	RESTORE_XMM
	"\tlea -64(%rbp), %rsp\n"
	"\tpop %r10\n\tpop %rax\n\tpop %r9\n\tpop %r8\n\tpop %rcx\n\tpop %rdx\n\tpop %rsi\n\tpop %rdi\n"
	"\tpop %rbp\n"
	"\tret\n"
	".size funcs_entry_stub, .-funcs_entry_stub\n"

	".globl funcs_return_stub\n"
	".hidden funcs_return_stub\n"
	".type funcs_return_stub,@function\n"
	"funcs_return_stub:\n"
	"\tsub $8, %rsp\n"
	"\tpush %rbp\n"
	"\tmov %rsp, %rbp\n"
	"\tpush %rax\n\tpush %rcx\n\tpush %rdx\n\tpush %rsi\n\tpush %rdi\n\tpush %r8\n\tpush %r9\n\tpush %r10\n\tpush %r11\n"
	"\tand $-16, %rsp\n"
	"\tsub $256, %rsp\n"
	SAVE_XMM
	"\tmov %rax, %rdi\n"
	"\tlea 8(%rbp), %rsi\n"      /* where the return address was */
	"\tcall funcs_leave\n"
	"\tmov %rax, 8(%rbp)\n"     /* the slot the final ret takes */
	RESTORE_XMM
	"\tlea -72(%rbp), %rsp\n"
	"\tpop %r11\n\tpop %r10\n\tpop %r9\n\tpop %r8\n\tpop %rdi\n\tpop %rsi\n\tpop %rdx\n\tpop %rcx\n\tpop %rax\n"
	"\tpop %rbp\n"
	"\tret\n"
	".size funcs_return_stub, .-funcs_return_stub\n");
#undef SAVE_XMM
#undef RESTORE_XMM
#endif

/* --- the calls in flight --- */

/* The entry of libgcc_s's _Unwind_ForcedUnwind hands funcs_enter this
 * (patch_forced_unwind): it makes no span. */
static const struct target forced_unwind;

static void unwind_frames(uintptr_t keep, bool all);

static struct stack *stack_get(void)
{
	struct stack *st = stack_tls;
	return st ? st : perthread_get((void **)&stack_tls, sizeof *stack_tls);
}

static const struct {
	const char *key;
	size_t len;
} arg_keys[FUNCSPEC_ARGS_MAX] = {
#define ARG_KEY(i) { "traceagent.function.arg." #i, sizeof "traceagent.function.arg." #i - 1 }
	ARG_KEY(0), ARG_KEY(1), ARG_KEY(2), ARG_KEY(3), ARG_KEY(4), ARG_KEY(5),
#undef ARG_KEY
};

/* regs[] order (see funcs_entry_stub) of rdi, rsi, rdx, rcx, r8, r9. */
static const uint8_t arg_reg[FUNCSPEC_ARGS_MAX] = { 7, 6, 5, 4, 3, 2 };

void funcs_enter(const struct target *t, uintptr_t *slot, const uint64_t *regs)
{
	if (__builtin_expect(t == &forced_unwind, 0)) {
		unwind_frames(0, true);
		return;
	}
	/* Inside the agent (or a signal handler that interrupted it): no span. */
	if (!context_guard_enter())
		return;
	KERNEL_QUIET({
		struct stack *st = kernel_enabled ? stack_get() : NULL;
		if (st && st->depth < DEPTH_MAX) {
			struct frame *f = &st->f[st->depth];
			f->span = span_start(SPAN_KIND_INTERNAL, t->name, t->name_len, NULL, &st->scratch);
			span_set_str(f->span, "code.function.name", t->name, t->name_len);
			if (t->line) {
				span_set_str(f->span, "code.file.path", t->file, t->file_len);
				span_set_int(f->span, "code.line.number", t->line);
			}
			for (unsigned i = 0; i < t->args; i++)
				span_attr_int(f->span, arg_keys[i].key, arg_keys[i].len, (int64_t)regs[arg_reg[i]]);
			memcpy(f->span_id, st->scratch.span_id, 8);
			f->attached = context_enter_child(&st->scratch, &f->saved);
			f->t = t;
			f->unhooked = false;
			f->slot = slot;
			f->ret = *slot;
			st->depth++;
			*slot = (uintptr_t)funcs_return_stub;
		}
	});
	context_guard_leave();
}

/* error.type: the value returned, as the rule reads it. */
static void set_error(struct span *sp, enum funcspec_error rule, uint64_t ret)
{
	span_set_status(sp, SPAN_STATUS_ERROR, NULL, 0);
	if (rule == FUNCSPEC_ERROR_NULL) {
		span_set_cstr(sp, "error.type", "null");
		return;
	}
	char buf[16], *p = buf + sizeof buf;
	int32_t v = (int32_t)(uint32_t)ret;
	uint32_t u = v < 0 ? 0u - (uint32_t)v : (uint32_t)v;
	do
		*--p = (char)('0' + u % 10);
	while (u /= 10);
	if (v < 0)
		*--p = '-';
	span_set_str(sp, "error.type", p, (size_t)(buf + sizeof buf - p));
}

static void frame_end(struct frame *f, bool returned, uint64_t ret)
{
	if (returned && f->t->error && funcspec_is_error(f->t->error, ret))
		set_error(f->span, f->t->error, ret);
	if (f->attached)
		context_leave_child(f->span_id, &f->saved);
	if (f->span)
		span_end(f->span);
}

/*
 * slot: where the return address was, read off the stack; the frame is the
 * topmost one it belongs to (a tail call's frames share it). Frames above it
 * were left without returning in a way no hook saw (a vfork child that called
 * a traced function and exec'ed, on its parent's stack and memory; a longjmp
 * from a handler on a sigaltstack): their spans end now, and their context
 * is undone. Their return addresses are kept a while: if one of them was in
 * fact alive on another stack of this thread (coroutines switching stacks
 * with swapcontext), its return still finds its way.
 */
uintptr_t funcs_leave(uint64_t rax, uintptr_t *slot)
{
	struct stack *st = stack_tls;
	uintptr_t ret = 0;
	KERNEL_ALWAYS({
		unsigned k = st->depth;
		while (k > 0 && st->f[k - 1].slot != slot)
			k--;
		if (k == 0) {
			for (unsigned i = 0; i < GIVEN_UP_MAX && !ret; i++) {
				struct given_up *g = &st->given_up[(st->given_up_next - 1 - i) % GIVEN_UP_MAX];
				if (g->slot == slot) {
					ret = g->ret;
					g->slot = NULL;
				}
			}
			if (!ret) {
				log_error("TRACEAGENT_FUNCTIONS: a traced call returned through a frame the agent lost; aborting");
				abort();
			}
		} else {
			while (st->depth > k) {
				struct frame *f = &st->f[--st->depth];
				st->given_up[st->given_up_next++ % GIVEN_UP_MAX] = (struct given_up){ f->slot, f->ret };
				frame_end(f, false, 0);
			}
			struct frame *f = &st->f[st->depth - 1];
			ret = f->ret;
			frame_end(f, true, rax);
			st->depth--;
		}
	});
	return ret;
}

/*
 * Ends the calls that a jump or an unwind leaves for good: those whose
 * return-address slot lies below keep (the stack grows down), or all of them.
 * Their spans end now, without an error (the app may well recover), and any
 * return address still pointing at the stub is put back, so an unwinder
 * walking the stack reads the real one.
 */
static void unwind_frames(uintptr_t keep, bool all)
{
	struct stack *st = stack_tls;
	if (__builtin_expect(!st || !st->depth, 1))
		return;
	KERNEL_ALWAYS({
		while (st->depth) {
			struct frame *f = &st->f[st->depth - 1];
			if (!all && (uintptr_t)f->slot >= keep)
				break;
			if (*f->slot == (uintptr_t)funcs_return_stub)
				*f->slot = f->ret;
			frame_end(f, false, 0);
			st->depth--;
		}
	});
}

/* glibc mangles the stack pointer it saves (PTR_MANGLE: xor with the
 * thread's pointer guard at %fs:0x30, then rotate left by 17). */
static uintptr_t jmpbuf_sp(const struct __jmp_buf_tag *env)
{
#if defined(__x86_64__)
	uintptr_t v = (uintptr_t)env->__jmpbuf[6], guard;
	__asm__("mov %%fs:0x30, %0" : "=r"(guard));
	return ((v >> 17) | (v << 47)) ^ guard;
#else
	(void)env;
	return 0;
#endif
}

#define LONGJMP_HOOK(name)                                            \
	HOOK void name(struct __jmp_buf_tag env[1], int val)           \
	{                                                             \
		unwind_frames(jmpbuf_sp(env), false);                  \
		REAL(name)(env, val);                                  \
		__builtin_unreachable();                               \
	}
LONGJMP_HOOK(longjmp)
LONGJMP_HOOK(_longjmp)
LONGJMP_HOOK(siglongjmp)
LONGJMP_HOOK(__longjmp_chk)
#undef LONGJMP_HOOK

/* What an unwinder returns when it cannot run at all: the thrower terminates, as it would. */
#define UNWIND_MISSING _URC_FATAL_PHASE1_ERROR

/*
 * The unwinder finds each frame's caller by its return address: one pointing
 * at the stub has no unwind information, and the exception would end the
 * program. So every return address the agent replaced on the thread is put
 * back before the unwind; where the exception will be caught is not known
 * yet, so the calls stay in flight until it is (exception_caught).
 */
static void exception_thrown(void)
{
	struct stack *st = stack_tls;
	if (__builtin_expect(!st || !st->depth, 1))
		return;
	for (unsigned i = 0; i < st->depth; i++) {
		struct frame *f = &st->f[i];
		if (*f->slot == (uintptr_t)funcs_return_stub) {
			*f->slot = f->ret;
			f->unhooked = true;
		}
	}
	st->unwinding = true;
}

/*
 * A C++ handler caught it, in the function whose stack pointer is sp: the
 * calls below that (their return addresses lie below sp) were unwound past
 * and end now; the others are still running, and get the stub back, so they
 * end when they return and what they call after the catch nests under them.
 */
static void exception_caught(uintptr_t sp, bool another_in_flight)
{
	struct stack *st = stack_tls;
	if (__builtin_expect(!st || !st->unwinding, 1))
		return;
	unwind_frames(sp, false);
	/* A handler in a destructor that another exception's unwind runs: that
	 * one is still on its way, and its unwinder reads the return addresses
	 * yet to come; they get the stub back when it is caught. */
	if (another_in_flight)
		return;
	st->unwinding = false;
	for (unsigned i = 0; i < st->depth; i++) {
		struct frame *f = &st->f[i];
		if (f->unhooked && *f->slot == f->ret)
			*f->slot = (uintptr_t)funcs_return_stub;
		f->unhooked = false;
	}
}

HOOK _Unwind_Reason_Code _Unwind_RaiseException(struct _Unwind_Exception *e)
{
	exception_thrown();
	return REAL(_Unwind_RaiseException) ? REAL(_Unwind_RaiseException)(e) : UNWIND_MISSING;
}

HOOK _Unwind_Reason_Code _Unwind_Resume_or_Rethrow(struct _Unwind_Exception *e)
{
	exception_thrown();
	return REAL(_Unwind_Resume_or_Rethrow) ? REAL(_Unwind_Resume_or_Rethrow)(e) : UNWIND_MISSING;
}

/* Called by a catch handler, in the catching function's frame: the CFA of
 * this call is that function's stack pointer. */
HOOK void *__cxa_begin_catch(void *exc)
{
	uintptr_t sp = (uintptr_t)__builtin_dwarf_cfa();
	void *r = REAL(__cxa_begin_catch) ? REAL(__cxa_begin_catch)(exc) : NULL;
	/* Counted after the real call, which takes this exception off the count. */
	exception_caught(sp, REAL(_ZSt19uncaught_exceptionsv) && REAL(_ZSt19uncaught_exceptionsv)() > 0);
	return r;
}

/* --- finding and patching --- */

/* Whether an object's path is the one spec s names: its full path, its file
 * name, or its file name up to a version suffix ("libx.so" for "libx.so.1"). */
static bool object_matches(const struct funcspec *s, const char *path)
{
	size_t n = strlen(path);
	if (s->object_len == n && memcmp(s->object, path, n) == 0)
		return true;
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	size_t bl = strlen(base);
	return bl >= s->object_len && memcmp(base, s->object, s->object_len) == 0 &&
	       (bl == s->object_len || base[s->object_len] == '.');
}

static bool spec_wants(const struct funcspec *s, const char *path, bool main_exe)
{
	return s->object_len ? !main_exe && object_matches(s, path) : main_exe;
}

static bool already_patched(uintptr_t a)
{
	for (size_t i = 0; i < npatched; i++)
		if (patched[i] == a)
			return true;
	return false;
}

static void note_patched(uintptr_t a)
{
	if (npatched == patched_cap) {
		size_t cap = patched_cap ? patched_cap * 2 : 64;
		uintptr_t *p = realloc(patched, cap * sizeof *p);
		if (!p)
			return;
		patched = p, patched_cap = cap;
	}
	patched[npatched++] = a;
}

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (check_only) {
		vdprintf(STDERR_FILENO, fmt, ap);
		dprintf(STDERR_FILENO, "\n");
	} else if (log_threshold >= LOG_LEVEL_WARN) {
		char line[512];
		vsnprintf(line, sizeof line, fmt, ap);
		log_write(LOG_LEVEL_WARN, "%s", line);
	}
	va_end(ap);
}

static void patch_one(const struct funcspec *s, const char *path, uintptr_t addr, const struct elfsym *sym,
		      const struct dwarfline *src)
{
	if (check_only) {
		const char *why = patch_ok ? patch_check(addr, sym->size) : patch_init();
		report("  %.*s (%s): %s%s", (int)sym->name_len, sym->name, path, why ? "cannot be patched: " : "can be patched",
		       why ? why : "");
		return;
	}
	if (already_patched(addr))
		return;
	size_t file_len = src && src->line ? src->path_len : 0;
	struct target *t = calloc(1, sizeof *t + sym->name_len + 1 + file_len + 1);
	if (!t)
		return;
	memcpy(t->name, sym->name, sym->name_len);
	t->name_len = (uint16_t)(sym->name_len < 0xffff ? sym->name_len : 0xffff);
	if (file_len) {
		char *file = t->name + sym->name_len + 1;
		memcpy(file, src->path, file_len);
		t->file = file;
		t->file_len = (uint16_t)file_len;   /* below DWARFLINE_PATH_MAX */
		t->line = src->line;
	}
	t->error = s->error;
	t->args = s->args;
	const char *why = patch_apply(addr, sym->size, t, funcs_entry_stub);
	if (why) {
		report("TRACEAGENT_FUNCTIONS: %.*s in %s cannot be patched, no spans for it: %s", (int)sym->name_len,
		       sym->name, path, why);
		free(t);   /* nothing points at it: the entry was not written */
		return;
	}
	note_patched(addr);
	log_debug("TRACEAGENT_FUNCTIONS: %s in %s patched", t->name, path);
}

/* gcc's "f.cold" symbols are the unlikely blocks of f moved away: jumped
 * into from f's body, never called, so never an entry. */
static bool cold_part(const struct elfsym *sym)
{
	return memmem(sym->name, sym->name_len, ".cold", 5) != NULL;
}

/* A C++ function's name as written ("ns::Task::apply(int)"), malloc'ed, or
 * NULL: from libstdc++'s demangler when the process has it (a C++ program
 * does). Specs match either form; spans take the written one, up to "(". */
static char *demangle(const struct elfsym *sym)
{
	static char *(*dem)(const char *, char *, size_t *, int *);
	static bool looked;
	if (sym->name_len < 3 || memcmp(sym->name, "_Z", 2) != 0)
		return NULL;
	if (!looked) {
		dem = (char *(*)(const char *, char *, size_t *, int *))dlsym(RTLD_DEFAULT, "__cxa_demangle");
		looked = true;
	}
	int status = -1;
	char *out = dem ? dem(sym->name, NULL, NULL, &status) : NULL;   /* sym->name ends with its NUL */
	if (out && status != 0) {
		free(out);
		out = NULL;
	}
	return out;
}

/* Whether spec s names sym, in either form; *shown is the name spans take,
 * *dem the demangled one to free. */
static bool matches(const struct funcspec *s, const struct elfsym *sym, struct elfsym *shown, char **dem)
{
	*dem = NULL;
	if (cold_part(sym))
		return false;
	*dem = demangle(sym);
	*shown = *sym;
	if (*dem) {
		shown->name = *dem;
		shown->name_len = strcspn(*dem, "(");
	}
	return funcspec_glob(s->pattern, s->pattern_len, sym->name, sym->name_len) ||
	       (*dem && funcspec_glob(s->pattern, s->pattern_len, shown->name, shown->name_len));
}

/* How many functions of the object the specs match (a function twice when
 * two specs do), in the order scan_object patches them; their addresses go
 * into out[0..cap) when out is given. */
static size_t wanted(struct elfsym_iter *it, const char *path, bool main_exe, struct dwarfline *out, size_t cap)
{
	size_t n = 0;
	for (unsigned i = 0; i < nspecs; i++) {
		if (!spec_wants(&specs[i], path, main_exe))
			continue;
		struct elfsym sym, shown;
		it->next = 0;
		while (elfsym_next(it, &sym)) {
			char *dem;
			if (matches(&specs[i], &sym, &shown, &dem)) {
				if (out && n < cap)
					out[n].addr = sym.value;
				n++;
			}
			free(dem);
		}
	}
	return out && n > cap ? cap : n;
}

/*
 * Whether the object carries its own copy of the C++ unwinder (linked with
 * -static-libgcc or -static-libstdc++): its exceptions unwind without the
 * calls the agent hooks to put return addresses back first, and one thrown
 * through a traced call would end the program.
 */
static bool own_unwinder(struct elfsym_iter *it)
{
	struct elfsym sym;
	bool found = false;
	it->next = 0;
	while (!found && elfsym_next(it, &sym))
		found = (sym.name_len == 22 && memcmp(sym.name, "_Unwind_RaiseException", 22) == 0) ||
			(sym.name_len == 17 && memcmp(sym.name, "__cxa_begin_catch", 17) == 0);
	it->next = 0;
	return found;
}

/* Looks at one object for every spec that names it. */
static void scan_object(const char *path, uintptr_t base, bool main_exe)
{
	bool any = false;
	for (unsigned i = 0; i < nspecs; i++)
		any |= spec_wants(&specs[i], path, main_exe);
	if (!any)
		return;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	void *img = MAP_FAILED;
	if (fd >= 0 && fstat(fd, &sb) == 0 && sb.st_size > 0)
		img = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (fd >= 0)
		REAL(close)(fd);
	struct elfsym_iter it;
	if (img == MAP_FAILED || !elfsym_open(&it, img, (size_t)sb.st_size)) {
		report("TRACEAGENT_FUNCTIONS: %s could not be read as an ELF file; nothing in it is traced", path);
		if (img != MAP_FAILED)
			munmap(img, (size_t)sb.st_size);
		return;
	}
	if (own_unwinder(&it)) {
		report("%sTRACEAGENT_FUNCTIONS: %s has its own copy of the C++ unwinder (-static-libgcc or -static-libstdc++), "
		       "which the agent cannot follow: nothing in it is traced", check_only ? "  " : "", path);
		munmap(img, (size_t)sb.st_size);
		return;
	}
	if (it.table != ELFSYM_SYMTAB)
		report("TRACEAGENT_FUNCTIONS: %s is stripped (no .symtab): %s", path,
		       it.table == ELFSYM_DYNSYM ? "only its exported functions can be found" : "no function can be found");
	/* The source file and line of every function to patch, from one pass
	 * over the object's line table; the patch loop below meets them in the
	 * order wanted() listed them. */
	struct dwarfline *src = NULL;
	size_t nsrc = check_only ? 0 : wanted(&it, path, main_exe, NULL, 0), k = 0;
	if (nsrc && (src = calloc(nsrc, sizeof *src)) != NULL)
		dwarfline_find_elf(&it, src, wanted(&it, path, main_exe, src, nsrc));
	for (unsigned i = 0; i < nspecs; i++) {
		const struct funcspec *s = &specs[i];
		if (!spec_wants(s, path, main_exe))
			continue;
		unsigned before = found[i];
		object_seen[i] = true;
		if (check_only)
			report("%.*s%s%.*s:", (int)s->pattern_len, s->pattern, s->object_len ? "@" : "", (int)s->object_len,
			       s->object);
		struct elfsym sym, shown;
		it.next = 0;
		while (elfsym_next(&it, &sym)) {
			char *dem;
			if (matches(s, &sym, &shown, &dem)) {
				found[i]++;
				patch_one(s, path, base + sym.value, &shown, src && k < nsrc ? &src[k] : NULL);
				k++;
			}
			free(dem);
		}
		if (found[i] == before)
			report("%sTRACEAGENT_FUNCTIONS: no function matches %.*s in %s (stripped, inlined everywhere, or static and "
			       "not in the symbol table)", check_only ? "  " : "", (int)s->pattern_len, s->pattern, path);
	}
	free(src);
	munmap(img, (size_t)sb.st_size);
}

struct loaded {
	uintptr_t base;
	bool main_exe;
	char path[512];
};

struct loaded_list {
	struct loaded *v;
	unsigned n, cap;
};

/* The lowest PT_LOAD's address in the file: dli_fbase is where that one is mapped. */
static uintptr_t first_load_vaddr(const struct dl_phdr_info *info)
{
	for (unsigned i = 0; i < info->dlpi_phnum; i++)
		if (info->dlpi_phdr[i].p_type == PT_LOAD)
			return (uintptr_t)(info->dlpi_phdr[i].p_vaddr & ~(uint64_t)0xfff);
	return 0;
}

/* Collects only: dl_iterate_phdr holds the loader's lock while it calls us. */
static int collect(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct loaded_list *l = arg;
	bool main_exe = l->n == 0 && nseen == 0 && (!info->dlpi_name || !info->dlpi_name[0]);
	if (!main_exe && (!info->dlpi_name || !info->dlpi_name[0]))
		return 0;   /* the vDSO */
	for (unsigned i = 0; i < nseen; i++)
		if (seen[i] == info->dlpi_addr)
			return 0;
	/* The agent itself is never patched: its stubs and funcs_enter run before any guard. */
	Dl_info me;
	if (dladdr((void *)collect, &me) && (uintptr_t)me.dli_fbase == info->dlpi_addr + first_load_vaddr(info))
		return 0;
	if (l->n == l->cap || nseen == OBJECTS_MAX)
		return 1;
	struct loaded *o = &l->v[l->n++];
	o->base = info->dlpi_addr;
	o->main_exe = main_exe;
	o->path[0] = '\0';
	if (!main_exe)
		snprintf(o->path, sizeof o->path, "%s", info->dlpi_name);
	seen[nseen++] = info->dlpi_addr;
	return 0;
}

static void scan_new_objects(void)
{
	pthread_mutex_lock(&lock);
	struct loaded_list l = { .cap = 64 };
	l.v = calloc(l.cap, sizeof *l.v);
	if (l.v) {
		dl_iterate_phdr(collect, &l);
		for (unsigned i = 0; i < l.n; i++) {
			struct loaded *o = &l.v[i];
			if (o->main_exe) {
				ssize_t n = readlink("/proc/self/exe", o->path, sizeof o->path - 1);
				if (n <= 0)
					continue;
				o->path[n] = '\0';
			}
			scan_object(o->path, o->base, o->main_exe);
		}
		free(l.v);
	}
	pthread_mutex_unlock(&lock);
}

/* After each dlopen, before it returns: nothing has called into the new object yet. */
/*
 * A thread cancelled (pthread_cancel) or exiting (pthread_exit) is unwound by
 * glibc calling libgcc_s's _Unwind_ForcedUnwind through its own handle, past
 * any symbol of ours. The unwinder would stop at the first return address
 * that is the stub's, skipping the destructors and cleanup handlers above
 * it. So that function's entry is patched like a traced function's, and its
 * calls put the thread's return addresses back first and end its calls (a
 * forced unwind always runs to the thread's end). It is done here, before the
 * app starts threads, loading libgcc_s if glibc has not yet: glibc would
 * load it at the first cancellation, too late to patch safely.
 */
static void patch_forced_unwind(void)
{
	void *lib = dlopen("libgcc_s.so.1", RTLD_NOW | RTLD_LOCAL);
	void *fn = lib ? dlsym(lib, "_Unwind_ForcedUnwind") : NULL;
	const ElfW(Sym) *sym = NULL;
	Dl_info info;
	const char *why = "libgcc_s.so.1 or its _Unwind_ForcedUnwind was not found";
	if (fn && dladdr1 && dladdr1(fn, &info, (void **)&sym, RTLD_DL_SYMENT) && sym)
		why = already_patched((uintptr_t)fn) ? NULL
						      : patch_apply((uintptr_t)fn, sym->st_size, &forced_unwind, funcs_entry_stub);
	if (why)
		report("TRACEAGENT_FUNCTIONS: a thread cancelled or exiting inside a traced call will stop unwinding there: %s",
		       why);
	else
		note_patched((uintptr_t)fn);
}

/* A fork while another thread scans a new object would leave the lock held
 * in the child, whose next dlopen would wait for ever: fork waits for it. */
static void fork_prepare(void)
{
	pthread_mutex_lock(&lock);
}

static void fork_done(void)
{
	pthread_mutex_unlock(&lock);
}

static void after_dlopen(void)
{
	if (context_guard_enter()) {
		scan_new_objects();
		context_guard_leave();
	}
}

void funcs_init(const struct config *c)
{
	const char *list = c->functions;
	size_t len = strlen(list), pos = 0;
	if (!len)
		return;
	check_only = c->functions_check;
	struct funcspec s;
	const char *bad;
	size_t bad_len;
	int r;
	while ((r = funcspec_next(list, len, &pos, &s, &bad, &bad_len)) != 0) {
		if (r < 0) {
			report("TRACEAGENT_FUNCTIONS: invalid spec \"%.*s\" ignored (PATTERN[@OBJECT][:error=neg|zero|nonzero|null]"
			       "[:args=0..6])", (int)bad_len, bad);
			continue;
		}
		if (nspecs == SPECS_MAX) {
			report("TRACEAGENT_FUNCTIONS: more than %d specs; the rest are ignored", SPECS_MAX);
			break;
		}
		specs[nspecs++] = s;
		watch_dlopen |= s.object_len != 0;
	}
	const char *why = patch_init();
	patch_ok = !why;
	if (why && !check_only) {
		report("TRACEAGENT_FUNCTIONS: nothing is patched: %s", why);
		return;
	}
	if (nspecs && !check_only)
		patch_forced_unwind();
	scan_new_objects();
	if (watch_dlopen && !check_only) {
		__register_atfork(fork_prepare, fork_done, fork_done, __dso_handle);
		kernel_set_dlopen_observer(after_dlopen);
	}
	if (check_only) {
		for (unsigned i = 0; i < nspecs; i++)
			if (specs[i].object_len && !object_seen[i])
				report("%.*s@%.*s: the object is not loaded at start; it is looked at when dlopen()ed",
				       (int)specs[i].pattern_len, specs[i].pattern, (int)specs[i].object_len, specs[i].object);
		REAL(_exit)(0);
	}
}
