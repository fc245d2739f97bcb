/* Unit tests for agent/config.c: defaults, valid and invalid values, precedence, warning text. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/config.h"
#include "agent/log.h"

extern char *program_invocation_short_name;

#define FAKE_MAX 64

static struct {
	const char *name;
	const char *value;
} fake[FAKE_MAX];
static size_t nfake;

/* Big enough for the cases below; a struct config is too large for some test stacks. */
static struct config cfg;
static char errbuf[16384];

static void env_set(const char *name, const char *value)
{
	for (size_t i = 0; i < nfake; i++) {
		if (strcmp(fake[i].name, name) == 0) {
			fake[i].value = value;
			return;
		}
	}
	ck_assert_uint_lt(nfake, FAKE_MAX);
	fake[nfake].name = name;
	fake[nfake].value = value;
	nfake++;
}

static const char *fake_getenv(const char *name)
{
	for (size_t i = 0; i < nfake; i++)
		if (strcmp(fake[i].name, name) == 0)
			return fake[i].value;
	return NULL;
}

static void setup(void)
{
	nfake = 0;
	errbuf[0] = '\0';
	log_set_level(LOG_LEVEL_INFO);
}

/* Runs config_load with fd 2 sent to a temporary file, so each test can check
 * what was (and was not) printed. */
static void load(void)
{
	FILE *tmp = tmpfile();
	int saved = dup(2);
	ssize_t n;

	ck_assert_ptr_nonnull(tmp);
	ck_assert_int_ge(saved, 0);
	fflush(stderr);
	ck_assert_int_eq(dup2(fileno(tmp), 2), 2);
	config_load(&cfg, fake_getenv);
	dup2(saved, 2);
	close(saved);
	lseek(fileno(tmp), 0, SEEK_SET);
	n = read(fileno(tmp), errbuf, sizeof errbuf - 1);
	errbuf[n > 0 ? n : 0] = '\0';
	fclose(tmp);
}

static int count_lines(void)
{
	int n = 0;

	for (const char *p = errbuf; *p; p++)
		n += *p == '\n';
	return n;
}

/* Exactly `lines` warnings, each one properly prefixed line, all mentioning needle. */
static void expect_warnings(int lines, const char *needle)
{
	const char *p = errbuf;

	ck_assert_msg(count_lines() == lines, "expected %d warning line(s), got: %s", lines, errbuf);
	for (int i = 0; i < lines; i++) {
		const char *nl = strchr(p, '\n');

		ck_assert_msg(strncmp(p, "traceagent: warning: ", 21) == 0, "bad prefix: %s", p);
		ck_assert_msg(memmem(p, (size_t)(nl - p), needle, strlen(needle)) != NULL,
			      "warning does not name %s: %.*s", needle, (int)(nl - p), p);
		p = nl + 1;
	}
}

static void expect_warning(const char *needle)
{
	expect_warnings(1, needle);
}

static void expect_quiet(void)
{
	ck_assert_msg(errbuf[0] == '\0', "unexpected output: %s", errbuf);
}

/* ---- defaults ---- */

START_TEST(test_defaults)
{
	char want[300];

	load();
	expect_quiet();
	ck_assert(!cfg.sdk_disabled);
	ck_assert_int_eq(cfg.log_level, LOG_LEVEL_INFO);
	ck_assert_int_eq(log_threshold, LOG_LEVEL_INFO);
	snprintf(want, sizeof want, "unknown_service:%s", program_invocation_short_name);
	ck_assert_str_eq(cfg.service_name, want);
	ck_assert_uint_eq(cfg.resource.count, 0);
	ck_assert_int_eq(cfg.sampler, SAMPLER_PARENTBASED_ALWAYS_ON);
	ck_assert_double_eq(cfg.sampler_ratio, 1.0);
	ck_assert_uint_eq(cfg.propagators, PROPAGATOR_TRACECONTEXT | PROPAGATOR_BAGGAGE);
	ck_assert_int_eq(cfg.exporter, EXPORTER_OTLP);
	ck_assert_uint_eq(cfg.bsp_schedule_delay_ms, 5000);
	ck_assert_uint_eq(cfg.bsp_export_timeout_ms, 30000);
	ck_assert_uint_eq(cfg.bsp_max_queue_size, 2048);
	ck_assert_uint_eq(cfg.bsp_max_export_batch_size, 512);
	ck_assert_str_eq(cfg.endpoint, "http://localhost:4318/v1/traces");
	ck_assert_uint_eq(cfg.headers.count, 0);
	ck_assert_int_eq(cfg.compression, COMPRESSION_NONE);
	ck_assert_uint_eq(cfg.timeout_ms, 10000);
	ck_assert_int_eq(cfg.protocol, OTLP_HTTP_PROTOBUF);
	ck_assert_str_eq(cfg.certificate, "");
	ck_assert_str_eq(cfg.client_key, "");
	ck_assert_str_eq(cfg.client_certificate, "");
	ck_assert_uint_eq(cfg.span_attribute_count_limit, 128);
	ck_assert_uint_eq(cfg.span_attribute_value_length_limit, CONFIG_UNLIMITED);
	ck_assert_uint_eq(cfg.span_event_count_limit, 128);
	ck_assert_uint_eq(cfg.span_link_count_limit, 128);
	ck_assert_uint_eq(cfg.event_attribute_count_limit, 128);
	ck_assert_uint_eq(cfg.link_attribute_count_limit, 128);
	ck_assert_uint_eq(cfg.exit_timeout_ms, 1000);
}
END_TEST

/* The spec: an empty value is the same as unset. Blank counts as empty after trimming. */
START_TEST(test_empty_values_are_unset)
{
	static const char *const names[] = {
		"OTEL_SDK_DISABLED", "OTEL_LOG_LEVEL", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
		"OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_PROPAGATORS", "OTEL_TRACES_EXPORTER",
		"OTEL_BSP_SCHEDULE_DELAY", "OTEL_BSP_EXPORT_TIMEOUT", "OTEL_BSP_MAX_QUEUE_SIZE",
		"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "OTEL_EXPORTER_OTLP_ENDPOINT",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS",
		"OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_COMPRESSION",
		"OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_ATTRIBUTE_COUNT_LIMIT",
		"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "TRACEAGENT_EXIT_TIMEOUT",
	};

	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		env_set(names[i], i % 2 ? "" : "  \t ");
	load();
	expect_quiet();
	ck_assert(!cfg.sdk_disabled);
	ck_assert_int_eq(cfg.sampler, SAMPLER_PARENTBASED_ALWAYS_ON);
	ck_assert_uint_eq(cfg.propagators, PROPAGATOR_TRACECONTEXT | PROPAGATOR_BAGGAGE);
	ck_assert_uint_eq(cfg.bsp_schedule_delay_ms, 5000);
	ck_assert_str_eq(cfg.endpoint, "http://localhost:4318/v1/traces");
	ck_assert_uint_eq(cfg.exit_timeout_ms, 1000);
	ck_assert(strncmp(cfg.service_name, "unknown_service", 15) == 0);
}
END_TEST

