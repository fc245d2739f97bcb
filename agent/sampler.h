/* Head sampling per the OpenTelemetry spec: always_on/off, traceidratio and the parentbased_* samplers. */
#ifndef TRACEAGENT_SAMPLER_H
#define TRACEAGENT_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "context.h"

/* Decides whether a new span in trace trace_id, with parent (NULL or
 * !valid for a root), is recorded and sampled. */
bool sampler_should_sample(enum sampler_kind kind, double ratio,
			   const struct trace_context *parent, const uint8_t trace_id[16]);

/* The TraceIdRatioBased test: the 56 rightmost bits of the trace id against
 * a threshold, so every service with the same ratio agrees on a trace. */
bool sampler_ratio_sample(double ratio, const uint8_t trace_id[16]);

#endif
