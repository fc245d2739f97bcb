#!/usr/bin/env bash
# Integration tests of build/otlp-sink: decoding, tree and JSON-lines output, HTTP errors, limits and fault modes.
#
# Run from anywhere after `make build/otlp-sink` (tests/run-all runs it after `make all`).
# Requests are hand-encoded protobuf made by a small python3 helper below, since the
# machine has no protobuf module for python; each sink runs on a free port (--port 0).
set -euo pipefail

cd "$(dirname "$0")/../.."
. tests/integration/lib.sh
SINK=${OTLP_SINK:-$SINK}
[[ -x $SINK ]] || die "$SINK is missing (run make build/otlp-sink)"
for tool in curl python3 gzip; do
	command -v "$tool" >/dev/null || die "$tool is not installed"
done

# run_sink NAME ARGS...: a sink on a free port, output in $WORK/NAME.{out,err};
# sets PORT, URL and PID (stopped at exit by lib.sh).
run_sink() {
	local name=$1
	shift
	start_listening "$name" "$SINK" --port 0 "$@"
	PID=$BG_PID
	URL="http://127.0.0.1:$PORT/v1/traces"
}

# post FILE [CURL ARGS...]: POSTs FILE to $URL as protobuf (or as $CT), prints the
# HTTP status.
post() {
	local file=$1
	shift
	curl -sS --max-time 20 -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' \
		-H "Content-Type: ${CT:-application/x-protobuf}" "$@" --data-binary "@$file" "$URL"
}


# --- request generator: hand-encoded ExportTraceServiceRequest messages ---
cat >"$WORK/otlpgen.py" <<'PY'
import struct, sys

def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)

def tag(num, wt): return varint(num << 3 | wt)
def ld(num, b):
    if isinstance(b, str): b = b.encode()
    return tag(num, 2) + varint(len(b)) + b
def vi(num, v): return tag(num, 0) + varint(v)
def f64(num, v): return tag(num, 1) + struct.pack('<Q', v)
def f32(num, v): return tag(num, 5) + struct.pack('<I', v)

class Raw(bytes):
    """A string attribute value given as raw bytes (maybe not UTF-8)."""

def anyv(v):
    if isinstance(v, Raw): return ld(1, bytes(v))
    if isinstance(v, bool): return vi(2, int(v))
    if isinstance(v, int): return vi(3, v)
    if isinstance(v, float): return tag(4, 1) + struct.pack('<d', v)
    if isinstance(v, bytes): return ld(7, v)
    if isinstance(v, list): return ld(5, b''.join(ld(1, anyv(x)) for x in v))
    if isinstance(v, dict): return ld(6, b''.join(ld(1, kv(k, x)) for k, x in v.items()))
    return ld(1, v)

def kv(k, v): return ld(1, k) + ld(2, anyv(v))

def span(tid, sid, pid, name, kind, start, end, attrs=(), status=None, events=(), links=()):
    b = ld(1, bytes.fromhex(tid)) + ld(2, bytes.fromhex(sid)) + ld(3, 'vendor=x')
    if pid: b += ld(4, bytes.fromhex(pid))
    b += ld(5, name) + vi(6, kind) + f64(7, start) + f64(8, end)
    b += b''.join(ld(9, kv(k, v)) for k, v in attrs)
    b += vi(10, 1)
    for ename, et, eattrs in events:
        b += ld(11, f64(1, et) + ld(2, ename) + b''.join(ld(3, kv(k, v)) for k, v in eattrs))
    b += vi(12, 2)
    for ltid, lsid in links:
        b += ld(13, ld(1, bytes.fromhex(ltid)) + ld(2, bytes.fromhex(lsid)) + ld(4, kv('link.kind', 'follows')) + f32(6, 1))
    b += vi(14, 3)
    if status: b += ld(15, ld(2, status[1]) + vi(3, status[0]))
    b += f32(16, 0x301)
    return b

def request(service, spans, scope='test-scope'):
    sc = ld(1, ld(1, scope) + ld(2, '1.0')) + b''.join(ld(2, s) for s in spans)
    res = ld(1, ld(1, kv('service.name', service)) + ld(1, kv('host.name', 'box')))
    return ld(1, res + ld(2, sc))

