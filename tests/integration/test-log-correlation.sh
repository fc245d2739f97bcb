#!/usr/bin/env bash
# test-log-correlation: TRACEAGENT_LOG_CORRELATION=true puts the current SERVER span's ids on the lines real programs write to stdout and stderr, and nothing else changes.
#
#   (a) build/tests/logcorr-writer lines (tests/logcorr-writer.c): every line
#       shape through write, writev and stdio, inside two requests it serves
#       itself and outside them; the exact bytes expected, ids from the sink.
#       Without the agent, and under it with the variable unset, false or the
#       SDK disabled: byte-identical output, no ids.
#   (b) partial writes (RLIMIT_FSIZE cuts them inside and right after the
#       ids): return values count the app's bytes, errno as without the agent,
#       nothing lost or written twice.
#   (c) a non-blocking pipe with a slow reader: ~300 partial writes and ~800
#       EAGAINs, every line through exactly once with its ids once.
#   (d) four threads, each in its own request, on stdout and stderr at once.
#   (e) CPython http.server: the access log (sys.stderr.write -> write), a
#       print() (a write per argument under -u), a JSON line; each request's own ids.
#   (f) the task-manager (stdio fputs to stderr) with PostgreSQL and Kafka:
#       its request log lines carry their SERVER span's ids.
#   (g) a connection made fd 1 (dup2, dup3, accept after close(1),
#       close_range then connect): the peer gets exactly the response's bytes,
#       raw and through stdio; stdout back, its lines get ids again.
#   (h) a thread cancelled while blocked in write/fwrite on stdout: later
#       writes do not hang (the stream's lock is released).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

need_helper logcorr-writer
LW=build/tests/logcorr-writer
start_sink

# run_lw LABEL MODE [agent [VAR=value...]]: logcorr-writer MODE; stdout, stderr,
# checks (fd 3) and exit status in $WORK/LABEL.{out,err,checks,rc}.
run_lw() {
	local label=$1 mode=$2 rc=0
	shift 2
	if [[ ${1:-} == agent ]]; then
		shift
		agent "lw-$label" "$@" "$LW" "$mode" >"$WORK/$label.out" 2>"$WORK/$label.err" 3>"$WORK/$label.checks" || rc=$?
	else
		"$LW" "$mode" >"$WORK/$label.out" 2>"$WORK/$label.err" 3>"$WORK/$label.checks" || rc=$?
	fi
	echo "$rc" >"$WORK/$label.rc"
	expect "$label: exit status 0" 0 "$rc"
	local n_ok n_fail
	n_ok=$(grep -c '^ok: ' "$WORK/$label.checks" || true)
	n_fail=$(grep -c '^FAIL: ' "$WORK/$label.checks" || true)
	if [[ $n_fail -eq 0 && $n_ok -gt 0 ]]; then
		pass "$label: its $n_ok return-value/errno checks"
	else
		fail "$label: $n_fail of its checks failed: $(grep '^FAIL' "$WORK/$label.checks" | head -5 | tr '\n' ' ')"
	fi
}

echo "== (a) line shapes"
run_lw plain lines
run_lw unset lines agent
run_lw false lines agent TRACEAGENT_LOG_CORRELATION=false
run_lw disabled lines agent TRACEAGENT_LOG_CORRELATION=true OTEL_SDK_DISABLED=true
run_lw on lines agent TRACEAGENT_LOG_CORRELATION=true
for l in unset false disabled; do
	check "$l: stdout byte-identical to the run without the agent" cmp "$WORK/plain.out" "$WORK/$l.out"
	check "$l: stderr byte-identical to the run without the agent" cmp "$WORK/plain.err" "$WORK/$l.err"
done
check "the requests' SERVER spans exported" wait_spans "$SINK_JSONL" 2 "s['kind'] == 'SERVER' and s.get('service.name') == 'lw-on'"

