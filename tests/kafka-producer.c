/* kafka-producer: produces one message through each librdkafka produce API and prints each delivery report (Kafka hook tests). */
/*
 * usage: kafka-producer [--brokers HOST:PORT] [--topic NAME] [--no-dr] [--fail] [--partitioner]
 *
 * Brokers: --brokers, else $KAFKA_BROKERS. Topic: --topic, else
 * "kafka-producer" (use a 1-partition topic: keyless messages with
 * RD_KAFKA_PARTITION_UA then all land on partition 0, in order).
 *
 * Normal mode, one message each (payload "payload <case>", key "key-<case>"
 * where the case has a key; every message has a distinct msg_opaque):
 *   produce/copy-p0       rd_kafka_produce, RD_KAFKA_MSG_F_COPY, partition 0
 *   produce/free-ua       rd_kafka_produce, RD_KAFKA_MSG_F_FREE (malloc'ed), UA
 *   produce/block-ua      rd_kafka_produce, F_COPY|F_BLOCK, UA
 *   produce/key-ua        rd_kafka_produce, F_COPY, UA, with a key
 *   producev/app-header   rd_kafka_producev: V_TOPIC V_VALUE V_KEY V_OPAQUE V_MSGFLAGS V_HEADER(app-h: 1)
 *   producev/traceparent  rd_kafka_producev with an app-supplied traceparent header
 *   producev/headers      rd_kafka_producev with V_PARTITION 0 and V_HEADERS (a list: app-h: 2, app-x: x)
 *   produceva             rd_kafka_produceva (vu array, with V_HEADER app-h: 3)
 *   batch/0..2            rd_kafka_produce_batch, 3 messages, F_COPY, UA, keyed
 * then rd_kafka_flush.
 *
 * Output (stdout, deterministic for a fresh 1-partition topic):
 *   produce CASE ret=R [errno=E err=NAME]    one line per produce call
 *   dr CASE partition=P offset=O err=NAME opaque=N
 *   headers: CASE count=C [NAME ...]         (from rd_kafka_message_headers on the
 *                                             delivered message; the agent will
 *                                             change these, so they get their own line)
 *   flush err=NAME outq=N
 *   summary produced=N delivered=N failed=N
 * The dr and headers lines come from the dr_msg_cb, in delivery order.
 *
 * --no-dr: no delivery report callback is set (only produce/flush/summary lines).
 * --fail: message.max.bytes=1000 and a 5000-byte message through each API
 *   (produce with F_COPY and with F_FREE, producev, produceva, produce_batch),
 *   (all refused by the produce call: EMSGSIZE / MSG_SIZE_TOO_LARGE), then
 *   rd_kafka_produce to partition 7 of the (1-partition) topic once its
 *   metadata is known (refused: ESRCH / _UNKNOWN_PARTITION), then an
 *   rd_kafka_produce that is accepted ("fail/after-error": librdkafka resets
 *   rd_kafka_last_error() to NO_ERROR, printed), then a small producev
 *   message; both accepted and, linger.ms being 5000 in this mode, still
 *   queued when rd_kafka_purge(RD_KAFKA_PURGE_F_QUEUE) fails them: their
 *   delivery reports have err=_PURGE_QUEUE. Prints the produce return, errno and
 *   rd_kafka_last_error() (or the returned error), the purge result and the dr.
 * --partitioner: the topic has a partitioner_cb that prints the msg_opaque
 *   librdkafka hands it and picks partition opaque % partition_cnt; three
 *   keyed messages (opaques 1, 2, 3) through rd_kafka_produce and producev.
 *   The lines "partitioner key=K opaque=N" must not change under an agent.
 * Exit status: 0 when every line is what the mode expects (all delivered in
 * normal mode; every message failed in --fail mode), 1 otherwise, 2 on usage.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#define TRACEPARENT "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
#define BIG 5000

static const char *const CASES[] = {
	"produce/copy-p0", "produce/free-ua", "produce/block-ua", "produce/key-ua",
	"producev/app-header", "producev/traceparent", "producev/headers", "produceva",
	"batch/0", "batch/1", "batch/2",
	/* --fail */
	"fail/produce-copy", "fail/produce-free", "fail/producev", "fail/produceva", "fail/batch",
	"fail/unknown-partition", "fail/after-error", "fail/purged",
	/* --partitioner */
	"part/produce-1", "part/produce-2", "part/producev-3",
};
#define NCASES (int)(sizeof CASES / sizeof CASES[0])
/* msg_opaque of case i: OPAQUE_BASE + i (a value, never dereferenced). */
#define OPAQUE_BASE 1000

