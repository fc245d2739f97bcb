#!/usr/bin/env bash
# test-install-launcher: make install/uninstall (PREFIX, DESTDIR) and the traceagent launcher: LD_PRELOAD appended, --service/--endpoint, exit status, --check with secrets masked, endpoint probe and hook families.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

start_sink
start_recorder
BASE=http://127.0.0.1:$REC_PORT
# make must not rebuild anything here (make check built it all); -s keeps it quiet.
MAKE=(make -s --no-print-directory)

echo "== make install DESTDIR=... PREFIX=/usr/local"
STAGE=$WORK/stage
"${MAKE[@]}" install DESTDIR="$STAGE" PREFIX=/usr/local >"$WORK/install1.log" 2>&1 || { cat "$WORK/install1.log"; die "make install failed"; }
expect "installed exactly two files" "$STAGE/usr/local/bin/traceagent $STAGE/usr/local/lib/libtraceagent.so" \
	"$(find "$STAGE" -type f | LC_ALL=C sort | tr '\n' ' ' | sed 's/ $//')"
check "the launcher is executable" test -x "$STAGE/usr/local/bin/traceagent"
check "the agent is the build's" cmp -s "$AGENT" "$STAGE/usr/local/lib/libtraceagent.so"
check "the launcher knows LIBDIR=/usr/local/lib" grep -q '"/usr/local/lib/libtraceagent.so"' "$STAGE/usr/local/bin/traceagent"
out=$(env -u LD_PRELOAD "$STAGE/usr/local/bin/traceagent" -- env | sed -n 's/^LD_PRELOAD=//p')
expect "staged launcher: LD_PRELOAD is the agent next to it (../lib)" "$STAGE/usr/local/lib/libtraceagent.so" "$out"
"${MAKE[@]}" uninstall DESTDIR="$STAGE" PREFIX=/usr/local >"$WORK/uninstall1.log" 2>&1 || { cat "$WORK/uninstall1.log"; die "make uninstall failed"; }
expect "make uninstall leaves no file" "" "$(find "$STAGE" -type f)"

