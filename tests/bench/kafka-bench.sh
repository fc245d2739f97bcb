#!/usr/bin/env bash
# kafka-bench: cost of the librdkafka producer hooks: messages/s and ns per produce call without and with the agent, against the mock cluster, in one run. Prints, asserts nothing.
#
# Called by scripts/bench (after `make bench` built the agent, the sink,
# build/bench/kafka-produce-bench and build/tests/kafka-mock). Issue 5's
# targets: messages/s with the agent >= 90% of without, and <= 1 us added per
# produce call.
#
# The broker: scripts/dev-kafka (librdkafka's mock cluster in its own process,
# 1 broker) with a 1-partition topic, kafka-bench. The collector: an otlp-sink
# that answers 200 without decoding (the agent's encoding and HTTP are still
# charged to the producer). Both, like the producer without the agent, run
# without LD_PRELOAD.
#
# Each run is one process of build/bench/kafka-produce-bench (see its header):
# one untimed message and flush (connection, metadata), then COUNT messages of
# SIZE bytes through rd_kafka_produce, then through rd_kafka_producev, both
# with RD_KAFKA_MSG_F_COPY, keyless, with a dr_msg_cb; linger.ms=5,
# rd_kafka_poll(rk, 0) every 1000 messages (delivery reports, and the agent's
# span ends, happen during the run, as in a real producer), then
# rd_kafka_flush. Per side, the medians of:
#   - msgs/s: COUNT / (last delivery report - first produce call);
#   - ns/produce, wall: the produce loop's time, polls excluded, / COUNT (two
#     clock reads per run, not per call: a clock_gettime pair costs ~40 ns, a
#     tenth of a produce call);
#   - ns/produce, CPU: the same with the calling thread's CPU time, which
#     leaves out the time other threads (librdkafka's, the agent's exporter)
#     had the CPU: the hook's own cost;
#   - DR CPU ns/msg: the calling thread's CPU time in rd_kafka_poll, which
#     runs the delivery reports (the agent ends each span there);
#   - process CPU us/msg: user + sys of the whole process (/usr/bin/time):
#     every thread, the agent's export and its exit flush included.
# Sides alternate (without, agent with each queue size, without, ...), RUNS
# runs each. With 2 CPUs or more, the producer (all its threads, the agent's
# export thread included) runs on CPU 0 and the mock cluster and the sink on
# CPU 1, as if they were other machines: unpinned, the five busy threads of
# three processes share the CPUs differently in each run and messages/s of
# identical runs vary by 2x; pinned, by about 15% (KAFKA_BENCH_PIN=0: unpinned).
#
# The agent runs once per OTEL_BSP_MAX_QUEUE_SIZE in QUEUES:
#   - 262144: the queue (and the span pool, queue + batch + 1024 records of
#     ~4 KB, mapped lazily) holds a whole run, so no span is dropped and the
#     figures carry the full cost of a span per message, export included;
#   - 2048, the default: a producer going flat out ends spans faster than the
#     export thread sends them; past the queue (and pool) spans are dropped
#     and counted, and cost less.
# The agent's summary line (OTEL_LOG_LEVEL=debug) gives the span counts;
# TRACEAGENT_EXIT_TIMEOUT=10000 lets the exit flush send them all (after the
# timed window; in the process CPU time).
#
# Settings (environment): KAFKA_BENCH_COUNT (200000), KAFKA_BENCH_SIZE (100),
# KAFKA_BENCH_RUNS (runs per side, 5), KAFKA_BENCH_APIS ("produce producev"),
# KAFKA_BENCH_QUEUES ("262144 2048"), KAFKA_BENCH_PIN (1),
# KAFKA_BENCH_WARMUP (messages produced untimed first, in the same process; 0).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/bench/lib.sh
PROG=build/bench/kafka-produce-bench
COUNT=${KAFKA_BENCH_COUNT:-200000}
SIZE=${KAFKA_BENCH_SIZE:-100}
RUNS=${KAFKA_BENCH_RUNS:-5}
APIS=${KAFKA_BENCH_APIS:-produce producev}
QUEUES=${KAFKA_BENCH_QUEUES:-262144 2048}
WARMUP=${KAFKA_BENCH_WARMUP:-0}
TOPIC=kafka-bench

PIN_PROD=() PEER=()
if [[ ${KAFKA_BENCH_PIN:-1} == 1 && $(nproc) -ge 2 ]] && command -v taskset >/dev/null; then
	PIN_PROD=(taskset -c 0) PEER=(taskset -c 1)
fi
bench_init kafka-bench

if [[ ! -x $PROG || tests/bench/kafka-produce-bench.c -nt $PROG ]]; then
	mkdir -p build/bench
	"${CC:-cc}" -std=gnu11 -D_GNU_SOURCE -O2 -g -pthread -Wall -Wextra -o "$PROG" tests/bench/kafka-produce-bench.c \
		-lrdkafka || bench_die "cannot build $PROG (librdkafka-dev installed?)"
fi
TIME=()
[[ -x /usr/bin/time ]] && TIME=(/usr/bin/time -f "cpu %U %S")

start_kafka --topic "$TOPIC:1"
brokers=$KAFKA_BROKERS
start_sink --status 200

