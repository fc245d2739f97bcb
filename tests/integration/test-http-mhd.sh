#!/usr/bin/env bash
# test-http-mhd: a libmicrohttpd server (C) under the agent: SERVER spans for 200/404/500 and for pipelined requests, in both threading modes.
#
# Acceptance 4 of the HTTP hooks. build/tests/mhd-server (tests/mhd-server.c)
# runs once thread-per-connection and once with a thread pool (epoll).
# Pipelined requests are sent in a single write with a python3 socket.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

need_helper mhd-server -lmicrohttpd
MHD=build/tests/mhd-server
start_sink

# pipeline PORT TAG [N]: N (default 3) requests, cycling /ok /missing /fail, in one send();
# prints the local port, then the status codes read back.
cat >"$WORK/pipeline.py" <<'PY'
import re, socket, sys
from testhttp import recv_all
port, tag = int(sys.argv[1]), sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 3
reqs = b''
for i in range(n):
    path = ('/ok', '/missing', '/fail')[i % 3]
    last = i == n - 1
    reqs += (f'GET {path}?pipe={tag}{i:02d} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: pipeline/1\r\n'
             + ('Connection: close\r\n' if last else '') + '\r\n').encode()
s = socket.create_connection(('127.0.0.1', port), timeout=10)
print(s.getsockname()[1])
s.sendall(reqs)
data = recv_all(s)
s.close()
# Parse the responses in order, using Content-Length.
codes, pos = [], 0
while pos < len(data):
    m = re.match(rb'HTTP/1\.1 (\d{3})[^\r\n]*\r\n', data[pos:])
    if not m:
        break
    head_end = data.index(b'\r\n\r\n', pos) + 4
    head = data[pos:head_end].decode('latin-1')
    cl = re.search(r'(?im)^content-length:\s*(\d+)', head)
    codes.append(m.group(1).decode())
    pos = head_end + (int(cl.group(1)) if cl else 0)
print(' '.join(codes))
PY

