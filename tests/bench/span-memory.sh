#!/usr/bin/env bash
# span-memory: bytes of memory per queued span for the spans of a demo-like session (task-manager and web-crawler under the agent), measured from outside as resident memory. Prints, asserts nothing.
#
# What is measured: how much the processes' anonymous resident memory (the
# Anonymous: lines of /proc/PID/smaps, per mapping) grows while the spans of a
# session pile up in the agent's queue, unexported, against the number of
# spans that ended (so were queued) meanwhile. Two figures:
#   all-in:  (growth with the agent - growth of the same session without it)
#            / spans queued, task-manager and web-crawler together: whatever
#            memory a queued span holds, wherever it is (its record, its queue
#            slot, anything allocated for it), but also what the agent touches
#            for the first time in that window for other reasons (pages of a
#            table sized from the pool, such as the Kafka delivery-report
#            table, touched at random; a thread's deeper stack): an upper bound;
#   records: in each process, the growth of the one anonymous mapping that grew
#            most / the spans that process queued. Today that is the span pool
#            (one mapping of pool capacity x sizeof(struct span), ~4.3 KB a
#            record; a record spans more than a page, so every page of a used
#            record is resident), and the figure is sizeof(struct span); with
#            records sized to their content it is their mean size, as long as
#            they live in one mapping. (The kernel merges adjacent anonymous
#            mappings made with the same flags, so that mapping may include a
#            neighbour: in the web-crawler today, the Kafka delivery-report
#            tables, whose pages its status messages touch.)
# Only pages really touched count, and the agent is asked for nothing: the
# measurement holds as the span records change. Should the agent's debug
# summary at exit ever carry a "record bytes N" field (the bytes of record
# memory its spans took), N / spans started is printed beside these.
#
# How: a throwaway PostgreSQL (scripts/dev-postgres), librdkafka's mock
# cluster (scripts/dev-kafka), an otlp-sink writing every span it receives to
# a JSON-lines file, and the demo's two programs (scripts/demo) with the
# demo's settings, except that nothing is exported until they exit:
# OTEL_BSP_MAX_QUEUE_SIZE = OTEL_BSP_MAX_EXPORT_BATCH_SIZE = QUEUE (4096: the
# default 2048 is too small for the session, and larger than needed would
# only make the pool-sized tables sparser) and OTEL_BSP_SCHEDULE_DELAY = one
# day (TRACEAGENT_EXIT_TIMEOUT=30000 lets the exit flush send them all). The
# session, with an untraced curl, is the demo's: GET /api/health; POST
# /api/tasks for a URL that answers (the task-manager's own /api/health), one
# where nothing listens, and a malformed body; GET /api/tasks/ID; GET
# /api/metrics?hours=1; GET /api/tasks/999999. WARMUP rounds of it first
# (connections, pools, first-touch costs), then, with every task crawled and
# recorded (quiescent), the first snapshot of /proc/PID/smaps and the time t1;
# ROUNDS rounds; quiescent again, the second snapshot and t2. Then the
# programs stop (their exit flush sends the queue) and the spans are counted
# in the sink's file: those with t1 < end <= t2. The same without the agent
# gives the programs' own growth. Also printed: the agent's span summaries
# (OTEL_LOG_LEVEL=debug at exit): dropped must be 0, or the queue was too
# small for the session.
# Issue 13's target: <= 512 bytes per queued span on average for the spans of
# make demo.
#
# Settings (environment): SPAN_MEMORY_ROUNDS (80), SPAN_MEMORY_WARMUP (10),
# SPAN_MEMORY_QUEUE (4096).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/bench/lib.sh
bench_init span-memory

ROUNDS=${SPAN_MEMORY_ROUNDS:-80}
WARMUP=${SPAN_MEMORY_WARMUP:-10}
QUEUE=${SPAN_MEMORY_QUEUE:-4096}
[[ -x build/task-manager && -x build/web-crawler ]] || bench_die "build/task-manager or build/web-crawler is missing (make)"

start_postgres
start_kafka
start_sink --jsonl "$tmp/spans.jsonl"

AG=(LD_PRELOAD="$AGENT" OTEL_EXPORTER_OTLP_ENDPOINT="$SINK_ENDPOINT" OTEL_LOG_LEVEL=debug "${TM_ENV[@]}"
	OTEL_BSP_MAX_QUEUE_SIZE=$QUEUE OTEL_BSP_MAX_EXPORT_BATCH_SIZE=$QUEUE OTEL_BSP_SCHEDULE_DELAY=86400000
	TRACEAGENT_EXIT_TIMEOUT=30000)

get() { "${PLAIN[@]}" curl -s "$@"; }
post_task() {
	get -X POST -H 'Content-Type: application/json' -d "$1" "$TM/api/tasks" | sed -n 's/.*"id": *\([0-9]*\).*/\1/p'
}
# round: one pass of the demo's session; leaves the ids of its two tasks in OK_ID, BAD_ID.
round() {
	get -o /dev/null "$TM/api/health"
	OK_ID=$(post_task "{\"url\": \"$TM/api/health\"}")
	BAD_ID=$(post_task '{"url": "http://127.0.0.1:1/"}')
	post_task '{"url": ' >/dev/null
	get -o /dev/null "$TM/api/tasks/$OK_ID"
	get -o /dev/null "$TM/api/metrics?hours=1"
	get -o /dev/null "$TM/api/tasks/999999"
}
# quiescent: waits until the last round's tasks are crawled and recorded (the
# crawler takes tasks in order: then every earlier one is too).
quiescent() {
	local id st i
	for id in $OK_ID $BAD_ID; do
		for ((i = 0; i < 600; i++)); do
			st=$(get "$TM/api/tasks/$id" | sed -n 's/.*"status": *"\([a-z]*\)".*/\1/p')
			[[ $st == completed || $st == error ]] && break
			sleep 0.05
		done
		[[ $st == completed || $st == error ]] || bench_die "task $id not crawled within 30 s ($SIDE)"
	done
}
snapshot() {
	local p
	for p in $TM_PID $WC_PID; do cp "/proc/$p/smaps" "$tmp/$SIDE.$1.$p.smaps"; done
	date +%s%N >"$tmp/$SIDE.$1.time"
}

