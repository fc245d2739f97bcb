/* What task-manager and web-crawler share: one-line logging, environment settings, the Kafka client configuration. */
#include "common.h"

#include <ctype.h>
#include <stdbool.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *common_prog = "testapp";

void common_vlog(const char *level, const char *fmt, va_list ap)
{
	char msg[1536];
	vsnprintf(msg, sizeof msg, fmt, ap);
	size_t n = strlen(msg);
	while (n && isspace((unsigned char)msg[n - 1]))
		msg[--n] = '\0';
	/* Newlines and control bytes (libpq messages end in one; URLs come from
	 * the network) are replaced so a log reader can split on lines. */
	for (char *p = msg; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = (*p == '\n' || *p == '\t') ? ' ' : '?';
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char when[32];
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
	char line[1700];
	snprintf(line, sizeof line, "%s.%03ldZ %s %s: %s\n", when, ts.tv_nsec / 1000000, common_prog, level, msg);
	/* One fputs per line: stdio's lock keeps threads' lines whole. */
	fputs(line, stderr);
}

void common_log(const char *level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	common_vlog(level, fmt, ap);
	va_end(ap);
}

const char *common_env_str(const char *name, const char *def)
{
	const char *v = getenv(name);
	return v && *v ? v : def;
}

long common_env_long(const char *name, long def, long min, long max)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return def;
	char *end;
	errno = 0;
	long n = strtol(v, &end, 10);
	if (errno || *end || n < min || n > max) {
		common_log("error", "%s=%s: expected an integer in [%ld, %ld]", name, v, min, max);
		exit(2);
	}
	return n;
}

static void kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	/* librdkafka uses syslog levels. */
	const char *lvl = level <= 3 ? "error" : level == 4 ? "warn" : level <= 6 ? "info" : "debug";
	common_log(lvl, "kafka %s %s: %s", rd_kafka_name(rk), fac, buf);
}

static void kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	(void)opaque;
	/* A connection failure has already been logged, with the same text, by
	 * librdkafka's own log line. */
	if (err == RD_KAFKA_RESP_ERR__TRANSPORT)
		return;
	common_log("warn", "kafka %s: %s: %s", rd_kafka_name(rk), rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

void common_kafka_set(rd_kafka_conf_t *conf, const char *key, const char *value)
{
	char err[512];
	if (rd_kafka_conf_set(conf, key, value, err, sizeof err) != RD_KAFKA_CONF_OK) {
		common_log("error", "kafka setting %s=%s: %s", key, value, err);
		exit(2);
	}
}

rd_kafka_conf_t *common_kafka_conf(const char *brokers)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	common_kafka_set(conf, "bootstrap.servers", brokers);
	common_kafka_set(conf, "client.id", common_prog);
	/* librdkafka's own debug contexts (e.g. "cgrp,topic,fetch"), for
	 * diagnosing group membership and delivery. */
	const char *debug = common_env_str("KAFKA_DEBUG", NULL);
	if (debug)
		common_kafka_set(conf, "debug", debug);
	rd_kafka_conf_set_log_cb(conf, kafka_log);
	rd_kafka_conf_set_error_cb(conf, kafka_error);
	return conf;
}

bool common_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
		      const char *topic)
{
	/* The cooperative protocol moves partitions one by one; the eager one
	 * replaces the whole assignment. */
	const char *proto = rd_kafka_rebalance_protocol(rk);
	bool coop = proto && strcmp(proto, "COOPERATIVE") == 0;
	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		common_log("info", "consumer assigned %d partition(s) of %s", parts->cnt, topic);
		if (coop) {
			rd_kafka_error_t *e = rd_kafka_incremental_assign(rk, parts);
			if (e) {
				common_log("error", "incremental assign: %s", rd_kafka_error_string(e));
				rd_kafka_error_destroy(e);
			}
		} else {
			rd_kafka_assign(rk, parts);
		}
		return true;
	}
	if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
		common_log("error", "rebalance: %s", rd_kafka_err2str(err));
	else
		common_log("info", "consumer revoked %d partition(s)", parts->cnt);
	if (coop) {
		rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
		if (e)
			rd_kafka_error_destroy(e);
	} else {
		rd_kafka_assign(rk, NULL);
	}
	return false;
}
