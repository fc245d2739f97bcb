/* The real libc functions behind our interposed ones, resolved in one place with dlsym(RTLD_NEXT). */
#ifndef TRACEAGENT_REAL_H
#define TRACEAGENT_REAL_H

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

struct real_fns {
	int (*accept)(int, struct sockaddr *, socklen_t *);
	int (*accept4)(int, struct sockaddr *, socklen_t *, int);
	int (*connect)(int, const struct sockaddr *, socklen_t);
	ssize_t (*recv)(int, void *, size_t, int);
	ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
	ssize_t (*recvmsg)(int, struct msghdr *, int);
	ssize_t (*read)(int, void *, size_t);
	ssize_t (*readv)(int, const struct iovec *, int);
	ssize_t (*read_chk)(int, void *, size_t, size_t);
	ssize_t (*recv_chk)(int, void *, size_t, size_t, int);
	ssize_t (*recvfrom_chk)(int, void *, size_t, size_t, int, struct sockaddr *, socklen_t *);
	ssize_t (*send)(int, const void *, size_t, int);
	ssize_t (*sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
	ssize_t (*sendmsg)(int, const struct msghdr *, int);
	ssize_t (*write)(int, const void *, size_t);
	ssize_t (*writev)(int, const struct iovec *, int);
	ssize_t (*sendfile)(int, int, off_t *, size_t);
	ssize_t (*sendfile64)(int, int, off64_t *, size_t);
	int (*close)(int);
	int (*dup2)(int, int);
	int (*dup3)(int, int, int);
	int (*close_range)(unsigned int, unsigned int, int);   /* glibc 2.34+; may be NULL */
	void (*closefrom)(int);                                /* glibc 2.34+; may be NULL */
	int (*shutdown)(int, int);
	int (*getsockopt)(int, int, int, void *, socklen_t *);
	/* hooks/sigflush.c */
	int (*sigaction)(int, const struct sigaction *, struct sigaction *);
	int (*sigaction_)(int, const struct sigaction *, struct sigaction *);   /* __sigaction */
	__sighandler_t (*signal)(int, __sighandler_t);
	__sighandler_t (*bsd_signal)(int, __sighandler_t);
	__sighandler_t (*ssignal)(int, __sighandler_t);
	__sighandler_t (*sysv_signal)(int, __sighandler_t);
	__sighandler_t (*sysv_signal_)(int, __sighandler_t);                 /* __sysv_signal */
	__sighandler_t (*sigset)(int, __sighandler_t);
	void (*exit_)(int);      /* _exit */
	void (*Exit)(int);       /* _Exit */
};

/* Filled by real_resolve(); every hook calls REAL(name), which resolves on
 * first use, so a hook reached before our constructor (from another
 * library's constructor) still finds its real function. */
extern struct real_fns real;

void real_resolve(void);

#define REAL(fn) (__builtin_expect(real.fn != NULL, 1) ? real.fn : (real_resolve(), real.fn))

/* libpq: only types come from its header; the library is the app's, found
 * with dlsym(RTLD_NEXT) the first time one of its hooks runs. Pointers
 * stay NULL when a symbol is missing (an old libpq), and that hook then
 * cannot pass through: it fails like libpq would without a connection. */
struct real_pq_fns {
	PGresult *(*exec)(PGconn *, const char *);
	PGresult *(*exec_params)(PGconn *, const char *, int, const Oid *, const char *const *,
				 const int *, const int *, int);
	PGresult *(*prepare)(PGconn *, const char *, const char *, int, const Oid *);
	PGresult *(*exec_prepared)(PGconn *, const char *, int, const char *const *, const int *,
				   const int *, int);
	PGresult *(*describe_prepared)(PGconn *, const char *);
	PGresult *(*describe_portal)(PGconn *, const char *);
	int (*send_query)(PGconn *, const char *);
	int (*send_query_params)(PGconn *, const char *, int, const Oid *, const char *const *,
				 const int *, const int *, int);
	int (*send_prepare)(PGconn *, const char *, const char *, int, const Oid *);
	int (*send_query_prepared)(PGconn *, const char *, int, const char *const *, const int *,
				   const int *, int);
	PGresult *(*get_result)(PGconn *);
	int (*enter_pipeline_mode)(PGconn *);
	int (*pipeline_sync)(PGconn *);
	PGconn *(*connectdb)(const char *);
	PGconn *(*connectdb_params)(const char *const *, const char *const *, int);
	PGconn *(*connect_start)(const char *);
	PGconn *(*connect_start_params)(const char *const *, const char *const *, int);
	void (*finish)(PGconn *);
	/* not hooked, only called */
	char *(*db)(const PGconn *);
	char *(*host)(const PGconn *);
	char *(*port)(const PGconn *);
	ConnStatusType (*status)(const PGconn *);
	char *(*error_message)(const PGconn *);
	ExecStatusType (*result_status)(const PGresult *);
	int (*ntuples)(const PGresult *);
	char *(*result_error_field)(const PGresult *, int);
	PGpipelineStatus (*pipeline_status)(const PGconn *);
};

extern struct real_pq_fns real_pq;

void real_pq_resolve(void);

#define REAL_PQ(fn) (__builtin_expect(real_pq.fn != NULL, 1) ? real_pq.fn : (real_pq_resolve(), real_pq.fn))

/* librdkafka, like libpq: types from its header, functions from the app's
 * copy, looked up the first time a Kafka hook runs. A NULL pointer means the
 * symbol is missing: the hooks that need it pass straight through. */
struct real_rk_fns {
	/* hooked */
	rd_kafka_t *(*new_)(rd_kafka_type_t, rd_kafka_conf_t *, char *, size_t);
	void (*destroy)(rd_kafka_t *);
	void (*destroy_flags)(rd_kafka_t *, int);
	rd_kafka_topic_t *(*topic_new)(rd_kafka_t *, const char *, rd_kafka_topic_conf_t *);
	void (*topic_destroy)(rd_kafka_topic_t *);
	int (*produce)(rd_kafka_topic_t *, int32_t, int, void *, size_t, const void *, size_t, void *);
	rd_kafka_error_t *(*produceva)(rd_kafka_t *, const rd_kafka_vu_t *, size_t);
	int (*produce_batch)(rd_kafka_topic_t *, int32_t, int, rd_kafka_message_t *, int);
	rd_kafka_message_t *(*consumer_poll)(rd_kafka_t *, int);
	rd_kafka_message_t *(*consume)(rd_kafka_topic_t *, int32_t, int);
	rd_kafka_message_t *(*consume_queue)(rd_kafka_queue_t *, int);
	ssize_t (*consume_batch)(rd_kafka_topic_t *, int32_t, int, rd_kafka_message_t **, size_t);
	ssize_t (*consume_batch_queue)(rd_kafka_queue_t *, int, rd_kafka_message_t **, size_t);
	int (*consume_callback)(rd_kafka_topic_t *, int32_t, int,
				void (*)(rd_kafka_message_t *, void *), void *);
	int (*consume_callback_queue)(rd_kafka_queue_t *, int, void (*)(rd_kafka_message_t *, void *),
				      void *);
	void (*message_destroy)(rd_kafka_message_t *);
	rd_kafka_resp_err_t (*commit)(rd_kafka_t *, const rd_kafka_topic_partition_list_t *, int);
	rd_kafka_resp_err_t (*commit_message)(rd_kafka_t *, const rd_kafka_message_t *, int);
	rd_kafka_resp_err_t (*commit_queue)(rd_kafka_t *, const rd_kafka_topic_partition_list_t *, rd_kafka_queue_t *,
					    void (*)(rd_kafka_t *, rd_kafka_resp_err_t,
						     rd_kafka_topic_partition_list_t *, void *),
					    void *);
	rd_kafka_resp_err_t (*consumer_close)(rd_kafka_t *);
	/* not hooked, only called */
	rd_kafka_conf_res_t (*conf_get)(const rd_kafka_conf_t *, const char *, char *, size_t *);
	void (*conf_set_dr_msg_cb)(rd_kafka_conf_t *,
				   void (*)(rd_kafka_t *, const rd_kafka_message_t *, void *));
	const char *(*topic_name)(const rd_kafka_topic_t *);
	const char *(*err2name)(rd_kafka_resp_err_t);
	const char *(*err2str)(rd_kafka_resp_err_t);
	rd_kafka_resp_err_t (*error_code)(const rd_kafka_error_t *);
	void (*error_destroy)(rd_kafka_error_t *);
	rd_kafka_headers_t *(*headers_new)(size_t);
	void (*headers_destroy)(rd_kafka_headers_t *);
	rd_kafka_resp_err_t (*header_add)(rd_kafka_headers_t *, const char *, ssize_t, const void *, ssize_t);
	rd_kafka_resp_err_t (*header_remove)(rd_kafka_headers_t *, const char *);
	rd_kafka_resp_err_t (*header_get_last)(const rd_kafka_headers_t *, const char *, const void **,
					       size_t *);
	rd_kafka_resp_err_t (*header_get)(const rd_kafka_headers_t *, size_t, const char *, const void **, size_t *);
	rd_kafka_resp_err_t (*message_headers)(const rd_kafka_message_t *, rd_kafka_headers_t **);
	rd_kafka_resp_err_t (*last_error)(void);
};

extern struct real_rk_fns real_rk;

void real_rk_resolve(void);
/* Also looks in the dependencies of the module holding caller, for a copy of
 * librdkafka that RTLD_NEXT cannot see. */
void real_rk_resolve_from(const void *caller);

#define REAL_RK(fn) (__builtin_expect(real_rk.fn != NULL, 1) ? real_rk.fn : (real_rk_resolve(), real_rk.fn))

/* stdio output functions (hooks/logcorr.c). Each is looked up at its own
 * first call, not with the rest: most programs use a few of them, and every
 * dlsym costs about half a microsecond at start-up. */
struct real_stdio_fns {
	int (*vfprintf)(FILE *, const char *, va_list);
	int (*vfprintf_chk)(FILE *, int, const char *, va_list);
	int (*fputs)(const char *, FILE *);
	int (*fputs_unlocked)(const char *, FILE *);
	int (*puts)(const char *);
	size_t (*fwrite)(const void *, size_t, size_t, FILE *);
	size_t (*fwrite_unlocked)(const void *, size_t, size_t, FILE *);
	int (*fputc)(int, FILE *);
	int (*fputc_unlocked)(int, FILE *);
	int (*putc)(int, FILE *);
	int (*putc_unlocked)(int, FILE *);
	int (*putchar)(int);
	int (*putchar_unlocked)(int);
};

extern struct real_stdio_fns real_stdio;

/* dlsym(RTLD_NEXT, name), stored in *slot (racing callers store the same value). */
void *real_stdio_sym(void **slot, const char *name);

#define REAL_STDIO(fn, name) (__builtin_expect(real_stdio.fn != NULL, 1) ? real_stdio.fn : \
	(__typeof__(real_stdio.fn))real_stdio_sym((void **)&real_stdio.fn, name))

/* glibc-only functions the hooks call are referenced weakly, so musl's loader
 * can still load the .so, which then stays off (hooks/init.c); the musl test
 * (test-static-musl.sh) lists any strong one that creeps in. */
extern const char *strerrorname_np(int) __attribute__((weak));

#endif
