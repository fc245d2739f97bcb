/* The execve family and posix_spawn: when a span is current, the child program gets its context as TRACEPARENT/TRACESTATE/BAGGAGE. */
#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent/context.h"
#include "agent/envcarrier.h"
#include "agent/log.h"
#include "hooks/kernel.h"

/*
 * Rules, in the order they are checked (see README, "Context across fork and exec"):
 *  - nothing changes unless tracing is on and a span of ours is current on the
 *    calling thread (the inherited TRACEPARENT alone is not "a span": the app's
 *    environment already carries it, or the app removed it on purpose);
 *  - an envp whose TRACEPARENT is not a copy of the one this process started
 *    with was chosen by the app: passed untouched, as an app's own
 *    traceparent header is over HTTP;
 *  - otherwise a new array: the app's entries minus TRACEPARENT/TRACESTATE
 *    (and BAGGAGE when ours replaces it), then ours. The app's array and
 *    strings are never written.
 *
 * A vfork() child (CPython's subprocess uses vfork) runs these hooks on the
 * parent's memory, its thread-local storage included: they write nothing but
 * their own stack (no guard, no malloc, no log) and, the first time, the
 * pointer to the real function and its looked-up mark (hooks/kernel.c),
 * which are the parent's to keep. A larger
 * environment than fits the bound below is passed on untouched.
 */
#define ENV_MAX_ENTRIES 512   /* the new array lives on the caller's stack (4 KiB at most) */

extern char **environ;

static struct envcarrier_inherited inherited;

/* Each real function is looked up at its first use (a shell's forked child
 * resolves only the one it calls), or all at once here by exec_init. */
static void resolve(void)
{
	(void)REAL(execve);
	(void)REAL(execvpe);
	(void)REAL(execv);
	(void)REAL(execvp);
	(void)REAL(fexecve);
	(void)REAL(execveat);
	(void)REAL(posix_spawn);
	(void)REAL(posix_spawnp);
}

void exec_init(const struct config *c)
{
	/* Static: init may run on a thread with a small stack. */
	static struct tracestate_parser parser;
	static struct trace_context ctx;

	resolve();
	envcarrier_note_inherited(config_captured_getenv, &inherited);
	int r = envcarrier_extract(config_captured_getenv, c->propagators, &ctx, &parser);
	if (r > 0) {
		context_set_process_parent(&ctx);
		log_debug("TRACEPARENT from the environment is the parent of this process's root spans");
	} else if (r < 0) {
		log_debug("TRACEPARENT in the environment is not a valid W3C traceparent; ignored");
	}
}

enum call_kind { K_EXECVE, K_EXECV, K_EXECVPE, K_EXECVP, K_FEXECVE, K_EXECVEAT, K_SPAWN, K_SPAWNP };

struct call {
	enum call_kind kind;
	const char *path;
	char *const *argv;
	int fd, flags;
	pid_t *pid;
	const posix_spawn_file_actions_t *fa;
	const posix_spawnattr_t *attr;
};

static int nosys(void)
{
	errno = ENOSYS;
	return -1;
}

/* The app's own call with envp; env_changed: the environ forms (execv,
 * execvp) then take their envp form. */
static int call_real(const struct call *c, char *const envp[], bool env_changed)
{
	switch (c->kind) {
	case K_EXECV:
		if (!env_changed)
			return REAL(execv) ? REAL(execv)(c->path, c->argv) : nosys();
		/* execv(p, a) is execve(p, a, environ) */
		__attribute__((fallthrough));
	case K_EXECVE:
		return REAL(execve) ? REAL(execve)(c->path, c->argv, envp) : nosys();
	case K_EXECVP:
		if (!env_changed)
			return REAL(execvp) ? REAL(execvp)(c->path, c->argv) : nosys();
		/* execvp(f, a) is execvpe(f, a, environ) */
		__attribute__((fallthrough));
	case K_EXECVPE:
		return REAL(execvpe) ? REAL(execvpe)(c->path, c->argv, envp) : nosys();
	case K_FEXECVE:
		return REAL(fexecve) ? REAL(fexecve)(c->fd, c->argv, envp) : nosys();
	case K_EXECVEAT:
		if (REAL(execveat))
			return REAL(execveat)(c->fd, c->path, c->argv, envp, c->flags);
		return (int)syscall(SYS_execveat, c->fd, c->path, c->argv, envp, c->flags);
	case K_SPAWN:
		return REAL(posix_spawn) ? REAL(posix_spawn)(c->pid, c->path, c->fa, c->attr, c->argv, envp) : ENOSYS;
	case K_SPAWNP:
		return REAL(posix_spawnp) ? REAL(posix_spawnp)(c->pid, c->path, c->fa, c->attr, c->argv, envp) : ENOSYS;
	}
	return nosys();
}

