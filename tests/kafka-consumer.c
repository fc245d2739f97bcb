/* kafka-consumer: consumes N messages through one chosen librdkafka consume API and prints each one (Kafka hook tests). */
/*
 * usage: kafka-consumer [--brokers HOST:PORT] --topic NAME [--count N]
 *                       [--api poll|consume|consume_queue|batch|batch_queue|callback|callback_queue]
 *                       [--group ID] [--timeout SECONDS] [--sql DATABASE_URL]
 *                       [--sql-when handle|after|both]
 *
 * Brokers: --brokers, else $KAFKA_BROKERS. --count defaults to 1, --api to
 * poll, --timeout to 15 (the whole run is bounded by it).
 *   poll            high-level consumer: group --group (default
 *                   "kafka-consumer"), subscribe, auto.offset.reset=earliest,
 *                   rd_kafka_consumer_poll
 *   consume ...     legacy consumer: rd_kafka_consume_start (or
 *   callback_queue  rd_kafka_consume_start_queue for the *_queue APIs) on
 *                   partition 0 from RD_KAFKA_OFFSET_BEGINNING, then
 *                   rd_kafka_consume / rd_kafka_consume_queue /
 *                   rd_kafka_consume_batch / rd_kafka_consume_batch_queue /
 *                   rd_kafka_consume_callback / rd_kafka_consume_callback_queue
 * For each message, on stdout:
 *   msg topic=T partition=P offset=O key=K payload=V
 *   headers: count=C NAME=VALUE ...       (own line: the agent adds traceparent)
 *   sql: 1                                (with --sql: SELECT 1 via PQexec, run
 *                                          while the message is being handled)
 *   after: 2                              (with --sql and --sql-when after or
 *                                          both: SELECT 2, run right after the
 *                                          single-message APIs' destroy, before
 *                                          the next consume call)
 * --sql-when (default handle): after alone is a program that copies the
 * message and destroys it before it does anything with it, as a binding does.
 * Key and payload are printed with bytes outside printable ASCII (and '\')
 * as \xNN; a missing key or payload or header value is (null).
 * Last line: "consumed N". Exit status 0 when N messages were consumed, 1 on
 * a timeout or an error (message on stderr), 2 on usage.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#define MAX_BATCH 16

static int want = 1, got;
static PGconn *pg;
static int sql_failed;
static int sql_handle = 1, sql_after;   /* --sql-when */
static rd_kafka_t *g_rk;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void put_bytes(const void *p, size_t len)
{
	if (!p) {
		fputs("(null)", stdout);
		return;
	}
	const unsigned char *b = p;
	for (size_t i = 0; i < len; i++) {
		if (b[i] >= 0x20 && b[i] < 0x7f && b[i] != '\\')
			putchar(b[i]);
		else
			printf("\\x%02x", b[i]);
	}
}

static void run_sql(const char *label, const char *query)
{
	PGresult *r = PQexec(pg, query);
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
		printf("%s: %s\n", label, PQgetvalue(r, 0, 0));
	} else {
		fprintf(stderr, "kafka-consumer: %s: %s", query, PQerrorMessage(pg));
		printf("%s: failed\n", label);
		sql_failed = 1;
	}
	PQclear(r);
	fflush(stdout);
}

/* Handles one message (not destroyed here). Returns 1 if it was counted. */
static int handle(const rd_kafka_message_t *m)
{
	if (m->err) {
		if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
			fprintf(stderr, "kafka-consumer: consume error: %s: %s\n", rd_kafka_err2name(m->err),
				rd_kafka_message_errstr(m));
		return 0;
	}
	if (got >= want)
		return 0;
	got++;
	printf("msg topic=%s partition=%d offset=%lld key=", m->rkt ? rd_kafka_topic_name(m->rkt) : "?",
	       (int)m->partition, (long long)m->offset);
	put_bytes(m->key, m->key_len);
	fputs(" payload=", stdout);
	put_bytes(m->payload, m->len);
	putchar('\n');
	rd_kafka_headers_t *hdrs = NULL;
	size_t n = 0;
	if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs)
		n = rd_kafka_header_cnt(hdrs);
	printf("headers: count=%zu", n);
	for (size_t i = 0; i < n; i++) {
		const char *name;
		const void *val;
		size_t size;
		if (rd_kafka_header_get_all(hdrs, i, &name, &val, &size))
			continue;
		printf(" %s=", name);
		put_bytes(val, size);
	}
	putchar('\n');
	if (pg && sql_handle)
		run_sql("sql", "SELECT 1");
	fflush(stdout);
	return 1;
}