T = '0af7651916cd43dd8448eb211c80319c'
ROOT, DB, PUB = 'b7ad6b7169203331', '00f067aa0ba902b7', '1111111111111111'
T0 = 1700000000000000000

def main_request():
    return request('task-manager', [
        span(T, ROOT, '', 'POST /api/tasks', 2, T0, T0 + 12_300_000,
             [('http.request.method', 'POST'), ('http.response.status_code', 201), ('big', 18446744073709551615)]),
        span(T, DB, ROOT, 'INSERT web_crawl_tasks', 3, T0 + 1_000_000, T0 + 2_100_000,
             [('db.system.name', 'postgresql'), ('db.query.summary', 'INSERT web_crawl_tasks'),
              ('escapes', 'q"b\\s\x01\n\t'), ('bad.utf8', Raw(b'ok\xffend\xc0\xaf')), ('utf8', 'h\u00e9\u2603'),
              ('list', [1, 'x', True, 2.5]), ('map', {'k': 'v'}), ('raw', b'\x01\xab'), ('ratio', 0.1)],
             status=(2, 'duplicate key'),
             events=[('exception', T0 + 1_500_000, [('exception.type', 'UniqueViolation')])]),
        span(T, PUB, ROOT, 'publish tasks', 4, T0 + 3_000_000, T0 + 3_050_000,
             [('messaging.destination.name', 'tasks')], links=[('5b8efff798038103d269b633813fc60c', 'eee19b7ec3c1b174')]),
    ])

def nested(depth):
    # AnyValue{array_value{values: AnyValue{...}}} nested depth times, built inside out.
    inner = anyv(1)
    prefixes = []
    n = len(inner)
    for _ in range(depth):
        arr = tag(1, 2) + varint(n)          # ArrayValue.values
        n += len(arr)
        av = tag(5, 2) + varint(n)           # AnyValue.array_value
        n += len(av)
        prefixes.append(av + arr)
    deep = b''.join(reversed(prefixes)) + inner
    return request('deep', [span(T, ROOT, '', 'deep', 1, T0, T0 + 1) + ld(9, ld(1, 'deep') + ld(2, deep))])

mode = sys.argv[1]
out = sys.stdout.buffer
if mode == 'main':
    out.write(main_request())
elif mode == 'frontend':
    out.write(request('frontend', [span('4bf92f3577b34da6a3ce929d0e0e4736', 'aaaaaaaaaaaaaaaa', '', 'GET /checkout', 2, T0, T0 + 50_000_000)]))
elif mode == 'backend':
    out.write(request('backend', [span('4bf92f3577b34da6a3ce929d0e0e4736', 'bbbbbbbbbbbbbbbb', 'aaaaaaaaaaaaaaaa', 'POST /charge', 2, T0 + 5_000_000, T0 + 40_000_000),
                                  span('4bf92f3577b34da6a3ce929d0e0e4736', 'cccccccccccccccc', 'bbbbbbbbbbbbbbbb', 'SELECT cards', 3, T0 + 6_000_000, T0 + 9_000_000, [('db.system.name', 'mysql')])]))
elif mode == 'cycle':
    # Two spans naming each other as parent, plus a self-parent: all must still print.
    out.write(request('loop', [span(T, 'a1a1a1a1a1a1a1a1', 'b2b2b2b2b2b2b2b2', 'one', 1, T0, T0 + 1),
                               span(T, 'b2b2b2b2b2b2b2b2', 'a1a1a1a1a1a1a1a1', 'two', 1, T0 + 1, T0 + 2),
                               span(T, 'c3c3c3c3c3c3c3c3', 'c3c3c3c3c3c3c3c3', 'three', 1, T0 + 2, T0 + 3)]))
elif mode == 'nested':
    out.write(nested(int(sys.argv[2])))
elif mode == 'empty-spans':
    # Many empty Span messages: 2 bytes each on the wire, far more once decoded.
    count = int(sys.argv[2])
    sc = b'\x12\x00' * count
    out.write(ld(1, ld(2, sc)))
