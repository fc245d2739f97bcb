/* The process's OTel resource: service.name, OTEL_RESOURCE_ATTRIBUTES, telemetry.sdk.*, process.*, host.name. */
#ifndef TRACEAGENT_RESOURCE_H
#define TRACEAGENT_RESOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define AGENT_NAME    "libtraceagent"
#define AGENT_VERSION "0.1.0"

#define RESOURCE_MAX_ATTRS (CONFIG_MAX_KV + 8)

struct resource_attr {
	const char *key;
	bool is_int;
	const char *str;   /* when !is_int */
	int64_t i;         /* when is_int */
};

struct resource {
	size_t count;
	struct resource_attr attrs[RESOURCE_MAX_ATTRS];
	char buf[512];     /* host name, executable name, pid text */
};

/* Builds the resource from the loaded configuration. The detected attributes
 * (service.name, telemetry.sdk.*, process.pid, process.executable.name,
 * host.name) come after the user's and win over them, except service.name,
 * which is config->service_name as resolved by config_load. Call again in a
 * forked child: process.pid changes. */
void resource_build(struct resource *r, const struct config *c);

#endif
