#!/usr/bin/env bash
# http-bench: cost of the HTTP hooks: wrk against build/tests/mhd-server without and with the agent, and ns added per read()/write(). Prints, asserts nothing.
#
# Called by scripts/bench (after `make bench` built the agent, the sink,
# build/bench/io-bench and build/tests/mhd-server). Both sides of every
# comparison run in this one invocation, on this machine, one after the other.
#
# wrk: PAIRS pairs of runs, alternating (without, with, without, with, ...),
# each against a fresh mhd-server (thread per connection) warmed up by 2 s of
# wrk first; the agent's side exports to an otlp-sink that answers 200 without
# decoding, at the default OTEL_BSP_* settings. Printed: each side's median
# requests/s and latency (wrk --latency p50, p99), the ratio of the medians
# (issue 13's target: >= 95%), each pair's ratio, the p99 latency added
# (target <= 50 us), and the agent's span summary
# of its last run (OTEL_LOG_LEVEL=debug: spans dropped are spans not paid for).
#
# Settings (environment): HTTP_BENCH_DURATION (wrk -d, default 10s),
# HTTP_BENCH_THREADS (wrk -t, 2), HTTP_BENCH_CONNECTIONS (wrk -c, 16),
# HTTP_BENCH_PAIRS (alternating wrk pairs, 2),
# IO_BENCH_PAIRS (alternating io-bench runs per side, 3).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/bench/lib.sh
bench_init http-bench

MHD=build/tests/mhd-server
IOB=build/bench/io-bench
DURATION=${HTTP_BENCH_DURATION:-10s}
THREADS=${HTTP_BENCH_THREADS:-2}
CONNS=${HTTP_BENCH_CONNECTIONS:-16}
WRK_PAIRS=${HTTP_BENCH_PAIRS:-2}
PAIRS=${IO_BENCH_PAIRS:-3}

if [[ ! -x $MHD || tests/mhd-server.c -nt $MHD ]]; then
	mkdir -p build/tests
	"${CC:-cc}" -std=gnu11 -D_GNU_SOURCE -O2 -g -pthread -Wall -Wextra -o "$MHD" tests/mhd-server.c -lmicrohttpd
fi
if [[ ! -x $IOB || tests/bench/io-bench.c -nt $IOB ]]; then
	mkdir -p build/bench
	"${CC:-cc}" -std=gnu11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -o "$IOB" tests/bench/io-bench.c
fi
command -v wrk >/dev/null || bench_die "wrk is not installed"

# The collector normally runs on another machine: here the sink answers 200
# without decoding, so its CPU is not charged to the server under test (the
# agent's own export work, encoding, gzip and HTTP, still is).
start_sink --status 200

# run_wrk LABEL [VAR=VALUE...]: starts mhd-server (thread per connection) in
# the environment "${PLAIN[@]}" VAR=VALUE..., warms up, runs wrk; leaves the
# wrk output in $tmp/LABEL.wrk.
run_wrk() {
	local label=$1 pid port
	shift
	bench_bg "$label" "${PLAIN[@]}" "$@" "$MHD" --mode per-connection --port 0
	pid=$BG_PID
	port=$(wait_listening "$label" "$pid") || bench_die "mhd-server did not start"
	wrk -t"$THREADS" -c"$CONNS" -d2s "http://127.0.0.1:$port/ok" >/dev/null
	wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$port/ok" >"$tmp/$label.wrk"
	bench_stop "$pid"
}

echo "== HTTP server: wrk -t$THREADS -c$CONNS -d$DURATION against mhd-server /ok (thread per connection)," \
	"$WRK_PAIRS alternating pairs"
for ((i = 1; i <= WRK_PAIRS; i++)); do
	run_wrk "plain.$i"
	run_wrk "agent.$i" LD_PRELOAD="$AGENT" OTEL_SERVICE_NAME=mhd-bench OTEL_EXPORTER_OTLP_ENDPOINT="$SINK_ENDPOINT" \
		OTEL_LOG_LEVEL=debug
done
python3 tests/bench/wrk-compare.py "$tmp" "$WRK_PAIRS" plain agent 95 50

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
	"${PLAIN[@]}" "$IOB" >>"$tmp/io.plain"
	"${PLAIN[@]}" LD_PRELOAD="$AGENT" OTEL_EXPORTER_OTLP_ENDPOINT="$SINK_ENDPOINT" "$IOB" >>"$tmp/io.agent"
	[[ -n $shim ]] && "${PLAIN[@]}" LD_PRELOAD="$shim" "$IOB" >>"$tmp/io.shim"
	# log correlation on (the agent started by a first connect), no span current
	"${PLAIN[@]}" LD_PRELOAD="$AGENT" TRACEAGENT_LOG_CORRELATION=true IO_BENCH_INIT=1 "$IOB" >>"$tmp/io.logcorr"
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