/* ---- OTEL_SDK_DISABLED ---- */

START_TEST(test_sdk_disabled_true)
{
	static const char *const values[] = { "true", "TRUE", "True", "  tRuE\t" };

	for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
		env_set("OTEL_SDK_DISABLED", values[i]);
		load();
		expect_quiet();
		ck_assert_msg(cfg.sdk_disabled, "%s", values[i]);
	}
}
END_TEST

START_TEST(test_sdk_disabled_false)
{
	env_set("OTEL_SDK_DISABLED", "FALSE");
	load();
	expect_quiet();
	ck_assert(!cfg.sdk_disabled);
}
END_TEST

START_TEST(test_sdk_disabled_invalid)
{
	static const char *const values[] = { "yes", "1", "on", "truee" };

	for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
		env_set("OTEL_SDK_DISABLED", values[i]);
		load();
		expect_warning("OTEL_SDK_DISABLED");
		ck_assert(!cfg.sdk_disabled);
	}
}
END_TEST

/* ---- OTEL_LOG_LEVEL ---- */

START_TEST(test_log_level_values)
{
	static const struct {
		const char *v;
		enum log_level want;
	} cases[] = {
		{ "none", LOG_LEVEL_NONE },   { "OFF", LOG_LEVEL_NONE },     { "error", LOG_LEVEL_ERROR },
		{ "warn", LOG_LEVEL_WARN },   { "Warning", LOG_LEVEL_WARN }, { "info", LOG_LEVEL_INFO },
		{ " DEBUG ", LOG_LEVEL_DEBUG }, { "trace", LOG_LEVEL_DEBUG },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		env_set("OTEL_LOG_LEVEL", cases[i].v);
		load();
		expect_quiet();
		ck_assert_msg(cfg.log_level == cases[i].want, "%s", cases[i].v);
		ck_assert_int_eq(log_threshold, cases[i].want);
	}
}
END_TEST

START_TEST(test_log_level_invalid)
{
	env_set("OTEL_LOG_LEVEL", "loud");
	load();
	expect_warning("OTEL_LOG_LEVEL");
	ck_assert_int_eq(cfg.log_level, LOG_LEVEL_INFO);
	ck_assert_int_eq(log_threshold, LOG_LEVEL_INFO);
}
END_TEST

/* OTEL_LOG_LEVEL is applied before anything else is parsed. */
START_TEST(test_log_level_silences_warnings)
{
	env_set("OTEL_BSP_SCHEDULE_DELAY", "abc");
	env_set("OTEL_LOG_LEVEL", "none");
	load();
	expect_quiet();
	ck_assert_uint_eq(cfg.bsp_schedule_delay_ms, 5000);

	env_set("OTEL_LOG_LEVEL", "error");
	load();
	expect_quiet();

	env_set("OTEL_LOG_LEVEL", "warn");
	load();
	expect_warning("OTEL_BSP_SCHEDULE_DELAY");
}
END_TEST

/* ---- service name and resource ---- */

START_TEST(test_service_name_env)
{
	env_set("OTEL_SERVICE_NAME", "  checkout  ");
	load();
	expect_quiet();
	ck_assert_str_eq(cfg.service_name, "checkout");
}
END_TEST

START_TEST(test_service_name_precedence)
{
	env_set("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,team=core");
	load();
	ck_assert_str_eq(cfg.service_name, "from-attrs");

	env_set("OTEL_SERVICE_NAME", "from-env");
	load();
	expect_quiet();
	ck_assert_str_eq(cfg.service_name, "from-env");
	/* The attribute itself stays in the list; resource_build overrides it. */
	ck_assert_uint_eq(cfg.resource.count, 2);

	env_set("OTEL_SERVICE_NAME", "");
	load();
	ck_assert_str_eq(cfg.service_name, "from-attrs");
}
END_TEST

START_TEST(test_service_name_last_attribute_wins)
{
	env_set("OTEL_RESOURCE_ATTRIBUTES", "service.name=a,service.name=b");
	load();
	ck_assert_str_eq(cfg.service_name, "b");
}
END_TEST

START_TEST(test_service_name_fallback)
{
	char want[300];

	/* An empty service.name is no name. */
	env_set("OTEL_RESOURCE_ATTRIBUTES", "service.name=");
	load();
	snprintf(want, sizeof want, "unknown_service:%s", program_invocation_short_name);
	ck_assert_str_eq(cfg.service_name, want);

	char *saved = program_invocation_short_name;
	program_invocation_short_name = (char *)"";
	load();
	program_invocation_short_name = saved;
	ck_assert_str_eq(cfg.service_name, "unknown_service");
}
END_TEST

START_TEST(test_service_name_too_long)
{
	static char name[400];

	memset(name, 'x', sizeof name - 1);
	/* A 2-byte UTF-8 character straddling the cut must not be split. */
	name[254] = (char)0xc3;
	name[255] = (char)0xa9;
	env_set("OTEL_SERVICE_NAME", name);
	load();
	expect_warning("OTEL_SERVICE_NAME");
	ck_assert_uint_eq(strlen(cfg.service_name), 254);
}
END_TEST

START_TEST(test_resource_attributes)
{
	env_set("OTEL_RESOURCE_ATTRIBUTES", " deployment.environment = prod , team=core,empty=,,");
	load();
	expect_quiet();
	ck_assert_uint_eq(cfg.resource.count, 3);
	ck_assert_str_eq(cfg.resource.key[0], "deployment.environment");
	ck_assert_str_eq(cfg.resource.value[0], "prod");
	ck_assert_str_eq(cfg.resource.key[1], "team");
	ck_assert_str_eq(cfg.resource.value[1], "core");
	ck_assert_str_eq(cfg.resource.key[2], "empty");
	ck_assert_str_eq(cfg.resource.value[2], "");
}
END_TEST

START_TEST(test_resource_percent_decoding)
{
	env_set("OTEL_RESOURCE_ATTRIBUTES", "a%3Db=x%2Cy%3dz,sp=%20in%20side%20,utf=caf%C3%A9,pct=100%25");
	load();
	expect_quiet();
	ck_assert_uint_eq(cfg.resource.count, 4);
	ck_assert_str_eq(cfg.resource.key[0], "a=b");
	ck_assert_str_eq(cfg.resource.value[0], "x,y=z");
	/* Trimming happens before decoding: encoded blanks survive. */
	ck_assert_str_eq(cfg.resource.value[1], " in side ");
	ck_assert_str_eq(cfg.resource.value[2], "caf\xc3\xa9");
	ck_assert_str_eq(cfg.resource.value[3], "100%");
}
END_TEST

