#!/usr/bin/env bash
# test-http-curl-client: curl under the agent gets CLIENT spans and sends exactly one matching traceparent, request otherwise unchanged.
#
# Acceptance 2 of the HTTP hooks. The server is a header-recording python
# server NOT under the agent: it logs every request's header lines in wire
# order, so the request curl sends under the agent can be compared with the
# one it sends without it.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

start_sink
start_recorder
BASE=http://127.0.0.1:$REC_PORT
C=(curl -sS --max-time 10 -H 'X-Order-A: 1' -H 'X-Order-B: 2')

# nth_request N: the Nth (1-based) request the recorder logged, as JSON.
nth_request() { sed -n "${1}p" "$REC_LOG"; }

echo "== one GET, without then with the agent"
out=$("${C[@]}" "$BASE/plain?x=1") || true
expect "without the agent: body" ok "$out"
out=$(agent curl "${C[@]}" "$BASE/plain?x=1") || true
expect "with the agent: body unchanged" ok "$out"
nth_request 1 >"$WORK/req.without"
nth_request 2 >"$WORK/req.with"

echo "== keep-alive: two requests in one curl under the agent"
out=$(agent curl "${C[@]}" "$BASE/ka?n=1" "$BASE/ka?n=2") || true
expect "two bodies" okok "$out"

echo "== a POST with a body"
out=$(agent curl "${C[@]}" --data-binary 'payload=123&more=yes' "$BASE/post?x=2") || true
expect "POST answered" ok "$out"

echo "== error statuses"
code=$(agent curl "${C[@]}" -o /dev/null -w '%{http_code}' "$BASE/status/404?x=3") || true
expect "404 from the server" 404 "$code"
code=$(agent curl "${C[@]}" -o /dev/null -w '%{http_code}' "$BASE/status/500?x=4") || true
expect "500 from the server" 500 "$code"

echo "== app-supplied traceparent"
APP_TP=00-11111111111111111111111111111111-2222222222222222-01
out=$(agent curl "${C[@]}" -H "traceparent: $APP_TP" "$BASE/app-tp?x=5") || true
expect "answered" ok "$out"

echo "== a Host header naming another server than the socket's peer"
out=$(agent curl "${C[@]}" -H 'Host: example.test:8080' "$BASE/host?x=10") || true
expect "answered" ok "$out"

echo "== unsampled root (always_off): still propagated, flags 00"
out=$(agent curl OTEL_TRACES_SAMPLER=always_off "${C[@]}" "$BASE/unsampled?x=6") || true
expect "answered" ok "$out"

echo "== response framing on one connection: HEAD, chunked, 204, then a plain GET after each"
out=$(agent curl curl -sS --max-time 10 -o /dev/null -w '%{http_code} %{num_connects}\n' -I "$BASE/head?f=1" \
	--next -sS --max-time 10 -o /dev/null -w '%{http_code} %{num_connects}\n' "$BASE/after-head?f=1") || true
expect "HEAD then GET on one connection" "200 1 200 0" "$(tr '\n' ' ' <<<"$out" | sed 's/ $//')"
out=$(agent curl curl -sS --max-time 10 -w ' %{http_code} %{num_connects}\n' "$BASE/chunked?f=2" "$BASE/after-chunked?f=2") || true
expect "chunked then GET on one connection" "ok 200 1 ok 200 0" "$(tr '\n' ' ' <<<"$out" | sed 's/ $//')"
out=$(agent curl curl -sS --max-time 10 -w ' %{http_code} %{num_connects}\n' "$BASE/status/204?f=3" "$BASE/after-204?f=3") || true
expect "204 then GET on one connection" "204 1 ok 200 0" "$(tr '\n' ' ' <<<"$out" | sed 's/^ //; s/ $//')"
out=$(agent curl curl -sS --max-time 10 -w ' %{http_code}' "$BASE/close?f=4") || true
expect "body delimited by close" "ok 200" "$out"

echo "== a raw client writing its head in pieces, and with sendmsg (python socket under the agent)"
cat >"$WORK/rawclient.py" <<'PY'
import socket, sys, time
port, mode = int(sys.argv[1]), sys.argv[2]
body = b'0123456789' * 1000
head = (f'POST /raw-{mode}?x=9 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: raw/1\r\n'
        f'X-Order-A: 1\r\nContent-Length: {len(body)}\r\n\r\n').encode()
s = socket.create_connection(('127.0.0.1', port), timeout=10)
if mode == 'pieces':
    # the head in three writes, cut inside the request line, inside a header and before the empty line
    for part in (head[:9], head[9:40], head[40:-2], head[-2:], body[:10], body[10:]):
        s.sendall(part)
        time.sleep(0.02)
else:
    # one sendmsg: head cut over three iovecs, then the body
    s.sendmsg([head[:5], head[5:30], head[30:], body])
data = b''
while b'\r\n\r\n' not in data or len(data) < data.index(b'\r\n\r\n') + 6:
    b = s.recv(65536)
    if not b:
        break
    data += b
