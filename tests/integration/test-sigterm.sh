#!/usr/bin/env bash
# test-sigterm: no span lost at SIGTERM/SIGINT: the agent flushes within TRACEAGENT_EXIT_TIMEOUT and the process still dies by the signal, as without it; app handlers and SIG_IGN are left alone.
#
# Every scenario runs twice, without and with the agent, and the two runs must
# agree: same exit status as the parent sees it (Python's returncode: -15 is
# "killed by SIGTERM", the shell's 143), same output. Under the agent
# OTEL_BSP_SCHEDULE_DELAY=60000, so a span reaches the sink only through the
# flush at the signal (or the app's own exit flush). The only time bound is a
# generous 10 s for a process to end once signalled (no hangs).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

need_helper sig-server
need_helper mhd-server -lmicrohttpd
SRV=$PWD/build/tests/sig-server
MHD=$PWD/build/tests/mhd-server
start_sink

# sigrun.py OUT STEPS -- CMD...: starts CMD with SIGINT and SIGPIPE at SIG_DFL
# (a shell starts background jobs with SIGINT ignored), waits for its port
# ("listening on 127.0.0.1:N" or http.server's "Serving HTTP on ... port N"),
# runs STEPS (';'-separated) and prints one JSON object:
#   req TAG N   N GET /TAG/1..N requests, Connection: close -> "codes"
#   served N    waits for the line "served N" (sig-server: the span has ended)
#   inner       from now on, signals go to the process's first child (the
#               program under `unshare --pid --fork`)
#   sig NAME    sends SIGNAME to the process
#   alive       after 0.5 s, is the process still running? -> "alive"
#   end         waits (at most 10 s, then SIGKILL) for it to end -> "rc", "ended"
# OUT.out and OUT.err get the program's stdout and stderr.
cat >"$WORK/sigrun.py" <<'PY'
import json, os, re, signal, socket, subprocess, sys, time
from testhttp import recv_all
out, steps = sys.argv[1], sys.argv[2]
cmd = sys.argv[sys.argv.index('--') + 1:]
def child_setup():
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
so, se = open(out + '.out', 'w'), open(out + '.err', 'w')
p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=so, stderr=se, preexec_fn=child_setup,
                     restore_signals=False)
res = {'codes': [], 'alive': [], 'rc': None, 'ended': None}
target = None
def text():
    with open(out + '.out', errors='replace') as f:
        return f.read()
def until(pred, secs=15):
    end = time.time() + secs
    while time.time() < end:
        v = pred()
        if v:
            return v
        if p.poll() is not None:
            return pred()
        time.sleep(0.02)
    return None
m = until(lambda: re.search(r'listening on 127\.0\.0\.1:(\d+)|Serving HTTP on 127\.0\.0\.1 port (\d+)', text()))
if not m:
    p.kill(); p.wait()
    res['error'] = 'did not start'
    print(json.dumps(res)); sys.exit(0)
port = int(m.group(1) or m.group(2))
def get(path):
    try:
        s = socket.create_connection(('127.0.0.1', port), timeout=10)
        s.sendall(('GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n' % (path, port)).encode())
        data = recv_all(s)
        s.close()
        m = re.match(rb'HTTP/1\.[01] (\d{3})', data)
        return int(m.group(1)) if m else 0
    except OSError:
        return -1
for step in [s.split() for s in steps.split(';') if s.strip()]:
    if step[0] == 'req':
        for i in range(1, int(step[2]) + 1):
            res['codes'].append(get('/%s/%d' % (step[1], i)))
    elif step[0] == 'served':
        if not until(lambda: re.search(r'(?m)^served %s$' % step[1], text())):
            res['error'] = 'no "served %s" line' % step[1]
    elif step[0] == 'inner':
        kids = until(lambda: open('/proc/%d/task/%d/children' % (p.pid, p.pid)).read().split())
        target = int(kids[0]) if kids else None
        if not target:
            res['error'] = 'no child'
    elif step[0] == 'sig':
        time.sleep(0.1)   # not a bound: lets a server without a "served" line end its span
        if target:
            try:
                os.kill(target, getattr(signal, 'SIG' + step[1]))
            except ProcessLookupError:
                pass
        else:
            p.send_signal(getattr(signal, 'SIG' + step[1]))
    elif step[0] == 'alive':
        time.sleep(0.5)
        res['alive'].append(p.poll() is None)
    elif step[0] == 'end':
        try:
            res['rc'] = p.wait(timeout=10)
            res['ended'] = True
        except subprocess.TimeoutExpired:
            p.kill()
            res['rc'] = p.wait()
            res['ended'] = False