/* The Resource SDK spec: on any error the whole variable is discarded. */
START_TEST(test_resource_malformed)
{
	static const char *const values[] = {
		"a=1,novalue,b=2", "a=1,=2", "a=1,b=%G1", "a=1,b=%4", "a=1,b=x%", "a=1,b=%00",
	};

	for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
		env_set("OTEL_RESOURCE_ATTRIBUTES", values[i]);
		load();
		expect_warning("OTEL_RESOURCE_ATTRIBUTES");
		ck_assert_msg(cfg.resource.count == 0, "%s", values[i]);
	}
}
END_TEST

START_TEST(test_resource_malformed_service_name_ignored)
{
	env_set("OTEL_RESOURCE_ATTRIBUTES", "service.name=svc,broken");
	load();
	expect_warning("OTEL_RESOURCE_ATTRIBUTES");
	ck_assert(strncmp(cfg.service_name, "unknown_service", 15) == 0);
}
END_TEST

START_TEST(test_resource_too_many_entries)
{
	static char value[1024];
	size_t off = 0;

	for (int i = 0; i < CONFIG_MAX_KV + 5; i++)
		off += (size_t)snprintf(value + off, sizeof value - off, "k%d=v%d,", i, i);
	env_set("OTEL_RESOURCE_ATTRIBUTES", value);
	load();
	expect_warning("OTEL_RESOURCE_ATTRIBUTES");
	ck_assert_uint_eq(cfg.resource.count, CONFIG_MAX_KV);
	ck_assert_str_eq(cfg.resource.key[0], "k0");
	ck_assert_str_eq(cfg.resource.value[CONFIG_MAX_KV - 1], "v31");
}
END_TEST

START_TEST(test_resource_too_many_bytes)
{
	static char value[3 * CONFIG_KV_BUF];

	/* Three entries of ~1.7 KB each: only two fit in CONFIG_KV_BUF. */
	memset(value, 'v', sizeof value - 1);
	memcpy(value, "a=", 2);
	memcpy(value + 1700, ",b=", 3);
	memcpy(value + 3400, ",c=", 3);
	value[5100] = '\0';
	env_set("OTEL_RESOURCE_ATTRIBUTES", value);
	load();
	expect_warning("OTEL_RESOURCE_ATTRIBUTES");
	ck_assert_uint_eq(cfg.resource.count, 2);
	ck_assert_str_eq(cfg.resource.key[1], "b");
}
END_TEST

/* ---- sampler ---- */

START_TEST(test_sampler_values)
{
	static const struct {
		const char *v;
		enum sampler_kind want;
	} cases[] = {
		{ "always_on", SAMPLER_ALWAYS_ON },
		{ "always_off", SAMPLER_ALWAYS_OFF },
		{ "traceidratio", SAMPLER_TRACEIDRATIO },
		{ "parentbased_always_on", SAMPLER_PARENTBASED_ALWAYS_ON },
		{ "parentbased_always_off", SAMPLER_PARENTBASED_ALWAYS_OFF },
		{ "parentbased_traceidratio", SAMPLER_PARENTBASED_TRACEIDRATIO },
		{ " ALWAYS_OFF ", SAMPLER_ALWAYS_OFF },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		env_set("OTEL_TRACES_SAMPLER", cases[i].v);
		load();
		expect_quiet();
		ck_assert_msg(cfg.sampler == cases[i].want, "%s", cases[i].v);
		ck_assert_double_eq(cfg.sampler_ratio, 1.0);
	}
}
END_TEST

START_TEST(test_sampler_invalid)
{
	static const char *const values[] = { "jaeger_remote", "parentbased_jaeger_remote", "xray", "sometimes" };

	for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
		env_set("OTEL_TRACES_SAMPLER", values[i]);
		load();
		expect_warning("OTEL_TRACES_SAMPLER");
		ck_assert_int_eq(cfg.sampler, SAMPLER_PARENTBASED_ALWAYS_ON);
	}
}
END_TEST

START_TEST(test_sampler_arg_valid)
{
	static const struct {
		const char *v;
		double want;
	} cases[] = {
		{ "0.25", 0.25 }, { "0", 0.0 }, { "1", 1.0 }, { "1.0", 1.0 }, { ".5", 0.5 },
		{ "0.1", 0.1 }, { "1e-2", 0.01 }, { "+0.75", 0.75 }, { " 0.5 ", 0.5 }, { "-0", 0.0 },
	};

	env_set("OTEL_TRACES_SAMPLER", "parentbased_traceidratio");
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		env_set("OTEL_TRACES_SAMPLER_ARG", cases[i].v);
		load();
		expect_quiet();
		ck_assert_msg(cfg.sampler_ratio == cases[i].want, "%s -> %g", cases[i].v, cfg.sampler_ratio);
	}
}
END_TEST

START_TEST(test_sampler_arg_invalid)
{
	static const char *const values[] = {
		"1.5", "-0.1", "abc", "nan", "inf", "0x0.8", "0.5x", "1e", ".", "0,5", "2e-0",
	};

	env_set("OTEL_TRACES_SAMPLER", "traceidratio");
	for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
		env_set("OTEL_TRACES_SAMPLER_ARG", values[i]);
		load();
		expect_warning("OTEL_TRACES_SAMPLER_ARG");
		ck_assert_msg(cfg.sampler_ratio == 1.0, "%s", values[i]);
		ck_assert_int_eq(cfg.sampler, SAMPLER_TRACEIDRATIO);
	}
}
END_TEST

/* The argument applies only along with a sampler that takes one. */
START_TEST(test_sampler_arg_ignored)
{
	env_set("OTEL_TRACES_SAMPLER_ARG", "0.5");
	load();
	expect_quiet();
	ck_assert_double_eq(cfg.sampler_ratio, 1.0);

	env_set("OTEL_TRACES_SAMPLER", "always_on");
	load();
	expect_quiet();
	ck_assert_double_eq(cfg.sampler_ratio, 1.0);
}
END_TEST

/* ---- propagators ---- */

