/* The hook kernel shared by every family: the HOOK mark, the real functions behind ours, and the enter/leave shape that keeps errno. */
#ifndef TRACEAGENT_KERNEL_H
#define TRACEAGENT_KERNEL_H

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <setjmp.h>
#include <unwind.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "agent/context.h"

/* Interposed entry points are the only symbols the .so exports (with
 * hooks/libtraceagent.map, which lists them). */
#define HOOK __attribute__((visibility("default")))

/*
 * The real functions, one list per library: X(return type, symbol,
 * (parameter types)). Each symbol is written here once; its name string,
 * its slot and its type all come from this entry. libpq and librdkafka give
 * only their types: neither is linked, their functions are the app's copy.
 */
#define KERNEL_LIBC(X)                                                                              \
	/* hooks/socket.c, hooks/logcorr.c: the fd calls */                                          \
	X(int, accept, (int, struct sockaddr *, socklen_t *))                                        \
	X(int, accept4, (int, struct sockaddr *, socklen_t *, int))                                  \
	X(int, connect, (int, const struct sockaddr *, socklen_t))                                   \
	X(ssize_t, recv, (int, void *, size_t, int))                                                 \
	X(ssize_t, recvfrom, (int, void *, size_t, int, struct sockaddr *, socklen_t *))             \
	X(ssize_t, recvmsg, (int, struct msghdr *, int))                                             \
	X(ssize_t, read, (int, void *, size_t))                                                      \
	X(ssize_t, readv, (int, const struct iovec *, int))                                          \
	X(ssize_t, __read_chk, (int, void *, size_t, size_t))                                        \
	X(ssize_t, __recv_chk, (int, void *, size_t, size_t, int))                                   \
	X(ssize_t, __recvfrom_chk, (int, void *, size_t, size_t, int, struct sockaddr *, socklen_t *)) \
	X(ssize_t, send, (int, const void *, size_t, int))                                           \
	X(ssize_t, sendto, (int, const void *, size_t, int, const struct sockaddr *, socklen_t))     \
	X(ssize_t, sendmsg, (int, const struct msghdr *, int))                                       \
	X(ssize_t, write, (int, const void *, size_t))                                               \
	X(ssize_t, writev, (int, const struct iovec *, int))                                         \
	X(ssize_t, sendfile, (int, int, off_t *, size_t))                                            \
	X(ssize_t, sendfile64, (int, int, off64_t *, size_t))                                        \
	X(int, close, (int))                                                                         \
	X(int, dup2, (int, int))                                                                     \
	X(int, dup3, (int, int, int))                                                                \
	X(int, close_range, (unsigned int, unsigned int, int)) /* glibc 2.34+; may be missing */    \
	X(void, closefrom, (int))                              /* glibc 2.34+; may be missing */    \
	X(int, shutdown, (int, int))                                                                 \
	X(int, getsockopt, (int, int, int, void *, socklen_t *))                                     \
	/* hooks/sigflush.c */                                                                       \
	X(int, sigaction, (int, const struct sigaction *, struct sigaction *))                       \
	X(int, __sigaction, (int, const struct sigaction *, struct sigaction *))                     \
	X(__sighandler_t, signal, (int, __sighandler_t))                                             \
	X(__sighandler_t, bsd_signal, (int, __sighandler_t))                                         \
	X(__sighandler_t, ssignal, (int, __sighandler_t))                                            \
	X(__sighandler_t, sysv_signal, (int, __sighandler_t))                                        \
	X(__sighandler_t, __sysv_signal, (int, __sighandler_t))                                      \
	X(__sighandler_t, sigset, (int, __sighandler_t))                                             \
	X(void, _exit, (int))                                                                        \
	X(void, _Exit, (int))                                                                        \
	/* hooks/exec.c */                                                                           \
	X(int, execve, (const char *, char *const[], char *const[]))                                 \
	X(int, execvpe, (const char *, char *const[], char *const[]))                                \
	X(int, execv, (const char *, char *const[]))                                                 \
	X(int, execvp, (const char *, char *const[]))                                                \
	X(int, fexecve, (int, char *const[], char *const[]))                                         \
	X(int, execveat, (int, const char *, char *const[], char *const[], int))                     \
	X(int, posix_spawn, (pid_t *, const char *, const posix_spawn_file_actions_t *,              \
			     const posix_spawnattr_t *, char *const[], char *const[]))                \
	X(int, posix_spawnp, (pid_t *, const char *, const posix_spawn_file_actions_t *,             \
			      const posix_spawnattr_t *, char *const[], char *const[]))               \
	/* hooks/logcorr.c: stdio output */                                                          \
	X(int, vfprintf, (FILE *, const char *, va_list))                                            \
	X(int, __vfprintf_chk, (FILE *, int, const char *, va_list))                                 \
	X(int, fputs, (const char *, FILE *))                                                        \
	X(int, fputs_unlocked, (const char *, FILE *))                                               \
	X(int, puts, (const char *))                                                                 \
	X(size_t, fwrite, (const void *, size_t, size_t, FILE *))                                    \
	X(size_t, fwrite_unlocked, (const void *, size_t, size_t, FILE *))                           \
	X(int, fputc, (int, FILE *))                                                                 \
	X(int, fputc_unlocked, (int, FILE *))                                                        \
	X(int, putc, (int, FILE *))                                                                  \
	X(int, putc_unlocked, (int, FILE *))                                                         \
	X(int, putchar, (int))                                                                       \
	X(int, putchar_unlocked, (int))                                                              \
	/* hooks/funcs.c: objects loaded later, and jumps past traced frames */                      \
	X(void *, dlopen, (const char *, int))                                                       \
	X(void, longjmp, (struct __jmp_buf_tag *, int))                                              \
	X(void, _longjmp, (struct __jmp_buf_tag *, int))                                             \
	X(void, siglongjmp, (struct __jmp_buf_tag *, int))                                           \
	X(void, __longjmp_chk, (struct __jmp_buf_tag *, int))

