# lib.sh: what the tests/bench/*.sh benchmarks share: paths, a temporary directory, the processes they start (the sink, PostgreSQL, Kafka, the task-manager) and their stopping at exit.
#
# Sourced by a bench script from the repository root:
#     cd "$(dirname "$0")/../.." && . tests/bench/lib.sh && bench_init NAME
#
#   bench_init NAME      AGENT ($TRACEAGENT_SO, else build/libtraceagent.so), SINK
#                        ($TRACEAGENT_SINK, else build/otlp-sink), both required;
#                        tmp (a new directory); an EXIT trap that stops every
#                        process started here (SIGTERM, then SIGKILL), then
#                        Kafka and PostgreSQL, and removes tmp. NAME prefixes
#                        error messages.
#   PLAIN                array: `env` without LD_PRELOAD and without any OTEL_* or
#                        TRACEAGENT_* variable of the caller, so every side of a
#                        comparison starts from the same environment; the side
#                        with the agent is "${PLAIN[@]}" LD_PRELOAD=... OTEL_...=...
#   PEER                 array: prefix for the processes that stand for other
#                        machines (sink, broker, database); empty unless the script
#                        sets it (e.g. PEER=(taskset -c 1)) before starting them.
#   bench_die MSG        message on stderr, exit 1.
#   bench_bg LABEL CMD...  CMD in the background, stdout $tmp/LABEL.out, stderr
#                        $tmp/LABEL.err, stopped at exit unless bench_stop'ped;
#                        sets BG_PID.
#   wait_listening LABEL PID  prints PORT from a "listening on HOST:PORT" line of
#                        $tmp/LABEL.out (60 s; fails, showing LABEL.err, if PID
#                        exits first).
#   bench_stop PID       SIGTERM, waits up to 10 s (the agent's exit flush runs),
#                        then SIGKILL; reaps it.
#   start_sink [ARGS...] build/otlp-sink --port 0 --quiet ARGS (as a peer); sets
#                        SINK_PORT, SINK_PID and SINK_ENDPOINT (the base URL for
#                        OTEL_EXPORTER_OTLP_ENDPOINT). Most benches pass
#                        --status 200: the collector normally runs elsewhere, so
#                        its decoding is not charged to this machine's CPUs.
#   start_postgres       a throwaway server (scripts/dev-postgres, as a peer) in
#                        $tmp/pg; sets PG_URL, PG_PORT, PG_DB, PG_BIN (its bin
#                        directory: pgbench there is the program itself, not
#                        Debian's pg_wrapper script).
#   start_kafka [--topic NAME[:PARTITIONS]]...  librdkafka's mock cluster
#                        (scripts/dev-kafka, as a peer) in $tmp/kafka; sets
#                        KAFKA_BROKERS.
#   TM_ENV               array: the environment the demo (scripts/demo) gives the
#                        task-manager under the agent, less its short
#                        OTEL_BSP_SCHEDULE_DELAY (a bench keeps the OTEL_BSP_*
#                        defaults unless it says otherwise).
#   start_task_manager LABEL [VAR=VALUE...]  build/task-manager on a free port
#                        with DATABASE_URL and KAFKA_BROKERS (start_postgres and
#                        start_kafka first), in the environment "${PLAIN[@]}"
#                        VAR=VALUE...; waits for its listening line; sets TM_PORT,
#                        TM_PID.
#   median NUMBER...     prints the median.

bench_die() {
	echo "$BENCH_NAME: $*" >&2
	exit 1
}

bench_init() {
	BENCH_NAME=$1
	AGENT=${TRACEAGENT_SO:-$PWD/build/libtraceagent.so}
	SINK=${TRACEAGENT_SINK:-$PWD/build/otlp-sink}
	local f
	for f in "$AGENT" "$SINK"; do
		[[ -e $f ]] || bench_die "$f is missing (run make)"
	done
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/$BENCH_NAME.XXXXXX")
	BENCH_PIDS=()
	BENCH_PG=
	BENCH_KAFKA=
	PLAIN=(env -u LD_PRELOAD)
	local v
	while IFS= read -r v; do
		PLAIN+=(-u "$v")
	done < <(compgen -e | grep -E '^(OTEL_|TRACEAGENT_)' || true)
	[[ ${PEER+set} ]] || PEER=()
	trap bench_cleanup EXIT
}

