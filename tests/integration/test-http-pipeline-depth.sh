#!/usr/bin/env bash
# test-http-pipeline-depth: requests pipelined deeper than the agent follows (64 in flight) are answered, get no span, are counted as dropped, and never shift a response onto another request's span.
#
# Every request is either a SERVER span whose status is the one its path
# asked for, or counted in "dropped" of the exit summary (OTEL_LOG_LEVEL=debug).
# python3 -m http.server gets 100 requests in one send. A node server reads
# eagerly while responses are pending: 100 requests, the second held until
# the last one arrives, and 10 more sent once the first was answered, so
# requests are read behind untracked ones while the FIFO has room again (the
# old agent gave a later request's span an earlier response); then the same
# with a HEAD among the untracked requests (its response can't be framed:
# the agent gives up on the connection, dropping, and counting, the rest).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

start_sink
export OTEL_LOG_LEVEL=debug

# summary NAME: the numbers of the agent's exit summary in $WORK/NAME.err, "started exported dropped".
summary() {
	sed -n 's/.*spans started \([0-9]*\), unsampled [0-9]*, exported \([0-9]*\), dropped \([0-9]*\),.*/\1 \2 \3/p' \
		"$WORK/$1.err" | tail -n1
}

echo "== python3 -m http.server: 100 pipelined requests in one send"
mkdir -p "$WORK/site"
printf 'hello\n' >"$WORK/site/hello.txt"
mkdir -p "$WORK/site/sub"   # /sub is answered 301 (to /sub/); errors would close the connection
start_agent_bg python pipe-python "$PY" -u "$WORK/http_server.py" --bind 127.0.0.1 --directory "$WORK/site" --protocol HTTP/1.1 0
PYSRV=$BG_PID
wait_line python "$PYSRV" 's/^Serving HTTP on 127\.0\.0\.1 port \([0-9][0-9]*\) .*/\1/p' || die "http.server did not start"
out=$(PYTHONPATH=$WORK "$PY" - "$LINE" <<'PY'
import re, socket, sys
from testhttp import recv_all
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=20)
paths = ['/hello.txt' if i % 3 else '/sub' for i in range(100)]
s.sendall(b''.join(b'GET %s?i=%d HTTP/1.1\r\nHost: h\r\n%s\r\n' % (p.encode(), i, b'Connection: close\r\n' if i == 99 else b'')
                   for i, p in enumerate(paths)))
data = recv_all(s)
codes = re.findall(rb'HTTP/1\.[01] (\d{3})', data)
print(' '.join(c.decode() for c in codes) == ' '.join('200' if i % 3 else '301' for i in range(100)))
PY
) || true
expect "100 answers, in order, with their statuses" True "$out"
stop_pid "$PYSRV" 10
expect "http.server exits 0" 0 "$STOP_RC"
read -r py_started py_exported py_dropped <<<"$(summary python)" || true

echo "== node: untracked requests behind a full FIFO, then more requests"
cat >"$WORK/server.js" <<'JS'
// /CODE/... answers CODE; /hold is answered when /release arrives.
const http = require('http');
let held = null;
const srv = http.createServer((req, res) => {
	const m = /^\/(\d{3})\//.exec(req.url);
	const answer = () => { res.writeHead(m ? +m[1] : 200, { 'Content-Length': 2 }); res.end('ok'); };
	if (req.url.startsWith('/hold')) { held = answer; return; }
	answer();
	if (req.url.startsWith('/release') && held) { const h = held; held = null; h(); }
});
process.on('SIGTERM', () => process.exit(0));
srv.listen(0, '127.0.0.1', () => console.log('listening on 127.0.0.1:' + srv.address().port));
JS
# client.py PORT TAG N1 N2 HEAD: N1 requests in one send (the second is
# /hold), the first answer read, then N2 more (the last is /release); request
# HEAD (-1: none) is a HEAD. Prints whether all the answers came, in order.
cat >"$WORK/client.py" <<'PY'
import re, socket, sys
port, tag, n1, n2, head = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
CODES = (200, 201, 202, 203, 226, 404, 418, 451, 500, 503)
def path(i):
    return '/hold' if i == 1 else '/release' if i == n1 + n2 - 1 else '/%d/x' % CODES[i % len(CODES)]
