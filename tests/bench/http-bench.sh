#!/usr/bin/env bash
# http-bench: cost of the HTTP hooks: wrk against build/tests/mhd-server without and with the agent, and ns added per read()/write(). Prints, asserts nothing.
#
# Called by scripts/bench (after `make bench` built the agent, the sink,
# build/bench/io-bench and build/tests/mhd-server). Both sides of every
# comparison run in this one invocation, on this machine, one after the other.
#
# Settings (environment): HTTP_BENCH_DURATION (wrk -d, default 10s),
# HTTP_BENCH_THREADS (wrk -t, 2), HTTP_BENCH_CONNECTIONS (wrk -c, 16),
# IO_BENCH_PAIRS (alternating io-bench runs per side, 3).
set -euo pipefail
cd "$(dirname "$0")/../.."

AGENT=${TRACEAGENT_SO:-$PWD/build/libtraceagent.so}
SINK=${TRACEAGENT_SINK:-$PWD/build/otlp-sink}
MHD=build/tests/mhd-server
IOB=build/bench/io-bench
DURATION=${HTTP_BENCH_DURATION:-10s}
THREADS=${HTTP_BENCH_THREADS:-2}
CONNS=${HTTP_BENCH_CONNECTIONS:-16}
PAIRS=${IO_BENCH_PAIRS:-3}

for f in "$AGENT" "$SINK"; do
	[[ -e $f ]] || { echo "http-bench: $f is missing (run make)" >&2; exit 1; }
done
if [[ ! -x $MHD || tests/mhd-server.c -nt $MHD ]]; then
	mkdir -p build/tests
	"${CC:-cc}" -std=gnu11 -D_GNU_SOURCE -O2 -g -pthread -Wall -Wextra -o "$MHD" tests/mhd-server.c -lmicrohttpd
fi
if [[ ! -x $IOB || tests/bench/io-bench.c -nt $IOB ]]; then
	mkdir -p build/bench
	"${CC:-cc}" -std=gnu11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -o "$IOB" tests/bench/io-bench.c