static int produced, delivered, failed_dr;

static void *opaque_of(int i)
{
	return (void *)(intptr_t)(OPAQUE_BASE + i);
}

static int case_of(const char *name)
{
	for (int i = 0; i < NCASES; i++)
		if (strcmp(CASES[i], name) == 0)
			return i;
	fprintf(stderr, "kafka-producer: no case %s\n", name);
	exit(2);
}

static const char *case_name(void *opaque)
{
	intptr_t v = (intptr_t)opaque - OPAQUE_BASE;
	if (v >= 0 && v < NCASES)
		return CASES[v];
	return "?";
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *app_opaque)
{
	(void)rk;
	(void)app_opaque;
	const char *name = case_name(m->_private);
	printf("dr %s partition=%d offset=%lld err=%s opaque=%ld\n", name, (int)m->partition,
	       (long long)m->offset, rd_kafka_err2name(m->err), (long)(intptr_t)m->_private);
	rd_kafka_headers_t *hdrs = NULL;
	rd_kafka_resp_err_t he = rd_kafka_message_headers(m, &hdrs);
	size_t n = he == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs ? rd_kafka_header_cnt(hdrs) : 0;
	printf("headers: %s count=%zu", name, n);
	for (size_t i = 0; i < n; i++) {
		const char *hn;
		const void *hv;
		size_t hs;
		if (rd_kafka_header_get_all(hdrs, i, &hn, &hv, &hs) == RD_KAFKA_RESP_ERR_NO_ERROR)
			printf(" %s", hn);
	}
	printf("\n");
	if (m->err)
		failed_dr++;
	else
		delivered++;
}

/* The produce line for rd_kafka_produce-style calls (-1 + errno + last_error). */
static void report_legacy(const char *name, int ret, int err)
{
	if (ret == 0) {
		printf("produce %s ret=0\n", name);
		produced++;
	} else {
		printf("produce %s ret=%d errno=%s err=%s\n", name, ret, strerrorname_np(err) ? strerrorname_np(err) : "?",
		       rd_kafka_err2name(rd_kafka_last_error()));
	}
}

static void report_err(const char *name, rd_kafka_resp_err_t e)
{
	printf("produce %s ret=%s\n", name, rd_kafka_err2name(e));
	if (!e)
		produced++;
}

static void report_error(const char *name, rd_kafka_error_t *error)
{
	if (!error) {
		printf("produce %s ret=NO_ERROR\n", name);
		produced++;
		return;
	}
	printf("produce %s ret=%s\n", name, rd_kafka_error_name(error));
	rd_kafka_error_destroy(error);
}

static void fmt_payload(char *buf, size_t size, const char *name)
{
	snprintf(buf, size, "payload %s", name);
}

/* One legacy rd_kafka_produce call. */
static void legacy(rd_kafka_topic_t *rkt, const char *name, int32_t partition, int flags, int with_key)
{
	char payload[128], key[128];
	fmt_payload(payload, sizeof payload, name);
	snprintf(key, sizeof key, "key-%s", name);
	void *p = payload;
	size_t len = strlen(payload);
	if (flags & RD_KAFKA_MSG_F_FREE) {
		p = strdup(payload);
		if (!p)
			abort();
	}
	int ret = rd_kafka_produce(rkt, partition, flags, p, len, with_key ? key : NULL, with_key ? strlen(key) : 0,
				   opaque_of(case_of(name)));
	int err = errno;
	/* On failure the payload stays ours, even with F_FREE. */
	if (ret != 0 && (flags & RD_KAFKA_MSG_F_FREE))
		free(p);
	report_legacy(name, ret, err);
}

