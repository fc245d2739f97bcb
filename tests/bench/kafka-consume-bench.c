/* kafka-consume-bench: consumes N messages with rd_kafka_consumer_poll and does nothing else (the consumer subject of the instruction counts, tests/bench/callgrind-bench.sh). */
/*
 * usage: kafka-consume-bench [--brokers HOST:PORT] [--topic NAME] [--count N]
 *            [--group ID] [--timeout SECONDS]
 *
 * Brokers: --brokers, else $KAFKA_BROKERS. Topic (default "consume-bench"):
 * partition 0 of it is read from its first offset, so give it one partition
 * holding at least N messages.
 *
 * A high-level consumer (group.id --group, default "consume-bench", so the
 * agent's spans carry a consumer group) that is *assigned* partition 0 at
 * RD_KAFKA_OFFSET_BEGINNING rather than subscribed, with
 * enable.auto.commit=false: no group join, no rebalance, no offset commits,
 * whose timing (and so instruction count) would differ from run to run. Then
 * rd_kafka_consumer_poll(rk, 100) until N messages were seen; each message is
 * counted and destroyed, nothing printed. Then rd_kafka_consumer_close and
 * rd_kafka_destroy: the process ends normally (the agent's exit flush runs).
 *
 * Output (stdout): "consumed N". Exit status 0 when N messages were consumed
 * within --timeout (default 60 s), 1 otherwise, 2 on usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void usage(void)
{
	fprintf(stderr, "usage: kafka-consume-bench [--brokers HOST:PORT] [--topic NAME] [--count N] [--group ID]"
			" [--timeout SECONDS]\n");
	exit(2);
}

static void conf_set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
	char err[512];
	if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
		fprintf(stderr, "kafka-consume-bench: %s=%s: %s\n", k, v, err);
		exit(1);
	}
}

int main(int argc, char **argv)
{
	const char *brokers = getenv("KAFKA_BROKERS");
	const char *topic = "consume-bench", *group = "consume-bench";
	long want = 1000;
	double timeout = 60;
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
			want = atol(v);
		else if (strcmp(a, "--group") == 0)
			group = v;
		else if (strcmp(a, "--timeout") == 0)
			timeout = atof(v);
		else
			usage();
	}
	if (!brokers || !*brokers || want < 1 || timeout <= 0)
		usage();

	char err[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	conf_set(conf, "bootstrap.servers", brokers);
	conf_set(conf, "group.id", group);
	conf_set(conf, "enable.auto.commit", "false");
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
	if (!rk) {
		fprintf(stderr, "kafka-consume-bench: rd_kafka_new: %s\n", err);
		return 1;
	}
	rd_kafka_poll_set_consumer(rk);
	rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(parts, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
	rd_kafka_resp_err_t e = rd_kafka_assign(rk, parts);
	rd_kafka_topic_partition_list_destroy(parts);
	if (e) {
		fprintf(stderr, "kafka-consume-bench: assign: %s\n", rd_kafka_err2str(e));
		rd_kafka_destroy(rk);
		return 1;
	}

	long got = 0;
	double deadline = now_s() + timeout;
	while (got < want && now_s() < deadline) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
		if (!m)
			continue;
		if (!m->err)
			got++;
		else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
			fprintf(stderr, "kafka-consume-bench: %s: %s\n", rd_kafka_err2name(m->err),
				rd_kafka_message_errstr(m));
		rd_kafka_message_destroy(m);
	}
	printf("consumed %ld\n", got);
	if (got < want)
		fprintf(stderr, "kafka-consume-bench: timeout after %.0f s: %ld of %ld message(s)\n", timeout, got, want);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return got == want ? 0 : 1;
}