else:
    sys.exit('unknown mode ' + mode)
PY
gen() { python3 "$WORK/otlpgen.py" "$@"; }
gen main >"$WORK/main.bin"
gzip -c <"$WORK/main.bin" >"$WORK/main.gz"
printf 'this is not protobuf' >"$WORK/garbage.bin"
{ printf '\x1f\x8b\x08\x00\x00\x00\x00\x00'; printf 'not deflate data'; } >"$WORK/badgzip.bin"

echo "== decoding and outputs"
run_sink main --jsonl "$WORK/spans.jsonl" --requests-log "$WORK/requests.jsonl"
MAIN_PID=$PID
expect "garbage body -> 400" 400 "$(post "$WORK/garbage.bin")"
check "400 answer is a short text" grep -q 'cannot decode' "$WORK/body"
expect "valid request after garbage -> 200" 200 "$(post "$WORK/main.bin" -H 'X-Custom-Header: abc123')"
check "200 answer is protobuf" grep -qi '^content-type: application/x-protobuf' "$WORK/headers"
expect "200 answer is an empty ExportTraceServiceResponse" 0 "$(stat -c %s "$WORK/body")"
expect "one request -> 3 JSON lines" 3 "$(lines "$WORK/spans.jsonl")"

check "tree: trace header" grep -q '^trace 0af7651916cd43dd8448eb211c80319c  (3 spans)$' "$WORK/main.out"
check "tree: root line" grep -q '^  task-manager  SERVER   POST /api/tasks  12\.3ms  http\.response\.status_code=201$' "$WORK/main.out"
check "tree: first child with ERROR and db attributes" grep -q '^  task-manager  ├─ CLIENT   INSERT web_crawl_tasks  1\.1ms  ERROR "duplicate key"  db\.system\.name=postgresql  db\.query\.summary=INSERT web_crawl_tasks  exception=UniqueViolation$' "$WORK/main.out"
check "tree: last child" grep -q '^  task-manager  └─ PRODUCER publish tasks  0\.050ms  messaging\.destination\.name=tasks$' "$WORK/main.out"

cat >"$WORK/check_jsonl.py" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1], encoding='utf-8')][:3]
keys = ["trace_id", "span_id", "parent_span_id", "name", "kind", "status", "status_message", "start_ns",
        "end_ns", "service.name", "scope", "trace_state", "flags", "attributes", "resource", "events", "links",
        "dropped_attributes_count", "dropped_events_count", "dropped_links_count"]
errors = []
def eq(what, want, got):
    if want != got: errors.append(f'{what}: want {want!r}, got {got!r}')
for r in rows: eq('keys', keys, list(r))
root, db, pub = rows
T = '0af7651916cd43dd8448eb211c80319c'
for r in rows:
    eq('trace_id', T, r['trace_id'])
    eq('service.name', 'task-manager', r['service.name'])
    eq('scope', 'test-scope', r['scope'])
    eq('resource', {'service.name': 'task-manager', 'host.name': 'box'}, r['resource'])
    eq('flags', 0x301, r['flags'])
    eq('trace_state', 'vendor=x', r['trace_state'])
    eq('dropped', (1, 2, 3), (r['dropped_attributes_count'], r['dropped_events_count'], r['dropped_links_count']))
