#!/usr/bin/env bash
# test-libpq-errors: values PostgreSQL quotes into its error messages stay out of spans unless TRACEAGENT_DB_CAPTURE_PARAMETERS=true (psql and Debian's CPython with psycopg2 against a real PostgreSQL).
#
# A failing statement's status message and exception.message are the
# server's primary message. PostgreSQL quotes the input it rejects there
# (invalid input syntax for type integer: "SECRET"), so by default every
# quoted part becomes '?' (names of relations and constraints too: the
# server quotes them the same way). With the opt-in that records parameters,
# the raw message is recorded.
#   (a) psql -X -f: one failing statement per kind, default settings
#   (b) psycopg2 (a real libpq program in Debian's python3), default settings
#   (c) psql with TRACEAGENT_DB_CAPTURE_PARAMETERS=true: the raw messages
#   (d) a refused connection (TRACEAGENT_DB_CONNECT_SPANS=true): libpq's message, host quoted -> '?'
# psql's own output (which shows the raw messages to its user) is the same
# with and without the agent.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

command -v psql >/dev/null || die "psql is not installed"
DPY=/usr/bin/python3   # Debian's interpreter, where python3-psycopg2 is installed (install-deps)
"$DPY" -c 'import psycopg2' 2>/dev/null || die "python3-psycopg2 is missing (run scripts/install-deps)"

start_sink
pg_start
"${PSQL[@]}" -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL' || die "cannot create the test schema"
CREATE TYPE pe_mood AS ENUM ('ok', 'sad');
CREATE TABLE pe_t (id int PRIMARY KEY, name varchar(5), mood pe_mood, n int CHECK (n > 0));
INSERT INTO pe_t (id) VALUES (42);
SQL

# The statements of (a) and (c), one per line, and the message each must
# leave in its span by default (the raw one is in the opt-in check).
cat >"$WORK/errors.sql" <<'SQL'
SELECT 'SECRET-int'::int;
INSERT INTO pe_t (id, mood) VALUES (1, 'SECRET-enum');
SELECT '99999999999'::int AS secret_range;
SELECT 'SECRET-date'::date;
DO $$BEGIN RAISE EXCEPTION 'card % declined', quote_literal('SECRET-raise'); END$$;
INSERT INTO pe_t (id) VALUES (42);
SELECT * FROM pe_missing;
INSERT INTO pe_t (id, name) VALUES (2, 'SECRET-too-long');
SELECT 1 / 0;
SQL
cat >"$WORK/want.py" <<'PY'
from spanq import expect

SANITIZED = [
    'invalid input syntax for type integer: ?',
    'invalid input value for enum pe_mood: ?',
    'value ? is out of range for type integer',
    'invalid input syntax for type date: ?',
    'card ? declined',
    'duplicate key value violates unique constraint ?',
    'relation ? does not exist',
    'value too long for type character varying(5)',
    'division by zero',
]
RAW = [
    'invalid input syntax for type integer: "SECRET-int"',
    'invalid input value for enum pe_mood: "SECRET-enum"',
    'value "99999999999" is out of range for type integer',
    'invalid input syntax for type date: "SECRET-date"',
    "card 'SECRET-raise' declined",
    'duplicate key value violates unique constraint "pe_t_pkey"',
    'relation "pe_missing" does not exist',
    'value too long for type character varying(5)',
    'division by zero',
]
SECRETS = ['SECRET', '99999999999', 'pe_t_pkey']

def error_spans(spans, service):
    ss = sorted((s for s in spans if s.get('service.name') == service and s.get('status') == 'ERROR'),
                key=lambda s: s.get('start_ns', 0))
    return ss

def messages(s):
    ev = [e for e in s.get('events') or [] if e.get('name') == 'exception']
    em = [(e.get('attributes') or {}).get('exception.message') for e in ev]
    return s.get('status_message'), em

def expect_messages(count_desc, prefix, wants, ss, raw=''):
    """One error span per wanted message, in order, each with it as status
    message and exception.message; False when the count is off."""
    if not expect(count_desc, len(wants), len(ss)):
        return False
    for want, s in zip(wants, ss):
        status, exc = messages(s)
        expect('%s %s: status message%s' % (prefix, want, raw), want, status)
        expect('%s %s: exception.message%s' % (prefix, want, raw), [want], exc)
    return True
PY
NSTMT=$(grep -c . "$WORK/errors.sql")

# run_psql LABEL [agent SERVICE [VAR=value...]]: psql -X -f errors.sql (every
# statement runs: no ON_ERROR_STOP); output in $WORK/LABEL.out, status in $WORK/LABEL.rc.
run_psql() {
	local label=$1 rc=0
	shift
	if [[ ${1:-} == agent ]]; then
		shift
		agent "$@" "${PSQL[@]}" -f "$WORK/errors.sql" >"$WORK/$label.out" 2>&1 || rc=$?
	else
		"${PSQL[@]}" -f "$WORK/errors.sql" >"$WORK/$label.out" 2>&1 || rc=$?
	fi
	echo "$rc" >"$WORK/$label.rc"
}

