/* web-crawler: the task-manager's worker; it takes crawl tasks from Kafka, fetches each URL with libcurl and publishes the outcome to task-status. */
/*
 * Configured by the environment:
 *   KAFKA_BROKERS    bootstrap servers (default 127.0.0.1:9092)
 *   TASKS_TOPIC      topic tasks are read from (default web-crawl-tasks)
 *   STATUS_TOPIC     topic outcomes are published to (default task-status)
 *   CRAWL_TIMEOUT_MS limit for one fetch, connection included (default 3000)
 *   KAFKA_DEBUG      librdkafka debug contexts, e.g. cgrp,fetch (default none)
 *
 * A task is {"id": N, "url": "http://..."}. The outcome, keyed by the id, is
 *   {"id":N,"status":"completed","http_status":200,"size_bytes":B,"duration_ms":D}
 * or, for a transfer failure or an HTTP status of 400 and above,
 *   {"id":N,"status":"error","error":"...","duration_ms":D[,"http_status":S]}
 * Malformed tasks are logged and skipped.
 *
 * Prints "web-crawler ready" on stdout once the group has given it its
 * partitions, and one line per event on stderr. SIGTERM or SIGINT: the fetch
 * in progress is abandoned (its task is read again at the next start), the
 * consumer is closed, the producer flushed, and the exit status is 0.
 *
 * There is no tracing code here: the program is traced from outside, by
 * LD_PRELOAD=libtraceagent.so. Each task is handled entirely on the thread
 * that polled it, where the agent makes the message's span current, so the
 * fetch and the outcome's publication join the task's trace. The fetch
 * (crawl_page) and the outcome's report (crawl_report) are named functions
 * (COMMON_BUSINESS) that TRACEAGENT_FUNCTIONS can name; each returns nonzero
 * for a failure.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "common.h"

#define PROG "web-crawler"
#define FLUSH_MS 5000
/* A full producer queue is waited on this long before the outcome is dropped. */
#define PRODUCE_WAIT_MS 5000
/* Past this, shutdown gives up and exits 1 rather than hang a test or a demo. */
#define SHUTDOWN_LIMIT_S 20

struct config {
	const char *brokers;
	const char *tasks_topic;
	const char *status_topic;
	long timeout_ms;
};

struct crawl {
	CURLcode rc;
	long http_status;  /* 0 when no response arrived */
	uint64_t size;	   /* body bytes received */
	long duration_ms;
	bool abandoned;	   /* shutdown cut it short */
	char errbuf[CURL_ERROR_SIZE];
};

static struct config cfg;
static volatile sig_atomic_t stopping;
static atomic_bool stop_poller;
static rd_kafka_t *consumer, *producer;
/* Held for the life of the producer so the status topic's metadata is
 * fetched at start: librdkafka otherwise learns of a topic at its first
 * message and holds that message up to a second for its metadata. */
static rd_kafka_topic_t *status_rkt;
static bool announced_ready;

/* ---- Kafka ------------------------------------------------------------ */

/* Delivery reports of outcomes, served by the poller thread. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	(void)opaque;
	if (m->err)
		common_log("error", "task %.*s: outcome not delivered: %s", (int)m->key_len, m->key ? (const char *)m->key : "",
			rd_kafka_err2str(m->err));
}

/* Serves the producer's delivery reports as soon as they arrive (a report
 * ends the message's PRODUCER span under the agent, so serving it only
 * between consumer polls would stretch that span by up to a poll). */
static void *poller_main(void *arg)
{
	(void)arg;
	/* The stop signals are main's to take. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	while (!atomic_load(&stop_poller))
		rd_kafka_poll(producer, 100);
	return NULL;
}

/* Assigns what the group coordinator hands us; the first assignment is when
 * the crawler is ready (tasks can reach it). */
static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
			 void *opaque)
{
	(void)opaque;
	if (common_rebalance(rk, err, parts, cfg.tasks_topic) && !announced_ready) {
		announced_ready = true;
		printf("%s ready\n", PROG);
		fflush(stdout);
	}
}

/* ---- crawling --------------------------------------------------------- */

/* The body is counted, not kept. */
static size_t count_body(char *data, size_t size, size_t nmemb, void *arg)
{
	(void)data;
	*(uint64_t *)arg += (uint64_t)size * nmemb;
	return size * nmemb;
}

/* Abandons the transfer at shutdown rather than wait for its timeout. */
static int check_stop(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	(void)arg;
	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return stopping ? 1 : 0;
}

