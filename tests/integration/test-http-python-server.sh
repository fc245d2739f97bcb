#!/usr/bin/env bash
# test-http-python-server: `python3 -m http.server` under the agent gets one correct SERVER span per request.
#
# Acceptance 1 of the HTTP hooks: W3C parent from the incoming traceparent,
# the stable HTTP semantic-convention attributes, one span per request on a
# keep-alive connection, 404 not an error, 5xx an error, route templates,
# captured headers, HTTP/1.0, invalid traceparents starting new traces.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

start_sink

# The site: one small file.
mkdir -p "$WORK/site"
printf 'hello from the site\n' >"$WORK/site/hello.txt"

# python -m http.server ($WORK/http_server.py: SIGTERM raises KeyboardInterrupt,
# so it exits through sys.exit (atexit, the agent's flush) rather than dying).
start_agent_bg server python-http \
	TRACEAGENT_HTTP_ROUTES='/files/{name},/api/tasks/{id}' \
	OTEL_INSTRUMENTATION_HTTP_SERVER_CAPTURE_REQUEST_HEADERS='X-Test-Header,Accept' \
	OTEL_INSTRUMENTATION_HTTP_SERVER_CAPTURE_RESPONSE_HEADERS='Content-Type' \
	"$PY" -u "$WORK/http_server.py" --bind 127.0.0.1 --directory "$WORK/site" --protocol HTTP/1.1 0
SERVER_PID=$BG_PID
wait_line server "$SERVER_PID" 's/^Serving HTTP on 127\.0\.0\.1 port \([0-9][0-9]*\) .*/\1/p' || die "http.server did not start"
PORT=$LINE
BASE=http://127.0.0.1:$PORT

T1=0af7651916cd43dd8448eb211c80319c
P1=b7ad6b7169203331
BAD_UPPER_T=4BF92F3577B34DA6A3CE929D0E0E4736
BAD_VERSION_T=5b8efff798038103d269b633813fc60c
C="curl -sS --max-time 10"

echo "== requests"
# r1: traceparent, captured headers, no query.
r1=$($C -o "$WORK/r1.body" -w '%{http_code} %{local_port}' -H "traceparent: 00-$T1-$P1-01" \
	-H 'X-Test-Header: v1' -H 'Accept: text/plain' "$BASE/hello.txt") || true
expect "r1: 200 under the agent" 200 "${r1% *}"
check "r1: body served unchanged" cmp -s "$WORK/site/hello.txt" "$WORK/r1.body"
# r2: a query string.
r2=$($C -o /dev/null -w '%{http_code} %{local_port}' "$BASE/hello.txt?r=2&b=two") || true
expect "r2: 200" 200 "${r2% *}"
# r3: three requests on one keep-alive connection.
ka=$($C -o /dev/null -o /dev/null -o /dev/null -w '%{num_connects}:%{http_code}:%{local_port} ' \
	"$BASE/hello.txt?r=3a" "$BASE/hello.txt?r=3b" "$BASE/hello.txt?r=3c") || true
ka_conns=$(sed 's/:[0-9]*:[0-9]* / /g' <<<"$ka")
expect "r3: three requests over one connection" "1 0 0 " "$ka_conns"
expect "r3: three 200s" "200 200 200" "$(sed -E 's/[0-9]+:([0-9]+):[0-9]+ /\1 /g; s/ $//' <<<"$ka")"
ka_port=$(sed -E 's/^[0-9]+:[0-9]+:([0-9]+) .*/\1/' <<<"$ka")
# r4: 404.
r4=$($C -o /dev/null -w '%{http_code} %{local_port}' "$BASE/nope.txt?r=4") || true
expect "r4: 404" 404 "${r4% *}"
# r5: a route template matches (python answers 404: there is no such file).
r5=$($C -o /dev/null -w '%{http_code} %{local_port}' "$BASE/api/tasks/42?r=5") || true
expect "r5: 404" 404 "${r5% *}"
# r6: invalid traceparents (uppercase hex; version ff) start new traces.
r6a=$($C -o /dev/null -w '%{http_code}' -H "traceparent: 00-$BAD_UPPER_T-00F067AA0BA902B7-01" "$BASE/hello.txt?r=6a") || true
r6b=$($C -o /dev/null -w '%{http_code}' -H "traceparent: ff-$BAD_VERSION_T-00f067aa0ba902b7-01" "$BASE/hello.txt?r=6b") || true
expect "r6: 200 200" "200 200" "$r6a $r6b"
# r7: the Host header gives server.address and server.port.
r7=$($C -o /dev/null -w '%{http_code}' -H 'Host: example.test:8080' "$BASE/hello.txt?r=7") || true
expect "r7: 200" 200 "$r7"
# r8: HTTP/1.0.
r8=$($C --http1.0 -o /dev/null -w '%{http_code}' "$BASE/hello.txt?r=8") || true
expect "r8: 200" 200 "$r8"
# r9: HEAD.
r9=$($C -I -o /dev/null -w '%{http_code}' "$BASE/hello.txt?r=9") || true
expect "r9: HEAD 200" 200 "$r9"
# r10: POST, which SimpleHTTPRequestHandler answers 501: a 5xx.
r10=$($C -o /dev/null -w '%{http_code}' --data-binary 'x=1' "$BASE/hello.txt?r=10") || true
expect "r10: POST -> 501" 501 "$r10"
# r11: QUERY (one method list: a connection starting with it is followed too),
# which SimpleHTTPRequestHandler answers 501.
r11=$($C -o /dev/null -w '%{http_code}' -X QUERY --data-binary 'q=1' "$BASE/hello.txt?r=11") || true
expect "r11: QUERY -> 501" 501 "$r11"
EXPECTED=14