/* A missing one (an old libpq) leaves its hook unable to pass through: it
 * fails as libpq would without a connection. */
#define KERNEL_LIBPQ(X)                                                                              \
	X(PGresult *, PQexec, (PGconn *, const char *))                                              \
	X(PGresult *, PQexecParams, (PGconn *, const char *, int, const Oid *, const char *const *, \
				     const int *, const int *, int))                                   \
	X(PGresult *, PQprepare, (PGconn *, const char *, const char *, int, const Oid *))           \
	X(PGresult *, PQexecPrepared, (PGconn *, const char *, int, const char *const *, const int *, \
				       const int *, int))                                              \
	X(PGresult *, PQdescribePrepared, (PGconn *, const char *))                                  \
	X(PGresult *, PQdescribePortal, (PGconn *, const char *))                                    \
	X(int, PQsendQuery, (PGconn *, const char *))                                                \
	X(int, PQsendQueryParams, (PGconn *, const char *, int, const Oid *, const char *const *,    \
				   const int *, const int *, int))                                     \
	X(int, PQsendPrepare, (PGconn *, const char *, const char *, int, const Oid *))              \
	X(int, PQsendQueryPrepared, (PGconn *, const char *, int, const char *const *, const int *,  \
				     const int *, int))                                                \
	X(PGresult *, PQgetResult, (PGconn *))                                                       \
	X(PGconn *, PQconnectdb, (const char *))                                                     \
	X(PGconn *, PQconnectdbParams, (const char *const *, const char *const *, int))              \
	X(PGconn *, PQconnectStart, (const char *))                                                  \
	X(PGconn *, PQconnectStartParams, (const char *const *, const char *const *, int))           \
	X(void, PQfinish, (PGconn *))                                                                \
	/* not hooked, only called */                                                                \
	X(char *, PQdb, (const PGconn *))                                                            \
	X(char *, PQhost, (const PGconn *))                                                          \
	X(char *, PQport, (const PGconn *))                                                          \
	X(ConnStatusType, PQstatus, (const PGconn *))                                                \
	X(char *, PQerrorMessage, (const PGconn *))                                                  \
	X(ExecStatusType, PQresultStatus, (const PGresult *))                                        \
	X(int, PQntuples, (const PGresult *))                                                        \
	X(char *, PQresultErrorField, (const PGresult *, int))

