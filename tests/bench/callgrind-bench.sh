#!/usr/bin/env bash
# callgrind-bench: instructions per operation of unmodified programs without and with the agent, export included, counted by callgrind. Prints, asserts nothing.
#
# Each subject is one real program, run under `valgrind --tool=callgrind` at
# two operation counts N1 < N2, on each side:
#   base       without the agent;
#   agent      LD_PRELOAD=build/libtraceagent.so, exporting to a live otlp-sink
#              (not under valgrind; it answers 200 without decoding) at the
#              default OTEL_BSP_* settings;
#   unsampled  the same with OTEL_TRACES_SAMPLER=always_off (no span is
#              recorded; the traceparent still goes out).
# The count is callgrind's PROGRAM TOTALS: every instruction of every thread of
# the measured process, from exec to exit: the hooks, the spans, the export
# thread's encoding and HTTP, and the exit flush, which sends what is still
# queued before the process ends (the process always ends normally).
#     instructions/op = (total(N2) - total(N1)) / (N2 - N1)
# so start-up, connection set-up and exit cancel out. N2 - N1 is a multiple of
# the default export batch (512 spans), so the difference holds whole batches.
# Each (side, N) is run REPEAT times; the figures come from the smallest total
# of each (side, N): the count is exact, but timer-driven work (idle poll loops,
# librdkafka's broker threads, the export thread waiting for the collector)
# depends on how valgrind happened to schedule the threads, and only ever adds.
# Each repetition's own figure is printed too: their spread is the run-to-run
# noise. The agent's OTEL_LOG_LEVEL=debug summary at exit gives spans started
# and exported: spans/op (should be 1.00) and dropped (should be 0) check that
# every operation was one span and that every span was exported.
# TRACEAGENT_EXIT_TIMEOUT=60000: valgrind makes the exit flush ~50x slower, and
# the default 1 s would cut it short (dropping spans, and their export cost).
#
# Subjects (CG_BENCH_SUBJECTS; all by default, in this order):
#   http-server    build/tests/mhd-server --mode per-connection (libmicrohttpd,
#                  thread per connection) under callgrind; op: one request of
#                  `curl -s -o /dev/null "http://127.0.0.1:PORT/ok?[1-N]"`
#                  (one kept-alive connection, N requests; curl not traced).
#   http-client    curl itself under callgrind, the same N URLs against an
#                  untraced mhd-server; op: one request.
#   sql            pgbench -n -S -c 1 -t N (simple protocol; the pgbench binary
#                  in PostgreSQL's bin directory) against a throwaway PostgreSQL
#                  (scripts/dev-postgres; pgbench -i -s 1); op: one SELECT.
#   kafka-produce  build/bench/kafka-produce-bench --api producev --count N
#                  --size 100 --linger 5 --poll-every 100 (RD_KAFKA_MSG_F_COPY,
#                  a dr_msg_cb: delivery reports every 100 messages and at the
#                  final flush) to the mock cluster (scripts/dev-kafka; topic
#                  kafka-bench, 1 partition); op: one message produced and
#                  delivered. (The span of a message ends at its delivery
#                  report; polling every 100 keeps the spans in flight far below
#                  the default pool, so no span is dropped.)
#   kafka-consume  build/bench/kafka-consume-bench --count N (see its header:
#                  rd_kafka_consumer_poll, partition assigned, no group join, no
#                  commits) reading the topic consume-bench-N (1 partition),
#                  filled beforehand with N messages of 100 bytes (and one
#                  more, kafka-produce-bench's first) produced under the agent
#                  (so they carry a traceparent header, as in a traced system);
#                  op: one message consumed. A topic per count: librdkafka
#                  prefetches, and how far past N it had fetched when the
#                  program stopped varied from run to run by millions of
#                  instructions; reading a whole topic, it always fetched all.
#   function       build/tests/fn-app loop N (tests/functions/fn-app.c, gcc -O2
#                  PIE) calling its small work_unit() N times; on the agent
#                  sides TRACEAGENT_FUNCTIONS=work_unit; op: one traced call
#                  (an INTERNAL span; OTEL_BSP_MAX_QUEUE_SIZE=16384: the calls
#                  come faster than any export). Also measured: the agent with
#                  TRACEAGENT_FUNCTIONS naming another function (work_unit
#                  is not patched: it must cost nothing more than without the
#                  agent).
#
# Settings (environment): CG_BENCH_SUBJECTS, CG_BENCH_REPEAT (2),
# CG_BENCH_SIDES ("base agent unsampled"), CG_BENCH_N_<SUBJECT> ("N1 N2", the
# subject's name with - as _, e.g. CG_BENCH_N_http_server="512 2560"),
# CG_BENCH_KEEP=DIR: keep every callgrind file in DIR (for callgrind_annotate
# --inclusive=yes: where the instructions go), named SUBJECT.SIDE.N.REP.
# Needs valgrind (scripts/install-deps); `make bench` builds the programs.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/bench/lib.sh
bench_init callgrind-bench

