/* Agent configuration: every OTEL_* / TRACEAGENT_* variable, parsed once at init into fixed buffers. */
#ifndef TRACEAGENT_CONFIG_H
#define TRACEAGENT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

/* "No limit" for the length limits (the spec's default is infinity). */
#define CONFIG_UNLIMITED UINT32_MAX

#define CONFIG_MAX_KV 32          /* resource attributes and exporter headers, each */
#define CONFIG_KV_BUF 4096        /* decoded bytes for all keys and values of one list */
#define CONFIG_PATH_MAX 1024

enum sampler_kind {
	SAMPLER_ALWAYS_ON = 0,
	SAMPLER_ALWAYS_OFF,
	SAMPLER_TRACEIDRATIO,
	SAMPLER_PARENTBASED_ALWAYS_ON,
	SAMPLER_PARENTBASED_ALWAYS_OFF,
	SAMPLER_PARENTBASED_TRACEIDRATIO,
};

enum exporter_kind {
	EXPORTER_OTLP = 0,
	EXPORTER_CONSOLE,
	EXPORTER_NONE,
};

enum otlp_protocol {
	OTLP_HTTP_PROTOBUF = 0,
	OTLP_HTTP_JSON,
};

enum otlp_compression {
	COMPRESSION_NONE = 0,
	COMPRESSION_GZIP,
};

/* Bits of config.propagators. */
#define PROPAGATOR_TRACECONTEXT 0x1u
#define PROPAGATOR_BAGGAGE      0x2u

/* A decoded key=value list (OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_HEADERS).
 * key[i] and value[i] point into buf and are NUL-terminated. */
struct config_kv_list {
	size_t count;
	const char *key[CONFIG_MAX_KV];
	const char *value[CONFIG_MAX_KV];
	char buf[CONFIG_KV_BUF];
};

struct config {
	bool sdk_disabled;                 /* OTEL_SDK_DISABLED=true */
	enum log_level log_level;          /* OTEL_LOG_LEVEL: none|error|warn|info|debug, default info */

	/* Resource. service_name is resolved: OTEL_SERVICE_NAME, else service.name
	 * from OTEL_RESOURCE_ATTRIBUTES, else "unknown_service:<exe>" (or
	 * "unknown_service" when the executable name can't be read). */
	char service_name[256];
	struct config_kv_list resource;    /* OTEL_RESOURCE_ATTRIBUTES, percent-decoded */

	enum sampler_kind sampler;         /* OTEL_TRACES_SAMPLER, default parentbased_always_on */
	double sampler_ratio;              /* OTEL_TRACES_SAMPLER_ARG for *traceidratio, default 1.0 */
	unsigned propagators;              /* OTEL_PROPAGATORS, default tracecontext,baggage */
	enum exporter_kind exporter;       /* OTEL_TRACES_EXPORTER, default otlp */

	/* Batch span processor (ms / counts). */
	uint32_t bsp_schedule_delay_ms;    /* OTEL_BSP_SCHEDULE_DELAY, 5000 */
	uint32_t bsp_export_timeout_ms;    /* OTEL_BSP_EXPORT_TIMEOUT, 30000 */
	uint32_t bsp_max_queue_size;       /* OTEL_BSP_MAX_QUEUE_SIZE, 2048 */
	uint32_t bsp_max_export_batch_size;/* OTEL_BSP_MAX_EXPORT_BATCH_SIZE, 512 (clamped to queue size) */

	/* OTLP exporter; the _TRACES_ form of each variable wins over the generic one. */
	char endpoint[CONFIG_PATH_MAX];    /* full URL of the traces endpoint: http://localhost:4318/v1/traces */
	char endpoint_shown[CONFIG_PATH_MAX];  /* the same, credentials masked (url_redact): the only form ever printed */
	char endpoint_userinfo[256];       /* its user:password, percent-decoded (Basic authorization); never printed */
	size_t endpoint_userinfo_len;      /* 0: none */
	struct config_kv_list headers;     /* never printed: values hold credentials */
	enum otlp_compression compression; /* none|gzip, default none */
	uint32_t timeout_ms;               /* OTEL_EXPORTER_OTLP_TIMEOUT, 10000 */
	enum otlp_protocol protocol;       /* http/protobuf (default) | http/json; grpc warns and maps to http/protobuf */
	char certificate[CONFIG_PATH_MAX];        /* CA bundle for https, "" = system default */
	char client_key[CONFIG_PATH_MAX];
	char client_certificate[CONFIG_PATH_MAX];