AG=("${PLAIN[@]}" LD_PRELOAD="$AGENT" OTEL_EXPORTER_OTLP_ENDPOINT="$SINK_ENDPOINT" OTEL_SERVICE_NAME=kafka-produce-bench
	OTEL_LOG_LEVEL=debug TRACEAGENT_EXIT_TIMEOUT=10000)
SIDES=(plain)
for q in $QUEUES; do SIDES+=("agent-q$q"); done

# run SIDE API I: one producer process (run I of SIDE: plain, or agent-qQUEUE);
# appends its figures to $tmp/SIDE.API, the agent's summary to $tmp/SIDE.API.summary.
run() {
	local side=$1 api=$2 out=$tmp/$1.$2.$3 pre
	if [[ $side == agent-q* ]]; then
		pre=("${AG[@]}" OTEL_BSP_MAX_QUEUE_SIZE="${side#agent-q}")
	else
		pre=("${PLAIN[@]}")
	fi
	"${TIME[@]}" "${PIN_PROD[@]}" "${pre[@]}" "$PROG" --brokers "$brokers" --topic "$TOPIC" --count "$COUNT" --size "$SIZE" \
		--api "$api" --linger 5 --poll-every 1000 --warmup "$WARMUP" >"$out.out" 2>"$out.err" || {
		echo "kafka-bench: $PROG ($side, $api) failed:" >&2
		cat "$out.out" "$out.err" >&2
		exit 1
	}
	{
		grep -v '^warmup' "$out.out" | tail -n1 | tr -d '\n'
		sed -n 's/^cpu \([0-9.]*\) \([0-9.]*\)$/ cpu_s=\1+\2/p' "$out.err" | tail -n1 | tr -d '\n'
		echo
	} >>"$tmp/$side.$api"
	grep -h 'spans started' "$out.err" | tail -n1 >>"$tmp/$side.$api.summary" || true
}

echo "== Kafka producer: $COUNT messages x $SIZE B to librdkafka's mock cluster (1 broker, topic $TOPIC: 1 partition)," \
	"linger.ms=5, poll every 1000; median of $RUNS alternating runs per side ($(nproc) CPUs${PIN_PROD:+; producer on CPU 0, broker and sink on CPU 1})"
for api in $APIS; do
	for ((i = 1; i <= RUNS; i++)); do
		for side in "${SIDES[@]}"; do run "$side" "$api" "$i"; done
	done
	python3 - "$api" "$tmp" "$COUNT" "${SIDES[@]}" <<'PY'
import os, re, statistics, sys

api, tmp, count, sides = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]

def load(side):
    rows = []
    for line in open(os.path.join(tmp, side + '.' + api)):
        kv = dict(re.findall(r'(\w+)=(\S+)', line))
        cpu = kv.get('cpu_s')
        kv['cpu_us'] = sum(map(float, cpu.split('+'))) * 1e6 / count if cpu else float('nan')
        rows.append(kv)
    return rows

def med(rows, k):
    return statistics.median(float(r[k]) for r in rows)

def label(side):
    return 'without the agent' if side == 'plain' else 'agent, queue %s' % side[len('agent-q'):]

call = {'produce': 'rd_kafka_produce (F_COPY)', 'producev': 'rd_kafka_producev (F_COPY)'}[api]
print('%-28s %10s  %16s %5s  %13s  %19s' % (call, 'msgs/s', 'ns/produce: wall', 'CPU', 'DR CPU ns/msg', 'process CPU us/msg'))
rows = {s: load(s) for s in sides}
for s in sides:
    r = rows[s]
    print('  %-26s %10.0f  %16.0f %5.0f  %13.0f  %19.2f   [msgs/s: %s]' % (
        label(s), med(r, 'msgs_per_s'), med(r, 'produce_ns'), med(r, 'produce_cpu_ns'), med(r, 'poll_cpu_ns'),
        med(r, 'cpu_us'), ' '.join('%.0f' % float(x['msgs_per_s']) for x in r)))
p = rows['plain']
for s in sides[1:]:
    a = rows[s]
    m0, m1 = med(p, 'msgs_per_s'), med(a, 'msgs_per_s')
    print('  %s:' % label(s))
    print('    messages/s: %.1f%% of without (target >= 90%%)' % (100 * m1 / m0 if m0 else 0))
    print('    time added per produce: %+.0f ns wall, %+.0f ns CPU of the calling thread (target <= 1000 ns)' % (
        med(a, 'produce_ns') - med(p, 'produce_ns'), med(a, 'produce_cpu_ns') - med(p, 'produce_cpu_ns')))
    print('    added per delivery report: %+.0f ns CPU; per message in all (whole process, export included): %+.2f us CPU' % (
        med(a, 'poll_cpu_ns') - med(p, 'poll_cpu_ns'), med(a, 'cpu_us') - med(p, 'cpu_us')))
    summ = os.path.join(tmp, s + '.' + api + '.summary')
    lines = [l.strip() for l in open(summ)] if os.path.exists(summ) else []
    if lines:
        print('    agent, last run: ' + re.sub(r'^.*?(spans started)', r'\1', lines[-1]))
    else:
        print('    agent: no span summary (no spans were made: the agent has no Kafka hooks?)')
PY
done
