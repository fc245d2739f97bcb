#!/bin/sh
# loadgen.sh: a steady trickle of task-manager requests, failures included, for
# the compose stack (the loadgen service runs it in the app image, under the
# agent, so each curl is a CLIENT span of service "loadgen").
#
# Each round: GET /api/health; POST /api/tasks with a URL the crawler can
# reach (a 201, then a crawl that completes) and GET /api/tasks/{id}; every
# 3rd round a task whose URL cannot be resolved (the crawl ends in error);
# every 4th GET /api/metrics?hours=1; every 5th invalid JSON (400) and an
# unknown id (404). Then it sleeps LOADGEN_INTERVAL_SECONDS.
#
# Environment: TASK_MANAGER_URL (default http://task-manager:3000),
# CRAWL_OK_URL, CRAWL_FAIL_URL, LOADGEN_INTERVAL_SECONDS (default 2).
# Prints one line per round; runs until stopped.
set -u

BASE=${TASK_MANAGER_URL:-http://task-manager:3000}
OK_URL=${CRAWL_OK_URL:-$BASE/api/health}
FAIL_URL=${CRAWL_FAIL_URL:-http://unreachable.invalid/}
INTERVAL=${LOADGEN_INTERVAL_SECONDS:-2}

trap 'exit 0' TERM INT

# req METHOD PATH [BODY]: prints the HTTP status (000 when unreachable); the
# body goes to /tmp/loadgen.body.
req() {
	if [ $# -ge 3 ]; then
		curl -sS -m 10 -o /tmp/loadgen.body -w '%{http_code}' -X "$1" \
			-H 'Content-Type: application/json' --data-binary "$3" "$BASE$2" 2>/dev/null || true
	else
		curl -sS -m 10 -o /tmp/loadgen.body -w '%{http_code}' -X "$1" "$BASE$2" 2>/dev/null || true
	fi
}

# task_id: the id from the last answer body ({"id": 42, ...} or {"id": "42"}).
task_id() {
	sed -n 's/.*"id"[[:space:]]*:[[:space:]]*"\{0,1\}\([0-9A-Za-z-]\{1,64\}\)"\{0,1\}.*/\1/p' /tmp/loadgen.body | head -n 1
}

echo "loadgen: $BASE every ${INTERVAL}s"
round=0
while :; do
	round=$((round + 1))
	line="round $round: health $(req GET /api/health)"

	code=$(req POST /api/tasks "{\"url\": \"$OK_URL\"}")
	line="$line, task $code"
	id=$(task_id)
	if [ -n "$id" ]; then
		line="$line, get $(req GET "/api/tasks/$id")"
	fi
	if [ $((round % 3)) -eq 0 ]; then
		line="$line, failing task $(req POST /api/tasks "{\"url\": \"$FAIL_URL\"}")"
	fi
	if [ $((round % 4)) -eq 0 ]; then
		line="$line, metrics $(req GET '/api/metrics?hours=1')"
	fi
	if [ $((round % 5)) -eq 0 ]; then
		line="$line, bad json $(req POST /api/tasks '{"url": ')"
		line="$line, unknown id $(req GET /api/tasks/999999999)"
	fi
	echo "$line"
	sleep "$INTERVAL" &
	wait $!
done