eq('root span_id', 'b7ad6b7169203331', root['span_id'])
eq('root parent', '', root['parent_span_id'])
eq('db parent', 'b7ad6b7169203331', db['parent_span_id'])
eq('db span_id', '00f067aa0ba902b7', db['span_id'])
eq('pub parent', 'b7ad6b7169203331', pub['parent_span_id'])
eq('kinds', ['SERVER', 'CLIENT', 'PRODUCER'], [r['kind'] for r in rows])
eq('status', ['UNSET', 'ERROR', 'UNSET'], [r['status'] for r in rows])
eq('status message', 'duplicate key', db['status_message'])
eq('start_ns', 1700000000000000000, root['start_ns'])
eq('end_ns', 1700000000012300000, root['end_ns'])
eq('int attr', 201, root['attributes']['http.response.status_code'])
eq('int64 attr', -1, root['attributes']['big'])
a = db['attributes']
eq('escapes', 'q"b\\s\x01\n\t', a['escapes'])
eq('invalid utf-8', 'ok\ufffdend\ufffd\ufffd', a['bad.utf8'])
eq('utf-8', 'h\u00e9\u2603', a['utf8'])
eq('array', [1, 'x', True, 2.5], a['list'])
eq('kvlist', {'k': 'v'}, a['map'])
eq('bytes', '01ab', a['raw'])
eq('double', 0.1, a['ratio'])
eq('events', [{'name': 'exception', 'time_ns': 1700000000001500000, 'attributes': {'exception.type': 'UniqueViolation'}}], db['events'])
eq('links', [{'trace_id': '5b8efff798038103d269b633813fc60c', 'span_id': 'eee19b7ec3c1b174', 'trace_state': '', 'flags': 1, 'attributes': {'link.kind': 'follows'}}], pub['links'])
raw = open(sys.argv[1], 'rb').read()
if b'\\u0001' not in raw or b'\\u000a' not in raw: errors.append('control characters are not escaped as \\u00XX')
for e in errors: print('   ', e)
sys.exit(1 if errors else 0)
PY
check "jsonl: keys, hex ids, parents, kinds, status, attributes, events, links, escaping" python3 "$WORK/check_jsonl.py" "$WORK/spans.jsonl"

expect "gzip body (Content-Encoding: gzip) -> 200" 200 "$(post "$WORK/main.gz" -H 'Content-Encoding: gzip')"
expect "gzip body without Content-Encoding (magic) -> 200" 200 "$(post "$WORK/main.gz")"
expect "gzip bodies decoded: 9 JSON lines" 9 "$(lines "$WORK/spans.jsonl")"
expect "bad gzip -> 400" 400 "$(post "$WORK/badgzip.bin" -H 'Content-Encoding: gzip')"
expect "unknown Content-Encoding -> 415" 415 "$(post "$WORK/main.bin" -H 'Content-Encoding: br')"
expect "POST to another path -> 404" 404 "$(URL=http://127.0.0.1:$PORT/v1/metrics post "$WORK/main.bin")"
expect "GET /v1/traces -> 405" 405 "$(curl -sS -o /dev/null -D "$WORK/headers" -w '%{http_code}' "$URL")"
check "405 carries Allow: POST" grep -qi '^allow: POST' "$WORK/headers"
expect "unknown content type -> 415" 415 "$(CT=text/plain post "$WORK/main.bin")"

# OTLP/JSON: hex ids (any case), 64-bit integers as strings or numbers, enums as
# numbers or names, camelCase or snake_case names, unknown fields ignored.
cat >"$WORK/req.json" <<'EOF'
{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"json-svc"}}]},
 "scopeSpans":[{"scope":{"name":"manual"},"spans":[
  {"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","name":"GET /json","kind":2,
   "startTimeUnixNano":"1544712660000000000","endTimeUnixNano":1544712661000000000,
   "attributes":[{"key":"http.response.status_code","value":{"intValue":"200"}},
                 {"key":"nan","value":{"doubleValue":"NaN"}},{"key":"bytes","value":{"bytesValue":"AQID"}},
                 {"key":"arr","value":{"arrayValue":{"values":[{"stringValue":"\u00e9\ud83d\ude00"},{"intValue":5}]}}}],
   "status":{"code":"STATUS_CODE_ERROR","message":"bad"},"someFutureField":{"a":[1,{"b":null}]}},
  {"trace_id":"5b8efff798038103d269b633813fc60c","span_id":"aaaaaaaaaaaaaaaa","parent_span_id":"eee19b7ec3c1b174",
   "name":"child","kind":"SPAN_KIND_CLIENT","startTimeUnixNano":"1544712660100000000","endTimeUnixNano":"1544712660200000000"}
 ]}]}]}