static long elapsed_ms(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Fetches one page; what came of it is in *out. 0 when a response under 400
 * arrived; otherwise the failure: curl's error code, or the HTTP status. */
COMMON_BUSINESS long crawl_page(const char *url, struct crawl *out)
{
	memset(out, 0, sizeof *out);
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CURL *h = curl_easy_init();
	if (!h) {
		out->rc = CURLE_OUT_OF_MEMORY;
		return out->rc;
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	/* Only the web: a task must not make the crawler read file:// or talk
	 * to other protocols. */
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, cfg.timeout_ms);
	/* No SIGALRM for DNS timeouts: signals and threads do not mix. */
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	/* A redirect is a result in itself (its status is recorded), not
	 * something to chase to another host. */
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, PROG "/1.0");
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, count_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &out->size);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, out->errbuf);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, check_stop);
	out->rc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->http_status);
	curl_easy_cleanup(h);
	out->duration_ms = elapsed_ms(&t0);
	out->abandoned = out->rc == CURLE_ABORTED_BY_CALLBACK && stopping;
	if (out->rc != CURLE_OK && !out->errbuf[0])
		snprintf(out->errbuf, sizeof out->errbuf, "%s", curl_easy_strerror(out->rc));
	if (out->rc != CURLE_OK)
		return out->rc;
	return out->http_status >= 400 ? out->http_status : 0;
}

/* ---- tasks ------------------------------------------------------------ */

/* Publishes an outcome keyed by the task id. A full local queue is drained
 * by the poller thread: it is waited on for at most PRODUCE_WAIT_MS. 0 once
 * librdkafka has the message; otherwise its error, or -1 out of memory. */
static long publish(const char *id, json_t *outcome)
{
	char *value = json_dumps(outcome, JSON_COMPACT);
	if (!value) {
		common_log("error", "task %s: out of memory", id);
		return -1;
	}
	rd_kafka_resp_err_t e;
	for (int waited = 0;; waited += 100) {
		e = rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(cfg.status_topic), RD_KAFKA_V_KEY(id, strlen(id)),
				      RD_KAFKA_V_VALUE(value, strlen(value)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
				      RD_KAFKA_V_END);
		if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || waited >= PRODUCE_WAIT_MS || stopping)
			break;
		usleep(100 * 1000);
	}
	if (e)
		common_log("error", "task %s: outcome not published: %s", id, rd_kafka_err2str(e));
	free(value);
	return e;
}

/* Reports a crawl's outcome on the status topic, keyed by the task id. 0
 * once it is handed to the producer; otherwise why it was not (librdkafka's
 * error, or -1 out of memory). */
COMMON_BUSINESS long crawl_report(const char *id, json_int_t idn, const char *url, const struct crawl *c)
{
	json_t *outcome;
	if (c->rc == CURLE_OK && c->http_status < 400) {
		common_log("info", "task %s: GET %s: HTTP %ld, %" PRIu64 " bytes in %ld ms", id, url, c->http_status,
			c->size, c->duration_ms);
		outcome = json_pack("{sI ss sI sI sI}", "id", idn, "status", "completed", "http_status",
				    (json_int_t)c->http_status, "size_bytes", (json_int_t)c->size, "duration_ms",
				    (json_int_t)c->duration_ms);
	} else {
		char reason[CURL_ERROR_SIZE + 32];
		if (c->rc == CURLE_OK)
			snprintf(reason, sizeof reason, "HTTP %ld", c->http_status);
		else
			snprintf(reason, sizeof reason, "%s", c->errbuf);
		common_log("warn", "task %s: GET %s failed after %ld ms: %s", id, url, c->duration_ms, reason);
		outcome = json_pack("{sI ss ss sI}", "id", idn, "status", "error", "error", reason, "duration_ms",
				    (json_int_t)c->duration_ms);
		/* A response that arrived says more than the reason alone. */
		if (outcome && c->http_status > 0)
			json_object_set_new(outcome, "http_status", json_integer(c->http_status));
	}
	long e = -1;
	if (outcome)
		e = publish(id, outcome);
	else
		common_log("error", "task %s: out of memory", id);
	json_decref(outcome);
	return e;
}

/* Handles one task message. Returns false when it was abandoned at shutdown:
 * its offset is then not stored, so the task is read again. */
static bool handle_task(const rd_kafka_message_t *m)
{
	json_error_t jerr;
	json_t *task = json_loadb(m->payload ? m->payload : "", m->len, JSON_REJECT_DUPLICATES, &jerr);
	json_t *jid = task ? json_object_get(task, "id") : NULL;
	json_t *jurl = task ? json_object_get(task, "url") : NULL;
	const char *bad = NULL;
	if (!task)
		bad = jerr.text;
	else if (!json_is_object(task))
		bad = "not a JSON object";
	else if (!json_is_integer(jid) || json_integer_value(jid) <= 0)
		bad = "id must be a positive integer";
	else if (!json_is_string(jurl) || json_string_length(jurl) == 0 ||
		 strlen(json_string_value(jurl)) != json_string_length(jurl))
		bad = "url must be a non-empty string";
	if (bad) {
		common_log("warn", "skipping malformed task at %s [%d] offset %" PRId64 ": %s", rd_kafka_topic_name(m->rkt),
			(int)m->partition, (int64_t)m->offset, bad);
		json_decref(task);
		return true;
	}

	json_int_t idn = json_integer_value(jid);
	char id[24];
	snprintf(id, sizeof id, "%" JSON_INTEGER_FORMAT, idn);
	const char *url = json_string_value(jurl);
	struct crawl c;
	crawl_page(url, &c);
	if (c.abandoned) {
		common_log("info", "task %s: fetch of %s abandoned at shutdown", id, url);
		json_decref(task);
		return false;
	}
	crawl_report(id, idn, url, &c);
	json_decref(task);
	return true;
}

