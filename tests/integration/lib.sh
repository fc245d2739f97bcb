# lib.sh: shared helpers of the HTTP integration tests (sourced, not run: it does not match test-*).
#
# A test script does:
#   set -euo pipefail
#   cd "$(dirname "$0")/../.."
#   . tests/integration/lib.sh
#   start_sink                      # sets SINK_PORT, SINK_JSONL, SINK_PID, SINK_ENDPOINT
#   ...
#   finish                          # prints "N passed, N failed", exits non-zero on any failure
#
# Everything started with start_bg/start_sink is stopped on exit (TERM, then
# KILL after a bounded wait); at_exit CMD... adds more cleanup (run first,
# in reverse order); $WORK is a private temporary directory, removed on exit.
# Only 127.0.0.1 is used. No jq: span queries are python3 expressions over
# the sink's JSON lines (one object per span; `s` is the span).

AGENT=${TRACEAGENT_SO:-$PWD/build/libtraceagent.so}
SINK=${TRACEAGENT_SINK:-$PWD/build/otlp-sink}
# The real interpreter, not a pyenv shim (a shell script), so LD_PRELOAD
# applies to python itself and nothing else gets in the way.
PY=$(python3 -c 'import sys; print(sys.executable)')
WORK=$(mktemp -d "${TMPDIR:-/tmp}/$(basename "$0" .sh).XXXXXX")
PASSED=0
FAILED=0
FINISHED=
BG_PIDS=()
EXIT_HOOKS=()

# --- results ---