def code(i):
    return 200 if i in (1, n1 + n2 - 1) else CODES[i % len(CODES)]
def req(i):
    return ('%s %s?t=%s&i=%d HTTP/1.1\r\nHost: h\r\n\r\n' % ('HEAD' if i == head else 'GET', path(i), tag, i)).encode()
s = socket.create_connection(('127.0.0.1', int(port)), timeout=20)
buf = b''
def response(i):
    global buf
    while b'\r\n\r\n' not in buf:
        d = s.recv(65536)
        if not d:
            raise SystemExit('closed early')
        buf += d
    h, _, rest = buf.partition(b'\r\n\r\n')
    n = 0 if i == head else int(re.search(rb'(?i)content-length:\s*(\d+)', h).group(1))
    while len(rest) < n:
        rest += s.recv(65536)
    buf = rest[n:]
    return int(h.split(b' ')[1])
s.sendall(b''.join(req(i) for i in range(n1)))
got = [response(0)]
s.sendall(b''.join(req(i) for i in range(n1, n1 + n2)))
got += [response(i) for i in range(1, n1 + n2)]
print(got == [code(i) for i in range(n1 + n2)])
PY
start_agent_bg node pipe-node node "$WORK/server.js"
NODE=$BG_PID
wait_line node "$NODE" 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' || die "node did not start"
expect "110 answers, in order, with their statuses" True "$("$PY" "$WORK/client.py" "$LINE" a 100 10 -1 || true)"
expect "with a HEAD among the untracked: 110 answers, in order" True "$("$PY" "$WORK/client.py" "$LINE" b 100 10 70 || true)"
stop_pid "$NODE" 10
expect "node exits 0" 0 "$STOP_RC"
read -r node_started node_exported node_dropped <<<"$(summary node)" || true

pycheck "$SINK_JSONL" "${py_started:-}" "${py_exported:-}" "${py_dropped:-}" \
	"${node_started:-}" "${node_exported:-}" "${node_dropped:-}" <<'PY'
import re
path = sys.argv[1]
py_started, py_exported, py_dropped, node_started, node_exported, node_dropped = \
    [int(v) if v else None for v in sys.argv[2:8]]
spans = [s for s in load(path) if s['kind'] == 'SERVER']

def q(s, k):
    m = re.search(r'(?:^|&)%s=([^&]*)' % k, A(s).get('url.query', ''))
    return m and m.group(1)

# python: /hello.txt is 200, /sub 301
py = [s for s in spans if s.get('service.name') == 'pipe-python']
wrong = [show(s) for s in py if A(s).get('http.response.status_code') != (301 if A(s)['url.path'] == '/sub' else 200)]
expect('python: every span has its own request\'s status', [], wrong)
expect('python: one span per request at most', len(py), len(set(q(s, 'i') for s in py)))
expect('python: every span exported', py_exported, len(py))
check(py_started is not None and py_dropped is not None, 'python: the exit summary was printed', (py_started, py_dropped))
if py_dropped is not None:
    expect('python: spans plus dropped make the 100 requests', 100, len(py) + py_dropped)
    expect('python: started = exported + dropped', py_started, py_exported + py_dropped)

# node: the path names the status; /hold and /release are 200
node = [s for s in spans if s.get('service.name') == 'pipe-node']
def want(s):
    m = re.match(r'^/(\d{3})/', A(s)['url.path'])
    return int(m.group(1)) if m else 200
wrong = [show(s) for s in node if A(s).get('http.response.status_code') != want(s)]
expect('node: every span has its own request\'s status', [], wrong)
for t in 'ab':
    mine = [s for s in node if q(s, 't') == t]
    expect('node %s: one span per request at most' % t, len(mine), len(set(q(s, 'i') for s in mine)))
    check(len(mine) >= 64, 'node %s: at least the first 64 requests have spans' % t, len(mine))
b = [int(q(s, 'i')) for s in node if q(s, 't') == 'b']
expect('node b: past the HEAD nothing is followed', [], [i for i in b if i >= 64])
check(node_started is not None and node_dropped is not None, 'node: the exit summary was printed', (node_started, node_dropped))
if node_dropped is not None:
    expect('node: spans plus dropped make the 220 requests', 220, len(node) + node_dropped)
    expect('node: started = exported + dropped', node_started, node_exported + node_dropped)
PY

finish