static void on_stop_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static void on_shutdown_timeout(int sig)
{
	(void)sig;
	static const char msg[] = PROG " error: shutdown took too long; exiting\n";
	if (write(2, msg, sizeof msg - 1) < 0) {
		/* nothing left to report it to */
	}
	_exit(1);
}

int main(void)
{
	common_prog = PROG;
	cfg.brokers = common_env_str("KAFKA_BROKERS", "127.0.0.1:9092");
	cfg.tasks_topic = common_env_str("TASKS_TOPIC", "web-crawl-tasks");
	cfg.status_topic = common_env_str("STATUS_TOPIC", "task-status");
	cfg.timeout_ms = common_env_long("CRAWL_TIMEOUT_MS", 3000, 1, 600000);

	/* The handler only sets a flag, which the poll loop and the transfer's
	 * progress callback check: both return within a fraction of a second. */
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		common_log("error", "curl_global_init failed");
		return 1;
	}

	char err[512];
	rd_kafka_conf_t *pconf = common_kafka_conf(cfg.brokers);
	rd_kafka_conf_set_dr_msg_cb(pconf, on_delivery);
	producer = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, err, sizeof err);
	if (!producer) {
		common_log("error", "kafka producer: %s", err);
		return 1;
	}

	status_rkt = rd_kafka_topic_new(producer, cfg.status_topic, NULL);
	if (!status_rkt) {
		common_log("error", "kafka topic %s: %s", cfg.status_topic, rd_kafka_err2str(rd_kafka_last_error()));
		return 1;
	}
	pthread_t poller;
	if (pthread_create(&poller, NULL, poller_main, NULL)) {
		common_log("error", "cannot start the poller thread");
		return 1;
	}

	rd_kafka_conf_t *cconf = common_kafka_conf(cfg.brokers);
	common_kafka_set(cconf, "group.id", PROG);
	/* A member that dies without leaving loses its partitions after 6 s, not
	 * the default 45. It also bounds how long a restarted process waits to
	 * join: librdkafka's mock cluster holds the rebalance that follows a
	 * member's leave for the session timeout (less a second). */
	common_kafka_set(cconf, "session.timeout.ms", "6000");
	common_kafka_set(cconf, "heartbeat.interval.ms", "2000");
	/* A new group starts at the beginning: tasks announced before it
	 * joined (joining takes seconds) are not skipped. */
	common_kafka_set(cconf, "auto.offset.reset", "earliest");
	/* Offsets are stored by hand, after each task is handled. */
	common_kafka_set(cconf, "enable.auto.offset.store", "false");
	rd_kafka_conf_set_rebalance_cb(cconf, on_rebalance);
	consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cconf, err, sizeof err);
	if (!consumer) {
		common_log("error", "kafka consumer: %s", err);
		return 1;
	}
	rd_kafka_poll_set_consumer(consumer);
	rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(topics, cfg.tasks_topic, RD_KAFKA_PARTITION_UA);
	rd_kafka_resp_err_t e = rd_kafka_subscribe(consumer, topics);
	rd_kafka_topic_partition_list_destroy(topics);
	if (e) {
		common_log("error", "subscribing to %s: %s", cfg.tasks_topic, rd_kafka_err2str(e));
		return 1;
	}
	common_log("info", "subscribed to %s (kafka %s, outcomes to %s, timeout %ld ms)", cfg.tasks_topic, cfg.brokers,
		cfg.status_topic, cfg.timeout_ms);

	while (!stopping) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, 200);
		if (!m)
			continue;
		if (m->err) {
			if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
				common_log("warn", "consumer: %s: %s", rd_kafka_err2name(m->err), rd_kafka_message_errstr(m));
		} else if (handle_task(m)) {
			e = rd_kafka_offset_store(m->rkt, m->partition, m->offset);
			if (e)
				common_log("warn", "storing offset %" PRId64 ": %s", (int64_t)m->offset, rd_kafka_err2str(e));
		}
		rd_kafka_message_destroy(m);
	}

	common_log("info", "stopping");
	signal(SIGALRM, on_shutdown_timeout);
	alarm(SHUTDOWN_LIMIT_S);
	/* Commits the stored offsets and leaves the group, so another crawler
	 * takes over the partitions at once. */
	e = rd_kafka_consumer_close(consumer);
	if (e)
		common_log("warn", "consumer close: %s", rd_kafka_err2str(e));
	rd_kafka_destroy(consumer);
	atomic_store(&stop_poller, true);
	pthread_join(poller, NULL);
	if (rd_kafka_flush(producer, FLUSH_MS) != RD_KAFKA_RESP_ERR_NO_ERROR)
		common_log("error", "%d outcome(s) not delivered within %d ms", rd_kafka_outq_len(producer), FLUSH_MS);
	rd_kafka_topic_destroy(status_rkt);
	rd_kafka_destroy(producer);
	curl_global_cleanup();
	alarm(0);
	common_log("info", "stopped");
	return 0;
}
