#!/usr/bin/env bash
# test-static-musl: programs the agent cannot serve (musl dynamic, musl static, glibc static) run exactly as without it, with LD_PRELOAD set directly and through the launcher.
#
# tests/static-probe.c is built four ways: musl-gcc (dynamic), musl-gcc
# -static, gcc -static, and gcc (dynamic glibc, the control that is traced).
# Each runs against the header-recording server with and without the agent:
# stdout, stderr and exit status must be identical. For the three it cannot
# serve: no span and no traceparent on the wire. Also checked: the agent has
# no strong reference to a symbol musl's libc lacks (musl's loader refuses to
# start a program whose preloaded library has one: exit status 127).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

command -v musl-gcc >/dev/null || die "musl-gcc is missing (Debian package musl-tools; make deps)"
LAUNCHER=$PWD/scripts/traceagent

start_sink
start_recorder

SRC=tests/static-probe.c
build() {
	local name=$1
	shift
	"$@" -O2 -o "$WORK/$name" "$SRC" 2>"$WORK/$name.build" || { sed 's/^/    /' "$WORK/$name.build" >&2; die "cannot build $name"; }
}
build musl-dynamic musl-gcc
build musl-static musl-gcc -static
build glibc-static cc -static
build glibc-dynamic cc

echo "== the binaries are what they claim"
interp() { readelf -l "$WORK/$1" 2>/dev/null | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p'; }
check "musl-dynamic has musl's loader as interpreter" grep -q ld-musl <<<"$(interp musl-dynamic)"
expect "musl-static has no interpreter" "" "$(interp musl-static)"
expect "glibc-static has no interpreter" "" "$(interp glibc-static)"
check "glibc-dynamic has glibc's loader" grep -q ld-linux <<<"$(interp glibc-dynamic)"

echo "== the agent's undefined symbols all exist in musl's libc (or are weak)"
MUSL_LIBC=$(ls /usr/lib/x86_64-linux-musl/libc.so /usr/lib/musl/lib/libc.so 2>/dev/null | head -n1 || true)
if [[ -n $MUSL_LIBC ]] && command -v nm >/dev/null; then
	nm -D --defined-only "$MUSL_LIBC" | awk '{print $3}' | sort -u >"$WORK/musl.syms"
	nm -D --undefined-only "$AGENT" | awk '$1 == "U" {print $2}' | sed 's/@.*//' | sort -u >"$WORK/agent.undef"
	expect "strong references musl cannot resolve" "" "$(comm -23 "$WORK/agent.undef" "$WORK/musl.syms" | tr '\n' ' ')"
else
	echo "note: musl's libc.so or nm not found; symbol check skipped"
fi

# run LABEL BIN MODE: MODE is plain, preload (LD_PRELOAD=agent) or launcher
# (scripts/traceagent); stdout, stderr and status into $WORK/LABEL.{out,err,rc}.
run() {
	local label=$1 bin=$WORK/$2 mode=$3 rc=0
	local envs=(env -u LD_PRELOAD OTEL_EXPORTER_OTLP_ENDPOINT="$SINK_ENDPOINT" OTEL_SERVICE_NAME="$label"
		OTEL_BSP_SCHEDULE_DELAY=100 OTEL_LOG_LEVEL=info)
	case $mode in
	plain) "${envs[@]}" "$bin" "$REC_PORT" >"$WORK/$label.out" 2>"$WORK/$label.err" || rc=$? ;;
	preload) "${envs[@]}" LD_PRELOAD="$AGENT" "$bin" "$REC_PORT" >"$WORK/$label.out" 2>"$WORK/$label.err" || rc=$? ;;
	launcher) "${envs[@]}" "$LAUNCHER" -- "$bin" "$REC_PORT" >"$WORK/$label.out" 2>"$WORK/$label.err" || rc=$? ;;
	esac
	echo "$rc" >"$WORK/$label.rc"
}

same() {
	local what=$1 a=$2 b=$3
	expect "$what: exit status as without the agent" "$(cat "$WORK/$a.rc")" "$(cat "$WORK/$b.rc")"
	check "$what: stdout identical" diff -u "$WORK/$a.out" "$WORK/$b.out"
	check "$what: stderr identical" diff -u "$WORK/$a.err" "$WORK/$b.err"
}

for bin in musl-dynamic musl-static glibc-static glibc-dynamic; do
	echo "== $bin"
	run "$bin-plain" "$bin" plain
	run "$bin-preload" "$bin" preload
	run "$bin-launcher" "$bin" launcher
	expect "$bin: exits 7 without the agent" 7 "$(cat "$WORK/$bin-plain.rc")"
	check "$bin: got its HTTP answer" grep -q '^http: HTTP/1.1 200 OK$' "$WORK/$bin-plain.out"
	same "$bin with LD_PRELOAD" "$bin-plain" "$bin-preload"
	same "$bin through the launcher" "$bin-plain" "$bin-launcher"
done

echo "== what the launcher does with each"
# The launcher's decision, read back from a program it runs: env(1) prints LD_PRELOAD.
launch_env() {
	# run the probe binary's class through the launcher's own classification
	env -u LD_PRELOAD bash -c '. /dev/stdin <<<"$(sed -n "/^# --- ELF inspection/,/^# --- configuration/p" "$0")"; classify "$1"; echo "$CLASS"' "$LAUNCHER" "$WORK/$1"
}
expect "launcher: musl-dynamic is musl" musl "$(launch_env musl-dynamic)"
expect "launcher: musl-static is static" static "$(launch_env musl-static)"
expect "launcher: glibc-static is static" static "$(launch_env glibc-static)"
expect "launcher: glibc-dynamic is glibc" glibc "$(launch_env glibc-dynamic)"
printf '#!/bin/sh\necho script\n' >"$WORK/script.sh"
expect "launcher: a #!/bin/sh script is classified by its interpreter" glibc "$(launch_env script.sh)"
out=$(env -u LD_PRELOAD "$LAUNCHER" --check "$WORK/musl-dynamic" 2>&1 || true)
check "--check names musl and says it runs without LD_PRELOAD" grep -q 'musl-linked: the launcher runs it without LD_PRELOAD' <<<"$out"
out=$(env -u LD_PRELOAD "$LAUNCHER" --check "$WORK/glibc-static" 2>&1 || true)
check "--check names a static program" grep -q 'statically linked: LD_PRELOAD has no effect' <<<"$out"

echo "== spans and wire"
check "the glibc control's spans arrived (preload and launcher)" wait_spans "$SINK_JSONL" 2 "s.get('service.name', '').startswith('glibc-dynamic-')" 20
sleep 0.5
pycheck "$SINK_JSONL" "$REC_LOG" <<'PY'
import json
spans = load(sys.argv[1])
reqs = [json.loads(l) for l in open(sys.argv[2])]
for bin in ('musl-dynamic', 'musl-static', 'glibc-static'):
    expect(bin + ': no span from any run', [], [show(s) for s in spans if s.get('service.name', '').startswith(bin)])
for mode in ('preload', 'launcher'):
    c = [s for s in spans if s.get('service.name') == 'glibc-dynamic-' + mode and s['kind'] == 'CLIENT']
    expect('glibc-dynamic (' + mode + '): one CLIENT span for its GET (the probe exercises the hooks)', 1, len(c))
tp = [[v for k, v in r['headers'] if k.lower() == 'traceparent'] for r in reqs if r['path'] == '/static-probe']
expect('12 requests reached the server', 12, len(tp))
expect('exactly two carried a traceparent (the traced glibc control)', 2, sum(1 for t in tp if t))
PY

finish