SUBJECTS=${CG_BENCH_SUBJECTS:-http-server http-client sql kafka-produce kafka-consume function}
REPEAT=${CG_BENCH_REPEAT:-2}
SIDES=${CG_BENCH_SIDES:-base agent unsampled}
KEEP=${CG_BENCH_KEEP:-}
# Chosen so that the whole run (3 sides x 2 counts x 2 repetitions of each
# subject) takes about three minutes on a 2-core machine.
declare -A NS=([http-server]="512 2560" [http-client]="256 1280" [sql]="512 2560" [kafka-produce]="512 2560"
	[kafka-consume]="2048 10240" [function]="2048 10240")
# What one operation is, and the issue 13 targets for the instructions the
# agent adds to it (all-in; 1,500 is where we want to be).
declare -A WHAT=([http-server]="HTTP server request, keep-alive" [http-client]="HTTP client request, keep-alive"
	[sql]="SQL statement (pgbench -S -c 1)" [kafka-produce]="Kafka message produced (producev)"
	[kafka-consume]="Kafka message consumed" [function]="traced function call (-O2 PIE)")
declare -A TARGET=([http-server]=2000 [http-client]=2000 [sql]=2000 [kafka-produce]=2000 [kafka-consume]= [function]=2000)
UNSAMPLED_TARGET=400

