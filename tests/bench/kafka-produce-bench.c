/* kafka-produce-bench: produces N messages through librdkafka as fast as it can and prints messages/s and the mean time per produce call (Kafka benchmark, issue 5). */
/*
 * usage: kafka-produce-bench [--brokers HOST:PORT] [--topic NAME] [--count N]
 *            [--size BYTES] [--api produce|producev] [--linger MS]
 *            [--warmup N] [--poll-every N] [--header NAME]
 *
 * Brokers: --brokers, else $KAFKA_BROKERS. Topic (default "kafka-bench"): give
 * it a 1-partition topic; messages are keyless and go to RD_KAFKA_PARTITION_UA.
 *
 * Setup, not timed: the producer is created (dr_msg_cb set, linger.ms=--linger
 * (5), queue.buffering.max.messages=1000000 so the whole run fits in the
 * queue, socket.nagle.disable=true), then one message is produced and
 * flushed, so the connection and the topic's metadata are in place before
 * the clock starts.
 *
 * A pass (timed): N messages of --size bytes (default 200000 x 100), each
 * with its sequence number in its first 8 bytes, through
 *   produce:  rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY,
 *             buf, size, NULL, 0, NULL), the common legacy path (default);
 *   producev: rd_kafka_producev(RK_TOPIC, RK_MSGFLAGS(F_COPY), RK_VALUE).
 * then rd_kafka_flush. The loop does nothing but the produce calls (and every
 * --poll-every messages an rd_kafka_poll(rk, 0), default 0: never, since the
 * queue holds the whole pass): the produce time is the loop's time divided by
 * N, two clock reads per pass rather than two per call (a clock_gettime pair
 * costs ~40 ns, as much as a tenth of the call it would time, and the same
 * on both sides would still blur the difference). produce_ns is wall-clock
 * time; produce_cpu_ns is this thread's CPU time (CLOCK_THREAD_CPUTIME_ID),
 * which leaves out the time other threads had the CPU. With --poll-every,
 * the polls are timed (both clocks) and subtracted; poll_cpu_ns is their CPU
 * time per message (the delivery reports run there). A produce refused with
 * a full queue (ENOBUFS; not expected) is retried after rd_kafka_poll(rk, 1),
 * counted in `retries`, its time included.
 *
 * messages/s: N / (last delivery report - first produce call). The delivery
 * reports (dr_msg_cb: counts delivered and failed) are served by the final
 * rd_kafka_flush, or by the polls.
 *
 * --header NAME (producev only): each message also carries one header NAME
 * whose value is 55 bytes, the size of a traceparent. Without the agent, this
 * is what librdkafka itself spends on the header the agent adds to every
 * message (make bench prints it beside the agent's figures).
 *
 * --warmup N: one untimed pass of N messages first (its figures printed as
 * "warmup ..."): first-touch costs (librdkafka's and malloc's memory, the
 * agent's span pool) then stay out of the measured pass.
 *
 * Output (stdout), one line per pass:
 *   [warmup] api=produce count=N size=B msgs_per_s=R produce_ns=P produce_cpu_ns=C
 *            poll_cpu_ns=Q elapsed_ms=E produce_loop_ms=L flush_ms=F delivered=D
 *            failed=X retries=Y
 * Exit status 0 when every message was delivered, 1 otherwise, 2 on usage.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

static long delivered, failed, expected;
static uint64_t t_last_dr;

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

/* This thread's CPU time (a system call, not vDSO: read per pass and per poll only). */
static uint64_t cpu_ns(void)
{
	return clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	(void)opaque;
	if (m->err)
		failed++;
	else
		delivered++;
	if (delivered + failed == expected)
		t_last_dr = now_ns();
}

static void usage(void)
{
	fprintf(stderr, "usage: kafka-produce-bench [--brokers HOST:PORT] [--topic NAME] [--count N] [--size BYTES]\n"
			"           [--api produce|producev] [--linger MS] [--warmup N] [--poll-every N] [--header NAME]\n");
	exit(2);
}

static void conf_set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
	char err[512];
	if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
		fprintf(stderr, "kafka-produce-bench: %s=%s: %s\n", k, v, err);
		exit(1);
	}
}

static const char *header;   /* --header */
static const char header_value[] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

static int produce_one(rd_kafka_t *rk, rd_kafka_topic_t *rkt, const char *topic, int use_v, char *buf, size_t size)
{
	if (!use_v)
		return rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, buf, size, NULL, 0, NULL);
	rd_kafka_resp_err_t e = header ?
		rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
				  RD_KAFKA_V_VALUE(buf, size),
				  RD_KAFKA_V_HEADER(header, header_value, (ssize_t)sizeof header_value - 1), RD_KAFKA_V_END) :
		rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
				  RD_KAFKA_V_VALUE(buf, size), RD_KAFKA_V_END);
	if (e) {
		errno = e == RD_KAFKA_RESP_ERR__QUEUE_FULL ? ENOBUFS : EINVAL;
		return -1;
	}
	return 0;
}