fi
command -v wrk >/dev/null || { echo "http-bench: wrk is not installed" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/http-bench.XXXXXX")
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT

# wait_listening FILE PID: prints the port from "listening on 127.0.0.1:PORT".
wait_listening() {
	local port i
	for ((i = 0; i < 200; i++)); do
		port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$1")
		[[ -n $port ]] && { echo "$port"; return 0; }
		kill -0 "$2" 2>/dev/null || break
		sleep 0.05
	done
	echo "http-bench: no listening line in $1" >&2
	cat "${1%.out}.err" >&2 2>/dev/null || true
	return 1
}

# stop PID: SIGTERM and wait (bounded; the agent flushes at exit within 1 s).
stop() {
	local i
	kill -TERM "$1" 2>/dev/null || true
	for ((i = 0; i < 200; i++)); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
	kill -KILL "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# The collector normally runs on another machine: here the sink answers 200
# without decoding, so its CPU is not charged to the server under test (the
# agent's own export work, encoding, gzip and HTTP, still is).
"$SINK" --port 0 --quiet --status 200 >"$tmp/sink.out" 2>"$tmp/sink.err" &
sink_pid=$!
pids+=("$sink_pid")
sink_port=$(wait_listening "$tmp/sink.out" "$sink_pid")

# run_wrk LABEL [env words...]: starts mhd-server (thread per connection) with the given
# environment, warms up, runs wrk; leaves the wrk output in $tmp/LABEL.wrk.
run_wrk() {
	local label=$1 pid port
	shift
	env "$@" "$MHD" --mode per-connection --port 0 >"$tmp/$label.out" 2>"$tmp/$label.err" &
	pid=$!
	pids+=("$pid")
	port=$(wait_listening "$tmp/$label.out" "$pid")
	wrk -t"$THREADS" -c"$CONNS" -d2s "http://127.0.0.1:$port/ok" >/dev/null
	wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$port/ok" >"$tmp/$label.wrk"
	stop "$pid"
}

echo "== HTTP server: wrk -t$THREADS -c$CONNS -d$DURATION against mhd-server /ok (thread per connection)"
run_wrk plain -u LD_PRELOAD
run_wrk agent LD_PRELOAD="$AGENT" OTEL_SERVICE_NAME=mhd-bench OTEL_TRACES_SAMPLER=always_on \
	OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$sink_port" OTEL_LOG_LEVEL=debug

python3 - "$tmp/plain.wrk" "$tmp/agent.wrk" "$tmp/agent.err" <<'PY'
import re, sys

def parse(path):
    text = open(path).read()
    rps = float(re.search(r'Requests/sec:\s*([\d.]+)', text).group(1))
    m = re.search(r'^\s*99%\s+([\d.]+)(us|ms|s)\s*$', text, re.M)
    p99 = float(m.group(1)) * {'us': 1, 'ms': 1e3, 's': 1e6}[m.group(2)]
    m = re.search(r'^\s*50%\s+([\d.]+)(us|ms|s)\s*$', text, re.M)
    p50 = float(m.group(1)) * {'us': 1, 'ms': 1e3, 's': 1e6}[m.group(2)]
    errs = re.search(r'Non-2xx or 3xx responses: (\d+)|Socket errors: .*', text)
    return rps, p50, p99, errs.group(0) if errs else ''

(r0, m0, p0, e0), (r1, m1, p1, e1) = parse(sys.argv[1]), parse(sys.argv[2])
print('without agent: %10.0f requests/s  p50 %8.1f us  p99 %8.1f us %s' % (r0, m0, p0, e0))
print('with agent:    %10.0f requests/s  p50 %8.1f us  p99 %8.1f us %s' % (r1, m1, p1, e1))
print('throughput with the agent: %.1f%% of without (target >= 95%%)' % (100 * r1 / r0))
print('p99 latency added: %+.1f us (target <= 50 us)' % (p1 - p0))
summary = [l.strip() for l in open(sys.argv[3]) if re.search(r'spans|exported|dropped', l)]
for l in summary[-3:]:
    print('agent: ' + l)
PY

echo
echo "== read()/write(), one byte per call: $IOB, interposed symbol vs libc direct in one process (median of $PAIRS runs each)"
# The floor: what any LD_PRELOAD forwarding read/write through a dlsym(RTLD_NEXT)
# pointer costs on this machine (after a syscall, caches and branch predictors
# may be cold), measured the same way.
cat >"$tmp/shim.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <unistd.h>
static ssize_t (*next_read)(int, void *, size_t);
static ssize_t (*next_write)(int, const void *, size_t);
__attribute__((constructor)) static void init(void)
{
	next_read = (ssize_t (*)(int, void *, size_t))dlsym(RTLD_NEXT, "read");
	next_write = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
}
ssize_t read(int fd, void *b, size_t n) { return next_read(fd, b, n); }
ssize_t write(int fd, const void *b, size_t n) { return next_write(fd, b, n); }
C
shim=
"${CC:-cc}" -O2 -fPIC -shared -o "$tmp/shim.so" "$tmp/shim.c" 2>/dev/null && shim=$tmp/shim.so
: >"$tmp/io.shim"
for ((i = 0; i < PAIRS; i++)); do
	env -u LD_PRELOAD "$IOB" >>"$tmp/io.plain"
	env LD_PRELOAD="$AGENT" OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$sink_port" "$IOB" >>"$tmp/io.agent"
	[[ -n $shim ]] && env LD_PRELOAD="$shim" "$IOB" >>"$tmp/io.shim"
	# log correlation on (the agent started by a first connect), no span current
	env LD_PRELOAD="$AGENT" TRACEAGENT_LOG_CORRELATION=true IO_BENCH_INIT=1 "$IOB" >>"$tmp/io.logcorr"
done
python3 - "$tmp/io.plain" "$tmp/io.agent" "$tmp/io.shim" "$tmp/io.logcorr" <<'PY'
import statistics, sys
def runs(path):
    out = {}
    for line in open(path):
        kind, op, sym, libc, added = line.split()[:5]
        out.setdefault(kind + ' ' + op, []).append((float(sym), float(libc), float(added)))
    return out
a, b, f = runs(sys.argv[1]), runs(sys.argv[2]), runs(sys.argv[3])
nan = float('nan')
med = lambda rows, i: statistics.median(x[i] for x in rows) if rows else nan
for k in a:
    ctl, add, floor = med(a[k], 2), med(b.get(k), 2), med(f.get(k), 2)
    print('%-10s %7.1f ns/call; agent adds %+6.1f ns/call (target <= 5 ns) [vs libc direct %+.1f, control without preload %+.1f,'
          ' do-nothing forwarding shim %+.1f]' % (k, med(b.get(k), 0), add - ctl, add, ctl, floor - ctl))
lc = runs(sys.argv[4]).get('fd1 write')
if lc and 'fd1 write' in a:
    print('fd1 write with TRACEAGENT_LOG_CORRELATION=true, no span current: agent adds %+6.1f ns/call'
          ' (off: the fd1 line above)' % (med(lc, 2) - med(a['fd1 write'], 2)))
PY
