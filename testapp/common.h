/* What task-manager and web-crawler share: one-line logging, environment settings, the Kafka client configuration. */
#ifndef TESTAPP_COMMON_H
#define TESTAPP_COMMON_H

#include <stdarg.h>
#include <stdbool.h>

#include <librdkafka/rdkafka.h>

/*
 * A piece of business logic with an entry of its own in the binary: global,
 * never inlined, cloned (.isra, .constprop) or folded into another function.
 * This is plain C, not tracing code: it only keeps the function where
 * TRACEAGENT_FUNCTIONS (patched from outside, at load) can find it by name.
 * Its callers must not end with the call either (a tail call is a jmp, which
 * makes no entry), and the functions return long rather than int: the return
 * value tells a business failure, and only the low half of rax is defined
 * when a function returns int.
 */
#define COMMON_BUSINESS __attribute__((noipa, visibility("default")))

/* The program's name, first on every log line and the Kafka client.id. */
extern const char *common_prog;

/* One event, one line on stderr: "2024-05-01T12:00:00.123Z PROG LEVEL: text". */
__attribute__((format(printf, 2, 0))) void common_vlog(const char *level, const char *fmt, va_list ap);
__attribute__((format(printf, 2, 3))) void common_log(const char *level, const char *fmt, ...);

/* A variable's value, or def when unset or empty. */
const char *common_env_str(const char *name, const char *def);
/* An integer variable in [min, max], def when unset; anything else exits 2 with a message. */
long common_env_long(const char *name, long def, long min, long max);

/* Sets one property; a refused one exits 2 with librdkafka's reason. */
void common_kafka_set(rd_kafka_conf_t *conf, const char *key, const char *value);
/* A configuration with the brokers, client.id, KAFKA_DEBUG, and librdkafka's
 * log and error callbacks routed to common_log. */
rd_kafka_conf_t *common_kafka_conf(const char *brokers);
/* A consumer's rebalance: applies the assignment or revocation (eager or
 * cooperative) and logs it. True when partitions were assigned. */
bool common_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
		      const char *topic);

#endif