pass() { echo "PASS: $*"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL: $*"; FAILED=$((FAILED + 1)); }
# expect DESC EXPECTED ACTUAL
expect() {
	if [[ $2 == "$3" ]]; then pass "$1"; else fail "$1 (expected '$2', got '$3')"; fi
}
# check DESC COMMAND...: passes when the command succeeds
check() {
	local desc=$1
	shift
	if "$@"; then pass "$desc"; else fail "$desc"; fi
}
# finish: the closing tally; the script's exit status.
finish() {
	FINISHED=1
	echo "$PASSED passed, $FAILED failed"
	[[ $FAILED -eq 0 ]] && exit 0
	exit 1
}
# die MESSAGE: a setup failure that makes the rest meaningless.
die() {
	fail "$*"
	finish
}

# --- cleanup ---

# at_exit CMD...: runs CMD (as a single eval'd string) at exit, before the
# background processes are stopped.
at_exit() { EXIT_HOOKS+=("$*"); }

# stop_pid PID [SECONDS]: SIGTERM, wait up to SECONDS (default 5) for it to
# exit, then SIGKILL. Sets STOP_RC to its exit status (from wait, when it is
# our child). Never fails.
stop_pid() {
	local pid=$1 secs=${2:-5} i
	STOP_RC=0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < secs * 20; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		# a zombie child counts as exited
		[[ $(ps -o stat= -p "$pid" 2>/dev/null) == Z* ]] && break
		sleep 0.05
	done
	if kill -0 "$pid" 2>/dev/null && [[ $(ps -o stat= -p "$pid" 2>/dev/null) != Z* ]]; then
		echo "note: pid $pid did not stop on SIGTERM within ${secs}s; SIGKILL" >&2
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || STOP_RC=$?
}

_lib_cleanup() {
	local rc=$? i
	set +e
	if [[ -z ${FINISHED:-} ]]; then
		# stopped by an unexpected error (set -e) or a signal: still give the tally
		fail "the script stopped early (exit status $rc)"
		echo "$PASSED passed, $FAILED failed"
		[[ $rc -eq 0 ]] && rc=1
	fi
	for ((i = ${#EXIT_HOOKS[@]} - 1; i >= 0; i--)); do
		eval "${EXIT_HOOKS[$i]}" >/dev/null 2>&1
	done
	for ((i = ${#BG_PIDS[@]} - 1; i >= 0; i--)); do
		kill -0 "${BG_PIDS[$i]}" 2>/dev/null && stop_pid "${BG_PIDS[$i]}" 3
	done
	if [[ -n ${KEEP_WORK:-} ]]; then
		echo "note: kept $WORK" >&2
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap _lib_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- processes ---

# free_port: prints a TCP port free on 127.0.0.1 right now (prefer servers
# that take port 0 and print it; this is for those that cannot).
free_port() {
	"$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_bg NAME CMD...: starts CMD in the background, stdout in $WORK/NAME.out,
# stderr in $WORK/NAME.err; sets BG_PID (the program's own pid: CMD may be
# `agent SERVICE ...`). Stopped at exit.
start_bg() {
	local name=$1
	shift
	# `start_bg NAME agent SERVICE CMD...`: the agent function would leave a
	# subshell between $! and the program; run its env(1) form instead.
	if [[ $1 == agent ]]; then
		agent_cmd "$2"
		shift 2
		set -- "${AGENT_CMD[@]}" "$@"
	fi
	"$@" >"$WORK/$name.out" 2>"$WORK/$name.err" </dev/null &
	BG_PID=$!
	BG_PIDS+=("$BG_PID")
}

# wait_line NAME PID SED_EXPR [SECONDS]: waits (default 10 s) until
# `sed -n SED_EXPR $WORK/NAME.out` prints something; sets LINE to it. Fails
# (returns 1, with the process's stderr shown) if PID exits or time runs out.
wait_line() {
	local name=$1 pid=$2 expr=$3 secs=${4:-10} i
	LINE=
	for ((i = 0; i < secs * 20; i++)); do
		LINE=$(sed -n "$expr" "$WORK/$name.out" 2>/dev/null | head -n1)
		[[ -n $LINE ]] && return 0
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "note: '$name' exited at start; stderr:" >&2
			sed 's/^/    /' "$WORK/$name.err" >&2
			return 1
		fi
		sleep 0.05
	done
	echo "note: '$name' printed no expected line within ${secs}s; stderr:" >&2
	sed 's/^/    /' "$WORK/$name.err" >&2
	return 1
}

# start_listening NAME CMD...: start_bg, then waits for "listening on
# 127.0.0.1:PORT" on its stdout; sets PORT and BG_PID.
start_listening() {
	local name=$1
	start_bg "$@"
	wait_line "$name" "$BG_PID" 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' || die "$name did not start"
	PORT=$LINE
}

# start_sink [NAME] [SINK ARGS...]: an otlp-sink (never under the agent) on a
# free port with --jsonl; sets SINK_PORT, SINK_PID, SINK_JSONL, SINK_ENDPOINT.
start_sink() {
	local name=${1:-sink}
	[[ $# -gt 0 ]] && shift
	[[ -x $SINK ]] || die "$SINK is missing (run make)"
	SINK_JSONL=$WORK/$name.jsonl
	: >"$SINK_JSONL"
	start_listening "$name" env -u LD_PRELOAD "$SINK" --port 0 --quiet --jsonl "$SINK_JSONL" "$@"
	SINK_PORT=$PORT
	SINK_PID=$BG_PID
	SINK_ENDPOINT=http://127.0.0.1:$SINK_PORT
}

# agent_cmd SERVICE: sets AGENT_CMD, the env(1) prefix that runs a command
# under the agent exporting to the sink with a short batch delay. Add more
# settings as VAR=value words after it: "${AGENT_CMD[@]}" VAR=x cmd args.
agent_cmd() {
	AGENT_CMD=(env LD_PRELOAD="$AGENT" OTEL_EXPORTER_OTLP_ENDPOINT="$SINK_ENDPOINT" OTEL_SERVICE_NAME="$1"
		OTEL_BSP_SCHEDULE_DELAY="${OTEL_BSP_SCHEDULE_DELAY:-100}" OTEL_LOG_LEVEL="${OTEL_LOG_LEVEL:-warn}")
}

# agent SERVICE [VAR=value...] CMD...: runs CMD in the foreground under the agent.
agent() {
	agent_cmd "$1"
	shift
	"${AGENT_CMD[@]}" "$@"
}

# start_agent_bg NAME SERVICE [VAR=value...] CMD...: start_bg under the agent
# (BG_PID is the program itself: env execs it).
start_agent_bg() {
	local name=$1
	agent_cmd "$2"
	shift 2
	start_bg "$name" "${AGENT_CMD[@]}" "$@"
}

# need_helper NAME LIBS...: makes sure build/tests/NAME (from tests/NAME.c)
# exists; when it does not (no Makefile rule was run), compiles it directly.
need_helper() {
	local name=$1
	shift
	local bin=build/tests/$name src=tests/$name.c
	if [[ ! -x $bin || $src -nt $bin ]]; then
		mkdir -p build/tests
		"${CC:-cc}" -std=gnu11 -D_GNU_SOURCE -O2 -g -pthread -Wall -Wextra -o "$bin" "$src" "$@" ||
			die "cannot build $bin"
	fi
}

# --- spans (python3, no jq) ---

# The query prelude: load(FILE) -> list of span dicts; helpers for checks.
cat >"$WORK/spanq.py" <<'PY'
import json, re, sys

def load(path):
    out = []
    try:
        with open(path, encoding='utf-8', errors='replace') as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass  # a line being written right now
    except FileNotFoundError:
        pass
    return out

def A(s):
    return s.get('attributes') or {}

def http(s):
    """True for spans made by the HTTP hooks."""
    return 'http.request.method' in A(s)

HEX32 = re.compile(r'^[0-9a-f]{32}$')
HEX16 = re.compile(r'^[0-9a-f]{16}$')

def select(spans, expr):
    code = compile(expr, '<filter>', 'eval')
    res = []
    for s in spans:
        try:
            if eval(code, {'A': A, 'http': http, 're': re}, {'s': s, 'a': A(s)}):
                res.append(s)
        except Exception:
            pass
    return res

# Checks printed as PASS:/FAIL: lines, tallied by the shell (pycheck).
_failed = 0
def check(cond, desc, detail=None):
    global _failed
    if cond:
        print('PASS: ' + desc)
    else:
        _failed += 1
        print('FAIL: ' + desc + ('' if detail is None else ' (' + str(detail) + ')'))
    return bool(cond)

def expect(desc, want, got):
    return check(want == got, desc, 'expected %r, got %r' % (want, got))

def show(s):
    """One span, compactly, for failure details."""
    keep = {k: s.get(k) for k in ('name', 'kind', 'status', 'trace_id', 'span_id', 'parent_span_id')}
    keep['attributes'] = A(s)
    return json.dumps(keep, sort_keys=True)
PY

# spans FILE [EXPR]: prints the spans (JSON lines) for which the python
# expression EXPR is true; `s` is the span, `a` its attributes (default: all).
spans() {
	SPANQ_DIR=$WORK "$PY" -c '
import json, os, sys
sys.path.insert(0, os.environ["SPANQ_DIR"])
from spanq import load, select
for s in select(load(sys.argv[1]), sys.argv[2]):
    print(json.dumps(s, sort_keys=True))
' "$1" "${2:-True}"
}

# count_spans FILE [EXPR]: prints how many spans match.
count_spans() {
	SPANQ_DIR=$WORK "$PY" -c '
import os, sys
sys.path.insert(0, os.environ["SPANQ_DIR"])
from spanq import load, select
print(len(select(load(sys.argv[1]), sys.argv[2])))
' "$1" "${2:-True}"
}

# wait_spans FILE N [EXPR] [SECONDS]: waits (default 15 s) until at least N
# spans match; returns 1 on timeout (and says how many there were).
wait_spans() {
	local file=$1 n=$2 expr=${3:-True} secs=${4:-15} c=0
	local deadline=$((SECONDS + secs))
	while :; do
		c=$(count_spans "$file" "$expr")
		((c >= n)) && return 0
		((SECONDS < deadline)) || break
		sleep 0.1
	done
	echo "note: waited ${secs}s for $n span(s) matching [$expr] in $(basename "$file"); found $c" >&2
	return 1
}

# pycheck [ARGS...] <<'PY' ... PY: runs a python check script (from stdin)
# with the prelude imported (load, select, A, http, check, expect, show,
# HEX16, HEX32) and sys.argv[1:] = ARGS; its PASS:/FAIL: lines are printed
# and counted. A crash counts as one failure.
pycheck() {
	local script out rc=0
	script=$(cat)
	out=$(SPANQ_DIR=$WORK "$PY" -c "import os, sys
sys.path.insert(0, os.environ['SPANQ_DIR'])
from spanq import *
$script" "$@" 2>&1) || rc=$?
	[[ -n $out ]] && printf '%s\n' "$out"
	local p f
	p=$(grep -c '^PASS: ' <<<"$out" || true)
	f=$(grep -c '^FAIL: ' <<<"$out" || true)
	PASSED=$((PASSED + p))
	FAILED=$((FAILED + f))
	if [[ $rc -ne 0 && $f -eq 0 ]]; then
		fail "python check script crashed (exit $rc)"
	fi
}

# --- the tests' own python HTTP peers ---

# $WORK/testhttp.py, a module for the python servers and clients the tests
# write to $WORK (python puts a script's own directory first on sys.path; a
# `-c` or stdin script needs PYTHONPATH=$WORK):
#   serve(handler, server=ThreadingHTTPServer): serves on a free port of
#       127.0.0.1, printing "listening on 127.0.0.1:PORT" (start_listening),
#       until SIGTERM; returns the server (still open: server_close() joins
#       the handler threads)
#   listen(handler, server): the server on a free port of 127.0.0.1, its
#       port printed as above (for servers left at SIGTERM's default)
#   stop_on_sigterm(): SIGTERM raises KeyboardInterrupt
#   Handler: a BaseHTTPRequestHandler that logs nothing, with
#       reply(code, body, content_type=None): status, headers, body
#   recv_all(sock): every byte until the peer closes
# $WORK/http_server.py ARGS...: `python3 -m http.server ARGS...` with
# SIGTERM raising KeyboardInterrupt.
# $WORK/forking_server.py: a socketserver.ForkingMixIn HTTP server answering
# every GET "ok": each request in a child that ends with os._exit.
cat >"$WORK/testhttp.py" <<'PY'
import http.server, signal

def stop_on_sigterm():
    """SIGTERM raises KeyboardInterrupt: the program ends through sys.exit
    (atexit, the agent's flush) rather than dying by the signal."""
    def stop(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)

def listen(handler, server):
    srv = server(('127.0.0.1', 0), handler)
    print('listening on 127.0.0.1:%d' % srv.server_address[1], flush=True)
    return srv

def serve(handler, server=http.server.ThreadingHTTPServer):
    stop_on_sigterm()
    srv = listen(handler, server)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return srv

class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass   # the program's stderr stays its own

    def reply(self, code, body, content_type=None):
        self.send_response(code)
        if content_type:
            self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

def recv_all(sock):
    data = b''
    while True:
        b = sock.recv(65536)
        if not b:
            return data
        data += b
PY
cat >"$WORK/forking_server.py" <<'PY'
import http.server, socketserver
from testhttp import Handler, listen
class H(Handler):
    def do_GET(self):
        self.reply(200, b"ok\n")
class S(socketserver.ForkingMixIn, http.server.HTTPServer):
    pass
listen(H, S).serve_forever()
PY
cat >"$WORK/http_server.py" <<'PY'
import runpy, sys
from testhttp import stop_on_sigterm
stop_on_sigterm()
sys.argv = ['http.server'] + sys.argv[1:]
runpy.run_module('http.server', run_name='__main__', alter_sys=True)
PY

# $WORK/relay.py DOWN LEG...: a CPython HTTP/1.1 service (threading, ended
# by SIGTERM through sys.exit) that answers GET /work?Q by calling DOWN/LEG?Q
# for each LEG with urllib.request (a connection each), and GET /work-ka?Q
# by calling DOWN/ka1?Q and DOWN/ka2?Q on one kept-alive http.client
# connection: 200 with the bodies it got, joined by spaces, and a newline;
# any other path is 404. Prints "listening on 127.0.0.1:PORT".
cat >"$WORK/relay.py" <<'PY'
import http.client, sys, urllib.parse, urllib.request
from testhttp import Handler, serve

DOWN, LEGS = sys.argv[1], sys.argv[2:]

class H(Handler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        tag = self.path.partition('?')[2]
        if self.path.startswith('/work-ka'):
            u = urllib.parse.urlsplit(DOWN)
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
            got = []
            for leg in ('ka1', 'ka2'):
                conn.request('GET', '/%s?%s' % (leg, tag))
                got.append(conn.getresponse().read().decode())
            conn.close()
        elif self.path.startswith('/work'):
            got = []
            for leg in LEGS:
                with urllib.request.urlopen('%s/%s?%s' % (DOWN, leg, tag), timeout=10) as r:
                    got.append(r.read().decode())
        else:
            self.reply(404, b'no\n', 'text/plain')
            return
        self.reply(200, ('%s\n' % ' '.join(got)).encode(), 'text/plain')

serve(H).server_close()
PY

# --- header-recording server (never under the agent) ---

# A python3 HTTP/1.1 server that appends, for every request, one JSON line to
# the file given as argv[1]: {"method", "path", "version", "peer_port",
# "headers": [[name, value], ...] in wire order, "body_len", "body_fnv"}. It answers 200 "ok"
# with a Content-Length; /status/CODE -> CODE (no body for 204 and 304);
# /chunked... -> "ok" chunked, with a trailer; /close... -> "ok" delimited by
# closing the connection. Prints "listening on 127.0.0.1:PORT".
cat >"$WORK/recorder.py" <<'PY'
import json, sys, threading
from testhttp import Handler, serve

LOG = sys.argv[1]
lock = threading.Lock()

def fnv(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
    return '%016x' % h

class H(Handler):
    protocol_version = 'HTTP/1.1'
    def handle_any(self):
        body = b''
        te = (self.headers.get('Transfer-Encoding') or '').lower()
        if 'chunked' in te:
            while True:
                size = int(self.rfile.readline().split(b';')[0].strip() or b'0', 16)
                if size == 0:
                    while self.rfile.readline() not in (b'\r\n', b'\n', b''):
                        pass
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            n = int(self.headers.get('Content-Length') or 0)
            if n:
                body = self.rfile.read(n)
        rec = {'method': self.command, 'path': self.path, 'version': self.request_version,
               'peer_port': self.client_address[1],
               'headers': [[k, v] for k, v in self.headers.raw_items()],
               'body_len': len(body), 'body_fnv': fnv(body) if len(body) < 1 << 20 else None}
        with lock:
            with open(LOG, 'a') as f:
                f.write(json.dumps(rec) + '\n')
        code = 200
        if self.path.startswith('/status/'):
            code = int(self.path.split('/')[2].split('?')[0])
        out = b'ok' if code == 200 else b'status %d' % code
        self.send_response(code)
        self.send_header('Content-Type', 'text/plain')
        if code in (204, 304):
            self.end_headers()
        elif self.path.startswith('/chunked'):
            self.send_header('Transfer-Encoding', 'chunked')
            self.end_headers()
            if self.command != 'HEAD':
                self.wfile.write(b'1\r\no\r\n1;ext=1\r\nk\r\n0\r\nX-Trailer: t\r\n\r\n')
        elif self.path.startswith('/close'):
            self.send_header('Connection', 'close')
            self.end_headers()
            self.close_connection = True
            if self.command != 'HEAD':
                self.wfile.write(out)
        else:
            self.send_header('Content-Length', str(len(out)))
            self.end_headers()
            if self.command != 'HEAD':
                self.wfile.write(out)
    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = handle_any

serve(H)
PY

# start_recorder NAME: starts the recorder with its log in $WORK/NAME.requests;
# sets REC_PORT, REC_PID, REC_LOG.
start_recorder() {
	local name=${1:-recorder}
	REC_LOG=$WORK/$name.requests
	: >"$REC_LOG"
	start_listening "$name" env -u LD_PRELOAD "$PY" "$WORK/recorder.py" "$REC_LOG"
	REC_PORT=$PORT
	REC_PID=$BG_PID
}

# start_relay SERVICE LEG...: the header-recording downstream (start_recorder
# downstream; DOWN is its URL) and relay.py DOWN LEG... under the agent as
# SERVICE; sets RELAY_PID and RELAY_URL.
start_relay() {
	local service=$1
	shift
	start_recorder downstream
	DOWN=http://127.0.0.1:$REC_PORT
	start_listening relay agent "$service" "$PY" "$WORK/relay.py" "$DOWN" "$@"
	RELAY_PID=$BG_PID
	RELAY_URL=http://127.0.0.1:$PORT
}

# --- PostgreSQL (scripts/dev-postgres) ---

# pg_start [-c NAME=VALUE]...: a throwaway PostgreSQL (the newest installed
# server) on 127.0.0.1, a free port, trust auth, database $PGDATABASE_NAME
# (default taskmanager); the settings are passed on to the server (e.g.
# -c log_statement=all). Sets PG_DIR, PG_PORT, PG_DB, PG_LOG (the server
# log), PG_BIN, DATABASE_URL and PSQL (an untraced psql -X argv for the
# database). Stopped (and removed) at exit, even on failure; dies when it
# cannot start. Its own directory, not under $WORK: the server runs as
# postgres when we are root and must be able to reach it.
pg_start() {
	local out
	PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/test-pg.XXXXXX")
	at_exit "pg_stop '$PG_DIR'"
	out=$(bash scripts/dev-postgres start "$@" "$PG_DIR" 2>"$WORK/dev-postgres.err") || {
		sed 's/^/    /' "$WORK/dev-postgres.err" >&2
		die "scripts/dev-postgres start failed"
	}
	DATABASE_URL=${out#DATABASE_URL=}
	# shellcheck disable=SC1091
	PG_PORT=$(. "$PG_DIR/dev-postgres.state" && echo "$PG_PORT")
	PG_DB=$(. "$PG_DIR/dev-postgres.state" && echo "$PG_DB")
	PG_BIN=$(. "$PG_DIR/dev-postgres.state" && echo "$PG_BIN")
	PG_LOG=$PG_DIR/server.log
	PSQL=(psql -X -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$PG_DB")
}

# pg_stop [DIR]: stops the server of pg_start (fast shutdown) and removes its
# directory; harmless when it is already stopped.
pg_stop() {
	local dir=${1:-${PG_DIR:-}}
	[[ -n $dir ]] || return 0
	bash scripts/dev-postgres stop "$dir" >/dev/null 2>&1 || true
}

# --- Kafka (scripts/dev-kafka: librdkafka's mock cluster) ---

# kafka_start [--topic NAME[:PARTITIONS]]...: a throwaway mock Kafka broker on
# 127.0.0.1 (build/tests/kafka-mock, built here when missing) with its files
# in $WORK/kafka; the options are passed on to `scripts/dev-kafka start`.
# Sets KAFKA_DIR, KAFKA_BROKERS (HOST:PORT), KAFKA_PORT and KAFKA_OUT (what
# dev-kafka printed). Stopped at exit, even on failure; dies when it cannot start.
kafka_start() {
	need_helper kafka-mock -lrdkafka
	KAFKA_DIR=$WORK/kafka
	at_exit "bash scripts/dev-kafka stop '$KAFKA_DIR'"
	KAFKA_OUT=$(bash scripts/dev-kafka start "$@" "$KAFKA_DIR" 2>"$WORK/dev-kafka.err") || {
		sed 's/^/    /' "$WORK/dev-kafka.err" >&2
		die "scripts/dev-kafka start failed"
	}
	KAFKA_BROKERS=${KAFKA_OUT#KAFKA_BROKERS=}
	KAFKA_BROKERS=${KAFKA_BROKERS%%,*}
	KAFKA_PORT=${KAFKA_BROKERS##*:}
}

# lines FILE: number of lines (0 when missing).
lines() { if [[ -f $1 ]]; then wc -l <"$1" | tr -d ' '; else echo 0; fi; }

[[ -f $AGENT ]] || die "$AGENT is missing (run make)"