pycheck "$SINK_JSONL" "$WORK" <<'PY'
path, work = sys.argv[1:]
spans = load(path)
def ids(service, p):
    m = [s for s in spans if s.get('service.name') == service and s['kind'] == 'SERVER' and A(s).get('url.path') == p]
    check(len(m) == 1, '%s: one SERVER span for %s' % (service, p), len(m))
    return (m[0]['trace_id'], m[0]['span_id']) if m else ('?' * 32, '?' * 16)
A_ids, B_ids = ids('lw-on', '/a'), ids('lw-on', '/b')
check(len(set(s['trace_id'] for s in spans if s.get('service.name') == 'lw-unset')) >= 2,
      'with the variable unset the agent still traces (only the logs are left alone)')

OUT = (b'before any span\n'
       b'raw line{A}\n'
       b'split over three{A}\n'
       b'{"msg":"json","n":1{AJ}}\n'
       b'  {{AJ0}}  \r\n'
       b'two{A}\nlines{A}\n'
       b'crlf line{A}\r\n'
       b'bin\0ary\n'
       b'\n'
       b'   \n'
       b'\x1b[1mbold\x1b[0m{A}\n'
       b'{"split":true{AJ}}\n'
       b'{"brace":1}\n'
       b'{ not json{A}\n'
       b'caf\xc3\xa9{A}\n'
       b'vec line{A}\n'
       + b''.join(b'many %02d{A}\n' % i for i in range(40)) +
       b'w0 w1 w2{A}\nw3 w4 w5 w6 w7{A}\n'
       b'w8 w9 w10 w11 w12 w13 w14 w15 w16 w17 w18 w19{A}\n'
       b'other thread, no span\n'
       b'printf 42{A}\n'
       b'fputs line{A}\n'
       b'puts line{A}\n'
       b'fwrite line{A}\n'
       b'fwrite items{A}\n'
       b'putchar{A}\n'
       b'c{A}\n'
       b'part1 part2{A}\n'
       b'{"json":"printf"{AJ}}\n'
       b'chk 7{A}\n'
       b'long ' + b'x' * 699 + b'{A}\n'
       b'unlocked{A}\n'
       b'raw begun inside, ended outside\n'
       b'stdio begun inside, ended outside\n'
       b'outside raw\n'
       b'outside printf\n'
       b'raw begun outside, ended inside{B}\n'
       b'stdio begun outside, ended inside{B}\n'
       b'after all spans\n')
ERR = (b'stderr raw{A}\n'
       b'fprintf stderr x{A}\n'
       b'errno No such file or directory{A}\n'
       b'fprintf chk{A}\n')

def fill(t, a, b):
    if a is None:
        sub = {b'{A}': b'', b'{AJ}': b'', b'{AJ0}': b'', b'{B}': b''}
    else:
        sub = {b'{A}': b' trace_id=%s span_id=%s' % (a[0].encode(), a[1].encode()),
               b'{AJ}': b',"trace_id":"%s","span_id":"%s"' % (a[0].encode(), a[1].encode()),
               b'{AJ0}': b'"trace_id":"%s","span_id":"%s"' % (a[0].encode(), a[1].encode()),
               b'{B}': b' trace_id=%s span_id=%s' % (b[0].encode(), b[1].encode())}
    for k, v in sub.items():
        t = t.replace(k, v)
    return t

def same(desc, want, file):
    got = open(file, 'rb').read()
    if want == got:
        check(True, desc)
        return
    wl, gl = want.split(b'\n'), got.split(b'\n')
    diff = [(i, w, g) for i, (w, g) in enumerate(zip(wl, gl)) if w != g][:3]
    check(False, desc, 'lines %d/%d, first differences %r' % (len(wl), len(gl), diff))

same('without the agent: the lines as written', fill(OUT, None, None), work + '/plain.out')
same('without the agent: stderr as written', fill(ERR, None, None), work + '/plain.err')
same('on: stdout exactly as expected (ids of /a and /b, JSON members, split lines once, '
     'binary, blank, other-thread and out-of-span lines untouched)', fill(OUT, A_ids, B_ids), work + '/on.out')