command -v valgrind >/dev/null || bench_die "valgrind is not installed (scripts/install-deps)"
for s in $SUBJECTS; do
	[[ -n ${WHAT[$s]:-} ]] || bench_die "unknown subject $s (CG_BENCH_SUBJECTS)"
	v=CG_BENCH_N_${s//-/_}
	[[ -n ${!v:-} ]] && NS[$s]=${!v}
	read -r n1 n2 <<<"${NS[$s]}"
	[[ $n1 =~ ^[0-9]+$ && $n2 =~ ^[0-9]+$ && $n1 -gt 0 && $n2 -gt $n1 ]] || bench_die "$v: want \"N1 N2\" with 0 < N1 < N2"
done
[[ -n $KEEP ]] && mkdir -p "$KEEP"
needs() { [[ " $SUBJECTS " == *" $1 "* ]]; }
for p in build/tests/mhd-server build/bench/kafka-produce-bench build/bench/kafka-consume-bench build/tests/fn-app; do
	[[ -x $p ]] || bench_die "$p is missing (make bench builds it)"
done

start_sink --status 200
if needs sql; then
	start_postgres
	"${PLAIN[@]}" "$PG_BIN/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres -i -s 1 -q "$PG_DB" >"$tmp/pgbench-init.log" 2>&1 ||
		{ cat "$tmp/pgbench-init.log" >&2; bench_die "pgbench -i failed"; }
fi
if needs kafka-produce || needs kafka-consume; then
	read -r n1 n2 <<<"${NS[kafka-consume]}"
	start_kafka --topic kafka-bench:1 --topic "consume-bench-$n1:1" --topic "consume-bench-$n2:1"
fi
if needs kafka-consume; then
	for n in $n1 $n2; do
		"${PLAIN[@]}" LD_PRELOAD="$AGENT" OTEL_EXPORTER_OTLP_ENDPOINT="$SINK_ENDPOINT" OTEL_SERVICE_NAME=consume-bench-fill \
			OTEL_BSP_MAX_QUEUE_SIZE=$((n + 1024)) build/bench/kafka-produce-bench --brokers "$KAFKA_BROKERS" \
			--topic "consume-bench-$n" --api producev --count "$n" --size 100 --poll-every 100 >"$tmp/fill.log" 2>&1 ||
			{ cat "$tmp/fill.log" >&2; bench_die "could not fill the topic consume-bench-$n"; }
	done
fi
if needs http-client; then
	bench_bg peer "${PLAIN[@]}" build/tests/mhd-server --mode per-connection --port 0
	PEER_PORT=$(wait_listening peer "$BG_PID") || bench_die "mhd-server (the client's peer) did not start"
fi

# cg_run OUT N ENV... -- CMD...: CMD in the environment "${PLAIN[@]}" ENV...,
# under callgrind, in the foreground (stdout and stderr to $tmp/OUT.out, .err);
# cg_bg: the same in the background (BG_PID). cg_total OUT: its PROGRAM
# TOTALS into $tmp/OUT.total.
cg_pre() {
	CG_PRE=("${PLAIN[@]}")
	while [[ $1 != -- ]]; do CG_PRE+=("$1"); shift; done
	CG_PRE+=(valgrind --tool=callgrind --callgrind-out-file="$tmp/$CG_OUT.cg.%p")
}
cg_run() {
	CG_OUT=$1
	shift
	cg_pre "$@"
	while [[ $1 != -- ]]; do shift; done
	shift
	"${CG_PRE[@]}" "$@" >"$tmp/$CG_OUT.out" 2>"$tmp/$CG_OUT.err" ||
		bench_die "$1 under callgrind failed ($CG_OUT); its stderr: $(tail -n 5 "$tmp/$CG_OUT.err")"
}
cg_bg() {
	CG_OUT=$1
	shift
	cg_pre "$@"
	while [[ $1 != -- ]]; do shift; done
	shift
	bench_bg "$CG_OUT" "${CG_PRE[@]}" "$@"
}
cg_total() {
	local f n=0 total=
	for f in "$tmp/$1".cg.*; do
		[[ -e $f ]] || continue
		n=$((n + 1))
		total=$(sed -n 's/^summary: \([0-9][0-9]*\).*/\1/p' "$f" | head -n1)
		if [[ -n $KEEP ]]; then mv "$f" "$KEEP/$1"; else rm -f "$f"; fi
	done
	[[ $n == 1 && -n $total ]] || bench_die "$1: expected one callgrind file with a summary, found $n (see $tmp/$1.err)"
	echo "$total"
}

# run_SUBJECT OUT N ENV...: one measured process doing N operations.
run_http-server() {
	local out=$1 n=$2 port
	shift 2
	cg_bg "$out" "$@" -- build/tests/mhd-server --mode per-connection --port 0
	port=$(wait_listening "$out" "$BG_PID") || bench_die "mhd-server under callgrind did not start"
	"${PLAIN[@]}" curl -s -o /dev/null "http://127.0.0.1:$port/ok?[1-$n]" || bench_die "curl against mhd-server failed"
	bench_stop "$BG_PID"
}
run_http-client() {
	local out=$1 n=$2
	shift 2
	cg_run "$out" "$@" -- curl -s -o /dev/null "http://127.0.0.1:$PEER_PORT/ok?[1-$n]"
}
run_sql() {
	local out=$1 n=$2
	shift 2
	cg_run "$out" "$@" -- "$PG_BIN/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres -n -S -c 1 -t "$n" "$PG_DB"
}
run_kafka-produce() {
	local out=$1 n=$2
	shift 2
	cg_run "$out" "$@" -- build/bench/kafka-produce-bench --brokers "$KAFKA_BROKERS" --topic kafka-bench \
		--api producev --count "$n" --size 100 --linger 5 --poll-every 100
}
run_kafka-consume() {
	local out=$1 n=$2
	shift 2
	cg_run "$out" "$@" -- build/bench/kafka-consume-bench --brokers "$KAFKA_BROKERS" --topic "consume-bench-$n" --count "$n"
}
run_function() {
	local out=$1 n=$2 named=work_unit
	shift 2
	[[ $out == function-unnamed.* ]] && named=task_apply
	# A call takes nanoseconds: a queue for every span of the run, so none is
	# dropped before the export thread gets to it (and its export is counted).
	cg_run "$out" "$@" TRACEAGENT_FUNCTIONS="$named" OTEL_BSP_MAX_QUEUE_SIZE=16384 -- build/tests/fn-app loop "$n"
}

# One line per run in $tmp/results: SUBJECT SIDE N REP TOTAL STARTED EXPORTED DROPPED
# (the agent's counts from its exit summary; - without the agent).
: >"$tmp/results"
t0=$SECONDS
for ((rep = 1; rep <= REPEAT; rep++)); do
	for s in $SUBJECTS; do
		read -r n1 n2 <<<"${NS[$s]}"
		for side in $SIDES; do
			# Both sides get the same environment, only LD_PRELOAD's
			# value differs: programs that call getenv per operation
			# (curl does) then scan as many entries either way.
			env_words=(OTEL_EXPORTER_OTLP_ENDPOINT="$SINK_ENDPOINT" OTEL_SERVICE_NAME="cg-$s"
				OTEL_LOG_LEVEL=debug TRACEAGENT_EXIT_TIMEOUT=60000 OTEL_TRACES_SAMPLER=parentbased_always_on)
			case $side in
			base) env_words+=(LD_PRELOAD=) ;;
			agent) env_words+=(LD_PRELOAD="$AGENT") ;;
			unsampled) env_words+=(LD_PRELOAD="$AGENT" OTEL_TRACES_SAMPLER=always_off) ;;
			*) bench_die "unknown side $side (CG_BENCH_SIDES)" ;;
			esac
			for n in $n1 $n2; do
				out=$s.$side.$n.$rep
				"run_$s" "$out" "$n" "${env_words[@]}"
				total=$(cg_total "$out")
				summary=$(grep -h 'spans started' "$tmp/$out.err" | tail -n1 || true)
				if [[ -n $summary ]]; then
					read -r started exported dropped < <(sed -n \
						's/.*spans started \([0-9]*\),.* exported \([0-9]*\), dropped \([0-9]*\).*/\1 \2 \3/p' <<<"$summary")
				else
					started=- exported=- dropped=-
				fi
				echo "$s $side $n $rep $total ${started:--} ${exported:--} ${dropped:--}" >>"$tmp/results"
			done
		done
	done