START_TEST(test_propagators_valid)
{
	static const struct {
		const char *v;
		unsigned want;
	} cases[] = {
		{ "tracecontext", PROPAGATOR_TRACECONTEXT },
		{ "baggage", PROPAGATOR_BAGGAGE },
		{ " Baggage , TraceContext ", PROPAGATOR_TRACECONTEXT | PROPAGATOR_BAGGAGE },
		{ "tracecontext,tracecontext", PROPAGATOR_TRACECONTEXT },
		{ "none", 0 },
		{ "NONE", 0 },
		{ "tracecontext,,", PROPAGATOR_TRACECONTEXT },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		env_set("OTEL_PROPAGATORS", cases[i].v);
		load();
		expect_quiet();
		ck_assert_msg(cfg.propagators == cases[i].want, "%s", cases[i].v);
	}
}
END_TEST

START_TEST(test_propagators_unknown_entry)
{
	env_set("OTEL_PROPAGATORS", "tracecontext,b3");
	load();
	expect_warning("OTEL_PROPAGATORS");
	ck_assert_ptr_nonnull(strstr(errbuf, "\"b3\""));
	ck_assert_uint_eq(cfg.propagators, PROPAGATOR_TRACECONTEXT);
}
END_TEST

START_TEST(test_propagators_unknown_entry_warned_once)
{
	env_set("OTEL_PROPAGATORS", "b3,baggage,b3,jaeger,b3");
	load();
	expect_warnings(2, "OTEL_PROPAGATORS");
	ck_assert_ptr_nonnull(strstr(errbuf, "\"b3\""));
	ck_assert_ptr_nonnull(strstr(errbuf, "\"jaeger\""));
	ck_assert_uint_eq(cfg.propagators, PROPAGATOR_BAGGAGE);
}
END_TEST

/* Nothing usable left: the variable counts as unset. */
START_TEST(test_propagators_only_unknown)
{
	env_set("OTEL_PROPAGATORS", "b3multi,xray");
	load();
	expect_warning("OTEL_PROPAGATORS");
	ck_assert_uint_eq(cfg.propagators, PROPAGATOR_TRACECONTEXT | PROPAGATOR_BAGGAGE);
}
END_TEST

START_TEST(test_propagators_none_with_others)
{
	env_set("OTEL_PROPAGATORS", "none,tracecontext");
	load();
	expect_warning("OTEL_PROPAGATORS");
	ck_assert_uint_eq(cfg.propagators, 0);
}
END_TEST

/* ---- exporter ---- */

START_TEST(test_exporter_values)
{
	static const struct {
		const char *v;
		enum exporter_kind want;
	} cases[] = {
		{ "otlp", EXPORTER_OTLP }, { "console", EXPORTER_CONSOLE }, { "none", EXPORTER_NONE },
		{ " Console ", EXPORTER_CONSOLE }, { "otlp,otlp", EXPORTER_OTLP },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		env_set("OTEL_TRACES_EXPORTER", cases[i].v);
		load();
		expect_quiet();
		ck_assert_msg(cfg.exporter == cases[i].want, "%s", cases[i].v);
	}
}
END_TEST

START_TEST(test_exporter_invalid)
{
	env_set("OTEL_TRACES_EXPORTER", "zipkin");
	load();
	expect_warning("OTEL_TRACES_EXPORTER");
	ck_assert_int_eq(cfg.exporter, EXPORTER_OTLP);
}
END_TEST

START_TEST(test_exporter_list)
{
	env_set("OTEL_TRACES_EXPORTER", "console,otlp");
	load();
	expect_warning("OTEL_TRACES_EXPORTER");
	ck_assert_int_eq(cfg.exporter, EXPORTER_CONSOLE);

	env_set("OTEL_TRACES_EXPORTER", "zipkin,none");
	load();
	expect_warning("zipkin");
	ck_assert_int_eq(cfg.exporter, EXPORTER_NONE);
}
END_TEST

/* ---- batch span processor ---- */

START_TEST(test_bsp_valid)
{
	env_set("OTEL_BSP_SCHEDULE_DELAY", "0");
	env_set("OTEL_BSP_EXPORT_TIMEOUT", "1500");
	env_set("OTEL_BSP_MAX_QUEUE_SIZE", "4096");
	env_set("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", " 1024 ");
	load();
	expect_quiet();
	ck_assert_uint_eq(cfg.bsp_schedule_delay_ms, 0);
	ck_assert_uint_eq(cfg.bsp_export_timeout_ms, 1500);
	ck_assert_uint_eq(cfg.bsp_max_queue_size, 4096);
	ck_assert_uint_eq(cfg.bsp_max_export_batch_size, 1024);
}
END_TEST

START_TEST(test_bsp_invalid_integers)
{
	static const char *const values[] = {
		"abc", "-1", "12x", "1 2", "+5", "4294967296", "99999999999999999999", "1.5",
	};

	for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
		env_set("OTEL_BSP_SCHEDULE_DELAY", values[i]);
		load();
		expect_warning("OTEL_BSP_SCHEDULE_DELAY");
		ck_assert_msg(cfg.bsp_schedule_delay_ms == 5000, "%s", values[i]);
	}
	env_set("OTEL_BSP_SCHEDULE_DELAY", "4294967295");
	load();
	expect_quiet();
	ck_assert_uint_eq(cfg.bsp_schedule_delay_ms, UINT32_MAX);
}
END_TEST

START_TEST(test_bsp_warning_text)
{
	env_set("OTEL_BSP_SCHEDULE_DELAY", "abc");
	load();
	ck_assert_str_eq(errbuf, "traceagent: warning: invalid OTEL_BSP_SCHEDULE_DELAY=\"abc\": expected a "
				 "non-negative integer in milliseconds; using 5000\n");
}
END_TEST

/* A spec "timeout" of 0 means no limit. */
START_TEST(test_bsp_export_timeout_zero)
{
	env_set("OTEL_BSP_EXPORT_TIMEOUT", "0");
	load();
	expect_quiet();
	ck_assert_uint_eq(cfg.bsp_export_timeout_ms, UINT32_MAX);

	env_set("OTEL_BSP_EXPORT_TIMEOUT", "-5");
	load();
	expect_warning("OTEL_BSP_EXPORT_TIMEOUT");
	ck_assert_uint_eq(cfg.bsp_export_timeout_ms, 30000);
}
END_TEST