for SIDE in plain agent; do
	env_words=()
	[[ $SIDE == agent ]] && env_words=("${AG[@]}")
	start_task_manager "$SIDE.tm" "${env_words[@]}" OTEL_SERVICE_NAME=task-manager
	TM=http://127.0.0.1:$TM_PORT
	bench_bg "$SIDE.wc" "${PLAIN[@]}" KAFKA_BROKERS="$KAFKA_BROKERS" "${env_words[@]}" OTEL_SERVICE_NAME=web-crawler \
		build/web-crawler
	WC_PID=$BG_PID
	for ((i = 0; i < 600; i++)); do
		grep -q '^web-crawler ready$' "$tmp/$SIDE.wc.out" 2>/dev/null && break
		kill -0 "$WC_PID" 2>/dev/null || break
		sleep 0.1
	done
	grep -q '^web-crawler ready$' "$tmp/$SIDE.wc.out" || bench_die "web-crawler ($SIDE) did not get ready"
	for ((i = 0; i < WARMUP; i++)); do round; done
	quiescent
	snapshot 1
	for ((i = 0; i < ROUNDS; i++)); do round; done
	quiescent
	snapshot 2
	echo "$TM_PID $WC_PID" >"$tmp/$SIDE.pids"
	bench_stop "$WC_PID"
	bench_stop "$TM_PID"
done
bench_stop "$SINK_PID"

echo "== span memory: $ROUNDS rounds of the demo's session (task-manager and web-crawler), nothing exported until exit"
python3 - "$tmp" <<'PY'
import json, os, re, sys

tmp = sys.argv[1]
SERVICES = ('task-manager', 'web-crawler')   # the order of the pids in SIDE.pids

def smaps(path):
    """start address -> [size kB, Anonymous kB, name]"""
    maps, cur = {}, None
    for line in open(path):
        m = re.match(r'^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$', line)
        if m:
            cur = maps.setdefault(m.group(1), [(int(m.group(2), 16) - int(m.group(1), 16)) // 1024, 0,
                                               m.group(3) or 'an anonymous mapping'])
        elif line.startswith('Anonymous:') and cur is not None:
            cur[1] = int(line.split()[1])
    return maps

def side(name):
    """service -> (growth of Anonymous in bytes, (growth, size kB, name) of the mapping that grew most), t1, t2"""
    pids = open(os.path.join(tmp, name + '.pids')).read().split()
    t1 = int(open(os.path.join(tmp, name + '.1.time')).read())
    t2 = int(open(os.path.join(tmp, name + '.2.time')).read())
    out = {}
    for svc, p in zip(SERVICES, pids):
        a = smaps(os.path.join(tmp, '%s.1.%s.smaps' % (name, p)))
        b = smaps(os.path.join(tmp, '%s.2.%s.smaps' % (name, p)))
        grew = [(anon - (a[k][1] if k in a else 0), size, label) for k, (size, anon, label) in b.items()]
        total = sum(g[0] for g in grew) - sum(v[1] for k, v in a.items() if k not in b)   # less what was unmapped
        out[svc] = (total * 1024, max(grew))
    return out, t1, t2

plain, _, _ = side('plain')
agent, t1, t2 = side('agent')
spans = dict.fromkeys(SERVICES, 0)
for line in open(os.path.join(tmp, 'spans.jsonl')):
    s = json.loads(line)
    if t1 < s['end_ns'] <= t2 and s['service.name'] in spans:
        spans[s['service.name']] += 1
n = sum(spans.values())
kb = lambda v: '%+.0f KB' % (v / 1024)
for label, d in (('without the agent', plain), ('with the agent', agent)):
    print('%-18s anonymous memory grown %s (%s)' % (label + ':', kb(sum(v[0] for v in d.values())),
                                                    ', '.join('%s %s' % (k, kb(v[0])) for k, v in d.items())))
print('spans queued meanwhile: %d (%s)' % (n, ', '.join('%s %d' % kv for kv in spans.items())))
if n:
    grown = sum(v[0] for v in agent.values()) - sum(v[0] for v in plain.values())
    print('bytes per queued span, all-in:  %5.0f (target <= 512 on average)' % (grown / n))
    rec = sum(v[1][0] * 1024 for v in agent.values())
    print('bytes per queued span, records: %5.0f (%s)' % (rec / n, '; '.join(
        '%s %.0f B: %+.0f KB in %s of %.1f MB' % (k, v[1][0] * 1024 / spans[k] if spans[k] else 0, v[1][0], v[1][2],
                                                v[1][1] / 1024) for k, v in agent.items())))
for svc, f in zip(SERVICES, ('agent.tm.err', 'agent.wc.err')):
    lines = [l.strip() for l in open(os.path.join(tmp, f)) if 'spans started' in l]
    if lines:
        print('%s: %s' % (svc, re.sub(r'^.*?(spans started)', r'\1', lines[-1])))
        own = re.search(r'spans started (\d+),.*record bytes (\d+)', lines[-1])
        if own and int(own.group(1)):
            print('%s: the agent\'s own count: %.0f record bytes per span started' % (
                svc, int(own.group(2)) / int(own.group(1))))
PY