static void batch(rd_kafka_topic_t *rkt, const char *prefix, size_t size, int n)
{
	rd_kafka_message_t msgs[3];
	char payloads[3][128], keys[3][128], names[3][32];
	char *big = NULL;
	memset(msgs, 0, sizeof msgs);
	if (size) {
		big = malloc(size);
		if (!big)
			abort();
		memset(big, 'b', size);
	}
	for (int i = 0; i < n; i++) {
		snprintf(names[i], sizeof names[i], "%s%d", prefix, i);
		if (strcmp(prefix, "fail/batch") == 0)
			snprintf(names[i], sizeof names[i], "fail/batch");
		fmt_payload(payloads[i], sizeof payloads[i], names[i]);
		snprintf(keys[i], sizeof keys[i], "key-%s", names[i]);
		msgs[i].payload = big ? big : payloads[i];
		msgs[i].len = big ? size : strlen(payloads[i]);
		msgs[i].key = keys[i];
		msgs[i].key_len = strlen(keys[i]);
		msgs[i]._private = opaque_of(case_of(names[i]));
	}
	int ret = rd_kafka_produce_batch(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, msgs, n);
	printf("produce_batch %s ret=%d\n", prefix, ret);
	for (int i = 0; i < n; i++) {
		printf("produce %s ret=%s\n", names[i], rd_kafka_err2name(msgs[i].err));
		if (!msgs[i].err)
			produced++;
	}
	free(big);
}

static rd_kafka_t *new_producer(const char *brokers, int with_dr, int small)
{
	char err[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	struct {
		const char *k, *v;
	} set[] = {
		{"bootstrap.servers", brokers},
		{"linger.ms", small ? "5000" : "5"},
		{"message.timeout.ms", "10000"},
		{small ? "message.max.bytes" : NULL, "1000"},
	};
	for (size_t i = 0; i < sizeof set / sizeof set[0]; i++) {
		if (set[i].k && rd_kafka_conf_set(conf, set[i].k, set[i].v, err, sizeof err) != RD_KAFKA_CONF_OK) {
			fprintf(stderr, "kafka-producer: %s: %s\n", set[i].k, err);
			exit(1);
		}
	}
	if (with_dr)
		rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
	if (!rk) {
		fprintf(stderr, "kafka-producer: rd_kafka_new: %s\n", err);
		exit(1);
	}
	return rk;
}

static void run_normal(rd_kafka_t *rk, const char *topic)
{
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
	if (!rkt) {
		fprintf(stderr, "kafka-producer: rd_kafka_topic_new: %s\n", rd_kafka_err2str(rd_kafka_last_error()));
		exit(1);
	}
	legacy(rkt, "produce/copy-p0", 0, RD_KAFKA_MSG_F_COPY, 0);
	legacy(rkt, "produce/free-ua", RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_FREE, 0);
	legacy(rkt, "produce/block-ua", RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY | RD_KAFKA_MSG_F_BLOCK, 0);
	legacy(rkt, "produce/key-ua", RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, 1);

	char payload[128], key[128];
	const char *name = "producev/app-header";
	fmt_payload(payload, sizeof payload, name);
	snprintf(key, sizeof key, "key-%s", name);
	report_err(name, rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_VALUE(payload, strlen(payload)),
					   RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_OPAQUE(opaque_of(case_of(name))),
					   RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADER("app-h", "1", -1),
					   RD_KAFKA_V_END));

	name = "producev/traceparent";
	fmt_payload(payload, sizeof payload, name);
	snprintf(key, sizeof key, "key-%s", name);
	report_err(name, rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_VALUE(payload, strlen(payload)),
					   RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_OPAQUE(opaque_of(case_of(name))),
					   RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
					   RD_KAFKA_V_HEADER("traceparent", TRACEPARENT, -1),
					   RD_KAFKA_V_HEADER("app-h", "tp", -1), RD_KAFKA_V_END));

	/* V_HEADERS: the list belongs to librdkafka once producev succeeds. */
	name = "producev/headers";
	fmt_payload(payload, sizeof payload, name);
	snprintf(key, sizeof key, "key-%s", name);
	rd_kafka_headers_t *hl = rd_kafka_headers_new(2);
	rd_kafka_header_add(hl, "app-h", -1, "2", -1);
	rd_kafka_header_add(hl, "app-x", -1, "x", -1);
	rd_kafka_resp_err_t e = rd_kafka_producev(
		rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0), RD_KAFKA_V_VALUE(payload, strlen(payload)),
		RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_OPAQUE(opaque_of(case_of(name))),
		RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hl), RD_KAFKA_V_END);
	if (e)
		rd_kafka_headers_destroy(hl);
	report_err(name, e);

	name = "produceva";
	fmt_payload(payload, sizeof payload, name);
	snprintf(key, sizeof key, "key-%s", name);
	rd_kafka_vu_t vus[7] = {
		{.vtype = RD_KAFKA_VTYPE_TOPIC, .u.cstr = topic},
		{.vtype = RD_KAFKA_VTYPE_VALUE, .u.mem = {payload, strlen(payload)}},
		{.vtype = RD_KAFKA_VTYPE_KEY, .u.mem = {key, strlen(key)}},
		{.vtype = RD_KAFKA_VTYPE_OPAQUE, .u.ptr = opaque_of(case_of(name))},
		{.vtype = RD_KAFKA_VTYPE_MSGFLAGS, .u.i = RD_KAFKA_MSG_F_COPY},
		{.vtype = RD_KAFKA_VTYPE_HEADER, .u.header = {"app-h", "3", 1}},
	};
	report_error(name, rd_kafka_produceva(rk, vus, 6));

	batch(rkt, "batch/", 0, 3);
	rd_kafka_topic_destroy(rkt);
}