START_TEST(test_bsp_sizes_must_be_positive)
{
	env_set("OTEL_BSP_MAX_QUEUE_SIZE", "0");
	env_set("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "0");
	load();
	ck_assert_int_eq(count_lines(), 2);
	ck_assert_ptr_nonnull(strstr(errbuf, "OTEL_BSP_MAX_QUEUE_SIZE"));
	ck_assert_ptr_nonnull(strstr(errbuf, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"));
	ck_assert_uint_eq(cfg.bsp_max_queue_size, 2048);
	ck_assert_uint_eq(cfg.bsp_max_export_batch_size, 512);
}
END_TEST

START_TEST(test_bsp_batch_clamped)
{
	env_set("OTEL_BSP_MAX_QUEUE_SIZE", "100");
	env_set("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "200");
	load();
	expect_warning("OTEL_BSP_MAX_EXPORT_BATCH_SIZE");
	ck_assert_uint_eq(cfg.bsp_max_queue_size, 100);
	ck_assert_uint_eq(cfg.bsp_max_export_batch_size, 100);
}
END_TEST

/* The default batch size over a small queue is no user error: clamp without a word. */
START_TEST(test_bsp_default_batch_clamped_quietly)
{
	env_set("OTEL_BSP_MAX_QUEUE_SIZE", "64");
	load();
	expect_quiet();
	ck_assert_uint_eq(cfg.bsp_max_export_batch_size, 64);
}
END_TEST

START_TEST(test_bsp_queue_capped)
{
	env_set("OTEL_BSP_MAX_QUEUE_SIZE", "5000000");
	load();
	expect_warning("OTEL_BSP_MAX_QUEUE_SIZE");
	ck_assert_uint_eq(cfg.bsp_max_queue_size, 1u << 20);
	ck_assert_uint_eq(cfg.bsp_max_export_batch_size, 512);
}
END_TEST

/* ---- endpoint ---- */

START_TEST(test_endpoint_traces_as_is)
{
	env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://collector.example.com:443/custom/path");
	load();
	expect_quiet();
	ck_assert_str_eq(cfg.endpoint, "https://collector.example.com:443/custom/path");
}
END_TEST

START_TEST(test_endpoint_base_appends_path)
{
	static const struct {
		const char *v, *want;
	} cases[] = {
		{ "http://x:4318", "http://x:4318/v1/traces" },
		{ "http://x:4318/", "http://x:4318/v1/traces" },
		{ "http://x:4318//", "http://x:4318/v1/traces" },
		{ "https://gw.example.com/otlp", "https://gw.example.com/otlp/v1/traces" },
		{ " HTTP://x ", "HTTP://x/v1/traces" },
		/* the path goes before a query (it went after it: a 404) */
		{ "http://x:4318/?api_key=k", "http://x:4318/v1/traces?api_key=k" },
		{ "http://x:4318?a=1&b=2", "http://x:4318/v1/traces?a=1&b=2" },
		{ "http://x/p/?q", "http://x/p/v1/traces?q" },
		{ "http://x/p#frag", "http://x/p/v1/traces" },
		{ "http://u:pw@[::1]:4318/", "http://u:pw@[::1]:4318/v1/traces" },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		env_set("OTEL_EXPORTER_OTLP_ENDPOINT", cases[i].v);
		load();
		expect_quiet();
		ck_assert_str_eq(cfg.endpoint, cases[i].want);
	}
}
END_TEST

START_TEST(test_endpoint_traces_wins)
{
	env_set("OTEL_EXPORTER_OTLP_ENDPOINT", "http://base:4318");
	env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:9999/t");
	load();
	expect_quiet();
	ck_assert_str_eq(cfg.endpoint, "http://traces:9999/t");
}
END_TEST

START_TEST(test_endpoint_invalid)
{
	static const char *const values[] = {
		"collector:4318", "ftp://x", "http://", "https:///path", "http://a b", "localhost",
	};

	for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
		env_set("OTEL_EXPORTER_OTLP_ENDPOINT", values[i]);
		load();
		expect_warning("OTEL_EXPORTER_OTLP_ENDPOINT");
		ck_assert_str_eq(cfg.endpoint, "http://localhost:4318/v1/traces");
	}
}
END_TEST

/* An invalid per-signal endpoint counts as unset: the generic one applies. */
START_TEST(test_endpoint_invalid_traces_falls_back)
{
	env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector:4318/v1/traces");
	env_set("OTEL_EXPORTER_OTLP_ENDPOINT", "http://base:4318");
	load();
	expect_warning("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
	ck_assert_str_eq(cfg.endpoint, "http://base:4318/v1/traces");
}
END_TEST

START_TEST(test_endpoint_too_long)
{
	static char url[CONFIG_PATH_MAX + 16];

	memset(url, 'a', sizeof url - 1);
	memcpy(url, "http://", 7);
	env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url);
	load();
	expect_warning("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
	ck_assert_str_eq(cfg.endpoint, "http://localhost:4318/v1/traces");

	/* Fits alone, but not with /v1/traces appended. */
	url[CONFIG_PATH_MAX - 5] = '\0';
	env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", NULL);
	env_set("OTEL_EXPORTER_OTLP_ENDPOINT", url);
	load();
	expect_warning("OTEL_EXPORTER_OTLP_ENDPOINT");
	ck_assert_str_eq(cfg.endpoint, "http://localhost:4318/v1/traces");
}
END_TEST

START_TEST(test_endpoint_credentials_not_shown)
{
	env_set("OTEL_EXPORTER_OTLP_ENDPOINT", "user:hunter2@collector:4318");
	load();
	expect_warning("OTEL_EXPORTER_OTLP_ENDPOINT");
	ck_assert_ptr_null(strstr(errbuf, "hunter2"));

	/* An invalid URL with a key in its query: still masked. */
	env_set("OTEL_EXPORTER_OTLP_ENDPOINT", "http://u:hunter2@h:99999/?api_key=s3cr3t");
	load();
	expect_warning("OTEL_EXPORTER_OTLP_ENDPOINT");
	ck_assert_ptr_null(strstr(errbuf, "hunter2"));
	ck_assert_ptr_null(strstr(errbuf, "s3cr3t"));
}
END_TEST

/* endpoint_shown is the form every diagnostic prints. */
START_TEST(test_endpoint_shown_masked)
{
	env_set("OTEL_EXPORTER_OTLP_ENDPOINT", "https://user:hunter2@collector:4318/base?api_key=k&x");
	load();
	expect_quiet();
	ck_assert_str_eq(cfg.endpoint, "https://user:hunter2@collector:4318/base/v1/traces?api_key=k&x");
	ck_assert_str_eq(cfg.endpoint_shown, "https://***@collector:4318/base/v1/traces?api_key=***&***");
	ck_assert_uint_eq(cfg.endpoint_userinfo_len, 12);
	ck_assert(memcmp(cfg.endpoint_userinfo, "user:hunter2", 12) == 0);
	/* percent-decoded for Basic authorization */
	env_set("OTEL_EXPORTER_OTLP_ENDPOINT", "http://u%3Ax:p%40w@h");
	load();
	ck_assert_uint_eq(cfg.endpoint_userinfo_len, 7);
	ck_assert(memcmp(cfg.endpoint_userinfo, "u:x:p@w", 7) == 0);
	env_set("OTEL_EXPORTER_OTLP_ENDPOINT", NULL);
	load();
	ck_assert_str_eq(cfg.endpoint_shown, "http://localhost:4318/v1/traces");
}
END_TEST

/* ---- protocol, and the gRPC fallback ---- */

START_TEST(test_protocol_values)
{
	env_set("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json");
	load();
	expect_quiet();
	ck_assert_int_eq(cfg.protocol, OTLP_HTTP_JSON);

	env_set("OTEL_EXPORTER_OTLP_PROTOCOL", "HTTP/Protobuf");
	load();
	expect_quiet();
	ck_assert_int_eq(cfg.protocol, OTLP_HTTP_PROTOBUF);
}
END_TEST

START_TEST(test_protocol_traces_wins)
{
	env_set("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
	env_set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json");
	load();
	expect_quiet();
	ck_assert_int_eq(cfg.protocol, OTLP_HTTP_JSON);
}
END_TEST

START_TEST(test_protocol_invalid)
{
	env_set("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift");
	load();
	expect_warning("OTEL_EXPORTER_OTLP_PROTOCOL");
	ck_assert_int_eq(cfg.protocol, OTLP_HTTP_PROTOBUF);

	/* An invalid per-signal value falls back to the generic one. */
	env_set("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json");
	env_set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "thrift");
	load();
	expect_warning("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL");
	ck_assert_int_eq(cfg.protocol, OTLP_HTTP_JSON);
}
END_TEST

START_TEST(test_grpc_rewrites_port)
{
	env_set("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc");
	env_set("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317");
	load();
	expect_warning("gRPC");
	ck_assert_ptr_nonnull(strstr(errbuf, "OTEL_EXPORTER_OTLP_PROTOCOL"));
	ck_assert_int_eq(cfg.protocol, OTLP_HTTP_PROTOBUF);
	ck_assert_str_eq(cfg.endpoint, "http://collector:4318/v1/traces");
}
END_TEST

START_TEST(test_grpc_rewrite_forms)
{
	static const struct {
		const char *traces_endpoint, *want;
	} cases[] = {
		{ "https://collector:4317/v1/traces", "https://collector:4318/v1/traces" },
		{ "http://[::1]:4317", "http://[::1]:4318" },
		{ "http://u:4317@collector:4317?x=1", "http://u:4317@collector:4318?x=1" },
		{ "http://collector:43170", "http://collector:43170" },
		{ "http://collector:14317", "http://collector:14317" },
		{ "http://collector/4317", "http://collector/4317" },
		{ "http://collector", "http://collector" },
	};

	env_set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "GRPC");
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", cases[i].traces_endpoint);
		load();
		expect_warning("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL");
		ck_assert_str_eq(cfg.endpoint, cases[i].want);
	}
}
END_TEST

START_TEST(test_grpc_default_endpoint)
{
	env_set("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc");
	load();
	expect_warning("gRPC");
	ck_assert_str_eq(cfg.endpoint, "http://localhost:4318/v1/traces");
}
END_TEST

/* Port 4317 is only rewritten when the user asked for gRPC. */
START_TEST(test_no_rewrite_without_grpc)
{
	env_set("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317");
	load();
	expect_quiet();
	ck_assert_str_eq(cfg.endpoint, "http://collector:4317/v1/traces");
}
END_TEST

/* ---- headers ---- */

START_TEST(test_headers)
{
	env_set("OTEL_EXPORTER_OTLP_HEADERS", "api-key = abc123 , Authorization=Basic%20dXNlcjpwYXNz%3D%3D");
	load();
	expect_quiet();
	ck_assert_uint_eq(cfg.headers.count, 2);
	ck_assert_str_eq(cfg.headers.key[0], "api-key");
	ck_assert_str_eq(cfg.headers.value[0], "abc123");
	ck_assert_str_eq(cfg.headers.key[1], "Authorization");
	ck_assert_str_eq(cfg.headers.value[1], "Basic dXNlcjpwYXNz==");
}
END_TEST

START_TEST(test_headers_traces_wins)
{
	env_set("OTEL_EXPORTER_OTLP_HEADERS", "a=generic,b=2");
	env_set("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "a=traces");
	load();
	expect_quiet();
	ck_assert_uint_eq(cfg.headers.count, 1);
	ck_assert_str_eq(cfg.headers.value[0], "traces");
}
END_TEST

START_TEST(test_headers_malformed)
{
	static const char *const values[] = {
		"api-key=s3cr3t,tok3n-only", "=s3cr3t", "api-key=s3cr3t%ZZ", "bad key=s3cr3t",
		"x-a=s3cr3t%0D%0AHost: evil", "x%0A=s3cr3t", "k=s3cr3t%00",
	};

	for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
		env_set("OTEL_EXPORTER_OTLP_HEADERS", values[i]);
		load();
		expect_warning("OTEL_EXPORTER_OTLP_HEADERS");
		ck_assert_msg(cfg.headers.count == 0, "%s", values[i]);
	}
}
END_TEST

/* Header values hold credentials: no warning may echo any part of them. */
START_TEST(test_headers_never_printed)
{
	env_set("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "authorization=Bearer%20s3cr3t-T0KEN,s3cr3t-T0KEN-2");
	env_set("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=s3cr3t-KEY,broken%G0=s3cr3t-KEY-2");
	load();
	ck_assert_int_eq(count_lines(), 2);
	ck_assert_ptr_nonnull(strstr(errbuf, "OTEL_EXPORTER_OTLP_TRACES_HEADERS"));
	ck_assert_ptr_nonnull(strstr(errbuf, "OTEL_EXPORTER_OTLP_HEADERS"));
	ck_assert_ptr_null(strstr(errbuf, "s3cr3t"));
	ck_assert_ptr_null(strstr(errbuf, "Bearer"));
	ck_assert_ptr_null(strstr(errbuf, "authorization"));
	ck_assert_ptr_null(strstr(errbuf, "x-api-key"));
	ck_assert_uint_eq(cfg.headers.count, 0);
}
END_TEST

/* A malformed per-signal list counts as unset: the generic list applies. */
START_TEST(test_headers_invalid_traces_falls_back)
{
	env_set("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "nope");
	env_set("OTEL_EXPORTER_OTLP_HEADERS", "k=v");
	load();
	expect_warning("OTEL_EXPORTER_OTLP_TRACES_HEADERS");
	ck_assert_uint_eq(cfg.headers.count, 1);
	ck_assert_str_eq(cfg.headers.key[0], "k");
}
END_TEST

/* ---- compression, timeout, TLS files ---- */

START_TEST(test_compression)
{
	env_set("OTEL_EXPORTER_OTLP_COMPRESSION", "GZIP");
	load();
	expect_quiet();
	ck_assert_int_eq(cfg.compression, COMPRESSION_GZIP);

	env_set("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none");
	load();
	expect_quiet();
	ck_assert_int_eq(cfg.compression, COMPRESSION_NONE);

	env_set("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", NULL);
	env_set("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd");
	load();
	expect_warning("OTEL_EXPORTER_OTLP_COMPRESSION");
	ck_assert_int_eq(cfg.compression, COMPRESSION_NONE);
}
END_TEST

START_TEST(test_timeout)
{
	env_set("OTEL_EXPORTER_OTLP_TIMEOUT", "2500");
	load();
	expect_quiet();
	ck_assert_uint_eq(cfg.timeout_ms, 2500);

	env_set("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700");
	load();
	expect_quiet();
	ck_assert_uint_eq(cfg.timeout_ms, 700);

	env_set("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "0");
	load();
	ck_assert_uint_eq(cfg.timeout_ms, UINT32_MAX);

	env_set("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "10s");
	load();
	expect_warning("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT");
	ck_assert_uint_eq(cfg.timeout_ms, 2500);

	env_set("OTEL_EXPORTER_OTLP_TIMEOUT", "-1");
	load();
	expect_warnings(2, "TIMEOUT");
	ck_assert_uint_eq(cfg.timeout_ms, 10000);
}
END_TEST

START_TEST(test_tls_files)
{
	env_set("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ssl/generic.pem");
	env_set("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", " /etc/ssl/traces.pem ");
	env_set("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/k/generic.key");
	env_set("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "/k/traces.crt");
	env_set("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/k/generic.crt");
	load();
	expect_quiet();
	ck_assert_str_eq(cfg.certificate, "/etc/ssl/traces.pem");
	ck_assert_str_eq(cfg.client_key, "/k/generic.key");
	ck_assert_str_eq(cfg.client_certificate, "/k/traces.crt");
}
END_TEST

START_TEST(test_tls_file_too_long)
{
	static char path[CONFIG_PATH_MAX + 1];

	memset(path, 'p', sizeof path - 1);
	env_set("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", path);
	load();
	expect_warning("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE");
	ck_assert_str_eq(cfg.certificate, "");

	env_set("OTEL_EXPORTER_OTLP_CERTIFICATE", "/ok.pem");
	load();
	expect_warning("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE");
	ck_assert_str_eq(cfg.certificate, "/ok.pem");
}
END_TEST

/* ---- limits ---- */

START_TEST(test_limits_generic)
{
	env_set("OTEL_ATTRIBUTE_COUNT_LIMIT", "64");
	env_set("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "256");
	load();
	expect_quiet();
	ck_assert_uint_eq(cfg.span_attribute_count_limit, 64);
	ck_assert_uint_eq(cfg.span_attribute_value_length_limit, 256);
	/* The generic limits apply to span attributes only. */
	ck_assert_uint_eq(cfg.event_attribute_count_limit, 128);
}
END_TEST

START_TEST(test_limits_span_wins)
{
	env_set("OTEL_ATTRIBUTE_COUNT_LIMIT", "64");
	env_set("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "256");
	env_set("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "32");
	env_set("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "0");
	load();
	expect_quiet();
	ck_assert_uint_eq(cfg.span_attribute_count_limit, 32);
	ck_assert_uint_eq(cfg.span_attribute_value_length_limit, 0);
}
END_TEST

START_TEST(test_limits_others)
{
	env_set("OTEL_SPAN_EVENT_COUNT_LIMIT", "1");
	env_set("OTEL_SPAN_LINK_COUNT_LIMIT", "2");
	env_set("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "3");
	env_set("OTEL_LINK_ATTRIBUTE_COUNT_LIMIT", "0");
	load();
	expect_quiet();
	ck_assert_uint_eq(cfg.span_event_count_limit, 1);
	ck_assert_uint_eq(cfg.span_link_count_limit, 2);
	ck_assert_uint_eq(cfg.event_attribute_count_limit, 3);
	ck_assert_uint_eq(cfg.link_attribute_count_limit, 0);
}
END_TEST

START_TEST(test_limits_invalid)
{
	static const char *const names[] = {
		"OTEL_ATTRIBUTE_COUNT_LIMIT", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_SPAN_EVENT_COUNT_LIMIT",
		"OTEL_SPAN_LINK_COUNT_LIMIT", "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
		"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
	};

	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		setup();
		env_set(names[i], "-3");
		load();
		expect_warning(names[i]);
		ck_assert_uint_eq(cfg.span_attribute_count_limit, 128);
		ck_assert_uint_eq(cfg.span_attribute_value_length_limit, CONFIG_UNLIMITED);
		ck_assert_uint_eq(cfg.span_event_count_limit, 128);
		ck_assert_uint_eq(cfg.span_link_count_limit, 128);
		ck_assert_uint_eq(cfg.event_attribute_count_limit, 128);
		ck_assert_uint_eq(cfg.link_attribute_count_limit, 128);
	}
}
END_TEST

/* An invalid span-specific limit counts as unset: the generic one applies. */
START_TEST(test_limits_invalid_span_falls_back)
{
	env_set("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "many");
	env_set("OTEL_ATTRIBUTE_COUNT_LIMIT", "10");
	load();
	expect_warning("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT");
	ck_assert_uint_eq(cfg.span_attribute_count_limit, 10);
}
END_TEST

/* ---- TRACEAGENT_EXIT_TIMEOUT ---- */

START_TEST(test_exit_timeout)
{
	env_set("TRACEAGENT_EXIT_TIMEOUT", "250");
	load();
	expect_quiet();
	ck_assert_uint_eq(cfg.exit_timeout_ms, 250);

	env_set("TRACEAGENT_EXIT_TIMEOUT", "0");
	load();
	ck_assert_uint_eq(cfg.exit_timeout_ms, 0);

	env_set("TRACEAGENT_EXIT_TIMEOUT", "1s");
	load();
	expect_warning("TRACEAGENT_EXIT_TIMEOUT");
	ck_assert_uint_eq(cfg.exit_timeout_ms, 1000);
}
END_TEST

/* ---- diagnostics ---- */

/* A value with a newline must not turn one warning into two lines. */
START_TEST(test_warning_masks_control_chars)
{
	env_set("OTEL_TRACES_SAMPLER", "on\ntraceagent: error: forged");
	load();
	expect_warning("OTEL_TRACES_SAMPLER");
	ck_assert_ptr_null(strstr(errbuf, "\ntraceagent: error"));
}
END_TEST

START_TEST(test_warning_cuts_long_values)
{
	static char value[3000];

	memset(value, 'z', sizeof value - 1);
	env_set("OTEL_TRACES_EXPORTER", value);
	load();
	expect_warning("OTEL_TRACES_EXPORTER");
	ck_assert_uint_lt(strlen(errbuf), 300);
}
END_TEST

/* Reloading starts from scratch: nothing of the previous load survives. */
START_TEST(test_reload_resets)
{
	env_set("OTEL_EXPORTER_OTLP_HEADERS", "a=b");
	env_set("OTEL_EXPORTER_OTLP_CERTIFICATE", "/x.pem");
	env_set("OTEL_TRACES_SAMPLER", "traceidratio");
	env_set("OTEL_TRACES_SAMPLER_ARG", "0.5");
	load();
	ck_assert_uint_eq(cfg.headers.count, 1);
	setup();
	load();
	ck_assert_uint_eq(cfg.headers.count, 0);
	ck_assert_str_eq(cfg.certificate, "");
	ck_assert_double_eq(cfg.sampler_ratio, 1.0);
	ck_assert_int_eq(cfg.sampler, SAMPLER_PARENTBASED_ALWAYS_ON);
}
END_TEST

/* The agent's own call: the global, with the real environment. */
START_TEST(test_global_real_environment)
{
	setenv("OTEL_SERVICE_NAME", "real-env", 1);
	setenv("OTEL_BSP_SCHEDULE_DELAY", "42", 1);
	config_load(&config_global, NULL);
	ck_assert_str_eq(config_global.service_name, "real-env");
	ck_assert_uint_eq(config_global.bsp_schedule_delay_ms, 42);
	unsetenv("OTEL_SERVICE_NAME");
	unsetenv("OTEL_BSP_SCHEDULE_DELAY");
}
END_TEST

Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc;

	tc = tcase_create("general");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_empty_values_are_unset);
	tcase_add_test(tc, test_sdk_disabled_true);
	tcase_add_test(tc, test_sdk_disabled_false);
	tcase_add_test(tc, test_sdk_disabled_invalid);
	tcase_add_test(tc, test_log_level_values);
	tcase_add_test(tc, test_log_level_invalid);
	tcase_add_test(tc, test_log_level_silences_warnings);
	tcase_add_test(tc, test_exit_timeout);
	tcase_add_test(tc, test_warning_masks_control_chars);
	tcase_add_test(tc, test_warning_cuts_long_values);
	tcase_add_test(tc, test_reload_resets);
	tcase_add_test(tc, test_global_real_environment);
	suite_add_tcase(s, tc);

	tc = tcase_create("resource");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_service_name_env);
	tcase_add_test(tc, test_service_name_precedence);
	tcase_add_test(tc, test_service_name_last_attribute_wins);
	tcase_add_test(tc, test_service_name_fallback);
	tcase_add_test(tc, test_service_name_too_long);
	tcase_add_test(tc, test_resource_attributes);
	tcase_add_test(tc, test_resource_percent_decoding);
	tcase_add_test(tc, test_resource_malformed);
	tcase_add_test(tc, test_resource_malformed_service_name_ignored);
	tcase_add_test(tc, test_resource_too_many_entries);
	tcase_add_test(tc, test_resource_too_many_bytes);
	suite_add_tcase(s, tc);

	tc = tcase_create("sampling_propagation_exporter");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_sampler_values);
	tcase_add_test(tc, test_sampler_invalid);
	tcase_add_test(tc, test_sampler_arg_valid);
	tcase_add_test(tc, test_sampler_arg_invalid);
	tcase_add_test(tc, test_sampler_arg_ignored);
	tcase_add_test(tc, test_propagators_valid);
	tcase_add_test(tc, test_propagators_unknown_entry);
	tcase_add_test(tc, test_propagators_unknown_entry_warned_once);
	tcase_add_test(tc, test_propagators_only_unknown);
	tcase_add_test(tc, test_propagators_none_with_others);
	tcase_add_test(tc, test_exporter_values);
	tcase_add_test(tc, test_exporter_invalid);
	tcase_add_test(tc, test_exporter_list);
	suite_add_tcase(s, tc);

	tc = tcase_create("bsp");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_bsp_valid);
	tcase_add_test(tc, test_bsp_invalid_integers);
	tcase_add_test(tc, test_bsp_warning_text);
	tcase_add_test(tc, test_bsp_export_timeout_zero);
	tcase_add_test(tc, test_bsp_sizes_must_be_positive);
	tcase_add_test(tc, test_bsp_batch_clamped);
	tcase_add_test(tc, test_bsp_default_batch_clamped_quietly);
	tcase_add_test(tc, test_bsp_queue_capped);
	suite_add_tcase(s, tc);

	tc = tcase_create("otlp");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_endpoint_traces_as_is);
	tcase_add_test(tc, test_endpoint_base_appends_path);
	tcase_add_test(tc, test_endpoint_traces_wins);
	tcase_add_test(tc, test_endpoint_invalid);
	tcase_add_test(tc, test_endpoint_shown_masked);
	tcase_add_test(tc, test_endpoint_invalid_traces_falls_back);
	tcase_add_test(tc, test_endpoint_too_long);
	tcase_add_test(tc, test_endpoint_credentials_not_shown);
	tcase_add_test(tc, test_protocol_values);
	tcase_add_test(tc, test_protocol_traces_wins);
	tcase_add_test(tc, test_protocol_invalid);
	tcase_add_test(tc, test_grpc_rewrites_port);
	tcase_add_test(tc, test_grpc_rewrite_forms);
	tcase_add_test(tc, test_grpc_default_endpoint);
	tcase_add_test(tc, test_no_rewrite_without_grpc);
	tcase_add_test(tc, test_headers);
	tcase_add_test(tc, test_headers_traces_wins);
	tcase_add_test(tc, test_headers_malformed);
	tcase_add_test(tc, test_headers_never_printed);
	tcase_add_test(tc, test_headers_invalid_traces_falls_back);
	tcase_add_test(tc, test_compression);
	tcase_add_test(tc, test_timeout);
	tcase_add_test(tc, test_tls_files);
	tcase_add_test(tc, test_tls_file_too_long);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_limits_generic);
	tcase_add_test(tc, test_limits_span_wins);
	tcase_add_test(tc, test_limits_others);
	tcase_add_test(tc, test_limits_invalid);
	tcase_add_test(tc, test_limits_invalid_span_falls_back);
	suite_add_tcase(s, tc);

	return s;
}
