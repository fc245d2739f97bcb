/* The real functions looked up, each at its own first use, and the agent's start as the wiring file registered it. */
#include "kernel.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>

void *kernel_slot[KERNEL_CXX_END];

/* Looked up, found or not: a missing symbol is asked for once. */
static _Atomic unsigned char tried[KERNEL_CXX_END];

#define KERNEL_NAME(ret, name, params) #name,
static const char *const names[KERNEL_CXX_END] = {
	KERNEL_LIBC(KERNEL_NAME) NULL,
	KERNEL_LIBPQ(KERNEL_NAME) NULL,
	KERNEL_RDKAFKA(KERNEL_NAME) NULL,
	KERNEL_UNWIND(KERNEL_NAME) NULL,
	KERNEL_CXX(KERNEL_NAME)
};
#undef KERNEL_NAME

/*
 * RTLD_NEXT searches only the global scope after us. A library loaded as the
 * dependency of a dlopen()ed module (libpq under psycopg2, librdkafka under
 * confluent-kafka) lives in that module's local scope: our hook still
 * interposes (the global scope is searched first), but RTLD_NEXT can't see
 * the real function. The already-loaded copy is reachable by soname with
 * RTLD_NOLOAD, or, renamed, through the module that links it.
 */
struct library {
	const char *soname;        /* NULL: libc, RTLD_NEXT only */
	_Atomic(void *) by_soname; /* dlopen(soname, RTLD_NOLOAD) once it answered */
	_Atomic(void *) by_caller; /* kernel_resolve_from's module */
};

static struct library libc_lib, libpq_lib = { .soname = "libpq.so.5" }, rdkafka_lib = { .soname = "librdkafka.so.1" },
	      unwind_lib = { .soname = "libgcc_s.so.1" }, cxx_lib = { .soname = "libstdc++.so.6" };

static struct library *library_of(enum kernel_sym s)
{
	return s < KERNEL_LIBC_END ? &libc_lib : s < KERNEL_LIBPQ_END ? &libpq_lib :
	       s < KERNEL_RDKAFKA_END ? &rdkafka_lib : s < KERNEL_UNWIND_END ? &unwind_lib : &cxx_lib;
}

/* p, unless it lies in our own .so: a handle whose search reaches the
 * global scope finds our hook first, and calling that would loop. */
static void *not_ours(void *p)
{
	Dl_info mine, found;
	if (p && dladdr((void *)not_ours, &mine) && dladdr(p, &found) && found.dli_fbase == mine.dli_fbase)
		return NULL;
	return p;
}

static void *lookup(struct library *lib, const char *name)
{
	void *p = not_ours(dlsym(RTLD_NEXT, name));
	if (p || !lib->soname)
		return p;
	void *h = atomic_load(&lib->by_soname);
	if (!h) {
		void *expected = NULL;
		h = dlopen(lib->soname, RTLD_LAZY | RTLD_NOLOAD);
		if (h && !atomic_compare_exchange_strong(&lib->by_soname, &expected, h)) {
			dlclose(h);   /* a racing lookup stored the same library */
			h = expected;
		}
	}
	if (h && (p = not_ours(dlsym(h, name))))
		return p;
	h = atomic_load(&lib->by_caller);
	return h ? not_ours(dlsym(h, name)) : NULL;
}

/* Plain stores, one per pointer: a racing reader sees NULL or the final
 * value, and racing lookups store the same one. */
void *kernel_resolve(enum kernel_sym sym)
{
	if (!atomic_load_explicit(&tried[sym], memory_order_acquire)) {
		kernel_slot[sym] = lookup(library_of(sym), names[sym]);
		atomic_store_explicit(&tried[sym], 1, memory_order_release);
	}
	return kernel_slot[sym];
}

void kernel_resolve_from(enum kernel_sym first, enum kernel_sym end, const void *caller)
{
	struct library *lib = library_of(first);
	Dl_info info;
	if (!caller || !dladdr(caller, &info) || !info.dli_fname || !info.dli_fname[0] || atomic_load(&lib->by_caller))
		return;
	void *h = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD), *expected = NULL;
	if (!h)
		return;
	if (!atomic_compare_exchange_strong(&lib->by_caller, &expected, h)) {
		dlclose(h);
		return;
	}
	/* The missing ones are looked up again, now through that module too. */
	for (enum kernel_sym s = first; s < end; s++)
		if (!kernel_slot[s])
			atomic_store_explicit(&tried[s], 0, memory_order_release);
}

/* --- dlopen --- */

void (*kernel_dlopen_observer)(void) __attribute__((visibility("hidden")));
void *kernel_dlopen_real __attribute__((visibility("hidden")));
void *kernel_dlopen_resolve(void) __attribute__((visibility("hidden")));
void *kernel_dlopen_observed(const char *file, int mode) __attribute__((visibility("hidden")));

void *kernel_dlopen_resolve(void)
{
	kernel_dlopen_real = kernel_resolve(KERNEL_dlopen);
	return kernel_dlopen_real;
}

void *kernel_dlopen_observed(const char *file, int mode)
{
	void *h = REAL(dlopen) ? REAL(dlopen)(file, mode) : NULL;
	if (h)
		KERNEL_QUIET(kernel_dlopen_observer());
	return h;
}

void kernel_set_dlopen_observer(void (*fn)(void))
{
	kernel_dlopen_observer = fn;
}

#if defined(__x86_64__)
/* A tail jump: libc's dlopen reads its caller from the return address. */
__asm__(".text\n"
	".globl dlopen\n"
	".type dlopen,@function\n"
	"dlopen:\n"
	"\tcmpq $0, kernel_dlopen_observer(%rip)\n"
	"\tjne kernel_dlopen_observed\n"
	"\tmov kernel_dlopen_real(%rip), %rax\n"
	"\ttest %rax, %rax\n"
	"\tjnz 1f\n"
	"\tpush %rdi\n\tpush %rsi\n\tsub $8, %rsp\n"
	"\tcall kernel_dlopen_resolve\n"
	"\tadd $8, %rsp\n\tpop %rsi\n\tpop %rdi\n"
	"1:\tjmp *%rax\n"
	".size dlopen, .-dlopen\n");
#endif

/* --- the agent's start --- */

bool kernel_enabled;
bool kernel_disabled;
bool kernel_started;

static void (*start_fn)(void);
static pthread_once_t start_once = PTHREAD_ONCE_INIT;

static void run_start(void)
{
	/* Every libc function now, not at its first call: that call may come
	 * from the app's signal handler, where dlsym is not safe. */
	for (enum kernel_sym s = 0; s < KERNEL_LIBC_END; s++)
		kernel_resolve(s);
	start_fn();
}

void kernel_set_start(void (*start)(void))
{
	start_fn = start;
}

void kernel_start(void)
{
	if (kernel_disabled) {
		kernel_started = true;
		return;
	}
	if (!start_fn)
		return;   /* before the wiring's constructor: pass through, start later */
	pthread_once(&start_once, run_start);
	kernel_started = true;
}
