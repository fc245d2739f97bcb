#!/usr/bin/env bash
# test-http-bytes: 10 MB uploads and downloads through the agent on both ends arrive byte-identical, with spans.
#
# Acceptance 5 of the HTTP hooks: curl under the agent talks to
# build/tests/mhd-server under the agent. POST /upload answers the length and
# FNV-1a 64 of what the server read; /big serves a 10 MiB generated body
# whose reference comes from `mhd-server --dump-big` run without the agent.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

need_helper mhd-server -lmicrohttpd
MHD=build/tests/mhd-server
start_sink

head -c 10M /dev/urandom >"$WORK/upload.bin"
want_upload=$("$MHD" --fnv "$WORK/upload.bin")
"$MHD" --dump-big >"$WORK/big.ref"

start_agent_bg mhd mhd-bytes "$MHD" --mode per-connection --port 0
MHD_PID=$BG_PID
wait_line mhd "$MHD_PID" 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' || die "mhd-server did not start"
BASE=http://127.0.0.1:$LINE
C=(curl -sS --max-time 60)

echo "== without the agent on the client (server under the agent)"
expect "upload: server read the same bytes" "$want_upload" "$("${C[@]}" --data-binary "@$WORK/upload.bin" "$BASE/upload?c=plain")"
"${C[@]}" -o "$WORK/big.plain" "$BASE/big?c=plain" || true
check "download: byte-identical" cmp -s "$WORK/big.ref" "$WORK/big.plain"

echo "== curl under the agent"
expect "upload (Content-Length, Expect: 100-continue): server read the same bytes" "$want_upload" \
	"$(agent curl "${C[@]}" --data-binary "@$WORK/upload.bin" "$BASE/upload?c=length")"
expect "upload (chunked): server read the same bytes" "$want_upload" \
	"$(agent curl "${C[@]}" -H 'Transfer-Encoding: chunked' --data-binary "@$WORK/upload.bin" "$BASE/upload?c=chunked")"
expect "upload (Content-Length, no Expect): server read the same bytes" "$want_upload" \
	"$(agent curl "${C[@]}" -H 'Expect:' --data-binary "@$WORK/upload.bin" "$BASE/upload?c=noexpect")"
agent curl "${C[@]}" -o "$WORK/big.agent" "$BASE/big?c=agent" || true
check "download under the agent: byte-identical" cmp -s "$WORK/big.ref" "$WORK/big.agent"
# Keep-alive after a large body: framing must be followed exactly for the next request to be seen.
agent curl "${C[@]}" -o "$WORK/big.ka" -o "$WORK/ok.ka" "$BASE/big?c=ka" "$BASE/ok?c=ka" || true
check "download then /ok on one connection: download byte-identical" cmp -s "$WORK/big.ref" "$WORK/big.ka"
expect "download then /ok on one connection: /ok body" ok "$(cat "$WORK/ok.ka")"

echo "== a non-blocking client under the agent: head and 10 MB body in one buffer, partial send()s"
cat >"$WORK/nbclient.py" <<'PY'
import re, select, socket, sys
port, path = int(sys.argv[1]), sys.argv[2]
body = open(path, 'rb').read()
buf = (f'POST /upload?c=nonblocking HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(body)}\r\n'
       'Expect:\r\n\r\n').encode() + body
s = socket.create_connection(('127.0.0.1', port), timeout=10)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
s.setblocking(False)
off, partial = 0, 0
while off < len(buf):
    select.select([], [s], [], 10)
    try:
        n = s.send(buf[off:off + 4 * 1024 * 1024])
    except BlockingIOError:
        continue
    if n < min(len(buf) - off, 4 * 1024 * 1024):
        partial += 1
    off += n
s.setblocking(True)
data = b''
while True:
    m = re.search(rb'\r\n\r\n', data)
    if m:
        cl = re.search(rb'(?i)content-length:\s*(\d+)', data[:m.end()])
        if cl and len(data) >= m.end() + int(cl.group(1)):
            break
    b = s.recv(65536)
    if not b:
        break
    data += b