echo "== make install PREFIX=\$WORK/prefix, then run through the installed launcher"
P=$WORK/prefix
"${MAKE[@]}" install PREFIX="$P" >"$WORK/install2.log" 2>&1 || { cat "$WORK/install2.log"; die "make install failed"; }
TA=$P/bin/traceagent
out=$(env -u LD_PRELOAD "$TA" -- env | sed -n 's/^LD_PRELOAD=//p')
expect "LD_PRELOAD set to the installed agent" "$P/lib/libtraceagent.so" "$out"
LIBM=$(ls /lib/x86_64-linux-gnu/libm.so.6 /usr/lib/x86_64-linux-gnu/libm.so.6 /lib64/libm.so.6 2>/dev/null | head -n1 || true)
out=$(LD_PRELOAD=$LIBM "$TA" -- env | sed -n 's/^LD_PRELOAD=//p')
expect "an existing LD_PRELOAD is kept, ours appended" "$LIBM:$P/lib/libtraceagent.so" "$out"
out=$(LD_PRELOAD="$LIBM $P/lib/libtraceagent.so" "$TA" -- env | sed -n 's/^LD_PRELOAD=//p')
expect "already preloaded (space-separated list): not added twice" "$LIBM $P/lib/libtraceagent.so" "$out"
out=$(env -u LD_PRELOAD "$TA" --service svc-a --endpoint http://collector:4318 -- env | grep -E '^OTEL_(SERVICE_NAME|EXPORTER_OTLP_ENDPOINT)=' | LC_ALL=C sort | tr '\n' ' ')
expect "--service and --endpoint set the variables" "OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 OTEL_SERVICE_NAME=svc-a " "$out"
out=$(env -u LD_PRELOAD "$TA" --service=svc-b --endpoint=http://c:1 env | grep -E '^OTEL_SERVICE_NAME=')
expect "--service=NAME form, and no -- before CMD" "OTEL_SERVICE_NAME=svc-b" "$out"
mkdir -p "$WORK/bin"
ln -s "$TA" "$WORK/bin/traceagent"
out=$(env -u LD_PRELOAD "$WORK/bin/traceagent" -- env | sed -n 's/^LD_PRELOAD=//p')
expect "through a symlink: still the installed agent" "$P/lib/libtraceagent.so" "$out"

rc=0
env -u LD_PRELOAD "$TA" -- sh -c 'exit 3' || rc=$?
expect "the program's exit status is the launcher's" 3 "$rc"
rc=0
(env -u LD_PRELOAD "$TA" -- sh -c 'kill -TERM $$'; exit $?) 2>/dev/null || rc=$?
expect "killed by SIGTERM: 143 as without the launcher" 143 "$rc"
rc=0
env -u LD_PRELOAD "$TA" -- /nonexistent/program 2>/dev/null || rc=$?
expect "a missing program: 127" 127 "$rc"
rc=0
env -u LD_PRELOAD "$TA" >/dev/null 2>&1 || rc=$?
expect "no program: usage, status 2" 2 "$rc"
rc=0
env -u LD_PRELOAD "$TA" --bogus -- true >/dev/null 2>&1 || rc=$?
expect "unknown option: status 2" 2 "$rc"

out=$(env -u LD_PRELOAD "$TA" --service launched --endpoint "$SINK_ENDPOINT" -- env OTEL_BSP_SCHEDULE_DELAY=100 \
	curl -sS --max-time 10 "$BASE/launched?x=1") || true
expect "curl through the launcher answered" ok "$out"
check "its CLIENT span reached the endpoint given with --endpoint" wait_spans "$SINK_JSONL" 1 \
	"s.get('service.name') == 'launched' and a.get('url.full', '').endswith('/launched?x=1')" 15
r=$(grep -c '"traceparent"' "$REC_LOG" || true)
expect "the request carried a traceparent" 1 "$r"

echo "== the build-tree launcher (scripts/traceagent) uses build/"
out=$(env -u LD_PRELOAD scripts/traceagent -- env | sed -n 's/^LD_PRELOAD=//p')
expect "build tree: LD_PRELOAD is build/libtraceagent.so" "$(readlink -f build/libtraceagent.so)" "$out"

echo "== --check"
SECRETS=(OTEL_EXPORTER_OTLP_HEADERS='api-key=s3cr3t-value-1,Authorization=Bearer%20s3cr3t-value-2'
	TRACEAGENT_EXTRA_TOKEN=s3cr3t-value-3 OTEL_RESOURCE_ATTRIBUTES=deployment.environment=test
	OTEL_EXPORTER_OTLP_TRACES_HEADERS='x-honeycomb-team=s3cr3t-value-4')
rc=0
env -u LD_PRELOAD "${SECRETS[@]}" "$TA" --check --service checked --endpoint "$SINK_ENDPOINT" curl >"$WORK/check.out" 2>&1 || rc=$?
sed 's/^/    | /' "$WORK/check.out"
expect "--check with a live endpoint: status 0" 0 "$rc"
expect "no secret value printed" "" "$(grep -o 's3cr3t-value-[0-9]' "$WORK/check.out" | tr '\n' ' ')"
check "headers shown with their names, values masked" grep -q 'OTEL_EXPORTER_OTLP_HEADERS=api-key=\*\*\*,Authorization=\*\*\*' "$WORK/check.out"
check "a *_TOKEN variable masked" grep -q 'TRACEAGENT_EXTRA_TOKEN=\*\*\*' "$WORK/check.out"
check "plain settings shown as they are" grep -q 'OTEL_RESOURCE_ATTRIBUTES=deployment.environment=test' "$WORK/check.out"
check "--service shown" grep -q 'OTEL_SERVICE_NAME=checked' "$WORK/check.out"
check "the agent found is the installed one" grep -qF "agent: $P/lib/libtraceagent.so" "$WORK/check.out"
check "the endpoint answers (with the configured headers)" grep -q 'endpoint answers: HTTP 200' "$WORK/check.out"
check "curl: dynamic glibc" grep -q 'dynamically linked against glibc' "$WORK/check.out"
check "curl: HTTP hooks active" grep -q 'HTTP/1.x over libc sockets (server and client spans): active' "$WORK/check.out"
check "curl: libpq not linked" grep -q 'PostgreSQL (libpq): not linked' "$WORK/check.out"
expect "the check itself made no span" 0 "$(count_spans "$SINK_JSONL" "s.get('service.name') == 'checked'")"

# While --check's curl waits on a collector that never answers, its command
# line (what ps shows every user) must not hold the header values.
start_listening hole env -u LD_PRELOAD "$SINK" --port 0 --quiet --black-hole
HOLE_PID=$BG_PID
env -u LD_PRELOAD "${SECRETS[@]}" "$TA" --check --endpoint "http://127.0.0.1:$PORT" >"$WORK/check-hole.out" 2>&1 &
CHECK_PID=$!
args=
for ((i = 0; i < 200; i++)); do
	args=$(ps -eo args | grep '[c]url .*v1/traces' || true)
	[[ -n $args ]] && break
	sleep 0.02
done
check "--check: its curl seen running (against a black hole)" test -n "$args"
expect "--check: no header value on curl's command line" "" "$(grep -o 's3cr3t-value-[0-9]' <<<"$args" | tr '\n' ' ')"
wait "$CHECK_PID" || true
stop_pid "$HOLE_PID" 5

out=$(env -u LD_PRELOAD OTEL_EXPORTER_OTLP_ENDPOINT='http://user:pa55word@127.0.0.1:9/?api_key=k3y' "$TA" --check 2>&1) && rc=0 || rc=$?
expect "--check with a dead endpoint: status 1" 1 "$rc"
check "a dead endpoint is reported" grep -q 'endpoint does not answer' <<<"$out"
check "the endpoint URL's userinfo and query values are masked, as the agent masks them" \
	grep -qF 'http://***@127.0.0.1:9/v1/traces?api_key=***' <<<"$out"
expect "the URL's password and key never printed" "" "$(grep -o 'pa55word\|k3y' <<<"$out")"

PSQL_BIN=$(ls /usr/lib/postgresql/*/bin/psql 2>/dev/null | tail -n1 || true)
if [[ -n $PSQL_BIN ]]; then
	out=$(env -u LD_PRELOAD "$TA" --check --endpoint "$SINK_ENDPOINT" "$PSQL_BIN" 2>&1) || true
	check "psql: libpq hooks active" grep -q 'PostgreSQL (libpq): active (links libpq.so' <<<"$out"
fi
if command -v kcat >/dev/null; then
	out=$(env -u LD_PRELOAD "$TA" --check --endpoint "$SINK_ENDPOINT" kcat 2>&1) || true
	check "kcat: librdkafka hooks active" grep -q 'Kafka (librdkafka): active (links librdkafka.so' <<<"$out"
fi
out=$(env -u LD_PRELOAD "$TA" --check --endpoint "$SINK_ENDPOINT" /nonexistent/prog 2>&1) && rc=0 || rc=$?
check "a missing program is reported" grep -q 'not found' <<<"$out"
expect "a missing program: status 1" 1 "$rc"

"${MAKE[@]}" uninstall PREFIX="$P" >/dev/null 2>&1 || die "make uninstall failed"
expect "make uninstall: nothing left under PREFIX" "" "$(find "$P" -type f)"

finish