same('on: stderr (write and fprintf) with the ids of /a', fill(ERR, A_ids, B_ids), work + '/on.err')
for line in open(work + '/on.out', 'rb').read().split(b'\n'):
    if line.startswith(b'{"') and b'trace_id' in line:
        try:
            d = json.loads(line)
            check(d['trace_id'] == A_ids[0] and d['span_id'] == A_ids[1], 'JSON line stays valid JSON: %s' % line[:30].decode())
        except ValueError as e:
            check(False, 'JSON line stays valid JSON', line)
PY

echo "== (b) partial writes"
run_lw partial-plain partial
run_lw partial-on partial agent TRACEAGENT_LOG_CORRELATION=true
check "partial-on: the SERVER span exported" wait_spans "$SINK_JSONL" 1 "s['kind'] == 'SERVER' and s.get('service.name') == 'lw-partial-on'"
pycheck "$SINK_JSONL" "$WORK" <<'PY'
path, work = sys.argv[1:]
m = [s for s in load(path) if s.get('service.name') == 'lw-partial-on' and s['kind'] == 'SERVER']
t, p = (m[0]['trace_id'], m[0]['span_id']) if m else ('?', '?')
T = ' trace_id=%s span_id=%s' % (t, p)
J = ',"trace_id":"%s","span_id":"%s"' % (t, p)
many = ''.join('L%02d{T}\n' % i for i in range(40))
expect('without the agent: the file as written', 'hello\n{"k":1}\nat-end\nab\ncd\n' + many.replace('{T}', '') + 'refused\n',
       open(work + '/partial-plain.out').read())
expect('on: every line once, with its ids once, nothing lost', 'hello%s\n{"k":1%s}\nat-end%s\nab%s\ncd%s\n%srefused%s\n'
       % (T, J, T, T, T, many.replace('{T}', T), T), open(work + '/partial-on.out').read())
PY

echo "== (c) a slow reader on a non-blocking pipe"
run_lw pipe-on pipe agent TRACEAGENT_LOG_CORRELATION=true LOGCORR_WANT="$WORK/pipe.want"
check "pipe-on: the SERVER span exported" wait_spans "$SINK_JSONL" 1 "s['kind'] == 'SERVER' and s.get('service.name') == 'lw-pipe-on'"
pycheck "$SINK_JSONL" "$WORK" <<'PY'
path, work = sys.argv[1:]
m = [s for s in load(path) if s.get('service.name') == 'lw-pipe-on' and s['kind'] == 'SERVER']
t, p = (m[0]['trace_id'].encode(), m[0]['span_id'].encode()) if m else (b'?', b'?')
want = open(work + '/pipe.want', 'rb').read().split(b'\n')[:-1]
out = []
for i, l in enumerate(want):
    if i < 300:   # the first 300 were written inside the request
        l = l[:-1] + b',"trace_id":"' + t + b'","span_id":"' + p + b'"}' if l.startswith(b'{') else \
            l + b' trace_id=' + t + b' span_id=' + p
    out.append(l + b'\n')
got = open(work + '/pipe-on.out', 'rb').read()
exp = b''.join(out)
pos = next((i for i in range(min(len(exp), len(got))) if exp[i] != got[i]), None)
check(exp == got, '%d lines (%d bytes) through the pipe, each exactly once, ids once on each line of the request'
      % (len(want), len(exp)), 'expected %d bytes, got %d; first difference at %s: %r' % (len(exp), len(got), pos,
      got[pos - 40:pos + 40] if pos is not None else b''))
PY

