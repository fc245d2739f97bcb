#!/usr/bin/env bash
# test-libpq: libpq statements become CLIENT spans with the stable database semantic conventions (pq-client, psql, pgbench against a real PostgreSQL).
#
# A throwaway PostgreSQL (scripts/dev-postgres through pg_start; never on
# 5432, so server.port is always present) logs every statement
# (log_statement=all) for the sqlcommenter check. build/tests/pq-client
# (tests/pq-client.c) makes every hooked libpq call in a fixed order; its spans
# are matched to its steps by start time (the calls are sequential). Its
# output must be the same with and without the agent, whatever the settings.
#   (a) one CLIENT span per call, attributes per step   (b) TRACEAGENT_DB_REQUIRE_PARENT
#   (c) psql -X -c 'SELECT 1': one span                 (d) missing_table: 42P01, 'relation ? does not exist'
#   (e) get_metrics(24): summary and returned_rows      (f) pgbench -i, tpcb, -M prepared, -S
#   (g) TRACEAGENT_DB_SQLCOMMENTER                      (h) TRACEAGENT_DB_CAPTURE_PARAMETERS
#   (i) OTEL_INSTRUMENTATION_COMMON_DB_STATEMENT_SANITIZER_ENABLED=false
#   (j) connections handed from thread to thread, finished on one thread and
#       made again on another (the same address), more in turn on one thread
#       than it remembers: every span has its own connection's attributes
# Nesting under a SERVER span is left to the end-to-end test.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

command -v psql >/dev/null || die "psql is not installed"
command -v pgbench >/dev/null || die "pgbench is not installed"
PQ_FLAGS=$(pkg-config --cflags --libs libpq 2>/dev/null || echo "-I$(pg_config --includedir) -lpq")
# shellcheck disable=SC2086
need_helper pq-client $PQ_FLAGS
PQC=build/tests/pq-client

start_sink
pg_start -c log_statement=all
echo "note: PostgreSQL on 127.0.0.1:$PG_PORT, database $PG_DB, log $PG_LOG"
export DATABASE_URL

# run_pq LABEL [agent SERVICE [VAR=value...]]: runs pq-client (the main
# script); stdout+stderr in $WORK/LABEL.out, exit status in $WORK/LABEL.rc.
run_pq() {
	local label=$1 rc=0
	shift
	if [[ ${1:-} == agent ]]; then
		shift
		agent "$@" "$PQC" "$DATABASE_URL" >"$WORK/$label.out" 2>&1 || rc=$?
	else
		"$PQC" "$DATABASE_URL" >"$WORK/$label.out" 2>&1 || rc=$?
	fi
	echo "$rc" >"$WORK/$label.rc"
}

# same_as_plain LABEL: the run's output and exit status are those of the run without the agent.
same_as_plain() {
	expect "$1: pq-client exit status as without the agent" "$(cat "$WORK/plain.rc")" "$(cat "$WORK/$1.rc")"
	check "$1: pq-client output identical to the run without the agent" diff -u "$WORK/plain.out" "$WORK/$1.out"
}

# The steps of pq-client in call order, and what each span must carry.
# text: db.query.text with the sanitizer on (None: no text expected; the
# prepared statements' text is remembered from PQprepare); raw: the text as
# the app wrote it (what the sanitizer must leave alone when it is off).
cat >"$WORK/pqsteps.py" <<'PY'
import os
from spanq import load, A

CREATE = "CREATE TABLE IF NOT EXISTS pq_tasks (id serial PRIMARY KEY, title text NOT NULL, hours int NOT NULL)"
FUNC = ("CREATE OR REPLACE FUNCTION get_metrics(h int) RETURNS TABLE(bucket int, tasks bigint, total_hours bigint) "
        "LANGUAGE sql AS $$ SELECT g, count(t.id), coalesce(sum(t.hours), 0) FROM generate_series(1, h) g "
        "LEFT JOIN pq_tasks t ON t.hours = g GROUP BY g ORDER BY g $$")
