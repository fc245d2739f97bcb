#!/usr/bin/env bash
# test-http-passthrough: psql and kcat under the agent work exactly as before and make no HTTP spans.
#
# Acceptance 6 of the HTTP hooks: protocols that are not HTTP pass through
# the socket hooks untouched. A throwaway PostgreSQL 15 (initdb + pg_ctl in a
# temporary directory, 127.0.0.1 on a free port, run as `postgres` when we
# are root) and librdkafka's mock cluster (build/tests/kafka-mock) are the
# peers. A curl under the agent at the end proves spans do get exported, so
# "no HTTP span" is not merely "no span at all".
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

start_sink

echo "== PostgreSQL: psql"
command -v psql >/dev/null || die "psql is not installed"
# scripts/dev-postgres through lib.sh: sets PG_PORT, stopped at exit.
pg_start

PSQL=(psql -X -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1)
SQL="SELECT 1;
CREATE TABLE t (id int PRIMARY KEY, txt text);
INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 500) g;
SELECT count(*), sum(id), md5(string_agg(txt, ',' ORDER BY id)) FROM t;
SELECT 'GET / HTTP/1.1' || chr(13) || chr(10) || 'Host: x' || chr(13) || chr(10) || chr(13) || chr(10) AS looks_like_http;
SELECT repeat('x', 100000) = repeat('x', 100000) AS big;
DROP TABLE t;"
rc=0
"${PSQL[@]}" -c "SELECT 1" >"$WORK/psql1.plain" 2>&1 || rc=$?
expect "psql without the agent: SELECT 1 works" 0 "$rc"
rc=0
agent psql "${PSQL[@]}" -c "SELECT 1" >"$WORK/psql1.agent" 2>&1 || rc=$?
expect "psql under the agent: SELECT 1 works" 0 "$rc"
check "psql -c 'SELECT 1': identical output with and without the agent" diff -u "$WORK/psql1.plain" "$WORK/psql1.agent"
rc=0
"${PSQL[@]}" <<<"$SQL" >"$WORK/psql2.plain" 2>&1 || rc=$?
expect "psql script without the agent" 0 "$rc"
rc=0
agent psql "${PSQL[@]}" <<<"$SQL" >"$WORK/psql2.agent" 2>&1 || rc=$?
expect "psql script under the agent" 0 "$rc"
check "psql script (500 rows, 100 kB value, HTTP-looking text): identical output" diff -u "$WORK/psql2.plain" "$WORK/psql2.agent"
check "psql script output is what it should be" grep -q '500 | 125250 |' "$WORK/psql2.agent"

echo "== Kafka: kcat against librdkafka's mock cluster"
command -v kcat >/dev/null || die "kcat is not installed"
need_helper kafka-mock -lrdkafka
start_bg kafka build/tests/kafka-mock --topic t1 --topic t2
KAFKA_PID=$BG_PID
wait_line kafka "$KAFKA_PID" 's/^bootstrap \(.*\)$/\1/p' || die "kafka-mock did not start"
BOOT=$LINE
K=(timeout 30 kcat -b "$BOOT" -q)

printf 'one\ntwo\nthree\n' | "${K[@]}" -P -t t1 || true
rc=0
printf 'four\nfive\nsix with a longer value: GET / HTTP/1.1\n' | agent kcat "${K[@]}" -P -t t1 || rc=$?
expect "kcat -P under the agent" 0 "$rc"
rc=0
"${K[@]}" -C -t t1 -e -o beginning >"$WORK/kcat.plain" 2>"$WORK/kcat.plain.err" || rc=$?
expect "kcat -C without the agent" 0 "$rc"
rc=0
agent kcat "${K[@]}" -C -t t1 -e -o beginning >"$WORK/kcat.agent" 2>"$WORK/kcat.agent.err" || rc=$?
expect "kcat -C under the agent" 0 "$rc"
expect "kcat -C reads back the six messages" "one two three four five six with a longer value: GET / HTTP/1.1" \
	"$(tr '\n' ' ' <"$WORK/kcat.agent" | sed 's/ $//')"
check "kcat -C: identical output with and without the agent" diff -u "$WORK/kcat.plain" "$WORK/kcat.agent"
# Keyed messages and the metadata listing, both ways.
printf 'k1:v1\nk2:v2\n' | agent kcat "${K[@]}" -P -t t2 -K: || true
"${K[@]}" -C -t t2 -e -o beginning -f '%k=%s@%p\n' >"$WORK/kcat2.plain" 2>/dev/null || true
agent kcat "${K[@]}" -C -t t2 -e -o beginning -f '%k=%s@%p\n' >"$WORK/kcat2.agent" 2>/dev/null || true
expect "kcat keyed messages under the agent" "k1=v1@0 k2=v2@0" "$(tr '\n' ' ' <"$WORK/kcat2.agent" | sed 's/ $//')"
check "kcat keyed consume: identical output" diff -u "$WORK/kcat2.plain" "$WORK/kcat2.agent"
"${K[@]}" -L -t t1 2>/dev/null | grep -v -i 'broker' >"$WORK/kcatL.plain" || true
agent kcat "${K[@]}" -L -t t1 2>/dev/null | grep -v -i 'broker' >"$WORK/kcatL.agent" || true
check "kcat -L (metadata, broker lines aside): identical output" diff -u "$WORK/kcatL.plain" "$WORK/kcatL.agent"
check "kcat -L lists topic t1" grep -q 't1' "$WORK/kcatL.agent"

echo "== no HTTP spans"
# Control: an HTTP client under the agent does produce a span (exported at its exit, after
# every psql/kcat process above has exited and flushed).
agent curl-control curl -sS --max-time 10 -o /dev/null "http://127.0.0.1:$SINK_PORT/control" || true
check "control: curl under the agent exports a CLIENT span" \
	wait_spans "$SINK_JSONL" 1 "s.get('service.name') == 'curl-control' and http(s)"
expect "psql and kcat: no span with http.request.method" "" \
	"$(spans "$SINK_JSONL" "s.get('service.name') in ('psql', 'kcat') and http(s)")"
expect "psql and kcat: no SERVER span, no HTTP-named span" "" \
	"$(spans "$SINK_JSONL" "s.get('service.name') in ('psql', 'kcat') and (s.get('kind') == 'SERVER' or any(k.startswith(('http.', 'url.')) for k in a))")"

finish