if res['rc'] is None:
    p.kill()
    p.wait()
print(json.dumps(res))
PY

# run_both NAME STEPS [VAR=value...] -- CMD...: runs the scenario without the
# agent (PLAIN, outputs $WORK/NAME-plain.*) and with it (TRACED, $WORK/NAME-agent.*,
# service.name NAME). The VAR=value words only go to the traced run.
run_both() {
	local name=$1 steps=$2
	shift 2
	local vars=()
	while [[ $1 != -- ]]; do
		vars+=("$1")
		shift
	done
	shift
	PLAIN=$("$PY" "$WORK/sigrun.py" "$WORK/$name-plain" "$steps" -- "$@")
	agent_cmd "$name"
	TRACED=$("$PY" "$WORK/sigrun.py" "$WORK/$name-agent" "$steps" -- "${AGENT_CMD[@]}" \
		OTEL_BSP_SCHEDULE_DELAY=60000 "${vars[@]}" "$@")
	echo "   without the agent: $PLAIN"
	echo "   with the agent:    $TRACED"
}

# field JSON KEY: one field of a sigrun result, as JSON.
field() { "$PY" -c 'import json, sys; print(json.dumps(json.loads(sys.argv[1]).get(sys.argv[2])))' "$1" "$2"; }

# verdict NAME DESC RC: the traced run ended (within the 10 s) with Python
# returncode RC (-N: killed by signal N), and exactly like the plain run:
# status, answers, "alive" checks.
verdict() {
	pycheck "$PLAIN" "$TRACED" "$1" "$2" "$3" <<'PY'
import json
plain, traced, name, desc, rc = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
expect('%s: %s' % (name, desc), (rc, True), (traced.get('rc'), traced.get('ended')))
for k in ('rc', 'ended', 'codes', 'alive', 'error'):
    expect('%s: %s as without the agent' % (name, k), plain.get(k), traced.get(k))
PY
}

# spans_of NAME: SERVER spans the sink got from service NAME.
spans_of() { count_spans "$SINK_JSONL" "s['kind'] == 'SERVER' and s.get('service.name') == '$1'"; }

# expect_spans DESC NAME N: the sink has N SERVER spans of service NAME (waits up to 5 s for the last ones).
expect_spans() {
	wait_spans "$SINK_JSONL" "$3" "s['kind'] == 'SERVER' and s.get('service.name') == '$2'" 5 2>/dev/null || true
	expect "$1" "$3" "$(spans_of "$2")"
}

SERVE_PY='
import runpy, sys
sys.argv = ["http.server"] + sys.argv[1:]
runpy.run_module("http.server", run_name="__main__", alter_sys=True)
'
# serve_forever with no KeyboardInterrupt handling: CPython then exits by
# setting SIGINT to SIG_DFL and killing itself with it (exit status 130).
FOREVER_PY='
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
print("listening on 127.0.0.1:%d" % srv.server_address[1], flush=True)
srv.serve_forever()
'

echo "== C server, default dispositions: SIGTERM"
run_both c-term "req c-term 5; served 5; sig TERM; end" -- "$SRV"
verdict "c-term" "killed by SIGTERM (returncode -15, shell status 143)" -15
expect_spans "c-term: all 5 SERVER spans exported through the flush at SIGTERM" c-term 5

echo "== C server, default dispositions: SIGINT"
run_both c-int "req c-int 4; served 4; sig INT; end" -- "$SRV"
verdict "c-int" "killed by SIGINT (returncode -2, shell status 130)" -2
expect_spans "c-int: all 4 SERVER spans exported through the flush at SIGINT" c-int 4