BY_HOURS = "SELECT title FROM pq_tasks WHERE hours >= $1 ORDER BY id"
BY_TITLE = "SELECT hours FROM pq_tasks WHERE title = $1"
ANY = object()
# (step, call, raw text, sanitized text, summary, operation, collection, returned_rows, params)
STEPS = [
    ('S1', 'PQexec', CREATE, CREATE, 'CREATE TABLE pq_tasks', 'CREATE TABLE', 'pq_tasks', None, None),
    ('S2', 'PQexec', 'DELETE FROM pq_tasks', 'DELETE FROM pq_tasks', 'DELETE pq_tasks', 'DELETE', 'pq_tasks', None, None),
    ('S3', 'PQexec', "INSERT INTO pq_tasks (title, hours) VALUES ('write tests', 3)",
     'INSERT INTO pq_tasks (title, hours) VALUES (?, ?)', 'INSERT pq_tasks', 'INSERT', 'pq_tasks', None, None),
    ('S4', 'PQexec', 'SELECT title, hours FROM pq_tasks WHERE hours > 2',
     'SELECT title, hours FROM pq_tasks WHERE hours > ?', 'SELECT pq_tasks', 'SELECT', 'pq_tasks', 1, None),
    ('S5', 'PQexecParams', 'INSERT INTO pq_tasks (title, hours) VALUES ($1, $2)', None,
     'INSERT pq_tasks', 'INSERT', 'pq_tasks', None, ['review code', '5']),
    ('S6', 'PQprepare', BY_HOURS, None, ANY, ANY, ANY, None, None),
    ('S7', 'PQexecPrepared', BY_HOURS, None, 'SELECT pq_tasks', 'SELECT', 'pq_tasks', 2, ['1']),
    ('S8', 'PQdescribePrepared', ANY, None, ANY, ANY, ANY, None, None),
    ('S9', 'PQexec', 'BEGIN', 'BEGIN', 'BEGIN', 'BEGIN', None, None, None),
    ('S10', 'PQexec', 'DECLARE pq_cur CURSOR FOR SELECT id, title FROM pq_tasks ORDER BY id', None, ANY, ANY, ANY, None, None),
    ('S11', 'PQdescribePortal', ANY, None, ANY, ANY, ANY, None, None),
    ('S12', 'PQexec', 'COMMIT', 'COMMIT', 'COMMIT', 'COMMIT', None, None, None),
    ('S13', 'PQsendQuery', 'SELECT count(*) FROM pq_tasks', None, 'SELECT pq_tasks', 'SELECT', 'pq_tasks', 1, None),
    ('S14', 'PQsendQueryParams', 'SELECT title FROM pq_tasks WHERE title = $1', None,
     'SELECT pq_tasks', 'SELECT', 'pq_tasks', 1, ['write tests']),
    ('S15', 'PQsendPrepare', BY_TITLE, None, ANY, ANY, ANY, None, None),
    ('S16', 'PQsendQueryPrepared', BY_TITLE, None, 'SELECT pq_tasks', 'SELECT', 'pq_tasks', 1, ['review code']),
    ('P1', 'PQsendQueryParams (pipeline)', 'INSERT INTO pq_tasks (hours, title) VALUES ($1, $2)', None,
     'INSERT pq_tasks', 'INSERT', 'pq_tasks', None, ['8', 'pipeline one']),
    ('P2', 'PQsendQueryParams (pipeline)', 'UPDATE pq_tasks SET hours = hours + $1 WHERE title = $2', None,
     'UPDATE pq_tasks', 'UPDATE', 'pq_tasks', None, ['1', 'write tests']),
    ('P3', 'PQsendQueryParams (pipeline)', 'SELECT title, hours FROM pq_tasks WHERE hours > $1 ORDER BY id', None,
     'SELECT pq_tasks', 'SELECT', 'pq_tasks', 3, ['0']),
    ('S17', 'PQexec', 'SELECT * FROM missing_table', 'SELECT * FROM missing_table',
     'SELECT missing_table', 'SELECT', 'missing_table', None, None),
    ('S18', 'PQexec', FUNC, ANY, ANY, ANY, ANY, None, None),
    ('S19', 'PQexec', 'SELECT * FROM get_metrics(24)', 'SELECT * FROM get_metrics(?)',
     'SELECT get_metrics', 'SELECT', ANY, 24, None),
    ('S20', 'PQexec (connection 2)', 'SELECT title FROM pq_tasks ORDER BY id DESC', None,
     'SELECT pq_tasks', 'SELECT', 'pq_tasks', 3, None),
]
# Calls that send their text to the server (sqlcommenter can annotate them).
SENDS_TEXT = {'PQexec', 'PQexecParams', 'PQprepare', 'PQsendQuery', 'PQsendQueryParams', 'PQsendPrepare',
              'PQsendQueryParams (pipeline)', 'PQexec (connection 2)'}
