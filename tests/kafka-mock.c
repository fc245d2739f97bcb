/* kafka-mock: runs librdkafka's in-process mock Kafka cluster until SIGTERM/SIGINT, for kcat tests. */
/*
 * usage: kafka-mock [--brokers N] [--topic NAME[:PARTITIONS]]...
 *
 * Starts a mock cluster (librdkafka's "test.mock.num.brokers") inside a
 * producer handle, creates the given topics (1 partition by default, so a
 * consumer reads messages back in the order they were produced), prints
 * "bootstrap HOST:PORT[,...]" on stdout and waits for SIGTERM or SIGINT.
 * The mock brokers listen on 127.0.0.1.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MAX_TOPICS 16

int main(int argc, char **argv)
{
	int brokers = 1;
	const char *topics[MAX_TOPICS];
	int parts[MAX_TOPICS];
	int ntopics = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--brokers") == 0 && i + 1 < argc) {
			brokers = atoi(argv[++i]);
			if (brokers < 1)
				brokers = 1;
		} else if (strcmp(argv[i], "--topic") == 0 && i + 1 < argc && ntopics < MAX_TOPICS) {
			char *t = argv[++i];
			char *colon = strchr(t, ':');
			parts[ntopics] = 1;
			if (colon) {
				*colon = '\0';
				parts[ntopics] = atoi(colon + 1) > 0 ? atoi(colon + 1) : 1;
			}
			topics[ntopics++] = t;
		} else {
			fprintf(stderr, "usage: kafka-mock [--brokers N] [--topic NAME[:PARTITIONS]]...\n");
			return 2;
		}
	}

	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	char err[512];
	char n[16];
	snprintf(n, sizeof n, "%d", brokers);
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "test.mock.num.brokers", n, err, sizeof err) != RD_KAFKA_CONF_OK) {
		fprintf(stderr, "kafka-mock: %s\n", err);
		return 1;
	}
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
	if (!rk) {
		fprintf(stderr, "kafka-mock: %s\n", err);
		return 1;
	}
	rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(rk);
	if (!mc) {
		fprintf(stderr, "kafka-mock: no mock cluster\n");
		rd_kafka_destroy(rk);
		return 1;
	}
	for (int i = 0; i < ntopics; i++) {
		rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mc, topics[i], parts[i], 1);
		if (e) {
			fprintf(stderr, "kafka-mock: topic %s: %s\n", topics[i], rd_kafka_err2str(e));
			rd_kafka_destroy(rk);
			return 1;
		}
	}
	printf("bootstrap %s\n", rd_kafka_mock_cluster_bootstraps(mc));
	fflush(stdout);

	for (;;) {
		int sig = sigwaitinfo(&sigs, NULL);
		if (sig == SIGTERM || sig == SIGINT)
			break;
		if (sig < 0 && errno != EINTR)
			break;
	}
	rd_kafka_destroy(rk);
	return 0;
}
