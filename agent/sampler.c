/* Sampler decisions, pure functions of the configuration, the parent context and the trace id. */
#include "sampler.h"

bool sampler_ratio_sample(double ratio, const uint8_t trace_id[16])
{
	if (!(ratio > 0.0))
		return false;
	if (ratio >= 1.0)
		return true;
	/* The rightmost 7 bytes are the randomness W3C Level 2 guarantees when the
	 * random flag is set; compare them to the rejection threshold
	 * T = (1 - ratio) * 2^56, as the spec's consistent-probability rule does. */
	uint64_t r = 0;
	for (int i = 9; i < 16; i++)
		r = (r << 8) | trace_id[i];
	const double two56 = 72057594037927936.0;
	uint64_t threshold = (uint64_t)((1.0 - ratio) * two56);
	return r >= threshold;
}

static bool root_decision(enum sampler_kind kind, double ratio, const uint8_t trace_id[16])
{
	switch (kind) {
	case SAMPLER_ALWAYS_OFF:
	case SAMPLER_PARENTBASED_ALWAYS_OFF:
		return false;
	case SAMPLER_TRACEIDRATIO:
	case SAMPLER_PARENTBASED_TRACEIDRATIO:
		return sampler_ratio_sample(ratio, trace_id);
	case SAMPLER_ALWAYS_ON:
	case SAMPLER_PARENTBASED_ALWAYS_ON:
	default:
		return true;
	}
}

bool sampler_should_sample(enum sampler_kind kind, double ratio,
			   const struct trace_context *parent, const uint8_t trace_id[16])
{
	bool parent_based = kind == SAMPLER_PARENTBASED_ALWAYS_ON ||
			    kind == SAMPLER_PARENTBASED_ALWAYS_OFF ||
			    kind == SAMPLER_PARENTBASED_TRACEIDRATIO;

	/* ParentBased defaults: remote and local parents alike follow the
	 * parent's sampled flag; only roots consult the root sampler. */
	if (parent_based && parent && parent->valid)
		return (parent->flags & TRACE_FLAG_SAMPLED) != 0;
	return root_decision(kind, ratio, trace_id);
}