EOF
before=$(lines "$WORK/spans.jsonl")
expect "OTLP/JSON request -> 200" 200 "$(CT=application/json post "$WORK/req.json")"
check "OTLP/JSON answer is JSON" grep -qi '^content-type: application/json' "$WORK/headers"
expect "OTLP/JSON answer body" '{}' "$(cat "$WORK/body")"
check "OTLP/JSON spans decoded" python3 - "$WORK/spans.jsonl" "$before" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])][int(sys.argv[2]):]
want = [('5b8efff798038103d269b633813fc60c', 'eee19b7ec3c1b174', '', 'SERVER', 'ERROR', 1544712660000000000, 1544712661000000000),
        ('5b8efff798038103d269b633813fc60c', 'aaaaaaaaaaaaaaaa', 'eee19b7ec3c1b174', 'CLIENT', 'UNSET', 1544712660100000000, 1544712660200000000)]
got = [(r['trace_id'], r['span_id'], r['parent_span_id'], r['kind'], r['status'], r['start_ns'], r['end_ns']) for r in rows]
attrs = rows[0]['attributes'] if rows else {}
ok = got == want and attrs == {'http.response.status_code': 200, 'nan': 'NaN', 'bytes': '010203', 'arr': ['\u00e9\U0001F600', 5]}
if not ok: print('   ', got, attrs)
sys.exit(0 if ok and rows[0]['service.name'] == 'json-svc' else 1)
PY
gzip -c <"$WORK/req.json" >"$WORK/req.json.gz"
expect "gzip OTLP/JSON -> 200" 200 "$(CT=application/json post "$WORK/req.json.gz" -H 'Content-Encoding: gzip')"
for bad in '{' '[1]' '{"resourceSpans":[]} x' '{"resourceSpans":{}}' \
	'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"not-hex"}]}]}]}' \
	'{"resourceSpans":[],"resourceSpans":[]}' \
	'{"resourceSpans":[{"resource":{"attributes":[{"key":"k","value":{"stringValue":"a","intValue":3}}]}}]}'; do
	printf '%s' "$bad" >"$WORK/bad.json"
	expect "bad OTLP/JSON $bad -> 400" 400 "$(CT=application/json post "$WORK/bad.json")"
done
python3 -c 'print("{\"a\":" + "[" * 100000 + "]" * 100000 + "}")' >"$WORK/deep.json"
expect "100000-deep JSON -> 400, no crash" 400 "$(CT=application/json post "$WORK/deep.json")"

expect "65 MiB body with Content-Length -> 413" 413 \
	"$(head -c 65M /dev/zero | curl -sS -o /dev/null -w '%{http_code}' -H 'Content-Type: application/x-protobuf' --data-binary @- "$URL")"
expect "65 MiB chunked body -> 413" 413 \
	"$(head -c 65M /dev/zero | curl -sS -o /dev/null -w '%{http_code}' -H 'Content-Type: application/x-protobuf' -H 'Transfer-Encoding: chunked' -X POST -T - "$URL")"
gen nested 200000 >"$WORK/deep.bin"
expect "200000-deep nested AnyValue -> 400, no crash" 400 "$(post "$WORK/deep.bin")"
gen nested 20 >"$WORK/shallow.bin"
expect "20-deep nested AnyValue -> 200" 200 "$(post "$WORK/shallow.bin")"
head -c 100M /dev/zero | gzip -c >"$WORK/bomb.gz"
expect "gzip bomb (100 MiB inflated) -> 413" 413 "$(post "$WORK/bomb.gz" -H 'Content-Encoding: gzip')"
gen empty-spans 4000000 >"$WORK/empty.bin"
expect "4 million empty spans (8 MB, too large once decoded) -> 413" 413 "$(post "$WORK/empty.bin")"
gen cycle >"$WORK/cycle.bin"
expect "spans with a parent cycle -> 200" 200 "$(post "$WORK/cycle.bin")"
check "tree: spans in a parent cycle are still printed" \
	bash -c "grep -q 'INTERNAL one' '$WORK/main.out' && grep -q 'INTERNAL two' '$WORK/main.out' && grep -q 'INTERNAL three' '$WORK/main.out'"
gen backend >"$WORK/backend.bin"
expect "a trace whose root span is elsewhere -> 200" 200 "$(post "$WORK/backend.bin")"
check "tree: a span whose parent is absent prints as a root" \
	grep -q '^  backend  SERVER   POST /charge  35\.0ms$' "$WORK/main.out"
