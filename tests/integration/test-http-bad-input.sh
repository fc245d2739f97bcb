#!/usr/bin/env bash
# test-http-bad-input: malformed heads, >64 KiB header blocks, binary garbage and broken traceparents reach an agent-traced server byte for byte, and it keeps serving.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

start_sink

# A raw server: records every byte of each connection (until the client stops
# writing), answers a small HTTP response, closes. It runs under the agent,
# so every byte it reads goes through the read hooks and the HTTP parser.
cat >"$WORK/record.py" <<'PY'
import os, socket, sys, threading
from testhttp import recv_all
out = sys.argv[1]
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(16)
print("listening on 127.0.0.1:%d" % srv.getsockname()[1], flush=True)
n = 0
def handle(c, i):
    data = recv_all(c)
    with open(os.path.join(out, "conn%d" % i), "wb") as f:
        f.write(data)
    try:
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    except OSError:
        pass
    c.close()
while True:
    c, _ = srv.accept()
    threading.Thread(target=handle, args=(c, n)).start()
    n += 1
PY
mkdir -p "$WORK/got"
start_listening record agent bad-input "$PY" "$WORK/record.py" "$WORK/got"
port=$PORT

# The client (not traced) sends each payload on its own connection, in
# awkward pieces, then half-closes; the payloads are kept for comparison.
cat >"$WORK/send.py" <<'PY'
import os, random, socket, sys, time
port, out = int(sys.argv[1]), sys.argv[2]
rnd = random.Random(7)
tp = lambda v: b"GET /x HTTP/1.1\r\nHost: h\r\ntraceparent: " + v + b"\r\ntracestate: a=b\r\n\r\n"
cases = [
    b"GARBAGE\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"GET / HTTP/1.1\r\n folded: continuation\r\n\r\n",
    b"GET / HTTP/1.1\r\nNoColonHere\r\n\r\n",
    b"GET / HTTP/1.1\r\nX-Big: " + b"a" * (100 * 1024) + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(5000)) + b"\r\n",
    bytes(rnd.getrandbits(8) for _ in range(65536)),
    b"GET / HTTP/1.1\r\n" + bytes(rnd.getrandbits(8) for _ in range(4096)),
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 100,
    tp(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331"),
    tp(b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    tp(b"00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01"),
    tp(b"00-00000000000000000000000000000000-b7ad6b7169203331-01"),
    tp(b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01"),
    tp(b"\xff\xfe" * 40),
    tp(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" + b"x" * 5000),
    b"POST /u HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
    b"POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nbad\r\n",
]
for i, data in enumerate(cases):
    with open(os.path.join(out, "sent%d" % i), "wb") as f:
        f.write(data)
    s = socket.create_connection(("127.0.0.1", port))
    pos = 0
    while pos < len(data):
        step = rnd.choice([1, 2, 7, 100, 4096, 65536])
        s.sendall(data[pos:pos + step])
        pos += step
    s.shutdown(socket.SHUT_WR)
    s.recv(1024)
    s.close()
print(len(cases))
PY
mkdir -p "$WORK/sent"
ncases=$("$PY" "$WORK/send.py" "$port" "$WORK/sent")

# Connections are numbered in accept order, which is send order here.
for ((i = 0; i < ncases; i++)); do
	for _ in $(seq 100); do [[ -f $WORK/got/conn$i ]] && break; sleep 0.05; done
	if cmp -s "$WORK/sent/sent$i" "$WORK/got/conn$i"; then
		pass "case $i: the server read exactly the bytes sent ($(stat -c %s "$WORK/sent/sent$i") bytes)"
	else
		fail "case $i: the bytes the server read differ from those sent"
	fi
done

# Still alive and tracing: a valid request after all that gets its span.
"$PY" - "$port" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /after HTTP/1.1\r\nHost: h\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n")
s.shutdown(socket.SHUT_WR)
s.recv(1024)
PY
check "the server still runs" kill -0 "$BG_PID"
wait_spans "$SINK_JSONL" 1 "a.get('url.path') == '/after'" || true
pycheck "$SINK_JSONL" <<'PY'
spans = load(sys.argv[1])
after = [s for s in spans if A(s).get('url.path') == '/after']
expect("one span for the request after the garbage", 1, len(after))
if after:
    check(after[0]['trace_id'] == '4bf92f3577b34da6a3ce929d0e0e4736', "it joined the caller's trace", show(after[0]))
bad_tp = [s for s in spans if A(s).get('url.path') == '/x']
check(len(bad_tp) >= 6, "broken traceparents each gave a span", len(bad_tp))
for s in bad_tp:
    check(s['trace_id'] != '0af7651916cd43dd8448eb211c80319c' and s['parent_span_id'] == '' and s.get('trace_state', '') == '',
          "a broken traceparent starts a new trace: %s" % s['trace_id'], show(s))
PY
finish
