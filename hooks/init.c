/* The one place that wires core, exporter and hooks together: constructor, fork handlers, exit flush. */

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agent/config.h"
#include "agent/context.h"
#include "agent/ids.h"
#include "agent/log.h"
#include "agent/ownfd.h"
#include "agent/perthread.h"
#include "agent/queue.h"
#include "agent/span.h"
#include "exporter/exporter.h"
#include "hooks/exec.h"
#include "hooks/funcs.h"
#include "hooks/kernel.h"
#include "hooks/logcorr.h"
#include "hooks/rdkafka.h"
#include "hooks/sigflush.h"
#include "hooks/socket.h"

/*
 * glibc-only symbols, referenced weakly: musl's loader then still loads the
 * .so (a strong reference it cannot resolve makes it refuse to start the
 * program, exit status 127), and a missing gnu_get_libc_version tells us we
 * are not in a glibc process: the agent stays off and every hook passes
 * straight through (README, "Static and musl programs").
 * (__register_atfork: hooks/kernel.h.)
 */
extern const char *gnu_get_libc_version(void) __attribute__((weak));
extern char **environ;

static void after_fork_child(void)
{
	ids_after_fork();
	ownfd_after_fork_child();
	queue_reset_after_fork();
	socket_after_fork_child();
	rdkafka_after_fork_child();
	sigflush_after_fork_child();
	exporter_after_fork_child();
}

static void init_once(void)
{
	int saved_guard = context_guard_depth;

	/* Nothing init does (getenv, mmap, gethostname) may be traced by our own hooks. */
	context_guard_depth = 1;
	if (!gnu_get_libc_version || !__register_atfork) {
		kernel_disabled = true;
		goto out;
	}
	config_load(&config_global, config_captured_getenv);
	if (config_global.sdk_disabled)
		goto out;
	clock_reanchor();
	if (!span_pool_init(config_global.bsp_max_queue_size) ||
	    !queue_init(config_global.bsp_max_queue_size, config_global.bsp_max_export_batch_size)) {
		log_warn("could not reserve memory for spans; tracing disabled");
		goto out;
	}
	exporter_init(&config_global);
	static const struct sigflush_flush flush = {
		exporter_final_deadline, exporter_final_deadline_reset, exporter_flush_signal, exporter_flush_before_exit,
	};
	sigflush_init(&config_global, &flush);
	exporter_set_on_start(sigflush_arm);
	socket_init(&config_global);
	rdkafka_init(&config_global);
	logcorr_init(&config_global);
	exec_init(&config_global);
	__register_atfork(NULL, NULL, after_fork_child, __dso_handle);
	kernel_enabled = true;
	funcs_init(&config_global);
	log_debug("started: service.name=%s exporter=%s endpoint=%s", config_global.service_name,
		  config_global.exporter == EXPORTER_OTLP ? "otlp" :
		  config_global.exporter == EXPORTER_CONSOLE ? "console" : "none",
		  config_global.endpoint_shown);
out:
	context_guard_depth = saved_guard;
}

/*
 * The constructor captures the configuration (the environment the process
 * started with: apps clear or rewrite theirs later), notes
 * OTEL_SDK_DISABLED and hands init to the hook kernel. Parsing the
 * configuration waits for the first hook that may record a span
 * (kernel_enter; hooks reached before this constructor pass through): on this class of machine merely touching the
 * configuration code and data costs ~150 us of page faults, which every
 * short-lived process (a shell's /bin/true) would pay.
 */
__attribute__((constructor)) static void init_constructor(void)
{
	if (!gnu_get_libc_version) {
		kernel_disabled = true;
		return;
	}
	config_capture_environment(environ);
	const char *v = config_captured_getenv("OTEL_SDK_DISABLED");
	if (v && strcasecmp(v, "true") == 0)
		kernel_disabled = true;
	perthread_init();
	kernel_set_start(init_once);
	/* Named functions are patched now, before the app's main and its threads. */
	v = config_captured_getenv("TRACEAGENT_FUNCTIONS");
	if (v && v[0])
		kernel_start();
}
