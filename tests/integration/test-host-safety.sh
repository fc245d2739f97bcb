#!/usr/bin/env bash
# test-host-safety: the agent does not change how programs start and run: tiny static TLS (small-stack threads, node, java), configuration captured at load (nginx workers), spans of children that end with _exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

PATH=$PATH:/usr/sbin
[[ -x build/tests/host-probe && -x build/tests/mhd-server ]] || die "run make first"
start_sink
start_listening backend build/tests/mhd-server --port 0
backend=$PORT

# --- static TLS: every thread pays for it out of its stack ---
tls=$(readelf -lW "$AGENT" | awk '$1 == "TLS" {print $6}')
[[ -n $tls ]] && tls=$((tls))   # readelf prints the size in hex
if [[ -n $tls && $tls -lt 1024 ]]; then
	pass "the agent's static TLS (PT_TLS) is $tls bytes, under 1 KiB"
else
	fail "the agent's static TLS (PT_TLS) is ${tls:-?} bytes (expected under 1024)"
fi
: >"$SINK_JSONL"
out=$(agent threads build/tests/host-probe threads "$backend" 2>"$WORK/threads.err") && rc=0 || rc=$?
expect "threads with PTHREAD_STACK_MIN stacks start and trace their calls" "threads ok" "$out"
expect "... exit status 0" 0 "$rc"
check "... their GETs were traced (3 CLIENT spans)" wait_spans "$SINK_JSONL" 3 's["kind"] == "CLIENT"' 10
# The main thread ends with pthread_exit and the last app thread ends later:
# the process exits with status 0 then, as without the agent (its export
# thread must not keep it alive), and the last thread's span is exported.
rc0=0 rc1=0
out0=$(timeout 30 build/tests/host-probe mainexit "$backend" 2>/dev/null) || rc0=$?
out1=$(agent mainexit timeout 30 build/tests/host-probe mainexit "$backend" 2>"$WORK/mainexit.err") || rc1=$?
expect "main thread ends with pthread_exit: exit status as without the agent (0, no hang)" "$rc0" "$rc1"
expect "... the same output" "$out0" "$out1"
check "... the last thread's GET was exported at the end" \
	wait_spans "$SINK_JSONL" 1 's.get("service.name") == "mainexit" and s["kind"] == "CLIENT"' 10
rc1=0
agent mainexit-down OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:1 timeout -s KILL 30 \
	build/tests/host-probe mainexit "$backend" >/dev/null 2>&1 || rc1=$?
expect "... also with the collector down (exports backing off)" "$rc0" "$rc1"
if command -v node >/dev/null; then
	env LD_PRELOAD="$AGENT" node -e 'console.log("node ok")' >"$WORK/node.out" 2>"$WORK/node.err" && rc=0 || rc=$?
	expect "node starts under the agent" "node ok" "$(cat "$WORK/node.out")"
	expect "... with nothing on stderr (it printed 'pthread_create: Invalid argument')" "" "$(cat "$WORK/node.err")"
else
	fail "node is missing (scripts/install-deps)"
fi
if command -v java >/dev/null; then
	env LD_PRELOAD="$AGENT" java -Xss136k -version >"$WORK/java.out" 2>&1 && rc=0 || rc=$?
	expect "java -Xss136k -version under the agent" 0 "$rc"
else
	echo "note: no java here; its small-stack start is not checked"
fi

# --- configuration captured when the library loads: nginx clears its
# workers' environment before they serve (no `env` directive here) ---
cat >"$WORK/nginx.conf" <<EOF
user root;
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log notice;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path $WORK/nginx-body;
	proxy_temp_path $WORK/nginx-proxy;
	fastcgi_temp_path $WORK/nginx-fastcgi;
	uwsgi_temp_path $WORK/nginx-uwsgi;
	scgi_temp_path $WORK/nginx-scgi;
	server {
		listen 127.0.0.1:NGINX_PORT reuseport;
		location / { return 200 "hello\n"; }
	}
}
EOF
nport=$(free_port)
sed -i "s/NGINX_PORT/$nport/" "$WORK/nginx.conf"
: >"$SINK_JSONL"
start_agent_bg nginx nginx-at-load nginx -p "$WORK" -c "$WORK/nginx.conf" -g 'daemon off;'
nginx_pid=$BG_PID
for ((i = 0; i < 100; i++)); do
	curl -s -o /dev/null "http://127.0.0.1:$nport/" 2>/dev/null && break
	sleep 0.05
done
for ((i = 0; i < 20; i++)); do curl -s -o /dev/null "http://127.0.0.1:$nport/r$i"; done
check "nginx workers export to the configured endpoint (the environment they lost)" \
	wait_spans "$SINK_JSONL" 20 's["kind"] == "SERVER"' 10
pycheck "$SINK_JSONL" <<'PY'
spans = [s for s in load(sys.argv[1]) if s.get('kind') == 'SERVER']
names = sorted(set(s.get('resource', {}).get('service.name') for s in spans))
expect('nginx workers: service.name is OTEL_SERVICE_NAME', ['nginx-at-load'], names)
PY
stop_pid "$nginx_pid"

# --- children that end with _exit (a forking server: socketserver.ForkingMixIn, os._exit) ---
: >"$SINK_JSONL"
start_listening forking agent forking "$PY" "$WORK/forking_server.py"
fport=$PORT
n=100
curl -s -o /dev/null "http://127.0.0.1:$fport/f[1-$n]" || true
check "ForkingMixIn: the $n requests' SERVER spans arrive, though each child ends with os._exit" \
	wait_spans "$SINK_JSONL" "$n" 's["kind"] == "SERVER"' 15
expect "... no span twice" "$n" "$(count_spans "$SINK_JSONL" 's["kind"] == "SERVER"')"
# _exit keeps its status, and a vfork child's _exit (posix_spawn of a
# missing program) leaves the parent alone.
out=$(agent spawn "$PY" -c '
import os, subprocess
pid = os.fork()
if pid == 0:
    os._exit(7)
_, st = os.waitpid(pid, 0)
try:
    subprocess.run(["/nonexistent/program"])
except OSError:
    print("spawn failed as without the agent")
print(os.waitstatus_to_exitcode(st))' 2>&1)
expect "_exit: the child's status, and the parent carries on" "spawn failed as without the agent
7" "$out"
finish