PARAMETERISED = {'PQexecParams', 'PQprepare', 'PQexecPrepared', 'PQsendQueryParams', 'PQsendPrepare',
                 'PQsendQueryPrepared', 'PQsendQueryParams (pipeline)'}

def run_spans(path, service):
    """The spans of one pq-client run (by service name), in call order."""
    ss = [s for s in load(path) if s.get('service.name') == service]
    ss.sort(key=lambda s: (s.get('start_ns', 0), s.get('end_ns', 0)))
    return ss

def want_text(step, sanitized):
    name, call, raw, san = step[0], step[1], step[2], step[3]
    if raw is ANY:
        return ANY
    if call in PARAMETERISED or not sanitized:
        return raw
    return san if san is not None else raw
PY

wait_service() { # wait_service SERVICE N: waits for N spans of SERVICE
	wait_spans "$SINK_JSONL" "$2" "s.get('service.name') == '$1'" 20
}

echo "== (a) pq-client: without the agent, then under it"
run_pq plain
expect "pq-client without the agent exits 0" 0 "$(cat "$WORK/plain.rc")"
grep -q '^done: 0 unexpected$' "$WORK/plain.out" || { cat "$WORK/plain.out"; die "pq-client does not run cleanly without the agent"; }
run_pq main agent pq-main
same_as_plain main
check "(a) 23 spans from pq-client" wait_service pq-main 23

pycheck "$SINK_JSONL" "$PG_PORT" "$PG_DB" <<'PY'
from pqsteps import *
path, port, db = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ss = run_spans(path, 'pq-main')
expect('(a) exactly one span per libpq call (23), nothing else', len(STEPS), len(ss))
if len(ss) != len(STEPS):
    for s in ss:
        print('  got: ' + show(s))
traces = set()
for step, s in zip(STEPS, ss):
    name, call, raw, san, summary, op, coll, rows, params = step
    a = A(s)
    label = '(a) %s %s' % (name, call)
    ok = True
    ok &= check(s.get('kind') == 'CLIENT', label + ': CLIENT', show(s))
    ok &= check(a.get('db.system.name') == 'postgresql', label + ': db.system.name=postgresql', show(s))
    ok &= check(a.get('db.namespace') == db, label + ': db.namespace=' + db, a.get('db.namespace'))
    ok &= check(a.get('server.address') == '127.0.0.1', label + ': server.address', a.get('server.address'))
    ok &= check(a.get('server.port') == port, label + ': server.port (int, not 5432)', a.get('server.port'))
    ok &= check(s.get('parent_span_id') == '', label + ': a root (no current context)', s.get('parent_span_id'))
    t = want_text(step, True)
    if t is not ANY:
        ok &= expect(label + ': db.query.text', t, a.get('db.query.text'))
    if summary is not ANY:
        ok &= expect(label + ': db.query.summary', summary, a.get('db.query.summary'))
    if 'db.query.summary' in a:
        ok &= expect(label + ': span name = db.query.summary', a['db.query.summary'], s.get('name'))
    else:
        ok &= check(bool(s.get('name')), label + ': span has a name', s.get('name'))
    if op is not ANY:
        ok &= expect(label + ': db.operation.name', op, a.get('db.operation.name'))
    if coll is not ANY:
        ok &= expect(label + ': db.collection.name', coll, a.get('db.collection.name'))
    if rows is not None:
        ok &= expect(label + ': db.response.returned_rows', rows, a.get('db.response.returned_rows'))
    if name != 'S17':
        ok &= expect(label + ': status UNSET', 'UNSET', s.get('status'))
    ok &= check(not any(k.startswith('db.query.parameter.') for k in a), label + ': no db.query.parameter.* by default')
    if not ok:
        print('  span: ' + show(s))
    traces.add(s.get('trace_id'))
    if name in ('S6', 'S8', 'S11', 'S15', 'S10', 'S18'):
        print('note: %s %s -> name %r summary %r operation %r text %r' % (name, call, s.get('name'),
              a.get('db.query.summary'), a.get('db.operation.name'), (a.get('db.query.text') or '')[:100]))