/* A missing one: the hooks that need it pass straight through. */
#define KERNEL_RDKAFKA(X)                                                                            \
	X(rd_kafka_t *, rd_kafka_new, (rd_kafka_type_t, rd_kafka_conf_t *, char *, size_t))         \
	X(void, rd_kafka_destroy, (rd_kafka_t *))                                                    \
	X(void, rd_kafka_destroy_flags, (rd_kafka_t *, int))                                         \
	X(rd_kafka_topic_t *, rd_kafka_topic_new, (rd_kafka_t *, const char *, rd_kafka_topic_conf_t *)) \
	X(void, rd_kafka_topic_destroy, (rd_kafka_topic_t *))                                        \
	X(int, rd_kafka_produce, (rd_kafka_topic_t *, int32_t, int, void *, size_t, const void *, size_t, void *)) \
	X(rd_kafka_error_t *, rd_kafka_produceva, (rd_kafka_t *, const rd_kafka_vu_t *, size_t))    \
	X(int, rd_kafka_produce_batch, (rd_kafka_topic_t *, int32_t, int, rd_kafka_message_t *, int)) \
	X(rd_kafka_message_t *, rd_kafka_consumer_poll, (rd_kafka_t *, int))                         \
	X(rd_kafka_message_t *, rd_kafka_consume, (rd_kafka_topic_t *, int32_t, int))                \
	X(rd_kafka_message_t *, rd_kafka_consume_queue, (rd_kafka_queue_t *, int))                   \
	X(ssize_t, rd_kafka_consume_batch, (rd_kafka_topic_t *, int32_t, int, rd_kafka_message_t **, size_t)) \
	X(ssize_t, rd_kafka_consume_batch_queue, (rd_kafka_queue_t *, int, rd_kafka_message_t **, size_t)) \
	X(int, rd_kafka_consume_callback, (rd_kafka_topic_t *, int32_t, int,                         \
					   void (*)(rd_kafka_message_t *, void *), void *))            \
	X(int, rd_kafka_consume_callback_queue, (rd_kafka_queue_t *, int,                            \
						 void (*)(rd_kafka_message_t *, void *), void *))      \
	X(void, rd_kafka_message_destroy, (rd_kafka_message_t *))                                    \
	X(rd_kafka_resp_err_t, rd_kafka_commit, (rd_kafka_t *, const rd_kafka_topic_partition_list_t *, int)) \
	X(rd_kafka_resp_err_t, rd_kafka_commit_message, (rd_kafka_t *, const rd_kafka_message_t *, int)) \
	X(rd_kafka_resp_err_t, rd_kafka_commit_queue,                                                \
	  (rd_kafka_t *, const rd_kafka_topic_partition_list_t *, rd_kafka_queue_t *,                \
	   void (*)(rd_kafka_t *, rd_kafka_resp_err_t, rd_kafka_topic_partition_list_t *, void *), void *)) \
	X(rd_kafka_resp_err_t, rd_kafka_consumer_close, (rd_kafka_t *))                              \
	/* not hooked, only called */                                                                \
	X(rd_kafka_conf_res_t, rd_kafka_conf_get, (const rd_kafka_conf_t *, const char *, char *, size_t *)) \
	X(void, rd_kafka_conf_set_dr_msg_cb, (rd_kafka_conf_t *,                                     \
					      void (*)(rd_kafka_t *, const rd_kafka_message_t *, void *))) \
	X(const char *, rd_kafka_topic_name, (const rd_kafka_topic_t *))                             \
	X(const char *, rd_kafka_err2name, (rd_kafka_resp_err_t))                                    \
	X(const char *, rd_kafka_err2str, (rd_kafka_resp_err_t))                                     \
	X(rd_kafka_resp_err_t, rd_kafka_error_code, (const rd_kafka_error_t *))                      \
	X(void, rd_kafka_error_destroy, (rd_kafka_error_t *))                                        \
	X(rd_kafka_headers_t *, rd_kafka_headers_new, (size_t))                                      \
	X(void, rd_kafka_headers_destroy, (rd_kafka_headers_t *))                                    \
	X(rd_kafka_resp_err_t, rd_kafka_header_add, (rd_kafka_headers_t *, const char *, ssize_t, const void *, ssize_t)) \
	X(rd_kafka_resp_err_t, rd_kafka_header_remove, (rd_kafka_headers_t *, const char *))         \
	X(rd_kafka_resp_err_t, rd_kafka_header_get_last, (const rd_kafka_headers_t *, const char *,  \
							  const void **, size_t *))                    \
	X(rd_kafka_resp_err_t, rd_kafka_header_get, (const rd_kafka_headers_t *, size_t, const char *, \
						     const void **, size_t *))                         \
	X(rd_kafka_resp_err_t, rd_kafka_message_headers, (const rd_kafka_message_t *, rd_kafka_headers_t **)) \
	X(rd_kafka_resp_err_t, rd_kafka_last_error, (void))

