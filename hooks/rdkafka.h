/* The Kafka hook family's set-up, called once by agent init. */
#ifndef TRACEAGENT_HOOKS_RDKAFKA_H
#define TRACEAGENT_HOOKS_RDKAFKA_H

struct config;

/* Reads the propagators the Kafka hooks inject and extract. */
void rdkafka_init(const struct config *c);
/* In a forked child: the family's locks start unlocked. */
void rdkafka_after_fork_child(void);

#endif