bench_cleanup() {
	local p
	for p in "${BENCH_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${BENCH_PIDS[@]}"; do bench_stop "$p"; done
	[[ -n $BENCH_KAFKA ]] && { "${PLAIN[@]}" bash scripts/dev-kafka stop "$BENCH_KAFKA" >/dev/null 2>&1 || true; }
	[[ -n $BENCH_PG ]] && { bash scripts/dev-postgres stop "$BENCH_PG" >/dev/null 2>&1 || true; }
	rm -rf "$tmp"
}

bench_bg() {
	local label=$1
	shift
	"$@" >"$tmp/$label.out" 2>"$tmp/$label.err" &
	BG_PID=$!
	BENCH_PIDS+=("$BG_PID")
}

wait_listening() {
	local port i
	for ((i = 0; i < 1200; i++)); do
		port=$(sed -n 's/^listening on [^ ]*:\([0-9][0-9]*\)$/\1/p' "$tmp/$1.out" 2>/dev/null | head -n1)
		[[ -n $port ]] && { echo "$port"; return 0; }
		kill -0 "$2" 2>/dev/null || break
		sleep 0.05
	done
	echo "$BENCH_NAME: $1 did not start listening; its stderr:" >&2
	sed 's/^/    /' "$tmp/$1.err" >&2 2>/dev/null || true
	return 1
}

bench_stop() {
	local i
	kill -TERM "$1" 2>/dev/null || true
	for ((i = 0; i < 200; i++)); do
		kill -0 "$1" 2>/dev/null || break
		[[ $(ps -o stat= -p "$1" 2>/dev/null) == Z* ]] && break
		sleep 0.05
	done
	kill -KILL "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	local kept=() p
	for p in "${BENCH_PIDS[@]}"; do [[ $p == "$1" ]] || kept+=("$p"); done
	BENCH_PIDS=("${kept[@]}")
}

start_sink() {
	bench_bg sink "${PEER[@]}" "${PLAIN[@]}" "$SINK" --port 0 --quiet "$@"
	SINK_PID=$BG_PID
	SINK_PORT=$(wait_listening sink "$SINK_PID") || bench_die "otlp-sink did not start"
	SINK_ENDPOINT=http://127.0.0.1:$SINK_PORT
}

start_postgres() {
	BENCH_PG=$tmp/pg
	chmod 755 "$tmp"   # as root, the server runs as postgres, and its directory is in here
	PG_URL=$("${PEER[@]}" bash scripts/dev-postgres start "$BENCH_PG" | sed -n 's/^DATABASE_URL=//p') || true
	[[ -n $PG_URL ]] || bench_die "PostgreSQL did not start (scripts/dev-postgres)"
	PG_PORT=$(. "$BENCH_PG/dev-postgres.state" && echo "$PG_PORT")
	PG_DB=$(. "$BENCH_PG/dev-postgres.state" && echo "$PG_DB")
	PG_BIN=$(. "$BENCH_PG/dev-postgres.state" && echo "$PG_BIN")
}

start_kafka() {
	BENCH_KAFKA=$tmp/kafka
	KAFKA_BROKERS=$("${PEER[@]}" "${PLAIN[@]}" bash scripts/dev-kafka start "$@" "$BENCH_KAFKA" |
		sed -n 's/^KAFKA_BROKERS=//p') || true
	[[ -n $KAFKA_BROKERS ]] || bench_die "the Kafka mock cluster did not start (scripts/dev-kafka)"
}

TM_ENV=(TRACEAGENT_HTTP_ROUTES=/api/health,/api/metrics,/api/tasks,/api/tasks/{id}
	OTEL_RESOURCE_ATTRIBUTES=deployment.environment.name=demo TRACEAGENT_LOG_CORRELATION=true)

start_task_manager() {
	local label=$1
	shift
	bench_bg "$label" "${PLAIN[@]}" PORT=0 DATABASE_URL="$PG_URL" KAFKA_BROKERS="$KAFKA_BROKERS" "$@" build/task-manager
	TM_PID=$BG_PID
	TM_PORT=$(wait_listening "$label" "$TM_PID") || bench_die "task-manager ($label) did not start"
	# Listening comes before the schema is applied and Kafka answers: wait for a healthy answer.
	local i
	for ((i = 0; i < 300; i++)); do
		[[ $("${PLAIN[@]}" curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$TM_PORT/api/health") == 200 ]] &&
			return 0
		sleep 0.1
	done
	bench_die "task-manager ($label) did not become healthy"
}

median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}