static void consume_cb(rd_kafka_message_t *m, void *opaque)
{
	(void)opaque;
	handle(m);
	if (got >= want)
		rd_kafka_yield(g_rk);
}

static void usage(void)
{
	fprintf(stderr, "usage: kafka-consumer [--brokers HOST:PORT] --topic NAME [--count N]\n"
			"    [--api poll|consume|consume_queue|batch|batch_queue|callback|callback_queue]\n"
			"    [--group ID] [--timeout SECONDS] [--sql DATABASE_URL] [--sql-when handle|after|both]\n");
	exit(2);
}

static void conf_set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
	char err[512];
	if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
		fprintf(stderr, "kafka-consumer: %s: %s\n", k, err);
		exit(1);
	}
}

int main(int argc, char **argv)
{
	const char *brokers = getenv("KAFKA_BROKERS");
	const char *topic = NULL, *api = "poll", *group = "kafka-consumer", *sql = NULL;
	double timeout = 15;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (i + 1 >= argc)
			usage();
		if (strcmp(a, "--brokers") == 0)
			brokers = argv[++i];
		else if (strcmp(a, "--topic") == 0)
			topic = argv[++i];
		else if (strcmp(a, "--count") == 0)
			want = atoi(argv[++i]);
		else if (strcmp(a, "--api") == 0)
			api = argv[++i];
		else if (strcmp(a, "--group") == 0)
			group = argv[++i];
		else if (strcmp(a, "--timeout") == 0)
			timeout = atof(argv[++i]);
		else if (strcmp(a, "--sql") == 0)
			sql = argv[++i];
		else if (strcmp(a, "--sql-when") == 0) {
			const char *w = argv[++i];
			sql_handle = strcmp(w, "handle") == 0 || strcmp(w, "both") == 0;
			sql_after = strcmp(w, "after") == 0 || strcmp(w, "both") == 0;
			if (!sql_handle && !sql_after)
				usage();
		} else
			usage();
	}
	if (!topic || want < 1 || timeout <= 0)
		usage();
	if (!brokers || !*brokers) {
		fprintf(stderr, "kafka-consumer: no brokers (--brokers or $KAFKA_BROKERS)\n");
		return 2;
	}
	static const char *const apis[] = {"poll",	  "consume",  "consume_queue", "batch",
					   "batch_queue", "callback", "callback_queue"};
	int api_i = -1;
	for (size_t i = 0; i < sizeof apis / sizeof apis[0]; i++)
		if (strcmp(api, apis[i]) == 0)
			api_i = (int)i;
	if (api_i < 0)
		usage();
	int high = api_i == 0;
	int queued = strstr(api, "queue") != NULL;

	if (sql) {
		pg = PQconnectdb(sql);
		if (PQstatus(pg) != CONNECTION_OK) {
			fprintf(stderr, "kafka-consumer: %s: %s", sql, PQerrorMessage(pg));
			PQfinish(pg);
			return 1;
		}
	}

	char err[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	conf_set(conf, "bootstrap.servers", brokers);
	if (high) {
		conf_set(conf, "group.id", group);
		conf_set(conf, "auto.offset.reset", "earliest");
	}
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
	if (!rk) {
		fprintf(stderr, "kafka-consumer: rd_kafka_new: %s\n", err);
		return 1;
	}
	g_rk = rk;
	double deadline = now_s() + timeout;
	rd_kafka_topic_t *rkt = NULL;
	rd_kafka_queue_t *rkqu = NULL;
	int rc = 0;

	if (high) {
		rd_kafka_poll_set_consumer(rk);
		rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(1);
		rd_kafka_topic_partition_list_add(tl, topic, RD_KAFKA_PARTITION_UA);
		rd_kafka_resp_err_t e = rd_kafka_subscribe(rk, tl);
		rd_kafka_topic_partition_list_destroy(tl);
		if (e) {
			fprintf(stderr, "kafka-consumer: subscribe: %s\n", rd_kafka_err2str(e));
			rc = 1;
			goto out;
		}
	} else {
		rkt = rd_kafka_topic_new(rk, topic, NULL);
		if (!rkt) {
			fprintf(stderr, "kafka-consumer: rd_kafka_topic_new: %s\n",
				rd_kafka_err2str(rd_kafka_last_error()));
			rc = 1;
			goto out;
		}
		int r;
		if (queued) {
			rkqu = rd_kafka_queue_new(rk);
			r = rd_kafka_consume_start_queue(rkt, 0, RD_KAFKA_OFFSET_BEGINNING, rkqu);
		} else {
			r = rd_kafka_consume_start(rkt, 0, RD_KAFKA_OFFSET_BEGINNING);
		}
		if (r == -1) {
			fprintf(stderr, "kafka-consumer: consume_start: %s\n", rd_kafka_err2str(rd_kafka_last_error()));
			rc = 1;
			goto out;
		}
	}

	while (got < want && now_s() < deadline && !sql_failed) {
		rd_kafka_message_t *m = NULL, *msgs[MAX_BATCH];
		ssize_t n;
		size_t room = (size_t)(want - got) < MAX_BATCH ? (size_t)(want - got) : MAX_BATCH;
		switch (api_i) {
		case 0:
			m = rd_kafka_consumer_poll(rk, 200);
			break;
		case 1:
			m = rd_kafka_consume(rkt, 0, 200);
			break;
		case 2:
			m = rd_kafka_consume_queue(rkqu, 200);
			break;
		case 3:
		case 4:
			n = api_i == 3 ? rd_kafka_consume_batch(rkt, 0, 200, msgs, room)
				       : rd_kafka_consume_batch_queue(rkqu, 200, msgs, room);
			if (n < 0)
				fprintf(stderr, "kafka-consumer: consume_batch: %s\n",
					rd_kafka_err2str(rd_kafka_last_error()));
			for (ssize_t i = 0; i < n; i++) {
				handle(msgs[i]);
				rd_kafka_message_destroy(msgs[i]);
			}
			break;
		case 5:
			if (rd_kafka_consume_callback(rkt, 0, 200, consume_cb, NULL) < 0)
				fprintf(stderr, "kafka-consumer: consume_callback: %s\n",
					rd_kafka_err2str(rd_kafka_last_error()));
			break;
		case 6:
			if (rd_kafka_consume_callback_queue(rkqu, 200, consume_cb, NULL) < 0)
				fprintf(stderr, "kafka-consumer: consume_callback_queue: %s\n",
					rd_kafka_err2str(rd_kafka_last_error()));
			break;
		}
		if (m) {
			int counted = handle(m);
			rd_kafka_message_destroy(m);
			if (counted && pg && sql_after)
				run_sql("after", "SELECT 2");
		}
	}
	printf("consumed %d\n", got);
	if (got < want) {
		fprintf(stderr, "kafka-consumer: %s after %.0f s: %d of %d message(s)\n",
			sql_failed ? "SQL failed" : "timeout", timeout, got, want);
		rc = 1;
	}

out:
	if (high) {
		rd_kafka_consumer_close(rk);
	} else if (rkt) {
		rd_kafka_consume_stop(rkt, 0);
	}
	if (rkqu)
		rd_kafka_queue_destroy(rkqu);
	if (rkt)
		rd_kafka_topic_destroy(rkt);
	rd_kafka_destroy(rk);
	if (pg)
		PQfinish(pg);
	return rc;
}
