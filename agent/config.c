/* Environment configuration: parses every OTEL_* / TRACEAGENT_* variable into fixed buffers, no malloc. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ascii.h"
#include "url.h"

extern char *program_invocation_short_name;

struct config config_global;

#define DEFAULT_ENDPOINT "http://localhost:4318/v1/traces"
#define TRACES_PATH      "/v1/traces"
#define QUEUE_SIZE_CAP   (1u << 20)
/* Room for one value quoted in a diagnostic (see show()). */
#define SHOW_MAX 80

#define SAMPLERS_TEXT "always_on, always_off, traceidratio, parentbased_always_on, " \
		      "parentbased_always_off or parentbased_traceidratio"

/* A view into an environment string: getenv's result is not ours to modify. */
struct slice {
	const char *p;
	size_t n;
};

struct name_value {
	const char *name;
	int value;
};

static bool is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

static struct slice trim(struct slice s)
{
	while (s.n && is_space(s.p[0])) {
		s.p++;
		s.n--;
	}
	while (s.n && is_space(s.p[s.n - 1]))
		s.n--;
	return s;
}

/* Trimmed value; n == 0 both for unset and empty, which the spec treats alike. */
static struct slice env_get(config_getenv_fn getenv_fn, const char *name)
{
	const char *v = getenv_fn(name);
	struct slice s = { v ? v : "", v ? strlen(v) : 0 };

	return trim(s);
}

static bool env_set(config_getenv_fn getenv_fn, const char *name)
{
	return name && env_get(getenv_fn, name).n != 0;
}

static bool slice_is(struct slice s, const char *lit)
{
	size_t n = strlen(lit);

	if (s.n != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (ascii_lower(s.p[i]) != lit[i])
			return false;
	return true;
}

static bool lookup(struct slice s, const struct name_value *table, size_t n, int *out)
{
	for (size_t i = 0; i < n; i++) {
		if (slice_is(s, table[i].name)) {
			*out = table[i].value;
			return true;
		}
	}
	return false;
}

/* Values are echoed in one-line diagnostics: cut long ones and mask control
 * bytes so a crafted variable cannot forge extra log lines. */
static const char *show(char *buf, struct slice s)
{
	size_t max = SHOW_MAX - 4, n = s.n < max ? s.n : max;

	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s.p[i];
		buf[i] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
	}
	if (s.n > max) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n] = '\0';
	return buf;
}

/* Copies at most size-1 bytes, backing off so no UTF-8 sequence is split.
 * Returns false when it had to cut. */
static bool copy_cut(char *dst, size_t size, const char *src, size_t n)
{
	bool whole = n < size;

	if (!whole) {
		n = size - 1;
		while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80)
			n--;
	}
	memcpy(dst, src, n);
	dst[n] = '\0';
	return whole;
}

static const char *fmt_u32(char *buf, size_t size, uint32_t v)
{
	if (v == CONFIG_UNLIMITED)
		return "no limit";
	snprintf(buf, size, "%u", v);
	return buf;
}