echo "== spans"
check "14 SERVER spans exported within 15 s" wait_spans "$SINK_JSONL" $EXPECTED "s['kind'] == 'SERVER'"
stop_pid "$SERVER_PID" 10
expect "http.server exits 0 on SIGTERM under the agent" 0 "$STOP_RC"

pycheck "$SINK_JSONL" "$PORT" "$T1" "$P1" "${r1#* }" "${r2#* }" "$ka_port" "$BAD_UPPER_T" "$BAD_VERSION_T" <<'PY'
import json
path, port, T1, P1, r1_port, r2_port, ka_port, bad_upper, bad_version = sys.argv[1:]
port, r1_port, r2_port, ka_port = int(port), int(r1_port), int(r2_port), int(ka_port)
spans = [s for s in load(path) if s.get('kind') == 'SERVER']
def by_query(q):
    m = [s for s in spans if A(s).get('url.query', '').split('&')[0] == 'r=' + q]
    return m
def one(desc, found):
    if check(len(found) == 1, desc + ': exactly one SERVER span', '%d found: %s' % (len(found), [show(s) for s in found])):
        return found[0]
    return None

expect('no span from anything but the HTTP hooks', [], [show(s) for s in load(path) if not http(s)])
check(all(s.get('service.name') == 'python-http' for s in spans), 'service.name is python-http')

# r1
s = one('r1', [s for s in spans if s['trace_id'] == T1])
if s:
    a = A(s)
    expect('r1: parent_span_id is the traceparent parent-id', P1, s['parent_span_id'])
    check(HEX16.match(s['span_id']) and s['span_id'] != P1, 'r1: a new span id', s['span_id'])
    expect('r1: name', 'GET', s['name'])
    expect('r1: status UNSET', 'UNSET', s['status'])
    expect('r1: http.request.method', 'GET', a.get('http.request.method'))
    expect('r1: url.path', '/hello.txt', a.get('url.path'))
    check('url.query' not in a, 'r1: no url.query without a query', a.get('url.query'))
    expect('r1: url.scheme', 'http', a.get('url.scheme'))
    expect('r1: server.address (Host header)', '127.0.0.1', a.get('server.address'))
    expect('r1: server.port (Host header, int)', port, a.get('server.port'))
    expect('r1: client.address', '127.0.0.1', a.get('client.address'))
    expect("r1: client.port is curl's local port", r1_port, a.get('client.port'))
    expect('r1: network.protocol.version', '1.1', a.get('network.protocol.version'))
    check(str(a.get('user_agent.original', '')).startswith('curl/'), 'r1: user_agent.original', a.get('user_agent.original'))
    expect('r1: http.response.status_code (int)', 200, a.get('http.response.status_code'))
    check('error.type' not in a, 'r1: no error.type', a.get('error.type'))
    check('http.route' not in a, 'r1: no http.route when no template matches', a.get('http.route'))
    expect('r1: captured request header X-Test-Header', ['v1'], a.get('http.request.header.x-test-header'))
    expect('r1: captured request header Accept', ['text/plain'], a.get('http.request.header.accept'))
    expect('r1: captured response header Content-Type', ['text/plain'], a.get('http.response.header.content-type'))
    check(not any(k.startswith('http.request.header.') and k not in ('http.request.header.x-test-header', 'http.request.header.accept') for k in a),
          'r1: no request header captured that was not asked for', sorted(a))
    check(s.get('end_ns', 0) >= s.get('start_ns', 1) > 0, 'r1: start_ns <= end_ns')

