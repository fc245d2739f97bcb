#!/usr/bin/env bash
# pq-bench: cost of the libpq hooks: pgbench -S throughput and latency without and with the agent, in one run. Prints, asserts nothing.
#
# A throwaway PostgreSQL (scripts/dev-postgres), pgbench -i -s 1, then, with
# an otlp-sink that answers 200 without decoding as the collector:
#   - pgbench -S -c 4 -T 10 without and with the agent: TPS of each, ratio (target >= 97%);
#   - pgbench -S -c 1 -T 5 (simple protocol, one statement per transaction)
#     without and with: the latency difference is the time the hooks add per
#     statement (PQsendQuery + PQgetResult + span), in microseconds.
# Settings (environment): PQ_BENCH_DURATION (10), PQ_BENCH_CLIENTS (4),
# PQ_BENCH_LAT_DURATION (5).
set -euo pipefail
cd "$(dirname "$0")/../.."

AGENT=${TRACEAGENT_SO:-$PWD/build/libtraceagent.so}
SINK=${TRACEAGENT_SINK:-$PWD/build/otlp-sink}
DURATION=${PQ_BENCH_DURATION:-10}
CLIENTS=${PQ_BENCH_CLIENTS:-4}
LAT_DURATION=${PQ_BENCH_LAT_DURATION:-5}
for f in "$AGENT" "$SINK"; do
	[[ -e $f ]] || { echo "pq-bench: $f is missing (run make)" >&2; exit 1; }
done
command -v pgbench >/dev/null || { echo "pq-bench: pgbench is not installed" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pq-bench.XXXXXX")
pgdir=$(mktemp -d "${TMPDIR:-/tmp}/pq-bench-pg.XXXXXX")
sink_pid=
cleanup() {
	[[ -n $sink_pid ]] && { kill -TERM "$sink_pid" 2>/dev/null || true; wait "$sink_pid" 2>/dev/null || true; }
	bash scripts/dev-postgres stop "$pgdir" >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT

url=$(bash scripts/dev-postgres start "$pgdir") || { echo "pq-bench: PostgreSQL did not start" >&2; exit 1; }
url=${url#DATABASE_URL=}
port=$(. "$pgdir/dev-postgres.state" && echo "$PG_PORT")
db=$(. "$pgdir/dev-postgres.state" && echo "$PG_DB")

env -u LD_PRELOAD "$SINK" --port 0 --quiet --status 200 >"$tmp/sink.out" 2>"$tmp/sink.err" &
sink_pid=$!
sport=
for ((i = 0; i < 200; i++)); do
	sport=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$tmp/sink.out")
	[[ -n $sport ]] && break
	sleep 0.05
done
[[ -n $sport ]] || { echo "pq-bench: otlp-sink did not start" >&2; exit 1; }

PGB=(pgbench -h 127.0.0.1 -p "$port" -U postgres)
"${PGB[@]}" -i -s 1 -q "$db" >"$tmp/init.log" 2>&1 || { cat "$tmp/init.log" >&2; exit 1; }

AG=(env LD_PRELOAD="$AGENT" OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$sport" OTEL_SERVICE_NAME=pgbench
	OTEL_LOG_LEVEL=error)

# run LABEL [PREFIX...] -- PGBENCH ARGS: prints tps and latency (ms) as "TPS LAT"
run() {
	local label=$1 out=$tmp/$1.log
	shift
	local pre=()
	while [[ $1 != -- ]]; do pre+=("$1"); shift; done
	shift
	"${pre[@]}" "${PGB[@]}" -n "$@" "$db" >"$out" 2>&1 || { echo "pq-bench: pgbench ($label) failed:" >&2; cat "$out" >&2; exit 1; }
	local tps lat
	tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$out" | head -n1)
	lat=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' "$out" | head -n1)
	echo "${tps:-0} ${lat:-0}"
}

echo "== pgbench -S -c $CLIENTS -T $DURATION (PostgreSQL on 127.0.0.1:$port, $(nproc) CPUs)"
read -r tps0 _ < <(run plain env -- -S -c "$CLIENTS" -j "$CLIENTS" -T "$DURATION")
read -r tps1 _ < <(run agent "${AG[@]}" -- -S -c "$CLIENTS" -j "$CLIENTS" -T "$DURATION")
awk -v a="$tps0" -v b="$tps1" 'BEGIN {
	printf "without the agent: %.0f tps\nwith the agent:    %.0f tps\n", a, b
	printf "ratio: %.1f%% (target >= 97%%)\n", (a > 0 ? 100 * b / a : 0) }'

echo "== time added per statement: pgbench -S -c 1 -T $LAT_DURATION, latency average"
read -r _ lat0 < <(run lat-plain env -- -S -c 1 -T "$LAT_DURATION")
read -r _ lat1 < <(run lat-agent "${AG[@]}" -- -S -c 1 -T "$LAT_DURATION")
awk -v a="$lat0" -v b="$lat1" 'BEGIN {
	printf "without the agent: %.3f ms\nwith the agent:    %.3f ms\n", a, b
	printf "added per statement (PQsendQuery/PQgetResult hooks + span): %.1f us\n", 1000 * (b - a) }'
