/* Builds the resource attribute list once per process (and again after fork, for process.pid). */
#include "resource.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

extern char *program_invocation_short_name;

static void add_str(struct resource *r, const char *key, const char *val)
{
	for (size_t i = 0; i < r->count; i++) {
		if (strcmp(r->attrs[i].key, key) == 0) {
			r->attrs[i].is_int = false;
			r->attrs[i].str = val;
			return;
		}
	}
	if (r->count == RESOURCE_MAX_ATTRS)
		return;
	r->attrs[r->count++] = (struct resource_attr){ .key = key, .str = val };
}

void resource_build(struct resource *r, const struct config *c)
{
	size_t used = 0;

	r->count = 0;
	for (size_t i = 0; i < c->resource.count; i++)
		add_str(r, c->resource.key[i], c->resource.value[i]);
	add_str(r, "service.name", c->service_name);
	add_str(r, "telemetry.sdk.name", AGENT_NAME);
	/* Semantic conventions list no "c"; cpp is the nearest well-known value
	 * and keeps backends that key on the language (icons, filters) working. */
	add_str(r, "telemetry.sdk.language", "cpp");
	add_str(r, "telemetry.sdk.version", AGENT_VERSION);

	/* process.pid replaces any user value: it is a fact of this process. */
	for (size_t i = 0; i < r->count; i++) {
		if (strcmp(r->attrs[i].key, "process.pid") == 0) {
			memmove(&r->attrs[i], &r->attrs[i + 1], (r->count - i - 1) * sizeof r->attrs[0]);
			r->count--;
			break;
		}
	}
	if (r->count < RESOURCE_MAX_ATTRS)
		r->attrs[r->count++] = (struct resource_attr){ .key = "process.pid", .is_int = true, .i = getpid() };

	const char *exe = program_invocation_short_name;
	if (exe && *exe) {
		size_t n = strlen(exe);
		if (n > 200)
			n = 200;
		memcpy(r->buf + used, exe, n);
		r->buf[used + n] = '\0';
		add_str(r, "process.executable.name", r->buf + used);
		used += n + 1;
	}
	if (gethostname(r->buf + used, sizeof r->buf - used - 1) == 0) {
		r->buf[sizeof r->buf - 1] = '\0';
		if (r->buf[used])
			add_str(r, "host.name", r->buf + used);
	}
}