# r2
s = one('r2', by_query('2'))
if s:
    a = A(s)
    expect('r2: url.path', '/hello.txt', a.get('url.path'))
    expect('r2: url.query', 'r=2&b=two', a.get('url.query'))
    expect('r2: no incoming traceparent -> no parent', '', s['parent_span_id'])
    check(HEX32.match(s['trace_id']) and s['trace_id'] != T1, 'r2: a new trace id', s['trace_id'])
    expect('r2: client.port', r2_port, a.get('client.port'))

# r3: keep-alive
ka = [one('r3' + x, by_query('3' + x)) for x in 'abc']
if all(ka):
    expect('r3: keep-alive requests all from the one client port', [ka_port] * 3, [A(s).get('client.port') for s in ka])
    expect('r3: status codes', [200] * 3, [A(s).get('http.response.status_code') for s in ka])
    check(len({s['trace_id'] for s in ka}) == 3, 'r3: three traces (no context leaks from one request to the next)')
    check(len({s['span_id'] for s in ka}) == 3, 'r3: three span ids')
    expect('r3: all roots', ['', '', ''], [s['parent_span_id'] for s in ka])
    check(ka[0]['start_ns'] <= ka[1]['start_ns'] <= ka[2]['start_ns'], 'r3: spans start in request order')
    check(ka[0]['end_ns'] <= ka[1]['start_ns'] and ka[1]['end_ns'] <= ka[2]['start_ns'],
          'r3: each span ends before the next request on the connection starts')

# r4: 404
s = one('r4', by_query('4'))
if s:
    a = A(s)
    expect('r4: 404 status code', 404, a.get('http.response.status_code'))
    expect('r4: 404 is not an error (status UNSET)', 'UNSET', s['status'])
    check('error.type' not in a, 'r4: no error.type for 404', a.get('error.type'))
    expect('r4: name without a route', 'GET', s['name'])

# r5: route template
s = one('r5', by_query('5'))
if s:
    a = A(s)
    expect('r5: name is "{method} {http.route}"', 'GET /api/tasks/{id}', s['name'])
    expect('r5: http.route', '/api/tasks/{id}', a.get('http.route'))
    expect('r5: url.path is the real path', '/api/tasks/42', a.get('url.path'))

# r6: invalid traceparents
for q, bad, what in (('6a', bad_upper, 'uppercase hex'), ('6b', bad_version, 'version ff')):
    s = one('r6 ' + what, by_query(q))
    if s:
        check(s['trace_id'] not in (bad.lower(), bad), 'r6: invalid traceparent (%s) -> a new trace id' % what, s['trace_id'])
        check(HEX32.match(s['trace_id']) is not None, 'r6: the new trace id is valid hex (%s)' % what)
        expect('r6: invalid traceparent (%s) -> no parent' % what, '', s['parent_span_id'])

# r7: Host header
s = one('r7', by_query('7'))
if s:
    expect('r7: server.address from Host', 'example.test', A(s).get('server.address'))
    expect('r7: server.port from Host', 8080, A(s).get('server.port'))

# r8: HTTP/1.0
s = one('r8', by_query('8'))
if s:
    expect('r8: network.protocol.version', '1.0', A(s).get('network.protocol.version'))
    expect('r8: status code', 200, A(s).get('http.response.status_code'))

# r9: HEAD
s = one('r9', by_query('9'))
if s:
    expect('r9: name', 'HEAD', s['name'])
    expect('r9: method', 'HEAD', A(s).get('http.request.method'))
    expect('r9: status code', 200, A(s).get('http.response.status_code'))

# r10: 501
s = one('r10', by_query('10'))
if s:
    a = A(s)
    expect('r10: name', 'POST', s['name'])
    expect('r10: status code', 501, a.get('http.response.status_code'))
    expect('r10: 5xx -> status ERROR', 'ERROR', s['status'])
    expect('r10: error.type is the status code as a string', '501', a.get('error.type'))

# r11: QUERY, the first request on its connection
s = one('r11', by_query('11'))
if s:
    expect('r11: name', 'QUERY', s['name'])
    expect('r11: method', 'QUERY', A(s).get('http.request.method'))
    check('http.request.method_original' not in A(s), 'r11: a known method has no method_original')
    expect('r11: status code', 501, A(s).get('http.response.status_code'))

expect('no other SERVER spans', 14, len(spans))
PY

finish