static void run_fail(rd_kafka_t *rk, const char *topic)
{
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
	if (!rkt) {
		fprintf(stderr, "kafka-producer: rd_kafka_topic_new: %s\n", rd_kafka_err2str(rd_kafka_last_error()));
		exit(1);
	}
	char *big = malloc(BIG);
	if (!big)
		abort();
	memset(big, 'x', BIG);

	const char *name = "fail/produce-copy";
	int ret = rd_kafka_produce(rkt, 0, RD_KAFKA_MSG_F_COPY, big, BIG, NULL, 0, opaque_of(case_of(name)));
	report_legacy(name, ret, errno);

	name = "fail/produce-free";
	char *owned = malloc(BIG);
	if (!owned)
		abort();
	memset(owned, 'y', BIG);
	ret = rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_FREE, owned, BIG, NULL, 0,
			       opaque_of(case_of(name)));
	int err = errno;
	if (ret != 0)
		free(owned); /* still ours: librdkafka only frees what it accepted */
	report_legacy(name, ret, err);

	name = "fail/producev";
	report_err(name, rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_VALUE(big, BIG),
					   RD_KAFKA_V_OPAQUE(opaque_of(case_of(name))),
					   RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADER("app-h", "f", -1),
					   RD_KAFKA_V_END));

	name = "fail/produceva";
	rd_kafka_vu_t vus[] = {
		{.vtype = RD_KAFKA_VTYPE_TOPIC, .u.cstr = topic},
		{.vtype = RD_KAFKA_VTYPE_VALUE, .u.mem = {big, BIG}},
		{.vtype = RD_KAFKA_VTYPE_OPAQUE, .u.ptr = opaque_of(case_of(name))},
		{.vtype = RD_KAFKA_VTYPE_MSGFLAGS, .u.i = RD_KAFKA_MSG_F_COPY},
	};
	report_error(name, rd_kafka_produceva(rk, vus, sizeof vus / sizeof vus[0]));

	batch(rkt, "fail/batch", BIG, 1);
	free(big);

	/* Partition 7 of a 1-partition topic whose metadata is known: refused at once. */
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t me = rd_kafka_metadata(rk, 0, rkt, &md, 5000);
	if (me)
		fprintf(stderr, "kafka-producer: metadata: %s\n", rd_kafka_err2str(me));
	else
		rd_kafka_metadata_destroy(md);
	name = "fail/unknown-partition";
	char payload[128];
	fmt_payload(payload, sizeof payload, name);
	ret = rd_kafka_produce(rkt, 7, RD_KAFKA_MSG_F_COPY, payload, strlen(payload), NULL, 0,
			       opaque_of(case_of(name)));
	report_legacy(name, ret, errno);

	/* librdkafka's rd_kafka_produce clears the last error it set above. */
	name = "fail/after-error";
	fmt_payload(payload, sizeof payload, name);
	ret = rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, payload, strlen(payload), NULL, 0,
			       opaque_of(case_of(name)));
	report_legacy(name, ret, errno);
	printf("last_error %s\n", rd_kafka_err2name(rd_kafka_last_error()));
	rd_kafka_topic_destroy(rkt);

	/* Accepted, then failed in its delivery report: linger.ms is long in
	 * this mode, so the message is still queued when it is purged. */
	name = "fail/purged";
	fmt_payload(payload, sizeof payload, name);
	report_err(name, rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_VALUE(payload, strlen(payload)),
					   RD_KAFKA_V_OPAQUE(opaque_of(case_of(name))),
					   RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADER("app-h", "p", -1),
					   RD_KAFKA_V_END));
	rd_kafka_resp_err_t pe = rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE);
	printf("purge err=%s\n", rd_kafka_err2name(pe));
}