if len(ss) == len(STEPS):
    expect('(a) every statement span is its own trace (roots)', len(ss), len(traces))
    # (d) the failing statement
    s = ss[[st[0] for st in STEPS].index('S17')]
    a = A(s)
    expect('(d) missing_table: status ERROR', 'ERROR', s.get('status'))
    expect('(d) missing_table: error.type', '42P01', a.get('error.type'))
    expect('(d) missing_table: db.response.status_code', '42P01', a.get('db.response.status_code'))
    ev = [e for e in s.get('events') or [] if e.get('name') == 'exception']
    expect('(d) missing_table: one exception event', 1, len(ev))
    if ev:
        ea = ev[0].get('attributes') or {}
        expect('(d) missing_table: exception.message is the server message, quoted parts as ?',
               'relation ? does not exist', ea.get('exception.message'))
        expect('(d) missing_table: exception.type is the SQLSTATE', '42P01', ea.get('exception.type'))
        print('note: exception event: ' + json.dumps(ev[0].get('attributes')))
    expect('(d) missing_table: status message is the server message, quoted parts as ?',
           'relation ? does not exist', s.get('status_message'))
    # (e) the function returning rows
    s = ss[[st[0] for st in STEPS].index('S19')]
    expect('(e) get_metrics(24): span name', 'SELECT get_metrics', s.get('name'))
    expect('(e) get_metrics(24): db.response.returned_rows', 24, A(s).get('db.response.returned_rows'))
    # no other span has an error
    expect('(a) only the missing_table span is an error', ['S17'],
           [st[0] for st, s in zip(STEPS, ss) if s.get('status') == 'ERROR'])
PY

echo "== (b) TRACEAGENT_DB_REQUIRE_PARENT=true: no spans from a program with no context"
run_pq noparent agent pq-noparent TRACEAGENT_DB_REQUIRE_PARENT=true
same_as_plain noparent

echo "== (c) psql -X -c 'SELECT 1': one span"
rc=0
"${PSQL[@]}" -c "SELECT 1" >"$WORK/psql.plain" 2>&1 || rc=$?
expect "psql without the agent exits 0" 0 "$rc"
rc=0
agent psql-one "${PSQL[@]}" -c "SELECT 1" >"$WORK/psql.agent" 2>&1 || rc=$?
expect "(c) psql under the agent exits 0" 0 "$rc"
check "(c) psql output identical with and without the agent" diff -u "$WORK/psql.plain" "$WORK/psql.agent"
check "(c) psql: a span arrives" wait_service psql-one 1
# A multi-statement psql script too (each statement its own PQsendQuery/PQexec).
rc=0
"${PSQL[@]}" -v ON_ERROR_STOP=1 <<<"SELECT 2 AS two; SELECT count(*) FROM pq_tasks;" >"$WORK/psql2.plain" 2>&1 || rc=$?
agent psql-two "${PSQL[@]}" -v ON_ERROR_STOP=1 <<<"SELECT 2 AS two; SELECT count(*) FROM pq_tasks;" >"$WORK/psql2.agent" 2>&1 || rc=$?
expect "(c) psql script: exit 0" 0 "$rc"
check "(c) psql script: identical output" diff -u "$WORK/psql2.plain" "$WORK/psql2.agent"
check "(c) psql script: spans arrive" wait_service psql-two 2
pycheck "$SINK_JSONL" "$PG_PORT" <<'PY'
path, port = sys.argv[1], int(sys.argv[2])
sp = load(path)
one = [s for s in sp if s.get('service.name') == 'psql-one']
expect('(c) psql -c "SELECT 1": exactly one span', ['SELECT'], [s.get('name') for s in one])
if one:
    a = A(one[0])
    expect('(c) psql: db.query.text sanitized', 'SELECT ?', a.get('db.query.text'))
    expect('(c) psql: db.operation.name', 'SELECT', a.get('db.operation.name'))
    check('db.collection.name' not in a, '(c) psql: no db.collection.name for SELECT 1', a.get('db.collection.name'))
    expect('(c) psql: server.port', port, a.get('server.port'))
    expect('(c) psql: CLIENT', 'CLIENT', one[0].get('kind'))
    expect('(c) psql: returned_rows', 1, a.get('db.response.returned_rows'))