/* libgcc_s's unwinder (C++ exceptions): hooks/funcs.c
 * puts back the return addresses it replaced before anything unwinds. Looked
 * up at first use: the library is loaded by then (its caller links it). */
#define KERNEL_UNWIND(X)                                                                             \
	X(_Unwind_Reason_Code, _Unwind_RaiseException, (struct _Unwind_Exception *))                 \
	X(_Unwind_Reason_Code, _Unwind_Resume_or_Rethrow, (struct _Unwind_Exception *))

/* libstdc++: where a C++ handler catches, and how many exceptions are still
 * on their way (std::uncaught_exceptions(), by its mangled name: libstdc++
 * exports no C name for it) (hooks/funcs.c). */
#define KERNEL_CXX(X)                                                                                \
	X(void *, __cxa_begin_catch, (void *))                                                       \
	X(int, _ZSt19uncaught_exceptionsv, (void))

/* What glibc's pthread_atfork (libc_nonshared.a) calls, which would reference
 * it strongly: weak here, so musl's loader still loads the agent (init checks
 * it exists before anything registers a handler). */
extern int __register_atfork(void (*)(void), void (*)(void), void (*)(void), void *) __attribute__((weak));
extern void *__dso_handle;

/* The slot index of each symbol (KERNEL_read, ...), the libraries in order,
 * each closed by its end marker. */
#define KERNEL_INDEX(ret, name, params) KERNEL_##name,
enum kernel_sym {
	KERNEL_LIBC(KERNEL_INDEX) KERNEL_LIBC_END,
	KERNEL_LIBPQ(KERNEL_INDEX) KERNEL_LIBPQ_END,
	KERNEL_RDKAFKA(KERNEL_INDEX) KERNEL_RDKAFKA_END,
	KERNEL_UNWIND(KERNEL_INDEX) KERNEL_UNWIND_END,
	KERNEL_CXX(KERNEL_INDEX) KERNEL_CXX_END,
};
#undef KERNEL_INDEX

/* Each symbol's pointer type (kernel_fn_read, ...). */
#define KERNEL_TYPE(ret, name, params) typedef ret(*kernel_fn_##name) params;
KERNEL_LIBC(KERNEL_TYPE)
KERNEL_LIBPQ(KERNEL_TYPE)
KERNEL_RDKAFKA(KERNEL_TYPE)
KERNEL_UNWIND(KERNEL_TYPE)
KERNEL_CXX(KERNEL_TYPE)
#undef KERNEL_TYPE