check "tree: ...with its child under it" \
	grep -q '^  backend  └─ CLIENT   SELECT cards  3\.0ms  db\.system\.name=mysql$' "$WORK/main.out"
expect "still answering after all that -> 200" 200 "$(post "$WORK/main.bin")"

# Keep-alive: one curl, three requests, one connection.
conns=$(curl -sS -o /dev/null -w '%{num_connects} ' -H 'Content-Type: application/x-protobuf' \
	--data-binary "@$WORK/main.bin" "$URL" "$URL" "$URL")
expect "keep-alive: three requests over one connection" "1 0 0 " "$conns"
# Concurrency: eight exporters at once.
before=$(lines "$WORK/spans.jsonl")
CURL_PIDS=()
for i in $(seq 8); do
	curl -sS -o /dev/null -w '%{http_code}' -H 'Content-Type: application/x-protobuf' \
		--data-binary "@$WORK/main.bin" "$URL" >"$WORK/par.$i" &
	CURL_PIDS+=("$!")
done
wait "${CURL_PIDS[@]}" || true
ok=0
for i in $(seq 8); do
	[[ $(cat "$WORK/par.$i") == 200 ]] && ok=$((ok + 1))
done
expect "8 concurrent exporters -> 8 x 200" 8 "$ok"
expect "8 concurrent exporters -> 24 more JSON lines" $((before + 24)) "$(lines "$WORK/spans.jsonl")"
check "jsonl lines are all valid JSON" python3 -c "import json,sys; [json.loads(l) for l in open(sys.argv[1])]" "$WORK/spans.jsonl"

cat >"$WORK/check_requests.py" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
errors = []
first = rows[0]
if (first['path'], first['method'], first['status'], first['spans']) != ('/v1/traces', 'POST', 400, 0):
    errors.append('first request: %r' % first)
ok = rows[1]
if (ok['status'], ok['spans'], ok['content_type']) != (200, 3, 'application/x-protobuf'):
    errors.append('second request: %r' % ok)
if ok['headers'].get('x-custom-header') != 'abc123':
    errors.append('custom header missing or not lowercased: %r' % ok['headers'])
if not ok['user_agent'].startswith('curl/'):
    errors.append('user_agent: %r' % ok['user_agent'])
gz = rows[2]
if (gz['content_encoding'], gz['status'], gz['spans']) != ('gzip', 200, 3):
    errors.append('gzip request: %r' % gz)
statuses = [r['status'] for r in rows]
for code in (400, 404, 405, 413, 415):
    if code not in statuses: errors.append(f'no {code} logged')
for r in rows:
    for k in ('path', 'method', 'status', 'content_type', 'content_encoding', 'user_agent', 'spans', 'headers'):
        if k not in r: errors.append(f'missing key {k}')
for e in errors: print('   ', e)
sys.exit(1 if errors else 0)
PY
check "requests log: status, spans, headers, gzip, user-agent" python3 "$WORK/check_requests.py" "$WORK/requests.jsonl"
check "stderr has one summary line per request" grep -q '^otlp-sink: POST /v1/traces 200 spans=3' "$WORK/main.err"
stop_pid "$MAIN_PID"
expect "SIGTERM -> exit 0" 0 "$STOP_RC"

echo "== fixed port"
FIXED=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$SINK" --port "$FIXED" --quiet >"$WORK/fixed.out" 2>&1 &
PID=$!
BG_PIDS+=("$PID")
for _ in $(seq 100); do grep -q listening "$WORK/fixed.out" && break; sleep 0.05; done
expect "--port N prints its listening line" "listening on 127.0.0.1:$FIXED" "$(head -n1 "$WORK/fixed.out")"
URL=http://127.0.0.1:$FIXED/v1/traces
expect "--quiet sink answers" 200 "$(post "$WORK/main.bin")"
stop_pid "$PID"
expect "--quiet prints nothing but the listening line" 1 "$(lines "$WORK/fixed.out")"

