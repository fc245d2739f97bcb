#!/usr/bin/env bash
# test-libpq-nesting: SQL run while a request is handled is that request's child: Debian's CPython serving HTTP with psycopg2 (libpq) under the agent.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

# Debian's interpreter, where python3-psycopg2 is installed (install-deps).
DPY=/usr/bin/python3
"$DPY" -c 'import psycopg2' 2>/dev/null || die "python3-psycopg2 is missing (run scripts/install-deps)"

start_sink
pg_start

cat >"$WORK/app.py" <<'PY'
import http.server, os, psycopg2
from testhttp import Handler, listen
conn = psycopg2.connect(os.environ["DATABASE_URL"])
conn.autocommit = True
class H(Handler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        with conn.cursor() as cur:
            cur.execute("SELECT %s::int + 1", (41,))
            n = cur.fetchone()[0]
            if self.path == "/two":
                cur.execute("SELECT count(*) FROM pg_catalog.pg_class WHERE relname = 'x'")
        self.reply(200, str(n).encode())
listen(H, http.server.HTTPServer).serve_forever()
PY
start_listening app agent py-app env DATABASE_URL="$DATABASE_URL" "$DPY" "$WORK/app.py"
port=$PORT

expect "the app answers" "42" "$(curl -s -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' http://127.0.0.1:$port/one)"
expect "the app answers again" "42" "$(curl -s http://127.0.0.1:$port/two)"
wait_spans "$SINK_JSONL" 5 "True" || true

pycheck "$SINK_JSONL" <<'PY'
spans = [s for s in load(sys.argv[1]) if s.get('service.name') == 'py-app']
servers = {s['attributes'].get('url.path'): s for s in spans if s['kind'] == 'SERVER'}
dbs = [s for s in spans if A(s).get('db.system.name') == 'postgresql']
check('/one' in servers and '/two' in servers, "a SERVER span per request", sorted(servers))
one, two = servers.get('/one'), servers.get('/two')
if one and two:
    c1 = [s for s in dbs if s['parent_span_id'] == one['span_id']]
    c2 = [s for s in dbs if s['parent_span_id'] == two['span_id']]
    expect("one statement under /one", 1, len(c1))
    expect("two statements under /two", 2, len(c2))
    check(all(s['trace_id'] == '4bf92f3577b34da6a3ce929d0e0e4736' for s in c1), "/one's SQL is in the caller's trace")
    check(all(s['trace_id'] == two['trace_id'] for s in c2), "/two's SQL is in /two's trace")
    check(all(s['kind'] == 'CLIENT' for s in c1 + c2), "statement spans are CLIENT")
    if c1:
        expect("the statement's summary", 'SELECT', A(c1[0]).get('db.query.summary'))
PY
finish
