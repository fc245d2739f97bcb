#!/usr/bin/env bash
# test-exporter-faults: a collector that is down, failing or garbled never costs the app CPU, floods of stderr lines or its files; credentials never printed.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

command -v wrk >/dev/null || die "wrk is missing (scripts/install-deps)"
command -v strace >/dev/null || die "strace is missing (scripts/install-deps)"
[[ -x build/tests/mhd-server && -x build/tests/host-probe ]] || die "run make first"

# A collector that misbehaves as told, recording one JSON line per connection
# and per request (with the time it came, its path and Authorization):
#   status:CODE[:RETRY-AFTER]  answers CODE (Retry-After only on the first answer, then 200)
#   status-always:CODE[:RA]    answers CODE every time (with Retry-After: RA)
#   garbage                    answers bytes that are not HTTP
#   reset                      reads the request, then resets the connection
#   cutoff                     starts a 200 answer and closes halfway
cat >"$WORK/collector.py" <<'PY'
import json, socket, socketserver, struct, sys, threading, time
mode, log = sys.argv[1], sys.argv[2]
lock = threading.Lock()
count = {"requests": 0}
def note(**kw):
    kw["t"] = time.time()
    with lock, open(log, "a") as f:
        f.write(json.dumps(kw) + "\n")
class H(socketserver.BaseRequestHandler):
    def handle(self):
        s = self.request
        note(event="connect")
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                d = s.recv(65536)
                if not d:
                    return
                buf += d
            head, _, rest = buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            hdr = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
            n = int(hdr.get("content-length", "0"))
            while len(rest) < n:
                d = s.recv(65536)
                if not d:
                    return
                rest += d
            buf = rest[n:]
            with lock:
                count["requests"] += 1
                first = count["requests"] == 1
            note(event="request", target=lines[0].split(" ")[1], auth=hdr.get("authorization", ""))
            if mode == "reset":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
                return
            if mode == "cutoff":
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
                return
            if mode == "garbage":
                s.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\x00\x01\x02")
                return
            parts = mode.split(":", 2)
            code = int(parts[1]) if len(parts) > 1 else 200
            extra = ""
            if parts[0] == "status" and not first:
                code = 200
            if len(parts) > 2 and (parts[0] == "status-always" or first):
                ra = parts[2]
                if ra.startswith("date"):
                    ra = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + int(ra[4:])))
                extra = "Retry-After: %s\r\n" % ra
            s.sendall(("HTTP/1.1 %d X\r\n%sContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n" % (code, extra)).encode())