print('partial sends: %d' % partial, file=sys.stderr)
print(data.split(b'\r\n\r\n', 1)[1].decode(), end='')
PY
out=$(agent nb-client "$PY" "$WORK/nbclient.py" "${BASE##*:}" "$WORK/upload.bin" 2>"$WORK/nb.err") || true
expect "non-blocking upload: server read the same bytes" "$want_upload" "$out"
cat "$WORK/nb.err"

echo "== spans"
# SERVER: 2 plain + 3 uploads + 1 download + 2 keep-alive + 1 non-blocking = 9; CLIENT: 3 + 1 + 2 + 1 = 7.
check "9 SERVER spans within 15 s" wait_spans "$SINK_JSONL" 9 "s['kind'] == 'SERVER'"
check "7 CLIENT spans within 15 s" wait_spans "$SINK_JSONL" 7 "s['kind'] == 'CLIENT'"
stop_pid "$MHD_PID" 10
expect "mhd-server exits 0 under the agent" 0 "$STOP_RC"

pycheck "$SINK_JSONL" <<'PY'
spans = load(sys.argv[1])
def find(kind, c):
    return [s for s in spans if s.get('kind') == kind and
            (A(s).get('url.query') == 'c=' + c or A(s).get('url.full', '').endswith('c=' + c))]
for c, method, path in (('plain', 'POST', '/upload'), ('length', 'POST', '/upload'), ('chunked', 'POST', '/upload'),
                        ('noexpect', 'POST', '/upload'), ('agent', 'GET', '/big'), ('nonblocking', 'POST', '/upload')):
    srv = [s for s in find('SERVER', c) if A(s).get('url.path') == path]
    if check(len(srv) == 1, '%s %s?c=%s: one SERVER span' % (method, path, c), [show(s) for s in srv]):
        s = srv[0]
        expect('%s?c=%s: SERVER method and status' % (path, c), (method, 200, 'UNSET'),
               (A(s).get('http.request.method'), A(s).get('http.response.status_code'), s['status']))
    if c == 'plain':
        continue
    cli = [s for s in find('CLIENT', c) if path in A(s).get('url.full', '')]
    if check(len(cli) == 1, '%s %s?c=%s: one CLIENT span' % (method, path, c), [show(s) for s in cli]):
        s = cli[0]
        expect('%s?c=%s: CLIENT method and status' % (path, c), (method, 200, 'UNSET'),
               (A(s).get('http.request.method'), A(s).get('http.response.status_code'), s['status']))
        if len(srv) == 1:
            expect('%s?c=%s: SERVER span is the child of the CLIENT span' % (path, c),
                   (s['trace_id'], s['span_id']), (srv[0]['trace_id'], srv[0]['parent_span_id']))
srv = find('SERVER', 'plain')
expect('GET /big?c=plain: SERVER span', [('GET', 200)], [(A(s).get('http.request.method'), A(s).get('http.response.status_code')) for s in srv if A(s).get('url.path') == '/big'])
for path in ('/big', '/ok'):
    srv = [s for s in find('SERVER', 'ka') if A(s).get('url.path') == path]
    cli = [s for s in find('CLIENT', 'ka') if path in A(s).get('url.full', '')]
    check(len(srv) == 1 and len(cli) == 1, 'keep-alive %s: one SERVER and one CLIENT span' % path, [show(s) for s in srv + cli])
    if len(srv) == 1 and len(cli) == 1:
        expect('keep-alive %s: linked' % path, cli[0]['span_id'], srv[0]['parent_span_id'])
        expect('keep-alive %s: 200' % path, [200, 200], [A(srv[0]).get('http.response.status_code'), A(cli[0]).get('http.response.status_code')])
PY

finish