s.close()
print(data.split(b'\r\n')[0].decode())
PY
for mode in pieces sendmsg; do
	out=$(agent raw-client "$PY" "$WORK/rawclient.py" "$REC_PORT" "$mode") || true
	expect "raw client ($mode): answered" "HTTP/1.1 200 OK" "$out"
done

echo "== spans"
# Expected CLIENT spans: plain, ka 1, ka 2, post, 404, 500 (+ maybe app-tp); none for the unsampled one.
check "at least 6 CLIENT spans exported" wait_spans "$SINK_JSONL" 6 "s['kind'] == 'CLIENT'"
# A last request whose span marks the end (spans of one process come in order of export).
agent curl "${C[@]}" -o /dev/null "$BASE/last?x=7" || true
check "the last request's span arrived" wait_spans "$SINK_JSONL" 1 "'/last' in a.get('url.full', '')"

pycheck "$SINK_JSONL" "$REC_LOG" "$REC_PORT" "$APP_TP" <<'PY'
import json
path, reclog, port, app_tp = sys.argv[1:]
port = int(port)
spans = load(path)
client = [s for s in spans if s.get('kind') == 'CLIENT' and s.get('service.name') == 'curl']
reqs = [json.loads(l) for l in open(reclog)]
base = 'http://127.0.0.1:%d' % port

def hdrs(r, name):
    return [v for k, v in r['headers'] if k.lower() == name]
def req(path_q):
    m = [r for r in reqs if r['path'] == path_q]
    return m
def span_for(url):
    return [s for s in client if A(s).get('url.full') == url]
def tp_parts(v):
    p = v.split('-')
    return p if len(p) == 4 else None

expect('no SERVER spans from curl', [], [show(s) for s in spans if s.get('kind') == 'SERVER'])
check(all(s.get('service.name') in ('curl', 'raw-client') for s in spans), 'service.name is curl (or raw-client)')

# --- the request is unchanged but for one traceparent ---
without, with_ = reqs[0], reqs[1]
expect('without the agent: no traceparent', [], hdrs(without, 'traceparent'))
tps = hdrs(with_, 'traceparent')
check(len(tps) == 1, 'with the agent: exactly one traceparent header', tps)
stripped = [[k, v] for k, v in with_['headers'] if k.lower() != 'traceparent']
expect('with the agent: same headers, same order, once traceparent is removed', without['headers'], stripped)
expect('with the agent: same request line', (without['method'], without['path'], without['version']),
       (with_['method'], with_['path'], with_['version']))
expect('no tracestate added when the context has none', [], hdrs(with_, 'tracestate'))
expect('no baggage added when the context has none', [], hdrs(with_, 'baggage'))

def check_pair(label, r, url, method='GET', code=200):
    tps = hdrs(r, 'traceparent')
    if not check(len(tps) == 1, label + ': server saw exactly one traceparent', tps):
        return None
    p = tp_parts(tps[0])
    # flags: sampled; 03 when the agent also sets W3C Level 2's random-trace-id flag on a trace it started
    ok = p and p[0] == '00' and HEX32.match(p[1]) and HEX16.match(p[2]) and p[3] in ('01', '03')
    check(ok, label + ': traceparent is 00-<32 hex>-<16 hex>-<01 or 03>', tps[0])
    m = span_for(url)
    if not check(len(m) == 1, label + ': exactly one CLIENT span with url.full ' + url, [show(s) for s in client]):
        return None
    s = m[0]
    a = A(s)
    if p:
        expect(label + ': traceparent trace-id == CLIENT span trace_id', s['trace_id'], p[1])
        expect(label + ': traceparent parent-id == CLIENT span span_id', s['span_id'], p[2])
    expect(label + ': CLIENT span is a root (no context in curl)', '', s['parent_span_id'])
    expect(label + ': name', method, s['name'])
    expect(label + ': http.request.method', method, a.get('http.request.method'))
    expect(label + ': server.address', '127.0.0.1', a.get('server.address'))
    expect(label + ': server.port (int)', port, a.get('server.port'))
    expect(label + ': network.peer.address/port: the connected socket', ('127.0.0.1', port),
           (a.get('network.peer.address'), a.get('network.peer.port')))
    expect(label + ': http.response.status_code', code, a.get('http.response.status_code'))
    if code >= 400:
        expect(label + ': status ERROR for %d' % code, 'ERROR', s['status'])
        expect(label + ': error.type is the status code as a string', str(code), a.get('error.type'))
    else:
        expect(label + ': status UNSET', 'UNSET', s['status'])
        check('error.type' not in a, label + ': no error.type', a.get('error.type'))
    check(s.get('end_ns', 0) >= s.get('start_ns', 1) > 0, label + ': start_ns <= end_ns')
    return s

check_pair('GET', with_, base + '/plain?x=1')