two = sorted((s for s in sp if s.get('service.name') == 'psql-two'), key=lambda s: s.get('start_ns', 0))
expect('(c) psql script: one span per statement', ['SELECT', 'SELECT pq_tasks'], [s.get('name') for s in two])
# (b): psql's spans were exported after pq-noparent had exited (and flushed).
expect('(b) TRACEAGENT_DB_REQUIRE_PARENT=true: no spans at all from pq-client', [],
       [show(s) for s in sp if s.get('service.name') == 'pq-noparent'])
PY

echo "== (g) TRACEAGENT_DB_SQLCOMMENTER=true"
run_pq comment agent pq-comment TRACEAGENT_DB_SQLCOMMENTER=true
same_as_plain comment
check "(g) pq-client spans arrive" wait_service pq-comment 23
rc=0
agent psql-comment TRACEAGENT_DB_SQLCOMMENTER=true "${PSQL[@]}" -c "SELECT 4242 AS sqlcommenter_marker" \
	>"$WORK/psqlc.agent" 2>&1 || rc=$?
expect "(g) psql under the agent with sqlcommenter exits 0" 0 "$rc"
"${PSQL[@]}" -c "SELECT 4242 AS sqlcommenter_marker" >"$WORK/psqlc.plain" 2>&1 || true
check "(g) psql output identical with and without the agent" diff -u "$WORK/psqlc.plain" "$WORK/psqlc.agent"
check "(g) psql span arrives" wait_service psql-comment 1
sleep 0.5 # the server log is written asynchronously by the logging backend
pycheck "$SINK_JSONL" "$PG_LOG" <<'PY'
from pqsteps import *
path, logf = sys.argv[1], sys.argv[2]
log = open(logf, encoding='utf-8', errors='replace').read()
# flags: 01 (sampled), or 03 with W3C Level 2's random-trace-id flag on a trace the agent started
TP = re.compile(r"/\*traceparent='00-([0-9a-f]{32})-([0-9a-f]{16})-(0[0-3])'\*/")
seen = {(m.group(1), m.group(2)) for m in TP.finditer(log)}
print('note: %d traceparent comments in the server log' % len(seen))
# psql: the marker statement
ps = [s for s in load(path) if s.get('service.name') == 'psql-comment']
if check(len(ps) == 1, '(g) psql: one span', len(ps)):
    s = ps[0]
    # the comment may follow on its own line (a trailing -- comment in the app's text cannot swallow it)
    want = r"SELECT 4242 AS sqlcommenter_marker\s*/\*traceparent='00-%s-%s-0[13]'\*/" % (s['trace_id'], s['span_id'])
    got = [l for l in log.splitlines() if 'sqlcommenter_marker' in l or 'traceparent' in l]
    check(re.search(want, log), "(g) psql: the server saw the statement with /*traceparent='00-<trace>-<this span>-01'*/", got[-4:])
    expect('(g) psql: db.query.text has no comment', 'SELECT ? AS sqlcommenter_marker', A(s).get('db.query.text'))
# pq-client: every call that sends its text carries its own span's traceparent
ss = run_spans(path, 'pq-comment')
if expect('(g) pq-client: 23 spans', len(STEPS), len(ss)):
    for step, s in zip(STEPS, ss):
        name, call = step[0], step[1]
        a = A(s)
        check('traceparent' not in (a.get('db.query.text') or ''), '(g) %s %s: db.query.text has no comment' % (name, call),
              a.get('db.query.text'))
        t = want_text(step, True)
        if t is not ANY:
            expect('(g) %s %s: db.query.text is the app\'s' % (name, call), t, a.get('db.query.text'))
        if call in SENDS_TEXT:
            check((s['trace_id'], s['span_id']) in seen,
                  '(g) %s %s: the server saw /*traceparent=...-<this span>-01*/' % (name, call), show(s))
# the spans of runs without sqlcommenter never reached the log as comments
main = run_spans(path, 'pq-main')
expect('(g) without the setting: no comment on the wire', [],
       [s['span_id'] for s in main if (s['trace_id'], s['span_id']) in seen])