echo "== python3 -m http.server (SIGTERM at SIG_DFL)"
mkdir -p "$WORK/site"
run_both py-term "req py-term 3; sig TERM; end" -- "$PY" -u -c "$SERVE_PY" --bind 127.0.0.1 --directory "$WORK/site" 0
verdict "py-term" "killed by SIGTERM" -15
expect_spans "py-term: all 3 SERVER spans exported" py-term 3

echo "== python3 -m http.server and SIGINT (Python's own handler: KeyboardInterrupt, sys.exit(0))"
run_both py-int "req py-int 3; sig INT; end" -- "$PY" -u -c "$SERVE_PY" --bind 127.0.0.1 --directory "$WORK/site" 0
verdict "py-int" "exits 0 through its own handler" 0
expect_spans "py-int: all 3 SERVER spans exported (normal exit flush)" py-int 3

echo "== python serve_forever, KeyboardInterrupt not caught (CPython re-kills itself with SIGINT at SIG_DFL)"
run_both py-int-uncaught "req py-int-uncaught 3; sig INT; end" -- "$PY" -u -c "$FOREVER_PY"
verdict "py-int-uncaught" "killed by SIGINT" -2
expect_spans "py-int-uncaught: all 3 SERVER spans exported (SIG_DFL set by the app gets the flush too)" py-int-uncaught 3

echo "== the app's own SIGTERM handler, installed at start"
run_both c-handler "req c-handler 3; served 3; sig TERM; end" -- "$SRV" --handler-after 0
verdict "c-handler" "exits 0 through its handler" 0
check "c-handler: its handler ran" grep -qx 'handler ran' "$WORK/c-handler-agent.out"
expect "c-handler: oldact as without the agent" "$(grep '^installed' "$WORK/c-handler-plain.out")" \
	"$(grep '^installed' "$WORK/c-handler-agent.out")"
expect_spans "c-handler: all 3 SERVER spans exported (normal exit flush)" c-handler 3

echo "== the app's own SIGTERM handler, installed after the agent's (after the first span)"
run_both c-late-handler "req c-late-handler 4; served 4; sig TERM; end" -- "$SRV" --handler-after 1
verdict "c-late-handler" "exits 0 through its handler" 0
check "c-late-handler: its handler ran" grep -qx 'handler ran' "$WORK/c-late-handler-agent.out"
expect "c-late-handler: sigaction's oldact reports SIG_DFL, as without the agent" \
	"installed handler; old=SIG_DFL flags=0" "$(grep '^installed' "$WORK/c-late-handler-agent.out")"
expect_spans "c-late-handler: all 4 SERVER spans exported" c-late-handler 4

echo "== SIGTERM ignored (at start, and after the first span): it stays ignored"
for when in 0 1; do
	name=c-ignore-$when
	run_both "$name" "req $name 2; served 2; sig TERM; alive; req $name-more 1; served 3; sig INT; end" -- \
		"$SRV" --ignore-after "$when"
	expect "$name: still running after SIGTERM" "[true]" "$(field "$TRACED" alive)"
	expect "$name: still serving after SIGTERM" "[200, 200, 200]" "$(field "$TRACED" codes)"
	verdict "$name" "then killed by SIGINT" -2
	expect "$name: signal() returned what it returns without the agent" \
		"$(grep '^ignoring' "$WORK/$name-plain.out")" "$(grep '^ignoring' "$WORK/$name-agent.out")"
	expect_spans "$name: all 3 SERVER spans exported at SIGINT" "$name" 3
done

echo "== what the app reads back: sigaction(sig, NULL, &old), signal()'s return, SIG_DFL set again"
run_both c-report "req c-report 2; served 2; req c-report-b 2; served 4; sig TERM; end" -- \
	"$SRV" --report --toggle-after 2
verdict "c-report" "killed by SIGTERM after the app set SIG_DFL itself" -15
check "c-report: every disposition read back is exactly as without the agent" \
	diff -u <(grep -v '^listening' "$WORK/c-report-plain.out") <(grep -v '^listening' "$WORK/c-report-agent.out")
check "c-report: reads SIGTERM as SIG_DFL while the agent's handler is installed" \
	grep -q '^SIGTERM: handler=SIG_DFL flags=0 mask=0 restorer=null$' "$WORK/c-report-agent.out"