done

# The floor under the Kafka figures: what librdkafka itself spends, without
# the agent, on one 55-byte header (the traceparent the agent adds to every
# message, sampled or not).
if needs kafka-produce && [[ " $SIDES " == *" base "* ]]; then
	read -r n1 n2 <<<"${NS[kafka-produce]}"
	for ((rep = 1; rep <= REPEAT; rep++)); do
		for n in $n1 $n2; do
			out=kafka-header.base.$n.$rep
			cg_run "$out" LD_PRELOAD= -- build/bench/kafka-produce-bench --brokers "$KAFKA_BROKERS" --topic kafka-bench \
				--api producev --count "$n" --size 100 --linger 5 --poll-every 100 --header traceparent
			echo "kafka-header base $n $rep $(cg_total "$out") - - -" >>"$tmp/results"
		done
	done
fi

# The agent with another function named: work_unit itself is left as it is.
if needs function && [[ " $SIDES " == *" base "* ]]; then
	read -r n1 n2 <<<"${NS[function]}"
	for ((rep = 1; rep <= REPEAT; rep++)); do
		for n in $n1 $n2; do
			out=function-unnamed.agent.$n.$rep
			run_function "$out" "$n" OTEL_EXPORTER_OTLP_ENDPOINT="$SINK_ENDPOINT" LD_PRELOAD="$AGENT"
			echo "function-unnamed agent $n $rep $(cg_total "$out") - - -" >>"$tmp/results"
		done
	done
fi

echo "== instructions per operation: callgrind's PROGRAM TOTALS (every thread: hooks, spans, export, exit flush)," \
	"(total(N2) - total(N1)) / (N2 - N1), smallest total of $REPEAT runs; $((SECONDS - t0)) s"