PY
if ! grep -q "sqlcommenter_marker" "$PG_LOG"; then echo "note: the marker is not in $PG_LOG"; fi
grep -m3 "traceparent" "$PG_LOG" | sed 's/^/note: log: /' || true

echo "== (h) TRACEAGENT_DB_CAPTURE_PARAMETERS=true"
run_pq params agent pq-params TRACEAGENT_DB_CAPTURE_PARAMETERS=true
same_as_plain params
check "(h) pq-client spans arrive" wait_service pq-params 23
pycheck "$SINK_JSONL" <<'PY'
from pqsteps import *
ss = run_spans(sys.argv[1], 'pq-params')
if expect('(h) 23 spans', len(STEPS), len(ss)):
    for step, s in zip(STEPS, ss):
        name, call, params = step[0], step[1], step[8]
        a = A(s)
        got = {k: v for k, v in a.items() if k.startswith('db.query.parameter.')}
        if params is not None:
            want = {'db.query.parameter.%d' % i: v for i, v in enumerate(params)}
            expect('(h) %s %s: db.query.parameter.<n>' % (name, call), want, got)
        else:
            expect('(h) %s %s: no parameters recorded' % (name, call), {}, got)
    # the opt-in records the server's message as it is
    s = ss[[st[0] for st in STEPS].index('S17')]
    expect('(h) missing_table: the raw status message', 'relation "missing_table" does not exist', s.get('status_message'))
PY

echo "== (i) OTEL_INSTRUMENTATION_COMMON_DB_STATEMENT_SANITIZER_ENABLED=false"
run_pq nosan agent pq-nosan OTEL_INSTRUMENTATION_COMMON_DB_STATEMENT_SANITIZER_ENABLED=false
same_as_plain nosan
check "(i) pq-client spans arrive" wait_service pq-nosan 23
pycheck "$SINK_JSONL" <<'PY'
from pqsteps import *
ss = run_spans(sys.argv[1], 'pq-nosan')
if expect('(i) 23 spans', len(STEPS), len(ss)):
    for step, s in zip(STEPS, ss):
        t = want_text(step, False)
        if t is not ANY:
            expect('(i) %s %s: db.query.text as written' % (step[0], step[1]), t, A(s).get('db.query.text'))
    s = ss[2]
    check("'write tests'" in (A(s).get('db.query.text') or ''), "(i) S3 keeps the literal 'write tests'", A(s).get('db.query.text'))
PY

echo "== (f) pgbench under the agent"
PGB=(pgbench -h 127.0.0.1 -p "$PG_PORT" -U postgres)
rc=0
agent pgbench-init "${PGB[@]}" -i -s 1 "$PG_DB" >"$WORK/pgbench-init.out" 2>&1 || rc=$?
expect "(f) pgbench -i -s 1 under the agent exits 0" 0 "$rc"
[[ $rc -eq 0 ]] || sed 's/^/    /' "$WORK/pgbench-init.out"
check "(f) pgbench -i says done" grep -q '^done in ' "$WORK/pgbench-init.out"
for mode in tpcb prepared select; do
	case $mode in
	tpcb) args=(-c 2 -T 3) ;;
	prepared) args=(-c 2 -T 3 -M prepared) ;;
	select) args=(-c 2 -T 3 -S) ;;
	esac
	rc=0
	timeout 60 env LD_PRELOAD="$AGENT" OTEL_EXPORTER_OTLP_ENDPOINT="$SINK_ENDPOINT" OTEL_SERVICE_NAME="pgbench-$mode" \
		OTEL_BSP_SCHEDULE_DELAY=100 OTEL_LOG_LEVEL=warn OTEL_BSP_MAX_QUEUE_SIZE=65536 \
		"${PGB[@]}" "${args[@]}" "$PG_DB" >"$WORK/pgbench-$mode.out" 2>&1 || rc=$?
	expect "(f) pgbench ${args[*]} under the agent exits 0" 0 "$rc"
	if grep -q '^tps = [0-9.]* ' "$WORK/pgbench-$mode.out"; then
		pass "(f) pgbench ${args[*]}: a tps line ($(grep -m1 '^tps = ' "$WORK/pgbench-$mode.out" | cut -d' ' -f3))"
	else
		fail "(f) pgbench ${args[*]}: no tps line"
		sed 's/^/    /' "$WORK/pgbench-$mode.out"
	fi
	check "(f) pgbench ${args[*]}: no failed transactions" grep -q '^number of failed transactions: 0 ' "$WORK/pgbench-$mode.out"
	check "(f) pgbench ${args[*]}: spans arrive" wait_service "pgbench-$mode" 1