/* One pass of n messages; prints its line; returns 0 when all were delivered. */
static int pass(rd_kafka_t *rk, rd_kafka_topic_t *rkt, const char *topic, int use_v, long n, size_t size,
		long poll_every, const char *label)
{
	char *buf = calloc(1, size < 8 ? 8 : size);
	if (!buf) {
		perror("calloc");
		exit(1);
	}
	delivered = failed = 0;
	expected = n;
	t_last_dr = 0;
	long retries = 0;
	uint64_t poll_ns = 0, poll_cpu = 0;

	uint64_t c0 = cpu_ns();
	uint64_t t0 = now_ns();
	for (long i = 0; i < n; i++) {
		memcpy(buf, &i, sizeof i);
		while (produce_one(rk, rkt, topic, use_v, buf, size) != 0) {
			if (errno != ENOBUFS) {
				fprintf(stderr, "kafka-produce-bench: produce: %s (%s)\n", strerror(errno),
					rd_kafka_err2name(rd_kafka_last_error()));
				exit(1);
			}
			retries++;
			rd_kafka_poll(rk, 1);
		}
		if (poll_every > 0 && (i + 1) % poll_every == 0) {
			uint64_t q0 = cpu_ns(), p0 = now_ns();
			rd_kafka_poll(rk, 0);
			poll_ns += now_ns() - p0;
			poll_cpu += cpu_ns() - q0;
		}
	}
	uint64_t t1 = now_ns();
	uint64_t c1 = cpu_ns();
	rd_kafka_resp_err_t fe = rd_kafka_flush(rk, 60000);
	uint64_t t2 = now_ns();
	if (fe)
		fprintf(stderr, "kafka-produce-bench: flush: %s (%d still queued)\n", rd_kafka_err2name(fe),
			rd_kafka_outq_len(rk));
	if (!t_last_dr)
		t_last_dr = t2;
	double elapsed = (double)(t_last_dr - t0);
	printf("%s%sapi=%s count=%ld size=%zu msgs_per_s=%.0f produce_ns=%.1f produce_cpu_ns=%.1f poll_cpu_ns=%.1f "
	       "elapsed_ms=%.1f produce_loop_ms=%.1f flush_ms=%.1f delivered=%ld failed=%ld retries=%ld\n",
	       label, *label ? " " : "", use_v ? "producev" : "produce", n, size, n / (elapsed / 1e9),
	       (double)(t1 - t0 - poll_ns) / n, (double)(c1 - c0 - poll_cpu) / n, (double)poll_cpu / n, elapsed / 1e6,
	       (t1 - t0) / 1e6, (t2 - t1) / 1e6, delivered, failed, retries);
	fflush(stdout);
	free(buf);
	return delivered == n ? 0 : 1;
}

int main(int argc, char **argv)
{
	const char *brokers = getenv("KAFKA_BROKERS");
	const char *topic = "kafka-bench";
	const char *linger = "5";
	long count = 200000, warmup = 0, poll_every = 0;
	size_t size = 100;
	int use_v = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (i + 1 >= argc)
			usage();
		const char *v = argv[++i];
		if (strcmp(a, "--brokers") == 0)
			brokers = v;
		else if (strcmp(a, "--topic") == 0)
			topic = v;
		else if (strcmp(a, "--count") == 0)
			count = atol(v);
		else if (strcmp(a, "--size") == 0)
			size = (size_t)atol(v);
		else if (strcmp(a, "--linger") == 0)
			linger = v;
		else if (strcmp(a, "--warmup") == 0)
			warmup = atol(v);
		else if (strcmp(a, "--poll-every") == 0)
			poll_every = atol(v);
		else if (strcmp(a, "--api") == 0 && (strcmp(v, "produce") == 0 || strcmp(v, "producev") == 0))
			use_v = strcmp(v, "producev") == 0;
		else if (strcmp(a, "--header") == 0 && *v)
			header = v;
		else
			usage();
	}
	if (!brokers || !*brokers || count < 1 || warmup < 0 || poll_every < 0 || (header && !use_v))
		usage();

	char err[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	conf_set(conf, "bootstrap.servers", brokers);
	conf_set(conf, "linger.ms", linger);
	conf_set(conf, "queue.buffering.max.messages", "1000000");
	conf_set(conf, "socket.nagle.disable", "true");
	rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
	if (!rk) {
		fprintf(stderr, "kafka-produce-bench: %s\n", err);
		return 1;
	}
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);

	/* Connection and metadata, untimed. */
	expected = 1;
	char first[8] = "warmup";
	if (rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, first, sizeof first, NULL, 0, NULL) != 0 ||
	    rd_kafka_flush(rk, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR || delivered != 1) {
		fprintf(stderr, "kafka-produce-bench: the first message was not delivered (brokers %s, topic %s)\n", brokers,
			topic);
		return 1;
	}

	int rc = 0;
	if (warmup > 0)
		rc |= pass(rk, rkt, topic, use_v, warmup, size, poll_every, "warmup");
	rc |= pass(rk, rkt, topic, use_v, count, size, poll_every, "");

	rd_kafka_topic_destroy(rkt);
	rd_kafka_destroy(rk);
	return rc;
}