	/* Limits (spec defaults: 128 counts, unlimited lengths). The span-specific
	 * variables win over the generic OTEL_ATTRIBUTE_* ones. */
	uint32_t span_attribute_count_limit;        /* OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT / OTEL_ATTRIBUTE_COUNT_LIMIT */
	uint32_t span_attribute_value_length_limit; /* OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT / OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT */
	uint32_t span_event_count_limit;            /* OTEL_SPAN_EVENT_COUNT_LIMIT */
	uint32_t span_link_count_limit;             /* OTEL_SPAN_LINK_COUNT_LIMIT */
	uint32_t event_attribute_count_limit;       /* OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT */
	uint32_t link_attribute_count_limit;        /* OTEL_LINK_ATTRIBUTE_COUNT_LIMIT */

	/* Ours alone. */
	uint32_t exit_timeout_ms;          /* TRACEAGENT_EXIT_TIMEOUT: bound on the flush at exit, 1000 */
	bool log_correlation;              /* TRACEAGENT_LOG_CORRELATION: trace ids in stdout/stderr lines, false */
	char functions[4096];              /* TRACEAGENT_FUNCTIONS: "task_*,crawl@libcrawl.so:error=neg" (hooks/funcs.c) */
	bool functions_check;              /* TRACEAGENT_FUNCTIONS_CHECK: list what the specs find, then exit (traceagent --check) */

	/* HTTP instrumentation: raw lists, parsed by the hooks that use them. */
	char http_routes[4096];            /* TRACEAGENT_HTTP_ROUTES: "/api/tasks/{id},..." */
	/* OTEL_INSTRUMENTATION_HTTP_{SERVER,CLIENT}_CAPTURE_{REQUEST,RESPONSE}_HEADERS (Java agent names) */
	char http_server_capture_request[512];
	char http_server_capture_response[512];
	char http_client_capture_request[512];
	char http_client_capture_response[512];

	/* PostgreSQL (libpq) instrumentation. */
	bool db_require_parent;     /* TRACEAGENT_DB_REQUIRE_PARENT: no root spans for statements, false */
	bool db_capture_parameters; /* TRACEAGENT_DB_CAPTURE_PARAMETERS: db.query.parameter.<n>, false */
	bool db_sqlcommenter;       /* TRACEAGENT_DB_SQLCOMMENTER: a traceparent comment on the wire, false */
	bool db_sanitize;           /* OTEL_INSTRUMENTATION_COMMON_DB_STATEMENT_SANITIZER_ENABLED, true */
	bool db_connect_spans;      /* TRACEAGENT_DB_CONNECT_SPANS: a span per PQconnectdb, false */

	/* Kafka (librdkafka) instrumentation; Java agent names. */
	bool kafka_enabled;         /* OTEL_INSTRUMENTATION_KAFKA_ENABLED: the hooks record, true */
	bool kafka_propagation;     /* OTEL_INSTRUMENTATION_KAFKA_PRODUCER_PROPAGATION_ENABLED: headers on produce, true */
};

/* Looks a variable up; tests pass a fake environment. Returns NULL when unset. */
typedef const char *(*config_getenv_fn)(const char *name);

/* Fills *c from the environment. Never fails: every invalid value logs one
 * warning naming the variable (never the value of a header) and keeps the default.
 * Does not allocate. */
void config_load(struct config *c, config_getenv_fn getenv_fn);

/* Copies the variables the agent reads (OTEL_*, TRACEAGENT_*, TRACEPARENT,
 * TRACESTATE, BAGGAGE) out of envp: the library's constructor does it, so the
 * configuration is the one the process started with, whatever the app does
 * to its environment later. */
void config_capture_environment(char *const *envp);
/* getenv over that copy (a config_getenv_fn); the live environment until a
 * copy was made. */
const char *config_captured_getenv(const char *name);

/* The process-wide configuration, loaded once by agent init. */
extern struct config config_global;

#endif