done
pycheck "$SINK_JSONL" <<'PY'
sp = load(sys.argv[1])
def names(svc):
    return {s.get('name') for s in sp if s.get('service.name') == svc}
def errs(svc):
    return [show(s) for s in sp if s.get('service.name') == svc and s.get('status') == 'ERROR']
init = names('pgbench-init')
check(len(init) > 0, '(f) pgbench -i: spans', sorted(init))
print('note: pgbench -i span names: %s' % sorted(init))
expect('(f) pgbench -i: no error spans', [], errs('pgbench-init'))
for svc in ('pgbench-tpcb', 'pgbench-prepared'):
    n = names(svc)
    print('note: %s span names: %s' % (svc, sorted(x for x in n if x)))
    for want in ('SELECT pgbench_accounts', 'UPDATE pgbench_accounts', 'UPDATE pgbench_tellers',
                 'UPDATE pgbench_branches', 'INSERT pgbench_history', 'BEGIN'):
        check(want in n, '(f) %s: a span named %r' % (svc, want))
    expect('(f) %s: no error spans' % svc, [], errs(svc)[:3])
n = names('pgbench-select')
print('note: pgbench-select span names: %s' % sorted(x for x in n if x))
check('SELECT pgbench_accounts' in n, "(f) pgbench -S: spans named 'SELECT pgbench_accounts'")
expect('(f) pgbench -S: no error spans', [], errs('pgbench-select')[:3])
acc = [s for s in sp if s.get('service.name') in ('pgbench-tpcb', 'pgbench-prepared', 'pgbench-select')
       and s.get('name') == 'SELECT pgbench_accounts']
texts = sorted({A(s).get('db.query.text') for s in acc}, key=str)
print('note: SELECT pgbench_accounts texts: %s' % texts)
check(all(t and ('$1' in t or '?' in t) for t in texts), '(f) pgbench statements: $1 kept or literals sanitised', texts)
for s in acc[:1]:
    check(A(s).get('db.collection.name') == 'pgbench_accounts', '(f) db.collection.name pgbench_accounts', show(s))
PY

echo "== (j) connections across threads (pq-client --case threads)"
rc=0
agent pq-threads "$PQC" --case threads "$DATABASE_URL" >"$WORK/threads.out" 2>&1 || rc=$?
expect "(j) pq-client --case threads exits 0" 0 "$rc"
check "(j) spans arrive" wait_service pq-threads 25
pycheck "$SINK_JSONL" "$PG_DB" "$PG_PORT" <<'PY'
db, port = sys.argv[2], int(sys.argv[3])
ss = sorted((s for s in load(sys.argv[1]) if s.get('service.name') == 'pq-threads'), key=lambda s: s.get('start_ns', 0))
want = [('SELECT ? AS handed_over', db), ('SELECT ? AS other_thread', db), ('SELECT ? AS back_on_main', db)]
want += [('SELECT ? AS in_default', db), ('SELECT ? AS in_postgres', 'postgres')] * 2
want += [('SELECT ? AS conn_%d' % i, 'postgres' if i % 2 else db) for _ in range(3) for i in range(6)]
got = [(A(s).get('db.query.text'), A(s).get('db.namespace')) for s in ss]
expect('(j) one span per statement, each with its own connection\'s database', want, got)
expect('(j) every statement returned its row', [1] * len(want), [A(s).get('db.response.returned_rows') for s in ss])
expect('(j) server.address and server.port on every span', [('127.0.0.1', port)] * len(want),
       [(A(s).get('server.address'), A(s).get('server.port')) for s in ss])
check(all(s.get('name') == 'SELECT' and A(s).get('db.system.name') == 'postgresql' for s in ss),
      '(j) named SELECT, db.system.name postgresql', [show(s) for s in ss[:2]])
PY

finish