python3 - "$tmp/results" "$REPEAT" "$UNSAMPLED_TARGET" "$SUBJECTS" \
	"$(for s in $SUBJECTS; do printf '%s\t%s\t%s\n' "$s" "${WHAT[$s]}" "${TARGET[$s]}"; done)" <<'PY'
import sys
from collections import defaultdict

path, repeat, unsampled_target, subjects, meta = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(), sys.argv[5]
what, target = {}, {}
for line in meta.splitlines():
    s, w, t = line.split('\t')
    what[s], target[s] = w, (int(t) if t else None)
tot = defaultdict(dict)     # (subject, side, n) -> {rep: total}
spans = {}                  # (subject, side, n, rep) -> (started, exported, dropped)
for line in open(path):
    s, side, n, rep, total, st, ex, dr = line.split()
    tot[(s, side, int(n))][int(rep)] = int(total)
    if st != '-':
        spans[(s, side, int(n), int(rep))] = (int(st), int(ex), int(dr))

def counts(s):
    ns = sorted({n for (x, _, n) in tot if x == s})
    return ns[0], ns[-1]

def per_op(s, side, rep=None):
    n1, n2 = counts(s)
    a, b = tot.get((s, side, n1)), tot.get((s, side, n2))
    if not a or not b:
        return None
    if rep is None:
        return (min(b.values()) - min(a.values())) / (n2 - n1)
    return (b[rep] - a[rep]) / (n2 - n1)

def fmt(v):
    return '%9s' % ('-' if v is None else format(round(v), ','))

def verdict(added, t):
    if added is None or t is None:
        return '%-17s' % ('(no target)' if t is None else '')
    return '%-17s' % ('<= %s: %s' % (format(t, ','), 'met' if added <= t else 'missed'))

def span_check(s, side):
    n1, n2 = counts(s)
    rows = [(spans.get((s, side, n2, r)), spans.get((s, side, n1, r))) for r in range(1, repeat + 1)]
    rows = [(b, a) for b, a in rows if a and b]
    if not rows:
        return '%8s %7s' % ('-', '-')
    per = [(b[0] - a[0]) / (n2 - n1) for b, a in rows]
    dropped = max(max(b[0] - b[1], b[2]) for b, a in rows)
    return '%8.2f %7d' % (min(per), dropped)

for title, side, tgt in (('sampled (the default sampler)', 'agent', None), ('unsampled (always_off)', 'unsampled', unsampled_target)):
    if not any(k[1] == side for k in tot):
        continue
    print()
    print('%-34s %11s %9s %9s %9s  %-17s %8s %7s  %s' % (title, 'N1..N2', 'without', 'with', 'added', 'target, all-in',
                                                       'spans/op', 'dropped', 'added in each run'))
    for s in subjects:
        n1, n2 = counts(s)
        base, with_ = per_op(s, 'base'), per_op(s, side)
        added = with_ - base if base is not None and with_ is not None else None
        runs = []
        for r in range(1, repeat + 1):
            b, w = per_op(s, 'base', r), per_op(s, side, r)
            runs.append(fmt(w - b).strip() if b is not None and w is not None else '-')
        t = tgt if tgt is not None else target[s]
        print('%-34s %11s %s %s %s  %s %s  %s' % (what[s], '%d..%d' % (n1, n2), fmt(base), fmt(with_), fmt(added),
                                                 verdict(added, t), span_check(s, side), ' '.join(runs)))
if any(k[0] == 'kafka-header' for k in tot) and per_op('kafka-produce', 'base') is not None:
    h = per_op('kafka-header', 'base') - per_op('kafka-produce', 'base')
    print()
    print('librdkafka alone (no agent), one 55-byte header per producev message: %s instructions per message more '
          'than without it' % format(round(h), ','))
if any(k[0] == 'function-unnamed' for k in tot) and per_op('function', 'base') is not None:
    u = per_op('function-unnamed', 'agent') - per_op('function', 'base')
    print()
    print('a function not named in TRACEAGENT_FUNCTIONS (the agent loaded, another function named): %s instructions '
          'per call more than without the agent' % format(round(u), ','))
print()
print('(target: 1,500 is where issue 13 wants the sampled figures; spans/op: spans started per operation, '
      'dropped: spans started but not exported, worst run at N2)')
PY