echo "== (d) four threads, four requests"
run_lw threads threads agent TRACEAGENT_LOG_CORRELATION=true
check "threads: the four SERVER spans exported" wait_spans "$SINK_JSONL" 4 "s['kind'] == 'SERVER' and s.get('service.name') == 'lw-threads'"
pycheck "$SINK_JSONL" "$WORK" <<'PY'
import re
path, work = sys.argv[1:]
sp = {A(s).get('url.path'): s for s in load(path) if s.get('service.name') == 'lw-threads' and s['kind'] == 'SERVER'}
lines = open(work + '/threads.out').read().splitlines() + open(work + '/threads.err').read().splitlines()
bad, seen = [], set()
for l in lines:
    m = re.fullmatch(r'thread (\d) line (\d+) trace_id=([0-9a-f]{32}) span_id=([0-9a-f]{16})', l)
    s = sp.get('/t' + m.group(1)) if m else None
    if not s or (m.group(3), m.group(4)) != (s['trace_id'], s['span_id']):
        bad.append(l)
    else:
        seen.add((m.group(1), m.group(2)))
check(not bad and len(seen) == 800, "800 lines (write and fprintf), each whole with its own thread's request ids",
      '%d seen, bad: %r' % (len(seen), bad[:3]))
PY

echo "== (e) CPython http.server"
mkdir -p "$WORK/site"
printf 'hello\n' >"$WORK/site/hello.txt"
cat >"$WORK/pyserver.py" <<'PY'
import http.server, json, sys
from testhttp import serve
class H(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        print('handling', self.path)   # under -u: a write() for each word, the space, the newline
        if self.path.startswith('/json'):
            sys.stderr.write(json.dumps({'event': 'json line', 'path': self.path}) + '\n')
        super().do_GET()
serve(lambda *a: H(*a, directory=sys.argv[1]), http.server.HTTPServer)
PY
start_listening py agent py-http TRACEAGENT_LOG_CORRELATION=true "$PY" -u "$WORK/pyserver.py" "$WORK/site"
PY_PID=$BG_PID
for q in 1 2; do curl -s -o /dev/null "http://127.0.0.1:$PORT/hello.txt?r=$q" || true; done
curl -s -o /dev/null "http://127.0.0.1:$PORT/nope.txt?r=3" || true
curl -s -o /dev/null "http://127.0.0.1:$PORT/json?r=4" || true
check "http.server: four SERVER spans exported" wait_spans "$SINK_JSONL" 4 "s.get('service.name') == 'py-http' and s['kind'] == 'SERVER'"
stop_pid "$PY_PID" 10
pycheck "$SINK_JSONL" "$WORK" <<'PY'
import re
path, work = sys.argv[1:]
sp = {A(s).get('url.query'): s for s in load(path) if s.get('service.name') == 'py-http' and s['kind'] == 'SERVER'}
out = open(work + '/py.out').read().splitlines()
err = open(work + '/py.err').read().splitlines()
expect('the start-up line (no request) is untouched', 'listening on', out[0][:12] if out else '')
check('trace_id' not in out[0], 'no ids on the start-up line', out[:1])
for q in ('r=1', 'r=2', 'r=3', 'r=4'):
    s = sp.get(q)
    if not check(s is not None, q + ': its SERVER span'):
        continue
    ids = ' trace_id=%s span_id=%s' % (s['trace_id'], s['span_id'])
    p = A(s)['url.path'] + '?' + q
    expect(q + ': print() in the handler (4 write calls under -u): ids once, at the end',
           ['handling ' + p + ids], [l for l in out if l.startswith('handling ' + p)])
    acc = [l for l in err if '"GET ' + p + ' HTTP/1.1"' in l]
    check(len(acc) == 1 and acc[0].endswith(ids) and acc[0].count('trace_id=') == 1,
          q + ": the access log line (sys.stderr.write) carries its request's ids", acc)
js = [l for l in err if l.startswith('{')]
s = sp.get('r=4')
try:
    d = json.loads(js[0]) if js else {}
except ValueError:
    d = {}
check(s and d.get('trace_id') == s['trace_id'] and d.get('span_id') == s['span_id'] and d.get('event') == 'json line',
      'the JSON line gets "trace_id" and "span_id" members and stays JSON', js)
PY

echo "== (f) the task-manager (stdio), with PostgreSQL and Kafka"
if [[ -x build/task-manager ]]; then
	pg_start
	kafka_start
	agent_cmd task-manager
	start_listening tm "${AGENT_CMD[@]}" TRACEAGENT_LOG_CORRELATION=true PORT=0 DATABASE_URL="$DATABASE_URL" \
		KAFKA_BROKERS="$KAFKA_BROKERS" TRACEAGENT_HTTP_ROUTES=/api/health,/api/tasks build/task-manager
	TM_PID=$BG_PID
	code=$(curl -s -o "$WORK/task.body" -w '%{http_code}' -H 'Content-Type: application/json' \
		-d '{"url": "http://127.0.0.1:1/"}' "http://127.0.0.1:$PORT/api/tasks" || echo 000)
	expect "task-manager: POST /api/tasks 201" 201 "$code"
	code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/api/health" || echo 000)
	expect "task-manager: GET /api/health 200" 200 "$code"
	check "task-manager: both SERVER spans exported" wait_spans "$SINK_JSONL" 2 "s.get('service.name') == 'task-manager' and s['kind'] == 'SERVER'"
	stop_pid "$TM_PID" 10
	pycheck "$SINK_JSONL" "$WORK" <<'PY'
path, work = sys.argv[1:]
sp = {s['name']: s for s in load(path) if s.get('service.name') == 'task-manager' and s['kind'] == 'SERVER'}
err = open(work + '/tm.err').read().splitlines()
def ids(s):
    return ' trace_id=%s span_id=%s' % (s['trace_id'], s['span_id'])
post, health = sp.get('POST /api/tasks'), sp.get('GET /api/health')
if check(post is not None, 'task-manager: the POST /api/tasks SERVER span'):
    line = [l for l in err if ' info: POST /api/tasks 201 ' in l]
    check(len(line) == 1 and line[0].endswith(ids(post)) and line[0].count('trace_id=') == 1,
          'task-manager: its request log line (fputs to stderr) carries its ids', line)
    stored = [l for l in err if ': stored, url ' in l]
    check(len(stored) == 1 and stored[0].endswith(ids(post)), 'task-manager: "task N: stored" too', stored)
if check(health is not None, 'task-manager: the GET /api/health SERVER span'):
    line = [l for l in err if ' info: GET /api/health 200 ' in l]
    check(len(line) == 1 and line[0].endswith(ids(health)), 'task-manager: the health request line carries its own ids', line)
start = [l for l in err if ' info: listening on ' in l]
check(len(start) == 1 and 'trace_id' not in start[0], 'task-manager: the start-up line has none', start)
PY
else
	fail "build/task-manager is missing (run make)"
fi

echo "== (g) fd 1 made a connection (dup2, dup3, accept, close_range): its bytes are never decorated"
run_lw sockets-plain sockets
run_lw sockets sockets agent TRACEAGENT_LOG_CORRELATION=true
check "sockets: the request's SERVER span exported" wait_spans "$SINK_JSONL" 1 "s['kind'] == 'SERVER' and s.get('service.name') == 'lw-sockets' and A(s).get('url.path') == '/s'"
pycheck "$SINK_JSONL" "$WORK" <<'PY'
path, work = sys.argv[1:]
s = [s for s in load(path) if s.get('service.name') == 'lw-sockets' and A(s).get('url.path') == '/s']
ids = ' trace_id=%s span_id=%s' % (s[0]['trace_id'], s[0]['span_id']) if s else ' ?'
expect('sockets: stdout, once it leads to the file again, gets ids again (raw and stdio)',
       ['stdout before' + ids, 'stdout after' + ids, 'stdio after' + ids], open(work + '/sockets.out').read().splitlines())
expect('sockets: without the agent, the same lines without ids', ['stdout before', 'stdout after', 'stdio after'],
       open(work + '/sockets-plain.out').read().splitlines())
PY

echo "== (h) a thread cancelled while blocked writing to stdout (raw, then stdio)"
run_lw cancel-plain cancel
run_lw cancel cancel agent TRACEAGENT_LOG_CORRELATION=true

finish