expect "c-report: signal() returns SIG_DFL, not the agent's handler" \
	"toggle: signal(SIG_IGN) returned SIG_DFL, signal(SIG_DFL) returned SIG_IGN" \
	"$(grep '^toggle' "$WORK/c-report-agent.out")"
expect_spans "c-report: all 4 SERVER spans exported (the agent's handler is back after SIG_DFL)" c-report 4

echo "== SIGTERM blocked and taken with sigwaitinfo (mhd-server): its own exit path"
run_both mhd "req mhd 3; sig TERM; end" -- "$MHD" --port 0
verdict "mhd" "returns from main (exit 0)" 0
expect_spans "mhd: all 3 SERVER spans exported (normal exit flush)" mhd 3

echo "== PID 1 of a PID namespace (a container without an init): the kernel drops SIGTERM at SIG_DFL"
if unshare --pid --fork true 2>/dev/null; then
	run_both pid1 "req pid1 3; served 3; inner; sig TERM; alive; req pid1-more 2; served 5; sig TERM; alive; sig KILL; end" -- \
		unshare --pid --fork "$SRV"
	expect "pid1: still running after each SIGTERM, as without the agent" "[true, true]" "$(field "$TRACED" alive)"
	# unshare's own status for a child killed by SIGKILL varies with its version: compare only.
	verdict pid1 "ended by the SIGKILL that follows" "$(field "$PLAIN" rc)"
	# No handler in PID 1: with one, the signals the kernel drops for it would
	# be delivered (its blocking calls would see EINTR). So nothing flushes
	# at SIGTERM, and the SIGKILL loses what the 60 s batch delay still held.
	expect_spans "pid1: no flush at SIGTERM (no handler in PID 1), the SIGKILL loses the queue" pid1 0
else
	echo "note: unshare --pid is not available here (root or user namespaces needed); PID 1 case skipped"
fi

echo "== TRACEAGENT_EXIT_TIMEOUT=0: no handler, no flush"
run_both c-nowait "req c-nowait 2; served 2; sig TERM; end" TRACEAGENT_EXIT_TIMEOUT=0 -- "$SRV" --report
verdict "c-nowait" "killed by SIGTERM" -15
sleep 0.5
expect "c-nowait: nothing exported (the 60 s schedule never came)" 0 "$(spans_of c-nowait)"

echo "== a collector that is down, or black-holed, does not hold the signal death"
DOWN_PORT=$(free_port)
run_both c-down "req c-down 3; served 3; sig TERM; end" OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$DOWN_PORT" -- "$SRV"
verdict "c-down" "killed by SIGTERM (within 10 s)" -15
MAIN_ENDPOINT=$SINK_ENDPOINT
MAIN_JSONL=$SINK_JSONL
start_sink hole --black-hole
HOLE_ENDPOINT=$SINK_ENDPOINT
SINK_ENDPOINT=$MAIN_ENDPOINT
SINK_JSONL=$MAIN_JSONL
run_both c-hole "req c-hole 3; served 3; sig TERM; end" OTEL_EXPORTER_OTLP_ENDPOINT="$HOLE_ENDPOINT" -- "$SRV"
verdict "c-hole" "killed by SIGTERM (within 10 s)" -15

echo "== a second signal during the flush ends the process at once"
# A black-holed collector and a 60 s bound: only the second signal can end it within 10 s.
run_both c-twice "req c-twice 2; served 2; sig TERM; sig TERM; end" \
	OTEL_EXPORTER_OTLP_ENDPOINT="$HOLE_ENDPOINT" TRACEAGENT_EXIT_TIMEOUT=60000 -- "$SRV"
verdict "c-twice" "a second SIGTERM: killed by SIGTERM within 10 s" -15
run_both c-term-int "req c-term-int 2; served 2; sig TERM; sig INT; end" \
	OTEL_EXPORTER_OTLP_ENDPOINT="$HOLE_ENDPOINT" TRACEAGENT_EXIT_TIMEOUT=60000 -- "$SRV"
verdict "c-term-int" "SIGINT during the SIGTERM flush: killed by the first signal, SIGTERM, within 10 s" -15

finish