/* The real functions, NULL until looked up (and for good when missing). */
extern void *kernel_slot[KERNEL_CXX_END];

/* Looks sym up once (later calls answer from memory, found or not): RTLD_NEXT,
 * then for libpq, librdkafka and libgcc_s the loaded library by soname, then the
 * module kernel_resolve_from named. A symbol found in our own .so is never
 * taken for the real one. Writes nothing but the slot (vfork children). */
void *kernel_resolve(enum kernel_sym sym);

/* REAL(read): the real function, looked up at its own first use, so a hook
 * reached before our constructor still finds it. After that, one load and
 * a predicted branch. NULL when the library lacks it. */
#define REAL(sym)                                                                                    \
	((kernel_fn_##sym)(__builtin_expect(kernel_slot[KERNEL_##sym] != NULL, 1) ? kernel_slot[KERNEL_##sym] \
										    : kernel_resolve(KERNEL_##sym)))

/* Also looks in the dependencies of the module holding caller, for symbols
 * of [first, end) still missing: a renamed copy of librdkafka (Python wheels
 * ship "librdkafka-<hash>.so.1") that neither RTLD_NEXT nor a soname finds. */
void kernel_resolve_from(enum kernel_sym first, enum kernel_sym end, const void *caller);

/* dlopen is a plain jump to libc's, the caller's return address intact
 * (libc resolves a bare name with the calling object's RUNPATH), until a
 * family asks to see each object loaded: then fn runs after libc's dlopen
 * succeeded, before it returns (and libc sees the agent as the caller). */
void kernel_set_dlopen_observer(void (*fn)(void));

/* --- the agent's start, handed over by the wiring file (hooks/init.c) --- */

/* Tracing is on: the start ran and succeeded. */
extern bool kernel_enabled;
/* Nothing will start the agent (OTEL_SDK_DISABLED, or not glibc): hooks pass through. */
extern bool kernel_disabled;
/* The start ran (or never will): hooks only read kernel_enabled. */
extern bool kernel_started;

/* The wiring file's constructor registers the start, run once by the first
 * hook that may record a span. A hook reached before that (from another
 * library's constructor) passes straight through. */
void kernel_set_start(void (*start)(void));
void kernel_start(void);

static inline void kernel_ensure_started(void)
{
	if (__builtin_expect(!kernel_started, 0))
		kernel_start();
}

/* Every hook that records: the guard taken (false when re-entered: the
 * agent itself is calling), the agent started, tracing on. False means pass
 * straight through; true, leave with KERNEL_LEAVE. */
static inline bool kernel_enter(void)
{
	if (!context_guard_enter())
		return false;
	kernel_ensure_started();
	if (__builtin_expect(kernel_enabled, 1))
		return true;
	context_guard_leave();
	return false;
}

/*
 * The agent's own work inside a hook (recording what the real call did)
 * leaves errno as the app's call set it. The statements see that errno as
 * `app_errno` and may set it (a failure of ours the app must see).
 * KERNEL_LEAVE also lets go of the guard: the last step of a hook.
 */
#define KERNEL_QUIET(...)                 \
	do {                              \
		int app_errno = errno;    \
		__VA_ARGS__;              \
		errno = app_errno;        \
	} while (0)
#define KERNEL_LEAVE(...) KERNEL_QUIET(__VA_ARGS__; context_guard_leave())
/* Work that must be done even when re-entered (ending the agent's spans at
 * a destroy or in a callback): errno kept, the guard held if it was free. */
#define KERNEL_ALWAYS(...)                                                           \
	KERNEL_QUIET(bool kernel_guarded_ = context_guard_enter(); __VA_ARGS__;     \
		     if (kernel_guarded_) context_guard_leave())

/* glibc-only functions the hooks call are referenced weakly, so musl's loader
 * can still load the .so, which then stays off (hooks/init.c); the musl test
 * (test-static-musl.sh) lists any strong one that creeps in. */
extern const char *strerrorname_np(int) __attribute__((weak));

#endif