/* Digits only: a sign, blanks inside or trailing garbage make the value invalid. */
static bool parse_u32(struct slice s, uint32_t *out)
{
	uint64_t v = 0;

	if (s.n == 0)
		return false;
	for (size_t i = 0; i < s.n; i++) {
		if (s.p[i] < '0' || s.p[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s.p[i] - '0');
		if (v > UINT32_MAX)
			return false;
	}
	*out = (uint32_t)v;
	return true;
}

/* 10^n, exact up to 1e22; inf or 0 beyond the double range, which is fine here. */
static double pow10_of(int n)
{
	double r = 1.0;

	while (n-- > 0)
		r *= 10.0;
	return r;
}

/* A decimal number (optional sign, fraction, exponent). Not strtod: that one
 * follows LC_NUMERIC, accepts hex, inf and nan, and may allocate on long input. */
static bool parse_double(struct slice s, double *out)
{
	size_t i = 0;
	int digits = 0, scale = 0, exp = 0;
	bool neg = false, exp_neg = false;
	double mant = 0.0, v;

	if (i < s.n && (s.p[i] == '+' || s.p[i] == '-'))
		neg = s.p[i++] == '-';
	for (; i < s.n && s.p[i] >= '0' && s.p[i] <= '9'; i++, digits++)
		mant = mant * 10.0 + (s.p[i] - '0');
	if (i < s.n && s.p[i] == '.') {
		for (i++; i < s.n && s.p[i] >= '0' && s.p[i] <= '9'; i++, digits++, scale++)
			mant = mant * 10.0 + (s.p[i] - '0');
	}
	if (digits == 0)
		return false;
	if (i < s.n && (s.p[i] == 'e' || s.p[i] == 'E')) {
		int edigits = 0;

		i++;
		if (i < s.n && (s.p[i] == '+' || s.p[i] == '-'))
			exp_neg = s.p[i++] == '-';
		for (; i < s.n && s.p[i] >= '0' && s.p[i] <= '9'; i++, edigits++)
			if (exp < 10000)
				exp = exp * 10 + (s.p[i] - '0');
		if (edigits == 0)
			return false;
	}
	if (i != s.n)
		return false;
	exp = (exp_neg ? -exp : exp) - scale;
	v = exp < 0 ? mant / pow10_of(-exp) : mant * pow10_of(exp);
	if (v != v)
		return false;
	*out = neg && v != 0.0 ? -v : v;
	return true;
}

/* ---- log level, SDK switch ---- */

static const struct name_value log_levels[] = {
	{ "none", LOG_LEVEL_NONE },   { "off", LOG_LEVEL_NONE },
	{ "error", LOG_LEVEL_ERROR }, { "fatal", LOG_LEVEL_ERROR }, { "critical", LOG_LEVEL_ERROR },
	{ "warn", LOG_LEVEL_WARN },   { "warning", LOG_LEVEL_WARN },
	{ "info", LOG_LEVEL_INFO },
	{ "debug", LOG_LEVEL_DEBUG }, { "trace", LOG_LEVEL_DEBUG }, { "verbose", LOG_LEVEL_DEBUG },
	{ "all", LOG_LEVEL_DEBUG },
};

static void load_log_level(struct config *c, config_getenv_fn g)
{
	struct slice v = env_get(g, "OTEL_LOG_LEVEL");
	int level = LOG_LEVEL_INFO;
	bool ok = !v.n || lookup(v, log_levels, sizeof log_levels / sizeof log_levels[0], &level);
	char shown[SHOW_MAX];

	c->log_level = (enum log_level)level;
	/* Before any other warning, so OTEL_LOG_LEVEL=none silences the rest. */
	log_set_level(c->log_level);
	if (!ok)
		log_warn_config("invalid OTEL_LOG_LEVEL=\"%s\": expected none, error, warn, info or debug; using info",
			 show(shown, v));
}

static void load_sdk_disabled(struct config *c, config_getenv_fn g)
{
	struct slice v = env_get(g, "OTEL_SDK_DISABLED");
	char shown[SHOW_MAX];

	c->sdk_disabled = slice_is(v, "true");
	/* The spec allows only "true" as true; anything else but "false" is worth a word. */
	if (v.n && !c->sdk_disabled && !slice_is(v, "false"))
		log_warn_config("invalid OTEL_SDK_DISABLED=\"%s\": expected true or false; using false",
			 show(shown, v));
}

/* A boolean with a default; anything but true/false warns and keeps it. */
static bool load_bool(config_getenv_fn g, const char *name, bool dflt)
{
	struct slice v = env_get(g, name);
	char shown[SHOW_MAX];

	if (!v.n)
		return dflt;
	if (slice_is(v, "true"))
		return true;
	if (slice_is(v, "false"))
		return false;
	log_warn_config("invalid %s=\"%s\": expected true or false; using %s", name, show(shown, v),
		 dflt ? "true" : "false");
	return dflt;
}

/* ---- key=value lists ---- */

enum kv_kind {
	KV_RESOURCE,
	KV_HEADERS,
};

/* RFC 9110 tchar: anything else in a header name breaks or smuggles the request. */
static bool is_tchar(unsigned char ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

enum decode_err {
	DECODE_OK = 0,
	DECODE_BAD_ESCAPE,
	DECODE_BAD_CHAR,
};

/* Percent-decodes s; writes to dst unless it is NULL (a dry run that only
 * validates and measures). Header names must decode to a token and header
 * values to printable text: a decoded CR or LF would inject headers. */
static enum decode_err pct_decode(char *dst, struct slice s, enum kv_kind kind, bool is_key, size_t *len)
{
	size_t n = 0;

	for (size_t i = 0; i < s.n; i++) {
		unsigned char ch = (unsigned char)s.p[i];

		if (ch == '%') {
			int hi, lo;

			if (i + 2 >= s.n)
				return DECODE_BAD_ESCAPE;
			hi = ascii_hex(s.p[i + 1]);
			lo = ascii_hex(s.p[i + 2]);
			if (hi < 0 || lo < 0)
				return DECODE_BAD_ESCAPE;
			ch = (unsigned char)(hi << 4 | lo);
			i += 2;
		}
		/* The lists are stored NUL-terminated. */
		if (ch == '\0')
			return DECODE_BAD_CHAR;
		if (kind == KV_HEADERS) {
			if (is_key ? !is_tchar(ch) : ((ch < 0x20 && ch != '\t') || ch == 0x7f))
				return DECODE_BAD_CHAR;
		}
		if (dst)
			dst[n] = (char)ch;
		n++;
	}
	*len = n;
	return DECODE_OK;
}

/* Parses "k1=v1,k2=v2". Any malformed entry discards the whole value, as the
 * Resource SDK spec asks for OTEL_RESOURCE_ATTRIBUTES; headers follow the same
 * rule so a half-applied credential set never goes out. Never prints header
 * keys or values. then completes the warning ("using ..."). */
static bool kv_load(struct config_kv_list *l, const char *name, struct slice v, enum kv_kind kind,
		    const char *then)
{
	const char *p = v.p, *end = v.p + v.n, *reason = NULL;
	size_t used = 0, entry = 0, dropped = 0;
	struct slice bad = { "", 0 };
	char shown[SHOW_MAX];

	l->count = 0;
	for (;;) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		struct slice e, k, val;
		const char *eq;
		size_t klen = 0, vlen = 0;
		enum decode_err ek, ev;

		if (!comma)
			comma = end;
		e = trim((struct slice){ p, (size_t)(comma - p) });
		entry++;
		/* Tolerate "a=b," and "a=b,,c=d": nothing is lost by skipping them. */
		if (!e.n)
			goto next;
		eq = memchr(e.p, '=', e.n);
		if (!eq) {
			reason = "is not key=value";
			bad = e;
			break;
		}
		k = trim((struct slice){ e.p, (size_t)(eq - e.p) });
		val = trim((struct slice){ eq + 1, (size_t)(e.p + e.n - eq - 1) });
		if (!k.n) {
			reason = "has an empty key";
			bad = e;
			break;
		}
		ek = pct_decode(NULL, k, kind, true, &klen);
		ev = ek ? DECODE_OK : pct_decode(NULL, val, kind, false, &vlen);
		if (ek == DECODE_BAD_ESCAPE || ev == DECODE_BAD_ESCAPE) {
			reason = "has a malformed percent escape";
			bad = e;
			break;
		}
		if (ek || ev) {
			if (kind == KV_RESOURCE)
				reason = "decodes to a NUL byte";
			else if (ek)
				reason = "has a key that is not a valid header name";
			else
				reason = "has a value with control characters";
			bad = e;
			break;
		}
		if (dropped || l->count == CONFIG_MAX_KV || used + klen + vlen + 2 > CONFIG_KV_BUF) {
			/* Keep the first entries in order rather than whatever fits. */
			dropped++;
			goto next;
		}
		pct_decode(l->buf + used, k, kind, true, &klen);
		l->buf[used + klen] = '\0';
		l->key[l->count] = l->buf + used;
		used += klen + 1;
		pct_decode(l->buf + used, val, kind, false, &vlen);
		l->buf[used + vlen] = '\0';
		l->value[l->count] = l->buf + used;
		used += vlen + 1;
		l->count++;
next:
		if (comma == end)
			break;
		p = comma + 1;
	}
	if (reason) {
		l->count = 0;
		if (kind == KV_HEADERS)
			log_warn_config("invalid %s: entry %zu %s; ignoring the whole variable, %s",
				 name, entry, reason, then);
		else
			log_warn_config("invalid %s: entry %zu (\"%s\") %s; ignoring the whole variable, %s",
				 name, entry, show(shown, bad), reason, then);
		return false;
	}
	if (dropped)
		log_warn_config("%s has more than fits (%d entries, %d bytes); dropped the last %zu",
			 name, CONFIG_MAX_KV, CONFIG_KV_BUF, dropped);
	return true;
}

/* ---- resource ---- */

static void load_resource(struct config *c, config_getenv_fn g)
{
	struct slice v = env_get(g, "OTEL_RESOURCE_ATTRIBUTES");
	struct slice name = env_get(g, "OTEL_SERVICE_NAME");
	const char *from_attrs = NULL;

	c->resource.count = 0;
	if (v.n)
		kv_load(&c->resource, "OTEL_RESOURCE_ATTRIBUTES", v, KV_RESOURCE,
			"no resource attributes are set from it");
	/* The last one: resource_build lets a repeated key overwrite earlier ones. */
	for (size_t i = 0; i < c->resource.count; i++)
		if (strcmp(c->resource.key[i], "service.name") == 0)
			from_attrs = c->resource.value[i][0] ? c->resource.value[i] : NULL;

	if (name.n) {
		if (!copy_cut(c->service_name, sizeof c->service_name, name.p, name.n))
			log_warn_config("OTEL_SERVICE_NAME is longer than %zu bytes; cut", sizeof c->service_name - 1);
	} else if (from_attrs) {
		if (!copy_cut(c->service_name, sizeof c->service_name, from_attrs, strlen(from_attrs)))
			log_warn_config("service.name in OTEL_RESOURCE_ATTRIBUTES is longer than %zu bytes; cut",
				 sizeof c->service_name - 1);
	} else {
		const char *exe = program_invocation_short_name;

		if (exe && *exe)
			snprintf(c->service_name, sizeof c->service_name, "unknown_service:%s", exe);
		else
			snprintf(c->service_name, sizeof c->service_name, "unknown_service");
	}
}

/* ---- sampler, propagators, exporter ---- */

static const struct name_value samplers[] = {
	{ "always_on", SAMPLER_ALWAYS_ON },
	{ "always_off", SAMPLER_ALWAYS_OFF },
	{ "traceidratio", SAMPLER_TRACEIDRATIO },
	{ "parentbased_always_on", SAMPLER_PARENTBASED_ALWAYS_ON },
	{ "parentbased_always_off", SAMPLER_PARENTBASED_ALWAYS_OFF },
	{ "parentbased_traceidratio", SAMPLER_PARENTBASED_TRACEIDRATIO },
};

static void load_sampler(struct config *c, config_getenv_fn g)
{
	struct slice v = env_get(g, "OTEL_TRACES_SAMPLER");
	struct slice arg = env_get(g, "OTEL_TRACES_SAMPLER_ARG");
	int kind = SAMPLER_PARENTBASED_ALWAYS_ON;
	char shown[SHOW_MAX];
	double ratio;

	c->sampler = SAMPLER_PARENTBASED_ALWAYS_ON;
	c->sampler_ratio = 1.0;
	if (v.n) {
		if (lookup(v, samplers, sizeof samplers / sizeof samplers[0], &kind))
			c->sampler = (enum sampler_kind)kind;
		else
			log_warn_config("unsupported OTEL_TRACES_SAMPLER=\"%s\": expected " SAMPLERS_TEXT
				 "; using parentbased_always_on", show(shown, v));
	}
	if (!arg.n)
		return;
	/* The spec applies the argument only along with an explicit sampler that takes one. */
	if (c->sampler != SAMPLER_TRACEIDRATIO && c->sampler != SAMPLER_PARENTBASED_TRACEIDRATIO) {
		log_debug("OTEL_TRACES_SAMPLER_ARG ignored: the sampler in use takes no argument");
		return;
	}
	if (!parse_double(arg, &ratio) || !(ratio >= 0.0 && ratio <= 1.0)) {
		log_warn_config("invalid OTEL_TRACES_SAMPLER_ARG=\"%s\": expected a sampling probability in [0, 1]; using 1.0",
			 show(shown, arg));
		return;
	}
	c->sampler_ratio = ratio;
}

/* Walks the trimmed, non-empty entries of a comma list. */
struct list_iter {
	struct slice rest;
	bool done;
};

static bool list_next(struct list_iter *it, struct slice *entry)
{
	while (!it->done) {
		const char *comma = memchr(it->rest.p, ',', it->rest.n);
		size_t n = comma ? (size_t)(comma - it->rest.p) : it->rest.n;

		*entry = trim((struct slice){ it->rest.p, n });
		if (comma) {
			it->rest.p = comma + 1;
			it->rest.n -= n + 1;
		} else {
			it->done = true;
		}
		if (entry->n)
			return true;
	}
	return false;
}

/* Whether entry occurred earlier in list (entry points into list), so each
 * unsupported name is reported once however often it is repeated. */
static bool seen_before(struct slice list, struct slice entry)
{
	struct list_iter it = { list, false };
	struct slice e;

	while (list_next(&it, &e) && e.p < entry.p)
		if (e.n == entry.n && memcmp(e.p, entry.p, e.n) == 0)
			return true;
	return false;
}

static void load_propagators(struct config *c, config_getenv_fn g)
{
	static const struct name_value known[] = {
		{ "tracecontext", PROPAGATOR_TRACECONTEXT },
		{ "baggage", PROPAGATOR_BAGGAGE },
		{ "none", 0 },
	};
	struct slice v = env_get(g, "OTEL_PROPAGATORS"), e;
	struct list_iter it = { v, false };
	unsigned bits = 0;
	bool any = false, none = false, unknown = false;
	char shown[SHOW_MAX];
	int bit;

	c->propagators = PROPAGATOR_TRACECONTEXT | PROPAGATOR_BAGGAGE;
	if (!v.n)
		return;
	while (list_next(&it, &e)) {
		if (!lookup(e, known, sizeof known / sizeof known[0], &bit)) {
			unknown = true;
			continue;
		}
		any = true;
		none |= bit == 0;
		bits |= (unsigned)bit;
	}
	if (!any) {
		/* Nothing usable: treat the variable as unset, as the spec asks for enums. */
		log_warn_config("unsupported OTEL_PROPAGATORS=\"%s\": supported are tracecontext, baggage and none; "
			 "using tracecontext,baggage", show(shown, v));
		return;
	}
	if (unknown) {
		it = (struct list_iter){ v, false };
		while (list_next(&it, &e))
			if (!lookup(e, known, sizeof known / sizeof known[0], &bit) && !seen_before(v, e))
				log_warn_config("ignoring unsupported entry \"%s\" in OTEL_PROPAGATORS: supported are "
					 "tracecontext, baggage and none", show(shown, e));
	}
	if (none && bits) {
		/* An explicit "none" is the safer reading: inject nothing. */
		log_warn_config("OTEL_PROPAGATORS=\"%s\" combines none with other propagators; using none",
			 show(shown, v));
		bits = 0;
	}
	c->propagators = bits;
}

static void load_exporter(struct config *c, config_getenv_fn g)
{
	static const struct name_value known[] = {
		{ "otlp", EXPORTER_OTLP },
		{ "console", EXPORTER_CONSOLE },
		{ "none", EXPORTER_NONE },
	};
	struct slice v = env_get(g, "OTEL_TRACES_EXPORTER"), e, first = { "", 0 };
	struct list_iter it = { v, false };
	bool any = false, several = false, unknown = false;
	char shown[SHOW_MAX], shown2[SHOW_MAX];
	int kind, chosen = EXPORTER_OTLP;

	c->exporter = EXPORTER_OTLP;
	if (!v.n)
		return;
	while (list_next(&it, &e)) {
		if (!lookup(e, known, sizeof known / sizeof known[0], &kind)) {
			unknown = true;
		} else if (!any) {
			any = true;
			chosen = kind;
			first = e;
		} else if (kind != chosen) {
			several = true;
		}
	}
	if (!any) {
		log_warn_config("unsupported OTEL_TRACES_EXPORTER=\"%s\": supported are otlp, console and none; using otlp",
			 show(shown, v));
		return;
	}
	if (unknown) {
		it = (struct list_iter){ v, false };
		while (list_next(&it, &e))
			if (!lookup(e, known, sizeof known / sizeof known[0], &kind) && !seen_before(v, e))
				log_warn_config("ignoring unsupported entry \"%s\" in OTEL_TRACES_EXPORTER: supported are "
					 "otlp, console and none", show(shown, e));
	}
	if (several)
		log_warn_config("OTEL_TRACES_EXPORTER=\"%s\" names several exporters but only one is supported; using %s",
			 show(shown, v), show(shown2, first));
	c->exporter = (enum exporter_kind)chosen;
}

/* ---- integers ---- */

struct u32_var {
	const char *name;
	const char *generic;    /* consulted when name is unset or invalid; may be NULL */
	const char *expect;     /* completes "expected ..." */
	uint32_t def;
	uint32_t min;
	bool zero_is_forever;   /* a spec "timeout": 0 means no limit */
};

/* Returns true when the value came from the environment. */
static bool load_u32(config_getenv_fn g, const struct u32_var *v, uint32_t *out)
{
	const char *names[2] = { v->name, v->generic };

	for (int i = 0; i < 2 && names[i]; i++) {
		struct slice s = env_get(g, names[i]);
		char shown[SHOW_MAX], num[16];
		uint32_t x;

		if (!s.n)
			continue;
		if (parse_u32(s, &x) && x >= v->min) {
			*out = x == 0 && v->zero_is_forever ? UINT32_MAX : x;
			return true;
		}
		if (i == 0 && env_set(g, v->generic))
			log_warn_config("invalid %s=\"%s\": expected %s; using %s instead",
				 names[i], show(shown, s), v->expect, v->generic);
		else
			log_warn_config("invalid %s=\"%s\": expected %s; using %s",
				 names[i], show(shown, s), v->expect, fmt_u32(num, sizeof num, v->def));
	}
	*out = v->def;
	return false;
}

#define MS_TEXT "a non-negative integer in milliseconds"

static void load_bsp(struct config *c, config_getenv_fn g)
{
	static const struct u32_var delay = { "OTEL_BSP_SCHEDULE_DELAY", NULL, MS_TEXT, 5000, 0, false };
	static const struct u32_var timeout = { "OTEL_BSP_EXPORT_TIMEOUT", NULL, MS_TEXT, 30000, 0, true };
	static const struct u32_var queue = {
		"OTEL_BSP_MAX_QUEUE_SIZE", NULL, "a positive integer", 2048, 1, false
	};
	static const struct u32_var batch = {
		"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", NULL, "a positive integer", 512, 1, false
	};
	bool batch_set;

	load_u32(g, &delay, &c->bsp_schedule_delay_ms);
	load_u32(g, &timeout, &c->bsp_export_timeout_ms);
	load_u32(g, &queue, &c->bsp_max_queue_size);
	if (c->bsp_max_queue_size > QUEUE_SIZE_CAP) {
		log_warn_config("OTEL_BSP_MAX_QUEUE_SIZE=%u is above the supported maximum; using %u",
			 c->bsp_max_queue_size, QUEUE_SIZE_CAP);
		c->bsp_max_queue_size = QUEUE_SIZE_CAP;
	}
	batch_set = load_u32(g, &batch, &c->bsp_max_export_batch_size);
	if (c->bsp_max_export_batch_size > c->bsp_max_queue_size) {
		/* A default batch size above a small queue is no user mistake: clamp quietly. */
		if (batch_set)
			log_warn_config("OTEL_BSP_MAX_EXPORT_BATCH_SIZE=%u exceeds OTEL_BSP_MAX_QUEUE_SIZE=%u; using %u",
				 c->bsp_max_export_batch_size, c->bsp_max_queue_size, c->bsp_max_queue_size);
		else
			log_debug("batch size lowered to the queue size %u", c->bsp_max_queue_size);
		c->bsp_max_export_batch_size = c->bsp_max_queue_size;
	}
}

static void load_limits(struct config *c, config_getenv_fn g)
{
	static const struct {
		struct u32_var var;
		size_t offset;
	} limits[] = {
		{ { "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT", "a non-negative integer",
		    128, 0, false }, offsetof(struct config, span_attribute_count_limit) },
		{ { "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
		    "a non-negative integer", CONFIG_UNLIMITED, 0, false },
		  offsetof(struct config, span_attribute_value_length_limit) },
		{ { "OTEL_SPAN_EVENT_COUNT_LIMIT", NULL, "a non-negative integer", 128, 0, false },
		  offsetof(struct config, span_event_count_limit) },
		{ { "OTEL_SPAN_LINK_COUNT_LIMIT", NULL, "a non-negative integer", 128, 0, false },
		  offsetof(struct config, span_link_count_limit) },
		{ { "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", NULL, "a non-negative integer", 128, 0, false },
		  offsetof(struct config, event_attribute_count_limit) },
		{ { "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT", NULL, "a non-negative integer", 128, 0, false },
		  offsetof(struct config, link_attribute_count_limit) },
	};

	for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++)
		load_u32(g, &limits[i].var, (uint32_t *)((char *)c + limits[i].offset));
}

