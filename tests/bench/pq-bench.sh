#!/usr/bin/env bash
# pq-bench: cost of the libpq hooks: pgbench -S throughput and latency without and with the agent, in one run. Prints, asserts nothing.
#
# A throwaway PostgreSQL (scripts/dev-postgres), pgbench -i -s 1, then, with
# an otlp-sink that answers 200 without decoding as the collector (default
# OTEL_BSP_* settings):
#   - pgbench -S -c 4 -j 4 -T DURATION, PAIRS pairs of runs alternating
#     without and with the agent: each side's median TPS, the ratio of the
#     medians (issue 13's target: >= 95%) and each pair's;
#   - pgbench -S -c 1 -T LAT_DURATION (simple protocol, one statement per
#     transaction) without and with: the latency difference is the time the
#     hooks add per statement (PQsendQuery + PQgetResult + span), in
#     microseconds.
# pgbench is the program in PostgreSQL's bin directory (not Debian's
# pg_wrapper script in front of it).
# Settings (environment): PQ_BENCH_DURATION (10), PQ_BENCH_CLIENTS (4),
# PQ_BENCH_PAIRS (2), PQ_BENCH_LAT_DURATION (5).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/bench/lib.sh
bench_init pq-bench

DURATION=${PQ_BENCH_DURATION:-10}
CLIENTS=${PQ_BENCH_CLIENTS:-4}
PAIRS=${PQ_BENCH_PAIRS:-2}
LAT_DURATION=${PQ_BENCH_LAT_DURATION:-5}

start_postgres
start_sink --status 200
PGB=("$PG_BIN/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres)
"${PLAIN[@]}" "${PGB[@]}" -i -s 1 -q "$PG_DB" >"$tmp/init.log" 2>&1 || { cat "$tmp/init.log" >&2; bench_die "pgbench -i failed"; }

AG=(LD_PRELOAD="$AGENT" OTEL_EXPORTER_OTLP_ENDPOINT="$SINK_ENDPOINT" OTEL_SERVICE_NAME=pgbench OTEL_LOG_LEVEL=debug)

# run LABEL [VAR=VALUE...] -- PGBENCH ARGS: prints tps and latency (ms) as "TPS LAT"
run() {
	local label=$1 out=$tmp/$1.log
	shift
	local pre=("${PLAIN[@]}")
	while [[ $1 != -- ]]; do pre+=("$1"); shift; done
	shift
	"${pre[@]}" "${PGB[@]}" -n "$@" "$PG_DB" >"$out" 2>&1 || { cat "$out" >&2; bench_die "pgbench ($label) failed"; }
	local tps lat
	tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$out" | head -n1)
	lat=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' "$out" | head -n1)
	echo "${tps:-0} ${lat:-0}"
}

echo "== pgbench -S -c $CLIENTS -j $CLIENTS -T $DURATION (PostgreSQL on 127.0.0.1:$PG_PORT, $(nproc) CPUs)," \
	"$PAIRS alternating pairs"
plain=() agent=()
for ((i = 1; i <= PAIRS; i++)); do
	read -r t _ < <(run "plain.$i" -- -S -c "$CLIENTS" -j "$CLIENTS" -T "$DURATION")
	plain+=("$(printf '%.0f' "$t")")
	read -r t _ < <(run "agent.$i" "${AG[@]}" -- -S -c "$CLIENTS" -j "$CLIENTS" -T "$DURATION")
	agent+=("$(printf '%.0f' "$t")")
done
awk -v a="$(median "${plain[@]}")" -v b="$(median "${agent[@]}")" -v pa="${plain[*]}" -v pb="${agent[*]}" 'BEGIN {
	printf "without the agent: %.0f tps   [tps: %s]\nwith the agent:    %.0f tps   [tps: %s]\n", a, pa, b, pb
	n = split(pa, x, " "); split(pb, y, " "); each = ""
	for (i = 1; i <= n; i++) each = each sprintf(" %.1f%%", x[i] > 0 ? 100 * y[i] / x[i] : 0)
	printf "ratio: %.1f%% (target >= 95%%; each pair:%s)\n", (a > 0 ? 100 * b / a : 0), each }'
sed -n 's/^.*\(spans started\)/agent, last run: \1/p' "$tmp/agent.$PAIRS.log" | tail -n1

echo "== time added per statement: pgbench -S -c 1 -T $LAT_DURATION, latency average"
read -r _ lat0 < <(run lat-plain -- -S -c 1 -T "$LAT_DURATION")
read -r _ lat1 < <(run lat-agent "${AG[@]}" -- -S -c 1 -T "$LAT_DURATION")
awk -v a="$lat0" -v b="$lat1" 'BEGIN {
	printf "without the agent: %.3f ms\nwith the agent:    %.3f ms\n", a, b
	printf "added per statement (PQsendQuery/PQgetResult hooks + span): %.1f us\n", 1000 * (b - a) }'