/* --partitioner: what a custom partitioner is handed. */
static int32_t partitioner(const rd_kafka_topic_t *rkt, const void *key, size_t keylen, int32_t partition_cnt,
			   void *rkt_opaque, void *msg_opaque)
{
	(void)rkt;
	(void)rkt_opaque;
	printf("partitioner key=%.*s opaque=%ld\n", (int)keylen, (const char *)key, (long)(intptr_t)msg_opaque);
	return (int32_t)((intptr_t)msg_opaque % partition_cnt);
}

static void run_partitioner(rd_kafka_t *rk, const char *topic)
{
	rd_kafka_topic_conf_t *tconf = rd_kafka_topic_conf_new();
	rd_kafka_topic_conf_set_partitioner_cb(tconf, partitioner);
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, tconf);
	if (!rkt) {
		fprintf(stderr, "kafka-producer: rd_kafka_topic_new: %s\n", rd_kafka_err2str(rd_kafka_last_error()));
		exit(1);
	}
	/* The partitioner runs once the partition count is known. */
	const struct rd_kafka_metadata *md = NULL;
	if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR)
		rd_kafka_metadata_destroy(md);
	for (int i = 1; i <= 2; i++) {
		char key[32];
		snprintf(key, sizeof key, "k%d", i);
		const char *name = i == 1 ? "part/produce-1" : "part/produce-2";
		int ret = rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, "p", 1, key, strlen(key),
					   (void *)(intptr_t)i);
		report_legacy(name, ret, errno);
	}
	report_err("part/producev-3", rd_kafka_producev(rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_VALUE("p", 1),
							 RD_KAFKA_V_KEY("k3", 2), RD_KAFKA_V_OPAQUE((void *)(intptr_t)3),
							 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END));
	rd_kafka_topic_destroy(rkt);
}

int main(int argc, char **argv)
{
	const char *brokers = getenv("KAFKA_BROKERS");
	const char *topic = "kafka-producer";
	int with_dr = 1, fail = 0, part = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--brokers") == 0 && i + 1 < argc)
			brokers = argv[++i];
		else if (strcmp(argv[i], "--topic") == 0 && i + 1 < argc)
			topic = argv[++i];
		else if (strcmp(argv[i], "--no-dr") == 0)
			with_dr = 0;
		else if (strcmp(argv[i], "--fail") == 0)
			fail = 1;
		else if (strcmp(argv[i], "--partitioner") == 0)
			part = 1;
		else {
			fprintf(stderr, "usage: kafka-producer [--brokers HOST:PORT] [--topic NAME] [--no-dr] [--fail] "
					"[--partitioner]\n");
			return 2;
		}
	}
	if (!brokers || !*brokers) {
		fprintf(stderr, "kafka-producer: no brokers (--brokers or $KAFKA_BROKERS)\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);

	rd_kafka_t *rk = new_producer(brokers, with_dr, fail);
	if (fail)
		run_fail(rk, topic);
	else if (part)
		run_partitioner(rk, topic);
	else
		run_normal(rk, topic);
	rd_kafka_resp_err_t fe = rd_kafka_flush(rk, 15000);
	printf("flush err=%s outq=%d\n", rd_kafka_err2name(fe), rd_kafka_outq_len(rk));
	rd_kafka_destroy(rk);
	printf("summary produced=%d delivered=%d failed=%d\n", produced, delivered, failed_dr);

	if (fe)
		return 1;
	int want = fail ? 2 : part ? 3 : 11;
	if (!with_dr)
		return produced == want ? 0 : 1;
	if (fail)
		return produced == want && delivered == 0 && failed_dr == want ? 0 : 1;
	return produced == want && delivered == want && failed_dr == 0 ? 0 : 1;
}