/* ---- OTLP exporter ---- */

/* URLs may carry user:password@ or an api_key=... query: echo them masked. */
static const char *show_url(char *buf, struct slice s)
{
	url_redact(s.p, s.n, buf, SHOW_MAX);
	return buf;
}

/* Validates v and stores it in c->endpoint; a base URL gets /v1/traces
 * appended to its path, before any query (the spec's rule, with no double
 * slash). Returns false without touching c->endpoint when v is unusable. */
static bool endpoint_try(struct config *c, const char *name, struct slice v, bool base, const char *then)
{
	char shown[SHOW_MAX];
	struct url u;

	if (!url_parse(v.p, v.n, &u)) {
		log_warn_config("invalid %s=\"%s\": expected an http:// or https:// URL with a host (and a port "
				"from 1 to 65535), without blanks or control characters; %s",
				name, show_url(shown, v), then);
		return false;
	}
	/* Everything up to the path, the path (without its trailing slashes when
	 * /v1/traces follows), then the query. */
	size_t head = (size_t)(u.path - v.p), path = u.path_len;
	if (base)
		while (path && u.path[path - 1] == '/')
			path--;
	size_t total = head + path + (base ? strlen(TRACES_PATH) : 0) + (u.query ? 1 + u.query_len : 0);
	if (total >= sizeof c->endpoint) {
		log_warn_config("%s is too long (%zu bytes, at most %zu); %s", name, total, sizeof c->endpoint - 1,
				then);
		return false;
	}
	char *o = c->endpoint;
	memcpy(o, v.p, head + path);
	o += head + path;
	if (base) {
		memcpy(o, TRACES_PATH, strlen(TRACES_PATH));
		o += strlen(TRACES_PATH);
	}
	if (u.query) {
		*o++ = '?';
		memcpy(o, u.query, u.query_len);
		o += u.query_len;
	}
	*o = '\0';
	return true;
}

