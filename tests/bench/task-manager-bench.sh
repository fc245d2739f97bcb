#!/usr/bin/env bash
# task-manager-bench: wrk against the demo's task-manager (testapp/) /api/health and /api/metrics without and with the agent, in one run. Prints, asserts nothing.
#
# The task-manager as the demo runs it (scripts/demo): a throwaway PostgreSQL
# (scripts/dev-postgres), librdkafka's mock cluster (scripts/dev-kafka), and,
# on the agent's side, the demo's settings (TRACEAGENT_HTTP_ROUTES, log
# correlation on, a deployment.environment.name resource attribute) but the
# default OTEL_BSP_* settings, exporting to an otlp-sink that answers 200
# without decoding. Its request log (one line per request) goes to a file.
# Before the runs, TASKS tasks are created (POST /api/tasks, so Kafka
# confirms each; nothing crawls them: they stay pending), so the metrics query
# has rows to count.
#
# Each request of /api/health runs SELECT 1 on the database pool and asks the
# broker for the tasks topic's metadata (a SERVER span and a CLIENT span with
# the agent); /api/metrics?hours=24 runs SELECT * FROM get_web_crawl_metrics($1).
# Per endpoint, PAIRS pairs of runs alternate without and with the agent, each
# a fresh task-manager warmed up by 2 s of wrk, then wrk -d DURATION
# --latency; printed as in http-bench (tests/bench/wrk-compare.py): each
# side's median requests/s, p50 and p99, the ratio of the medians (issue 13's
# target for /api/health: >= 95%; none for /api/metrics), each pair's ratio,
# and the agent's span summary of its last run.
#
# Settings (environment): TM_BENCH_DURATION (wrk -d, 10s), TM_BENCH_THREADS
# (wrk -t, 2), TM_BENCH_CONNECTIONS (wrk -c, 16), TM_BENCH_PAIRS (2),
# TM_BENCH_TASKS (50), TM_BENCH_ENDPOINTS ("/api/health /api/metrics?hours=24").
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/bench/lib.sh
bench_init task-manager-bench

DURATION=${TM_BENCH_DURATION:-10s}
THREADS=${TM_BENCH_THREADS:-2}
CONNS=${TM_BENCH_CONNECTIONS:-16}
PAIRS=${TM_BENCH_PAIRS:-2}
TASKS=${TM_BENCH_TASKS:-50}
ENDPOINTS=${TM_BENCH_ENDPOINTS:-/api/health /api/metrics?hours=24}
[[ -x build/task-manager ]] || bench_die "build/task-manager is missing (make)"
command -v wrk >/dev/null || bench_die "wrk is not installed"

start_postgres
start_kafka
start_sink --status 200

# Tasks for the metrics to count, made by an untraced task-manager.
start_task_manager setup
for ((i = 1; i <= TASKS; i++)); do
	"${PLAIN[@]}" curl -s -o /dev/null -X POST -H 'Content-Type: application/json' \
		-d "{\"url\": \"http://127.0.0.1:1/task-$i\"}" "http://127.0.0.1:$TM_PORT/api/tasks"
done
bench_stop "$TM_PID"

AG=(LD_PRELOAD="$AGENT" OTEL_EXPORTER_OTLP_ENDPOINT="$SINK_ENDPOINT" OTEL_SERVICE_NAME=task-manager OTEL_LOG_LEVEL=debug
	"${TM_ENV[@]}")
for ep in $ENDPOINTS; do
	name=$(sed 's|^/api/||; s|[^A-Za-z0-9]\+|-|g; s|-$||' <<<"$ep")
	echo "== task-manager $ep: wrk -t$THREADS -c$CONNS -d$DURATION (thread per connection; PostgreSQL, Kafka mock and" \
		"sink on this machine, $(nproc) CPUs), $PAIRS alternating pairs"
	for ((i = 1; i <= PAIRS; i++)); do
		for side in plain agent; do
			if [[ $side == agent ]]; then start_task_manager "$name.$side.$i" "${AG[@]}"
			else start_task_manager "$name.$side.$i"; fi
			url="http://127.0.0.1:$TM_PORT$ep"
			wrk -t"$THREADS" -c"$CONNS" -d2s "$url" >/dev/null
			wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$url" >"$tmp/$name.$side.$i.wrk"
			bench_stop "$TM_PID"
		done
	done
	target=-
	[[ $ep == /api/health ]] && target=95
	python3 tests/bench/wrk-compare.py "$tmp" "$PAIRS" "$name.plain" "$name.agent" "$target"
done
