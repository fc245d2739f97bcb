#!/usr/bin/env bash
# test-other-arch: the agent built for aarch64 and run under qemu-user: TRACEAGENT_FUNCTIONS gives one warning and patches nothing, and the rest (HTTP spans, W3C propagation, export) works as on x86-64.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

A=build/aarch64
ARM_AGENT=$PWD/$A/libtraceagent.so
[[ -e $ARM_AGENT && -e $A/tests/fn-app ]] || die "$A is missing (run make check, which runs make cross)"
command -v qemu-aarch64 >/dev/null || die "qemu-aarch64 is missing (scripts/install-deps installs qemu-user)"
QEMU=(qemu-aarch64 -L /usr/aarch64-linux-gnu)
start_sink

# arm SERVICE [VAR=value...] CMD...: like agent, with the aarch64 agent
# preloaded in the guest only (qemu itself is an x86-64 program).
arm_cmd() {
	agent_cmd "$1"
	AGENT_CMD[1]=QEMU_SET_ENV=LD_PRELOAD=$ARM_AGENT
}

rc0=0 rc1=0
"${QEMU[@]}" $A/tests/fn-app basic >"$WORK/plain.out" 2>/dev/null || rc0=$?
arm_cmd arm-basic
"${AGENT_CMD[@]}" TRACEAGENT_FUNCTIONS='task_*,metrics_calculate:args=2' "${QEMU[@]}" $A/tests/fn-app basic \
	>"$WORK/basic.out" 2>"$WORK/basic.err" || rc1=$?
expect "basic: exit status as without the agent" "$rc0" "$rc1"
check "basic: output as without the agent" cmp -s "$WORK/plain.out" "$WORK/basic.out"
expect "basic: one warning, naming the architecture" 1 "$(grep -c 'TRACEAGENT_FUNCTIONS' "$WORK/basic.err" || true)"
check "basic: the warning says nothing is patched" grep -q 'nothing is patched: .*x86-64 code only' "$WORK/basic.err"

# An HTTP server whose handler makes an HTTP call: SERVER and CLIENT spans,
# in the caller's trace, exported by the aarch64 agent's own export thread.
arm_cmd arm-http
start_bg http "${AGENT_CMD[@]}" TRACEAGENT_FUNCTIONS='handle_request' "${QEMU[@]}" $A/tests/fn-app http "$SINK_PORT"
wait_line http "$BG_PID" 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' || die "fn-app http did not start under qemu"
expect "http: the request is served" "upstream 0" \
	"$(curl -s -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' "http://127.0.0.1:$LINE/x")"
wait "$BG_PID" || true
wait_spans "$SINK_JSONL" 2 "s.get('service.name') == 'arm-http'" || true

pycheck "$SINK_JSONL" <<'PY'
all_spans = load(sys.argv[1])
b = [s for s in all_spans if s.get('service.name') == 'arm-basic']
expect("basic: no function spans", 0, len([s for s in b if s['kind'] == 'INTERNAL']))
h = [s for s in all_spans if s.get('service.name') == 'arm-http']
srv = [s for s in h if s['kind'] == 'SERVER']
cl = [s for s in h if s['kind'] == 'CLIENT']
expect("http: one SERVER and one CLIENT span, no function span", (1, 1, 0),
       (len(srv), len(cl), len([s for s in h if s['kind'] == 'INTERNAL'])))
if srv and cl:
    expect("http: the SERVER span continues the caller's trace",
           ('4bf92f3577b34da6a3ce929d0e0e4736', '00f067aa0ba902b7'), (srv[0]['trace_id'], srv[0]['parent_span_id']))
    expect("http: the CLIENT span nests under it", srv[0]['span_id'], cl[0]['parent_span_id'])
    expect("http: the server span's route", '/x', A(srv[0]).get('url.path'))
PY
finish