echo "== fault modes"
run_sink status --status 503 --retry-after 2 --jsonl "$WORK/status.jsonl"
expect "--status 503 -> 503" 503 "$(post "$WORK/main.bin")"
check "--retry-after 2 -> Retry-After: 2" grep -qi '^retry-after: 2' "$WORK/headers"
expect "--status does not decode" 0 "$(lines "$WORK/status.jsonl")"
stop_pid "$PID"

run_sink failfirst --fail-first 2 --quiet
got="$(post "$WORK/main.bin") $(post "$WORK/main.bin") $(post "$WORK/main.bin")"
expect "--fail-first 2 -> 503 503 200" "503 503 200" "$got"
stop_pid "$PID"

run_sink failfirst429 --fail-first 1 --status 429 --retry-after 1 --quiet
got="$(post "$WORK/main.bin")"
check "--fail-first 1 --status 429 sends Retry-After" grep -qi '^retry-after: 1' "$WORK/headers"
got="$got $(post "$WORK/main.bin")"
expect "--fail-first 1 --status 429 -> 429 200" "429 200" "$got"
stop_pid "$PID"

run_sink delay --delay-ms 400 --quiet
t=$(curl -sS -o /dev/null -w '%{time_total}' -H 'Content-Type: application/x-protobuf' --data-binary "@$WORK/main.bin" "$URL")
check "--delay-ms 400 -> answer after >= 0.4 s (took ${t}s)" python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) >= 0.39 else 1)" "$t"
stop_pid "$PID"

run_sink partial --partial-success 5 --quiet
expect "--partial-success 5 -> 200" 200 "$(post "$WORK/main.bin")"
# ExportTraceServiceResponse{partial_success(1){rejected_spans(1)=5, error_message(2)}}
check "--partial-success 5 -> partial_success.rejected_spans = 5 with a message" python3 - "$WORK/body" <<'PY'
import sys
b = open(sys.argv[1], 'rb').read()
ok = len(b) > 6 and b[0] == 0x0a and b[1] == len(b) - 2 and b[2:4] == b'\x08\x05' and b[4] == 0x12 and b[5] == len(b) - 6
sys.exit(0 if ok and b'rejected' in b else 1)
PY
stop_pid "$PID"

run_sink hole --black-hole
rc=0
curl -sS -o /dev/null --max-time 1 -H 'Content-Type: application/x-protobuf' --data-binary "@$WORK/main.bin" "$URL" 2>/dev/null || rc=$?
expect "--black-hole: request times out (curl exit 28)" 28 "$rc"
check "--black-hole: connection was accepted" grep -q 'black hole holds a connection' "$WORK/hole.err"
check "--black-hole: sink still running" kill -0 "$PID"
stop_pid "$PID"
expect "--black-hole: SIGTERM -> exit 0" 0 "$STOP_RC"

echo "== --tree-at-exit"
gen frontend >"$WORK/frontend.bin"
run_sink atexit --tree-at-exit
expect "frontend request -> 200" 200 "$(post "$WORK/frontend.bin")"
expect "backend request -> 200" 200 "$(post "$WORK/backend.bin")"
expect "--tree-at-exit prints nothing per request" 1 "$(lines "$WORK/atexit.out")"
kill -USR1 "$PID"
for _ in $(seq 100); do grep -q 'SELECT cards' "$WORK/atexit.out" && break; sleep 0.05; done
cat >"$WORK/atexit.expected" <<'EOF'
trace 4bf92f3577b34da6a3ce929d0e0e4736  (3 spans)
  frontend  SERVER   GET /checkout  50.0ms
  backend   └─ SERVER   POST /charge  35.0ms
  backend      └─ CLIENT   SELECT cards  3.0ms  db.system.name=mysql
EOF
check "SIGUSR1 prints one tree across both requests" diff -u "$WORK/atexit.expected" <(sed -n '2,5p' "$WORK/atexit.out")
stop_pid "$PID"
expect "SIGTERM -> exit 0" 0 "$STOP_RC"
check "the tree is printed again at exit" diff -u "$WORK/atexit.expected" <(sed -n '6,9p' "$WORK/atexit.out")

finish