# keep-alive: each request on the reused connection gets its own span and header
k1, k2 = req('/ka?n=1'), req('/ka?n=2')
if check(len(k1) == 1 and len(k2) == 1, 'keep-alive: both requests reached the server'):
    s1 = check_pair('keep-alive 1', k1[0], base + '/ka?n=1')
    s2 = check_pair('keep-alive 2', k2[0], base + '/ka?n=2')
    if s1 and s2:
        check(s1['span_id'] != s2['span_id'], 'keep-alive: two different span ids')
        check(s1['trace_id'] != s2['trace_id'], 'keep-alive: two traces (each request of curl is a root)')

# POST: body unchanged
p = req('/post?x=2')
if check(len(p) == 1, 'POST reached the server'):
    body = b'payload=123&more=yes'
    h = 0xcbf29ce484222325
    for b in body:
        h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
    expect('POST: body length unchanged', len(body), p[0]['body_len'])
    expect('POST: body bytes unchanged', '%016x' % h, p[0]['body_fnv'])
    expect('POST: Content-Length unchanged', [str(len(body))], hdrs(p[0], 'content-length'))
    check_pair('POST', p[0], base + '/post?x=2', method='POST')

for code, q in ((404, '3'), (500, '4')):
    r = req('/status/%d?x=%s' % (code, q))
    if check(len(r) == 1, '%d request reached the server' % code):
        check_pair('status %d' % code, r[0], base + '/status/%d?x=%s' % (code, q), code=code)

# app-supplied traceparent: no second one
r = req('/app-tp?x=5')
if check(len(r) == 1, 'app-traceparent request reached the server'):
    expect('app-supplied traceparent: the server sees exactly that one value', [app_tp], hdrs(r[0], 'traceparent'))

# Host header: server.address/port and url.full from it, network.peer.* from the socket
m = span_for('http://example.test:8080/host?x=10')
if check(len(m) == 1, 'Host header: one CLIENT span with url.full from the Host header', [show(s) for s in client]):
    a = A(m[0])
    expect('Host header: server.address/port from it', ('example.test', 8080), (a.get('server.address'), a.get('server.port')))
    expect('Host header: network.peer.address/port from the socket', ('127.0.0.1', port),
           (a.get('network.peer.address'), a.get('network.peer.port')))

# unsampled root: propagated with flags 00, no span exported
r = req('/unsampled?x=6')
if check(len(r) == 1, 'unsampled request reached the server'):
    tps = hdrs(r[0], 'traceparent')
    if check(len(tps) == 1, 'unsampled: exactly one traceparent', tps):
        p = tp_parts(tps[0])
        check(p and p[0] == '00' and HEX32.match(p[1]) and HEX16.match(p[2]) and p[3] in ('00', '02'),
              'unsampled: traceparent with the sampled flag clear (00, or 02 with the random flag)', tps[0])
        if p:
            expect('unsampled: no span exported for its trace', [], [show(s) for s in spans if s['trace_id'] == p[1]])
expect('unsampled: no span for its URL', [], [show(s) for s in client if 'unsampled' in A(s).get('url.full', '')])

# raw clients: head written in pieces / over several iovecs
for mode in ('pieces', 'sendmsg'):
    r = req('/raw-%s?x=9' % mode)
    if check(len(r) == 1, 'raw %s: reached the server' % mode):
        r = r[0]
        names = [k for k, v in r['headers']]
        expect('raw %s: headers unchanged, plus one traceparent' % mode,
               ['Host', 'User-Agent', 'X-Order-A', 'Content-Length'], [k for k in names if k.lower() != 'traceparent'])
        expect('raw %s: body intact' % mode, (10000, None), (r['body_len'], None))
        h = 0xcbf29ce484222325
        for b in b'0123456789' * 1000:
            h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
        expect('raw %s: body bytes intact' % mode, '%016x' % h, r['body_fnv'])
        tps = hdrs(r, 'traceparent')
        if check(len(tps) == 1, 'raw %s: exactly one traceparent' % mode, tps):
            m = [s for s in spans if s.get('service.name') == 'raw-client' and A(s).get('url.full') == base + '/raw-%s?x=9' % mode]
            if check(len(m) == 1, 'raw %s: one CLIENT span' % mode, [show(s) for s in spans if s.get('service.name') == 'raw-client']):
                p = tp_parts(tps[0])
                expect('raw %s: traceparent names the CLIENT span' % mode, (m[0]['trace_id'], m[0]['span_id']), (p[1], p[2]) if p else None)
                expect('raw %s: POST 200' % mode, ('POST', 200), (m[0]['name'], A(m[0]).get('http.response.status_code')))

# response framing: every request of these connections has its span, with its own status
for path_q, method, code in (('/head?f=1', 'HEAD', 200), ('/after-head?f=1', 'GET', 200),
                             ('/chunked?f=2', 'GET', 200), ('/after-chunked?f=2', 'GET', 200),
                             ('/status/204?f=3', 'GET', 204), ('/after-204?f=3', 'GET', 200),
                             ('/close?f=4', 'GET', 200)):
    r = req(path_q)
    if check(len(r) == 1, path_q + ': reached the server'):
        check_pair(path_q, r[0], base + path_q, method=method, code=code)
PY

finish