class S(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
srv = S(("127.0.0.1", 0), H)
print("listening on 127.0.0.1:%d" % srv.server_address[1], flush=True)
srv.serve_forever()
PY

# count FILE EVENT: lines of that event in a collector's log
count() { grep -c "\"event\": \"$2\"" "$1" 2>/dev/null || true; }
# exp_cpu_ticks PID: CPU clock ticks (user + system) of the agent's export thread
exp_cpu_ticks() {
	local t
	for t in /proc/"$1"/task/*; do
		if [[ $(cat "$t/comm" 2>/dev/null) == traceagent-exp ]]; then
			awk '{print $14 + $15}' "$t/stat"
			return
		fi
	done
	echo 0
}

# --- 1. A minute of a failing collector under load: one attempt per backoff interval ---
SECS=${FAULT_SECONDS:-60}
scenarios=(refused status-always:503 status-always:429 reset cutoff)
declare -A app_pid app_port strace_log col_log col_port
for sc in "${scenarios[@]}"; do
	key=${sc//[:]/-}
	if [[ $sc == refused ]]; then
		col_port[$key]=$(free_port)   # nothing listens there
	else
		col_log[$key]=$WORK/col-$key.jsonl
		start_listening "col-$key" "$PY" "$WORK/collector.py" "$sc" "${col_log[$key]}"
		col_port[$key]=$PORT
	fi
	strace_log[$key]=$WORK/connect-$key.txt
	# strace counts the agent's connect() calls (raw syscalls: no hook sees them);
	# --seccomp-bpf stops only at connect, so the app runs at full speed.
	start_bg "app-$key" strace -f --seccomp-bpf -e trace=connect -o "${strace_log[$key]}" \
		env LD_PRELOAD="$AGENT" OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:${col_port[$key]}" \
		OTEL_SERVICE_NAME="fault-$key" OTEL_LOG_LEVEL=warn \
		build/tests/mhd-server --port 0
	wait_line "app-$key" "$BG_PID" 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' || die "mhd-server did not start"
	app_port[$key]=$LINE
	app_pid[$key]=$(pgrep -P "$BG_PID" -f mhd-server || echo "$BG_PID")
	# strace has no kill-on-exit: should the script stop early, the app must not outlive it
	at_exit "kill -KILL ${app_pid[$key]}"
done
# Load: every server gets requests all along (a batch is always ready).
loads=()
for sc in "${scenarios[@]}"; do
	key=${sc//[:]/-}
	wrk -t1 -c2 -d"${SECS}s" "http://127.0.0.1:${app_port[$key]}/ok" >"$WORK/wrk-$key.txt" 2>&1 &
	loads+=($!)
done
wait "${loads[@]}"
for sc in "${scenarios[@]}"; do
	key=${sc//[:]/-}
	pid=${app_pid[$key]}
	ticks=$(exp_cpu_ticks "$pid")
	hz=$(getconf CLK_TCK)
	reqs=$(awk '/requests in/ {print $1}' "$WORK/wrk-$key.txt")
	[[ ${reqs:-0} -gt 100 ]] && pass "$sc: the app served its load (${reqs} requests)" || fail "$sc: the app served only '${reqs}' requests"
	conns=$(grep -c "htons(${col_port[$key]})" "${strace_log[$key]}" || true)
	if [[ $conns -ge 1 && $conns -lt 30 ]]; then
		pass "$sc: $conns connection attempts to the collector in ${SECS}s (fewer than 30)"
	else
		fail "$sc: $conns connection attempts to the collector in ${SECS}s (expected 1 to 29)"
	fi
	if [[ -n ${col_log[$key]:-} ]]; then
		reqn=$(count "${col_log[$key]}" request)
		[[ $reqn -ge 1 && $reqn -lt 30 ]] && pass "$sc: $reqn export requests reached it" ||
			fail "$sc: $reqn export requests reached it (expected 1 to 29)"
	fi
	# The export thread sleeps while it backs off: well under 5% of one core.
	if [[ $((ticks * 100)) -lt $((SECS * hz * 5)) ]]; then
		pass "$sc: the export thread used $ticks ticks of CPU in ${SECS}s"
	else
		fail "$sc: the export thread used $ticks ticks of CPU in ${SECS}s (5% of a core is $((SECS * hz / 20)))"
	fi
	warnings=$(grep -c '^traceagent: warning' "$WORK/app-$key.err" || true)
	[[ $warnings -le 6 ]] && pass "$sc: $warnings warning lines on stderr" ||
		fail "$sc: $warnings warning lines on stderr (expected at most 6)"
	stop_pid "$pid" 3   # strace then exits with it
done

# --- 2. Answers that are never retried: one warning, then one a minute ---
for sc in status-always:400 garbage; do
	key=${sc//[:]/-}
	log=$WORK/col-$key.jsonl
	start_listening "col-$key" "$PY" "$WORK/collector.py" "$sc" "$log"
	cport=$PORT
	start_bg "app-$key" env LD_PRELOAD="$AGENT" OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$cport" \
		OTEL_SERVICE_NAME="fault-$key" OTEL_BSP_SCHEDULE_DELAY=20 OTEL_BSP_MAX_EXPORT_BATCH_SIZE=8 \
		build/tests/mhd-server --port 0
	apid=$BG_PID
	wait_line "app-$key" "$apid" 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' || die "mhd-server did not start"
	wrk -t1 -c2 -d8s "http://127.0.0.1:$LINE/ok" >/dev/null 2>&1
	stop_pid "$apid"
	reqn=$(count "$log" request)
	warnings=$(grep -c '^traceagent: warning' "$WORK/app-$key.err" || true)
	[[ $reqn -ge 2 ]] && pass "$sc: the collector got $reqn exports" || fail "$sc: the collector got $reqn exports"
	if [[ $warnings -ge 1 && $warnings -le 2 ]]; then
		pass "$sc: $warnings warning line(s) for $reqn failed exports"
	else
		fail "$sc: $warnings warning lines for $reqn failed exports (expected 1 or 2)"
		head -5 "$WORK/app-$key.err"
	fi
done

# --- 3. Retry-After, in seconds and as an HTTP-date, is honoured ---
for ra in 3 date+4; do
	log=$WORK/col-ra-$ra.jsonl
	start_listening "col-ra-$ra" "$PY" "$WORK/collector.py" "status:503:$ra" "$log"
	env OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$PORT" OTEL_LOG_LEVEL=error \
		build/tests/emit-spans --trace >"$WORK/ra-$ra.out" 2>&1 || true
	gap=$("$PY" -c '
import json, sys
t = [json.loads(l)["t"] for l in open(sys.argv[1]) if "\"request\"" in l]
print("%d %.1f" % (len(t), t[1] - t[0] if len(t) > 1 else -1))' "$log")
	n=${gap% *} secs=${gap#* }
	min=${ra#date+}
	if [[ $n == 2 ]] && "$PY" -c "import sys; sys.exit(0 if $secs >= $min - 1.5 else 1)"; then
		pass "Retry-After: $ra: one retry, ${secs}s after the 503"
	else
		fail "Retry-After: $ra: $n requests, the retry ${secs}s after the 503 (expected 2, at least $((min - 1))s apart)"
	fi
	expect "Retry-After: $ra: the spans were exported after the retry" "exported 5 failed 0" "$(tail -n1 "$WORK/ra-$ra.out")"
done
# A Retry-After of 0, or a date in the past, never shortens the backoff.
for ra in 0 date-3600; do
	log=$WORK/col-ra0-$ra.jsonl
	start_listening "col-ra0-$ra" "$PY" "$WORK/collector.py" "status-always:503:$ra" "$log"
	cport=$PORT
	start_bg "app-ra0-$ra" env LD_PRELOAD="$AGENT" OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$cport" \
		OTEL_SERVICE_NAME=ra0 OTEL_BSP_SCHEDULE_DELAY=50 build/tests/mhd-server --port 0
	apid=$BG_PID
	wait_line "app-ra0-$ra" "$apid" 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' || die "mhd-server did not start"
	wrk -t1 -c2 -d8s "http://127.0.0.1:$LINE/ok" >/dev/null 2>&1
	stop_pid "$apid"
	reqn=$(count "$log" request)
	# backoff 1, 2, 4 s: 4 or 5 attempts in 8 s (plus the exit flush's one)
	[[ $reqn -ge 1 && $reqn -le 7 ]] && pass "Retry-After: $ra on every 503: $reqn exports in 8 s" ||
		fail "Retry-After: $ra on every 503: $reqn exports in 8 s (expected at most 7: the backoff stands)"
done

# --- 4. Credentials in the endpoint: never printed; the path goes before the query ---
start_listening backend build/tests/mhd-server --port 0
backend=$PORT
log=$WORK/col-ok.jsonl
start_listening col-ok "$PY" "$WORK/collector.py" status:200 "$log"
env LD_PRELOAD="$AGENT" OTEL_EXPORTER_OTLP_ENDPOINT="http://user:s3cret@127.0.0.1:$PORT/?api_key=k3y&region=eu" \
	OTEL_LOG_LEVEL=debug curl -sS "http://127.0.0.1:$backend/ok" >"$WORK/cred.out" 2>"$WORK/cred.err" || true
check "credentials: the debug output names the endpoint, masked" \
	grep -q 'endpoint=http://\*\*\*@127.0.0.1:[0-9]*/v1/traces?api_key=\*\*\*&region=\*\*\*' "$WORK/cred.err"
check "credentials: neither the password nor the key is printed" \
	bash -c "! grep -q 's3cret\|k3y' '$WORK/cred.err' '$WORK/cred.out'"
expect "credentials: /v1/traces is appended to the path, before the query" "['/v1/traces?api_key=k3y&region=eu']" \
	"$("$PY" -c 'import json,sys; print([json.loads(l)["target"] for l in open(sys.argv[1]) if "request" in l][:1])' "$log")"
expect "credentials: the URL's user and password go as Basic authorization" "['Basic dXNlcjpzM2NyZXQ=']" \
	"$("$PY" -c 'import json,sys; print([json.loads(l)["auth"] for l in open(sys.argv[1]) if "request" in l][:1])' "$log")"
dead=$(free_port)
env LD_PRELOAD="$AGENT" OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://user:s3cret@127.0.0.1:$dead/v1/traces?api_key=k3y" \
	OTEL_LOG_LEVEL=debug curl -sS "http://127.0.0.1:$backend/ok" >"$WORK/cred2.out" 2>"$WORK/cred2.err" || true
check "credentials: a failing endpoint's warnings name it masked" grep -q 'warning: .*http://\*\*\*@127.0.0.1' "$WORK/cred2.err"
check "credentials: ... and never print the password or the key" bash -c "! grep -q 's3cret\|k3y' '$WORK/cred2.err'"

# --- 5. The app closes every descriptor from 3 up: the agent's own are let go, the app's never touched ---
start_sink
for how in closefrom loop range; do
	: >"$SINK_JSONL"
	out=$(agent fd-probe build/tests/host-probe fds "$backend" "$how" "$SINK_JSONL" 2>"$WORK/fds-$how.err") && rc=0 || rc=$?
	expect "descriptors ($how): the app's pipes hold only what it wrote" "pipes intact" "$out"
	expect "descriptors ($how): exit status" 0 "$rc"
	wait_spans "$SINK_JSONL" 3 's["kind"] == "CLIENT"' 5 || true
	# Distinct spans: when the app's close lands while the agent still waits
	# for the collector's answer to a request the collector already took, the
	# agent resends it (OTLP export is at least once), and the sink holds a
	# span twice.
	expect "descriptors ($how): the spans of all three GETs arrived (the agent reconnected)" 3 \
		"$(SPANQ_DIR=$WORK "$PY" -c '
import os, sys
sys.path.insert(0, os.environ["SPANQ_DIR"])
from spanq import load
print(len({s["span_id"] for s in load(sys.argv[1]) if s["kind"] == "CLIENT"}))
' "$SINK_JSONL")"
done

# --- 6. close() in a signal handler while the app's thread is in close() too,
# with the agent holding its collector connection: no hang ---
: >"$SINK_JSONL"
out=$(timeout 60 env LD_PRELOAD="$AGENT" OTEL_EXPORTER_OTLP_ENDPOINT="$SINK_ENDPOINT" OTEL_BSP_SCHEDULE_DELAY=50 \
	build/tests/host-probe sigclose "$backend" "$SINK_JSONL" 2>&1) && rc=0 || rc=$?
expect "close() from a signal handler, racing the app's own close(): it ends" "sigclose ok 0" "$out $rc"

# --- 7. A forking server's children, with the collector down: each child
# makes one attempt at most at its exit, and never waits out a backoff ---
dead=$(free_port)
start_bg forking strace -f --seccomp-bpf -e trace=connect -o "$WORK/forking-connect.txt" \
	env LD_PRELOAD="$AGENT" OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$dead" OTEL_SERVICE_NAME=forking \
	"$PY" "$WORK/forking_server.py"
fpid=$BG_PID
wait_line forking "$fpid" 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' || die "the forking server did not start"
pypid=$(pgrep -P "$fpid" | head -n1)
at_exit "kill -KILL $pypid"
curl -s -o /dev/null "http://127.0.0.1:$LINE/f[1-40]" || true
sleep 1
stop_pid "$pypid" 3
per_pid=$(grep "htons($dead)" "$WORK/forking-connect.txt" | awk '{print $1}' | sort | uniq -c | sort -rn | head -n1 | awk '{print $1}')
total=$(grep -c "htons($dead)" "$WORK/forking-connect.txt" || true)
expect "forking server, collector down: at most one connection attempt per child (40 children: $total in all)" 1 "${per_pid:-0}"
finish