echo "== (a) psql, default settings"
run_psql plain
check "psql shows the raw messages to its user" grep -q 'invalid input syntax for type integer: "SECRET-int"' "$WORK/plain.out"
run_psql default agent psql-errors
expect "(a) psql exit status as without the agent" "$(cat "$WORK/plain.rc")" "$(cat "$WORK/default.rc")"
check "(a) psql output identical with and without the agent" diff -u "$WORK/plain.out" "$WORK/default.out"
check "(a) $NSTMT error spans arrive" wait_spans "$SINK_JSONL" "$NSTMT" "s.get('service.name') == 'psql-errors' and s.get('status') == 'ERROR'" 20

echo "== (b) psycopg2, default settings"
cat >"$WORK/pg2.py" <<'PY'
import os, psycopg2
conn = psycopg2.connect(os.environ['DATABASE_URL'])
conn.autocommit = True
cur = conn.cursor()
for q, args in (("SELECT %s::int", ('SECRET-pg2',)),
                ("INSERT INTO pe_t (id, n) VALUES (%s, %s)", (3, -7))):
    try:
        cur.execute(q, args)
        print('no error?')
    except psycopg2.Error as e:
        print('%s %s' % (e.pgcode, e.pgerror.splitlines()[0]))
conn.close()
PY
export DATABASE_URL
plain=$("$DPY" "$WORK/pg2.py" 2>&1) || true
expect "(b) psycopg2 without the agent: the server's messages" \
	"$(printf '%s\n' '22P02 ERROR:  invalid input syntax for type integer: "SECRET-pg2"' \
		'23514 ERROR:  new row for relation "pe_t" violates check constraint "pe_t_n_check"')" "$plain"
out=$(agent pg2-errors "$DPY" "$WORK/pg2.py" 2>&1) || true
expect "(b) psycopg2 sees the same messages under the agent" "$plain" "$out"
check "(b) 2 error spans arrive" wait_spans "$SINK_JSONL" 2 "s.get('service.name') == 'pg2-errors' and s.get('status') == 'ERROR'" 20

echo "== (c) psql, TRACEAGENT_DB_CAPTURE_PARAMETERS=true"
run_psql optin agent psql-optin TRACEAGENT_DB_CAPTURE_PARAMETERS=true
check "(c) psql output identical with and without the agent" diff -u "$WORK/plain.out" "$WORK/optin.out"
check "(c) $NSTMT error spans arrive" wait_spans "$SINK_JSONL" "$NSTMT" "s.get('service.name') == 'psql-optin' and s.get('status') == 'ERROR'" 20

echo "== (d) a refused connection"
DEAD=$(free_port)
rc=0
agent pq-refused TRACEAGENT_DB_CONNECT_SPANS=true psql -X -h 127.0.0.1 -p "$DEAD" -U postgres -c 'SELECT 1' >/dev/null 2>&1 || rc=$?
expect "(d) psql fails to connect (exit 2)" 2 "$rc"
check "(d) the connect span arrives" wait_spans "$SINK_JSONL" 1 "s.get('service.name') == 'pq-refused'" 20

pycheck "$SINK_JSONL" "$WORK" <<'PY'
import json
sys.path.insert(0, sys.argv[2])
from want import *
spans = load(sys.argv[1])

expect_messages('(a) one error span per statement', '(a)', SANITIZED, error_spans(spans, 'psql-errors'))
for s in (x for x in spans if x.get('service.name') == 'psql-errors'):
    dump = json.dumps(s)
    check(not any(x in dump for x in SECRETS), '(a) %s: no value anywhere in the span' % s.get('name'),
          [x for x in SECRETS if x in dump])

ss = error_spans(spans, 'pg2-errors')
want2 = ['invalid input syntax for type integer: ?', 'new row for relation ? violates check constraint ?']
if expect_messages('(b) psycopg2: two error spans', '(b) psycopg2', want2, ss):
    for want, s in zip(want2, ss):
        check('SECRET' not in json.dumps(s), '(b) psycopg2 %s: no value anywhere in the span' % want)
expect('(b) psycopg2: error.type is the SQLSTATE', ['22P02', '23514'], [A(s).get('error.type') for s in ss])

expect_messages('(c) opt-in: one error span per statement', '(c) opt-in', RAW, error_spans(spans, 'psql-optin'),
                ' is the raw message')

ss = [s for s in spans if s.get('service.name') == 'pq-refused']
if expect('(d) one connect span', ['connect'], [s.get('name') for s in ss]):
    m = ss[0].get('status_message') or ''
    expect('(d) status ERROR', 'ERROR', ss[0].get('status'))
    check(m.startswith('connection to server at ?, port ') and '"' not in m,
          '(d) libpq\'s message with the quoted host replaced', m)
PY

finish