static void load_endpoint(struct config *c, config_getenv_fn g)
{
	struct slice t = env_get(g, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
	struct slice b = env_get(g, "OTEL_EXPORTER_OTLP_ENDPOINT");

	if (t.n && endpoint_try(c, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", t, false,
				b.n ? "using OTEL_EXPORTER_OTLP_ENDPOINT instead" : "using " DEFAULT_ENDPOINT))
		return;
	if (b.n && endpoint_try(c, "OTEL_EXPORTER_OTLP_ENDPOINT", b, true, "using " DEFAULT_ENDPOINT))
		return;
	strcpy(c->endpoint, DEFAULT_ENDPOINT);
}

/* gRPC collectors listen on 4317 and OTLP/HTTP on 4318; a user who asked for
 * gRPC likely pointed us at 4317. Returns true when the port was changed. */
static bool rewrite_grpc_port(char *url)
{
	char *host = strstr(url, "://"), *end, *colon = NULL;

	if (!host)
		return false;
	host += 3;
	end = host + strcspn(host, "/?#");
	/* The port follows the last ':' outside userinfo and IPv6 brackets. */
	for (char *p = host; p < end; p++) {
		if (*p == '@' || *p == ']')
			colon = NULL;
		else if (*p == ':')
			colon = p;
	}
	if (!colon || end - colon != 5 || memcmp(colon + 1, "4317", 4) != 0)
		return false;
	colon[4] = '8';
	return true;
}

/* Returns the variable that asked for grpc, or NULL. */
static const char *load_protocol(struct config *c, config_getenv_fn g)
{
	const char *list[2] = { "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL" };

	c->protocol = OTLP_HTTP_PROTOBUF;
	for (int i = 0; i < 2; i++) {
		struct slice v = env_get(g, list[i]);
		char shown[SHOW_MAX];

		if (!v.n)
			continue;
		if (slice_is(v, "http/protobuf"))
			return NULL;
		if (slice_is(v, "http/json")) {
			c->protocol = OTLP_HTTP_JSON;
			return NULL;
		}
		if (slice_is(v, "grpc"))
			return list[i];
		if (i == 0 && env_set(g, list[1]))
			log_warn_config("invalid %s=\"%s\": expected http/protobuf, http/json or grpc; using %s instead",
				 list[i], show(shown, v), list[1]);
		else
			log_warn_config("invalid %s=\"%s\": expected http/protobuf, http/json or grpc; using http/protobuf",
				 list[i], show(shown, v));
	}
	return NULL;
}

static void load_compression(struct config *c, config_getenv_fn g)
{
	const char *list[2] = { "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION" };

	c->compression = COMPRESSION_NONE;
	for (int i = 0; i < 2; i++) {
		struct slice v = env_get(g, list[i]);
		char shown[SHOW_MAX];

		if (!v.n)
			continue;
		if (slice_is(v, "gzip")) {
			c->compression = COMPRESSION_GZIP;
			return;
		}
		if (slice_is(v, "none"))
			return;
		if (i == 0 && env_set(g, list[1]))
			log_warn_config("invalid %s=\"%s\": expected gzip or none; using %s instead",
				 list[i], show(shown, v), list[1]);
		else
			log_warn_config("invalid %s=\"%s\": expected gzip or none; using none", list[i], show(shown, v));
	}
}

static void load_headers(struct config *c, config_getenv_fn g)
{
	struct slice t = env_get(g, "OTEL_EXPORTER_OTLP_TRACES_HEADERS");
	struct slice b = env_get(g, "OTEL_EXPORTER_OTLP_HEADERS");

	c->headers.count = 0;
	if (t.n && kv_load(&c->headers, "OTEL_EXPORTER_OTLP_TRACES_HEADERS", t, KV_HEADERS,
			   b.n ? "using OTEL_EXPORTER_OTLP_HEADERS instead" : "sending no extra headers"))
		return;
	if (b.n)
		kv_load(&c->headers, "OTEL_EXPORTER_OTLP_HEADERS", b, KV_HEADERS, "sending no extra headers");
}

static void load_path(char *dst, config_getenv_fn g, const char *traces, const char *generic)
{
	const char *list[2] = { traces, generic };

	dst[0] = '\0';
	for (int i = 0; i < 2; i++) {
		struct slice v = env_get(g, list[i]);

		if (!v.n)
			continue;
		if (v.n < CONFIG_PATH_MAX) {
			memcpy(dst, v.p, v.n);
			dst[v.n] = '\0';
			return;
		}
		if (i == 0 && env_set(g, generic))
			log_warn_config("%s is too long (%zu bytes, at most %d); using %s instead",
				 list[i], v.n, CONFIG_PATH_MAX - 1, generic);
		else
			log_warn_config("%s is too long (%zu bytes, at most %d); ignoring it", list[i], v.n, CONFIG_PATH_MAX - 1);
	}
}

/* The endpoint's user:password, percent-decoded, for Basic authorization
 * (as curl sent it from the same URL). A bad escape is kept as written. */
static void load_endpoint_userinfo(struct config *c)
{
	struct url u;
	size_t n = 0;
	c->endpoint_userinfo_len = 0;
	if (!url_parse(c->endpoint, strlen(c->endpoint), &u) || !u.userinfo)
		return;
	struct slice ui = { u.userinfo, u.userinfo_len };
	if (ui.n >= sizeof c->endpoint_userinfo)
		return;
	if (pct_decode(NULL, ui, KV_RESOURCE, false, &n) == DECODE_OK) {
		pct_decode(c->endpoint_userinfo, ui, KV_RESOURCE, false, &n);
	} else {
		memcpy(c->endpoint_userinfo, ui.p, ui.n);
		n = ui.n;
	}
	c->endpoint_userinfo_len = n;
}

static void load_otlp(struct config *c, config_getenv_fn g)
{
	static const struct u32_var timeout = {
		"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT", MS_TEXT, 10000, 0, true
	};
	const char *grpc = load_protocol(c, g);

	load_endpoint(c, g);
	if (grpc) {
		/* One line for both facts: the user made one choice. The endpoint is
		 * not echoed, it may carry credentials. */
		if (rewrite_grpc_port(c->endpoint))
			log_warn_config("%s=grpc: gRPC is not supported, using http/protobuf and port 4318 instead of 4317",
				 grpc);
		else
			log_warn_config("%s=grpc: gRPC is not supported, using http/protobuf", grpc);
	}
	url_redact(c->endpoint, strlen(c->endpoint), c->endpoint_shown, sizeof c->endpoint_shown);
	load_endpoint_userinfo(c);
	load_headers(c, g);
	load_compression(c, g);
	load_u32(g, &timeout, &c->timeout_ms);
	load_path(c->certificate, g, "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE");
	load_path(c->client_key, g, "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY");
	load_path(c->client_certificate, g, "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
		  "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE");
}

static const char *libc_getenv(const char *name)
{
	return getenv(name);
}

/*
 * The environment as the library found it at load. Apps change theirs
 * before the first span: nginx clears its workers' environment, and
 * setproctitle-style code overwrites the original strings in place. So the
 * variables that concern us are copied, not pointed to, in the constructor:
 * a walk over environ and a few small copies, cheaper than parsing them all
 * (config_load, later, at the first hook that needs them).
 */
static char captured[32768];
static size_t captured_len;
static bool captured_any, captured_cut;

static bool ours_to_capture(const char *e)
{
	return strncmp(e, "OTEL_", 5) == 0 || strncmp(e, "TRACEAGENT_", 11) == 0 ||
	       strncmp(e, "TRACEPARENT=", 12) == 0 || strncmp(e, "TRACESTATE=", 11) == 0 ||
	       strncmp(e, "BAGGAGE=", 8) == 0;
}

void config_capture_environment(char *const *envp)
{
	captured_any = true;
	captured_len = 0;
	captured_cut = false;
	for (; envp && *envp; envp++) {
		if (!ours_to_capture(*envp))
			continue;
		size_t n = strlen(*envp) + 1;
		if (n > sizeof captured - captured_len) {
			captured_cut = true;
			continue;
		}
		memcpy(captured + captured_len, *envp, n);
		captured_len += n;
	}
}

const char *config_captured_getenv(const char *name)
{
	if (!captured_any)
		return getenv(name);
	size_t nl = strlen(name);
	/* The first of repeated names, as getenv. */
	for (size_t off = 0; off < captured_len; off += strlen(captured + off) + 1)
		if (strncmp(captured + off, name, nl) == 0 && captured[off + nl] == '=')
			return captured + off + nl + 1;
	return NULL;
}

/* Lists whose syntax the hooks check; a value too long to keep is ignored whole. */
static void load_raw(char *dst, size_t size, config_getenv_fn g, const char *name)
{
	struct slice v = env_get(g, name);

	if (v.n >= size) {
		log_warn_config("%s is longer than %zu bytes; ignored", name, size - 1);
		return;
	}
	memcpy(dst, v.p, v.n);
	dst[v.n] = '\0';
}

static void load_http(struct config *c, config_getenv_fn g)
{
	load_raw(c->http_routes, sizeof c->http_routes, g, "TRACEAGENT_HTTP_ROUTES");
	load_raw(c->http_server_capture_request, sizeof c->http_server_capture_request, g,
		 "OTEL_INSTRUMENTATION_HTTP_SERVER_CAPTURE_REQUEST_HEADERS");
	load_raw(c->http_server_capture_response, sizeof c->http_server_capture_response, g,
		 "OTEL_INSTRUMENTATION_HTTP_SERVER_CAPTURE_RESPONSE_HEADERS");
	load_raw(c->http_client_capture_request, sizeof c->http_client_capture_request, g,
		 "OTEL_INSTRUMENTATION_HTTP_CLIENT_CAPTURE_REQUEST_HEADERS");
	load_raw(c->http_client_capture_response, sizeof c->http_client_capture_response, g,
		 "OTEL_INSTRUMENTATION_HTTP_CLIENT_CAPTURE_RESPONSE_HEADERS");
}

void config_load(struct config *c, config_getenv_fn getenv_fn)
{
	static const struct u32_var exit_timeout = { "TRACEAGENT_EXIT_TIMEOUT", NULL, MS_TEXT, 1000, 0, false };

	if (!getenv_fn)
		getenv_fn = libc_getenv;
	memset(c, 0, sizeof *c);
	load_log_level(c, getenv_fn);
	load_sdk_disabled(c, getenv_fn);
	load_resource(c, getenv_fn);
	load_sampler(c, getenv_fn);
	load_propagators(c, getenv_fn);
	load_exporter(c, getenv_fn);
	load_bsp(c, getenv_fn);
	load_otlp(c, getenv_fn);
	load_limits(c, getenv_fn);
	load_u32(getenv_fn, &exit_timeout, &c->exit_timeout_ms);
	load_http(c, getenv_fn);
	c->db_require_parent = load_bool(getenv_fn, "TRACEAGENT_DB_REQUIRE_PARENT", false);
	c->db_capture_parameters = load_bool(getenv_fn, "TRACEAGENT_DB_CAPTURE_PARAMETERS", false);
	c->db_sqlcommenter = load_bool(getenv_fn, "TRACEAGENT_DB_SQLCOMMENTER", false);
	c->db_sanitize = load_bool(getenv_fn, "OTEL_INSTRUMENTATION_COMMON_DB_STATEMENT_SANITIZER_ENABLED", true);
	c->db_connect_spans = load_bool(getenv_fn, "TRACEAGENT_DB_CONNECT_SPANS", false);
	c->kafka_enabled = load_bool(getenv_fn, "OTEL_INSTRUMENTATION_KAFKA_ENABLED", true);
	c->kafka_propagation = load_bool(getenv_fn, "OTEL_INSTRUMENTATION_KAFKA_PRODUCER_PROPAGATION_ENABLED", true);
	c->log_correlation = load_bool(getenv_fn, "TRACEAGENT_LOG_CORRELATION", false);
	load_raw(c->functions, sizeof c->functions, getenv_fn, "TRACEAGENT_FUNCTIONS");
	c->functions_check = load_bool(getenv_fn, "TRACEAGENT_FUNCTIONS_CHECK", false);
	if (getenv_fn == config_captured_getenv && captured_cut)
		log_warn_config("the OTEL_* and TRACEAGENT_* variables exceed %zu bytes; those past it are ignored",
				sizeof captured);
}