for MODE in per-connection pool; do
	echo "== mode $MODE"
	: >"$SINK_JSONL"
	start_agent_bg "mhd-$MODE" "mhd-$MODE" "$MHD" --mode "$MODE" --port 0
	MHD_PID=$BG_PID
	wait_line "mhd-$MODE" "$MHD_PID" 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' || die "mhd-server ($MODE) did not start"
	PORT=$LINE
	BASE=http://127.0.0.1:$PORT
	C=(curl -sS --max-time 10 -A mhd-test/1.0)

	out=$("${C[@]}" -w ' %{http_code} %{local_port}' -H 'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' "$BASE/ok?q=ok") || true
	expect "/ok -> 200 ok" "ok 200" "${out% *}"
	ok_port=${out##* }
	out=$("${C[@]}" -w ' %{http_code}' "$BASE/missing?q=missing") || true
	expect "/missing -> 404" "missing 404" "$out"
	out=$("${C[@]}" -w ' %{http_code} %{local_port}' "$BASE/fail?q=fail") || true
	expect "/fail -> 500" "fail 500" "${out% *}"
	fail_port=${out##* }
	out=$("$PY" "$WORK/pipeline.py" "$PORT" "$MODE") || true
	pipe_port=${out%%$'\n'*}
	expect "pipelined: three answers, in order" "200 404 500" "${out#*$'\n'}"
	out=$("$PY" "$WORK/pipeline.py" "$PORT" "L$MODE" 12) || true
	expect "12 pipelined requests: twelve answers, in order" "200 404 500 200 404 500 200 404 500 200 404 500" "${out#*$'\n'}"
	# HTTP/1.0 without a Host header: server.address/port from the local socket address.
	out=$(PYTHONPATH=$WORK "$PY" -c '
import socket, sys
from testhttp import recv_all
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"GET /ok?q=nohost HTTP/1.0\r\n\r\n")
d = recv_all(s)
print(d.split(b"\r\n")[0].decode())
' "$PORT") || true
	expect "HTTP/1.0 without Host: answered" "HTTP/1.1 200 OK" "$out"
	# Load: 5 curl processes at once, 10 keep-alive requests each.
	LOAD_PIDS=()
	for c in 1 2 3 4 5; do
		urls=()
		for i in 0 1 2 3 4 5 6 7 8 9; do urls+=("$BASE/ok?load=$c.$i" -o /dev/null); done
		"${C[@]}" -w '%{http_code}\n' "${urls[@]}" >"$WORK/load.$c" &
		LOAD_PIDS+=("$!")
	done
	for p in "${LOAD_PIDS[@]}"; do wait "$p" || true; done
	expect "load: 50 answers 200" 50 "$(cat "$WORK"/load.* | grep -c '^200$' || true)"

	check "69 SERVER spans exported within 15 s" wait_spans "$SINK_JSONL" 69 "s['kind'] == 'SERVER'"
	stop_pid "$MHD_PID" 10
	expect "mhd-server exits 0 on SIGTERM under the agent" 0 "$STOP_RC"

	pycheck "$SINK_JSONL" "$PORT" "$MODE" "$ok_port" "$fail_port" "$pipe_port" <<'PY'
path, port, mode, ok_port, fail_port, pipe_port = sys.argv[1:]
port, ok_port, fail_port, pipe_port = int(port), int(ok_port), int(fail_port), int(pipe_port)
spans = [s for s in load(path) if s.get('kind') == 'SERVER']
m = mode + ': '
check(all(s.get('service.name') == 'mhd-' + mode for s in spans), m + 'service.name')
def q(v):
    return [s for s in spans if A(s).get('url.query') == v]

s = q('q=ok')
if check(len(s) == 1, m + '/ok: one SERVER span', [show(x) for x in s]):
    s = s[0]; a = A(s)
    expect(m + '/ok: trace id from traceparent', '0af7651916cd43dd8448eb211c80319c', s['trace_id'])
    expect(m + '/ok: parent from traceparent', 'b7ad6b7169203331', s['parent_span_id'])
    expect(m + '/ok: name', 'GET', s['name'])
    expect(m + '/ok: status', 'UNSET', s['status'])
    want = {'http.request.method': 'GET', 'url.path': '/ok', 'url.query': 'q=ok', 'url.scheme': 'http',
            'server.address': '127.0.0.1', 'server.port': port, 'client.address': '127.0.0.1', 'client.port': ok_port,
            'network.protocol.version': '1.1', 'user_agent.original': 'mhd-test/1.0', 'http.response.status_code': 200}
    expect(m + '/ok: attributes', want, {k: a.get(k) for k in want})
    check('error.type' not in a, m + '/ok: no error.type')

s = q('q=missing')
if check(len(s) == 1, m + '/missing: one SERVER span', [show(x) for x in s]):
    s = s[0]
    expect(m + '/missing: status code 404', 404, A(s).get('http.response.status_code'))
    expect(m + '/missing: status UNSET', 'UNSET', s['status'])
    check('error.type' not in A(s), m + '/missing: no error.type')
    expect(m + '/missing: new trace', '', s['parent_span_id'])

s = q('q=fail')
if check(len(s) == 1, m + '/fail: one SERVER span', [show(x) for x in s]):
    s = s[0]
    expect(m + '/fail: status code 500', 500, A(s).get('http.response.status_code'))
    expect(m + '/fail: status ERROR', 'ERROR', s['status'])
    expect(m + '/fail: error.type "500"', '500', A(s).get('error.type'))
    expect(m + '/fail: client.port', fail_port, A(s).get('client.port'))

pipe = sorted([s for s in spans if A(s).get('url.query', '').startswith('pipe=' + mode)], key=lambda s: (s['start_ns'], s['end_ns']))
if check(len(pipe) == 3, m + 'pipelined: three SERVER spans', [show(x) for x in pipe]):
    expect(m + 'pipelined: spans in request order', ['pipe=%s%02d' % (mode, i) for i in range(3)], [A(s)['url.query'] for s in pipe])
    expect(m + 'pipelined: paths', ['/ok', '/missing', '/fail'], [A(s).get('url.path') for s in pipe])
    expect(m + 'pipelined: status codes', [200, 404, 500], [A(s).get('http.response.status_code') for s in pipe])
    expect(m + 'pipelined: statuses', ['UNSET', 'UNSET', 'ERROR'], [s['status'] for s in pipe])
    expect(m + 'pipelined: one connection', [pipe_port] * 3, [A(s).get('client.port') for s in pipe])
    expect(m + 'pipelined: user agent', ['pipeline/1'] * 3, [A(s).get('user_agent.original') for s in pipe])
    check(len({s['trace_id'] for s in pipe}) == 3, m + 'pipelined: three traces')
    check(pipe[0]['end_ns'] <= pipe[1]['end_ns'] <= pipe[2]['end_ns'], m + 'pipelined: spans end in order')

long = sorted([s for s in spans if A(s).get('url.query', '').startswith('pipe=L' + mode)], key=lambda s: (s['start_ns'], s['end_ns']))
check(len(long) == 12, m + '12 pipelined: twelve SERVER spans', '%d: %s' % (len(long), [A(x).get('url.query') for x in long]))
want = {'pipe=L%s%02d' % (mode, i): (('/ok', '/missing', '/fail')[i % 3], (200, 404, 500)[i % 3]) for i in range(12)}
got = {A(s).get('url.query'): (A(s).get('url.path'), A(s).get('http.response.status_code')) for s in long}
expect(m + '12 pipelined: each span has its own request\'s path and status code', {k: v for k, v in want.items() if k in got}, got)
expect(m + '12 pipelined: spans in request order', sorted(got), [A(s).get('url.query') for s in long])

s = q('q=nohost')
if check(len(s) == 1, m + 'HTTP/1.0 without Host: one SERVER span', [show(x) for x in s]):
    a = A(s[0])
    expect(m + 'no Host: server.address/port from the local socket, version 1.0',
           ('127.0.0.1', port, '1.0', 200),
           (a.get('server.address'), a.get('server.port'), a.get('network.protocol.version'), a.get('http.response.status_code')))
    check('user_agent.original' not in a, m + 'no User-Agent header: no user_agent.original', a.get('user_agent.original'))

under_load = [s for s in spans if A(s).get('url.query', '').startswith('load=')]
expect(m + 'load: 50 spans, one per request', sorted('load=%d.%d' % (c, i) for c in range(1, 6) for i in range(10)),
       sorted(A(s).get('url.query') for s in under_load))
check(len({A(s).get('client.port') for s in under_load}) == 5, m + 'load: five connections (client ports)')
check(len({s['span_id'] for s in under_load}) == len(under_load), m + 'load: distinct span ids')
expect(m + '69 SERVER spans in all', 69, len(spans))
expect(m + 'no CLIENT spans (the server makes no calls)', [], [show(s) for s in load(path) if s.get('kind') != 'SERVER'])
PY
done

finish