static int with_context(const struct call *c, char *const envp[])
{
	if (!kernel_enabled || context_guard_depth)
		return call_real(c, envp, false);
	const struct trace_context *ctx = context_thread();
	if (!ctx->valid)
		return call_real(c, envp, false);
	/* The environ forms need their envp form to carry a new array. */
	if ((c->kind == K_EXECVP && !REAL(execvpe)) || (c->kind == K_EXECV && !REAL(execve)))
		return call_real(c, envp, false);

	struct envcarrier e;
	if (!envcarrier_format(ctx, config_global.propagators, &e) ||
	    (e.has_traceparent && envcarrier_app_owns(envp, &inherited)))
		return call_real(c, envp, false);
	size_t n = envcarrier_count(envp);
	if (n > ENV_MAX_ENTRIES)
		return call_real(c, envp, false);
	char *out[n + 4];
	if (envcarrier_build(envp, &e, &inherited, out, n + 4) < 0)
		return call_real(c, envp, false);
	return call_real(c, out, true);
}

HOOK int execve(const char *path, char *const argv[], char *const envp[])
{
	struct call c = { .kind = K_EXECVE, .path = path, .argv = argv };
	return with_context(&c, envp);
}

HOOK int execv(const char *path, char *const argv[])
{
	struct call c = { .kind = K_EXECV, .path = path, .argv = argv };
	return with_context(&c, environ);
}

HOOK int execvpe(const char *file, char *const argv[], char *const envp[])
{
	struct call c = { .kind = K_EXECVPE, .path = file, .argv = argv };
	return with_context(&c, envp);
}

HOOK int execvp(const char *file, char *const argv[])
{
	struct call c = { .kind = K_EXECVP, .path = file, .argv = argv };
	return with_context(&c, environ);
}

HOOK int fexecve(int fd, char *const argv[], char *const envp[])
{
	struct call c = { .kind = K_FEXECVE, .fd = fd, .argv = argv };
	return with_context(&c, envp);
}

HOOK int execveat(int dirfd, const char *path, char *const argv[], char *const envp[], int flags)
{
	struct call c = { .kind = K_EXECVEAT, .fd = dirfd, .path = path, .argv = argv, .flags = flags };
	return with_context(&c, envp);
}

HOOK int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
		     const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	struct call c = { .kind = K_SPAWN, .path = path, .argv = argv, .pid = pid, .fa = fa, .attr = attr };
	return with_context(&c, envp);
}

HOOK int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
		      const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	struct call c = { .kind = K_SPAWNP, .path = file, .argv = argv, .pid = pid, .fa = fa, .attr = attr };
	return with_context(&c, envp);
}

/* The list forms: argv on the stack (as libc builds it), then the vector form. */
static size_t count_args(const char *arg0, va_list ap)
{
	size_t n = 1;
	if (!arg0)
		return 0;
	while (va_arg(ap, const char *))
		n++;
	return n;
}

#define LIST_TO_ARGV(arg0, argv, after_null)                          \
	va_list ap;                                                    \
	va_start(ap, arg0);                                            \
	size_t argc_ = count_args(arg0, ap);                           \
	va_end(ap);                                                    \
	char *argv[argc_ + 1];                                         \
	argv[0] = (char *)(arg0);                                      \
	va_start(ap, arg0);                                            \
	/* arg0's NULL, or the one read last here, ends the list */   \
	for (size_t i_ = 1; i_ <= argc_; i_++)                         \
		argv[i_] = va_arg(ap, char *);                         \
	after_null;                                                    \
	va_end(ap)

HOOK int execl(const char *path, const char *arg, ...)
{
	LIST_TO_ARGV(arg, argv, (void)0);
	argv[argc_] = NULL;
	struct call c = { .kind = K_EXECV, .path = path, .argv = argv };
	return with_context(&c, environ);
}

HOOK int execlp(const char *file, const char *arg, ...)
{
	LIST_TO_ARGV(arg, argv, (void)0);
	argv[argc_] = NULL;
	struct call c = { .kind = K_EXECVP, .path = file, .argv = argv };
	return with_context(&c, environ);
}

HOOK int execle(const char *path, const char *arg, ...)
{
	char *const *envp;
	LIST_TO_ARGV(arg, argv, envp = va_arg(ap, char *const *));
	argv[argc_] = NULL;
	struct call c = { .kind = K_EXECVE, .path = path, .argv = argv };
	return with_context(&c, envp);
}
