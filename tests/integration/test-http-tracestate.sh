#!/usr/bin/env bash
# test-http-tracestate: W3C Trace Context Level 2 tracestate rules end to end (curl -> CPython service under the agent -> recorder; curl under the agent with TRACESTATE in its environment).
#
# (a) curl sends a traceparent and tracestate header(s) to a CPython
#     http.server under the agent, which calls a header-recording downstream
#     (NOT under the agent) with urllib. For each case the tracestate the
#     downstream receives and the SERVER span's trace_state must be what
#     Level 2 asks for: keys are (lcalpha / DIGIT) 0*255(keychar) with '@' a
#     keychar anywhere after the first character (foo@, foo@@bar, a
#     256-character key with '@' kept; 257 characters, upper case, a leading
#     '@' discard the header); a repeated key keeps its first entry and the
#     rest of the list (never the whole header dropped); several header lines
#     combine in order; a 33rd member discards the header; a list longer
#     than the agent reads is truncated by whole entries, never a cut value.
# (b) curl under the agent started with TRACEPARENT/TRACESTATE in its
#     environment (the exec carrier) sends the Level 2 tracestate on.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

start_sink
# The service: lib.sh's relay.py; /work?case=NAME calls DOWN/down?case=NAME.
start_relay ts-service down

# The cases: name, then the tracestate header lines to send, and what must
# come out (the downstream header and the SERVER span's trace_state; "-" for
# none). Written by python so that long keys are exact.
"$PY" - "$WORK/cases" <<'PY'
import sys
k256 = 'k' * 200 + '@' + 'v' * 55            # 256 characters with an '@'
k257 = 'k' * 200 + '@' + 'v' * 56            # 257
long_a, long_b, long_c = 'a=' + 'x' * 250, 'b=' + 'y' * 250, 'c=' + 'z' * 200
m33 = ['m%02d=%d' % (i, i) for i in range(33)]
cases = [
    # Level 2 keys that Level 1 rejected
    ('at-trailing', ['foo@=1,bar=2'], 'foo@=1,bar=2'),
    ('at-double', ['foo@@bar=1,bar=2'], 'foo@@bar=1,bar=2'),
    ('at-two', ['foo@bar@baz=1,bar=2'], 'foo@bar@baz=1,bar=2'),
    ('at-long-tenant', ['foo=1', 't' * 242 + '@v=1'], 'foo=1,' + 't' * 242 + '@v=1'),
    ('at-long-system', ['foo=1', 't@' + 'v' * 15 + '=1'], 'foo=1,t@' + 'v' * 15 + '=1'),
    ('key256-at', [k256 + '=1,x=2'], k256 + '=1,x=2'),
    ('digit-first', ['1abc=1,2@x=2'], '1abc=1,2@x=2'),
    # still invalid: the whole header goes
    ('key257-at', [k257 + '=1,x=2'], '-'),
    ('uppercase', ['Foo=1,bar=2'], '-'),
    ('at-first', ['@foo=1,bar=2'], '-'),
    ('value-empty', ['foo=,bar=2'], '-'),
    ('members-33', [','.join(m33[:20]), ','.join(m33[20:])], '-'),
    # repeated keys: the first entry stays, the list is kept
    ('dup', ['foo=1,bar=2,foo=3'], 'foo=1,bar=2'),
    ('dup-lines', ['foo=1,bar=2', 'foo=3,baz=4'], 'foo=1,bar=2,baz=4'),
    # several lines combine in order, empty members vanish
    ('lines', ['rojo=1, ,congo=2', '', 'x@y=3'], 'rojo=1,congo=2,x@y=3'),
    # longer than the agent reads (576): whole entries, never a cut value
    ('cut', [','.join([long_a, long_b, long_c])], long_a + ',' + long_b),
]
with open(sys.argv[1], 'w') as f:
    for name, lines, want in cases:
        f.write('\x1f'.join([name, want] + lines) + '\n')
PY

T=0af7651916cd43dd8448eb211c80319c
P=b7ad6b7169203331
echo "== requests"
# fields are separated by \x1f (not whitespace, so an empty line survives)
while IFS=$'\x1f' read -r -a row; do
	name=${row[0]}
	hdrs=()
	for line in "${row[@]:2}"; do hdrs+=(-H "tracestate: $line"); done
	# curl drops a header given as "name:" with nothing after it; "name;" sends it empty
	for i in "${!hdrs[@]}"; do [[ ${hdrs[$i]} == 'tracestate: ' ]] && hdrs[$i]='tracestate;'; done
	expect "$name: answered" ok "$(curl -sS --max-time 20 -H "traceparent: 00-$T-$P-01" "${hdrs[@]}" "$RELAY_URL/work?case=$name")"
done <"$WORK/cases"
N=$(lines "$WORK/cases")

echo "== (b) curl under the agent with TRACEPARENT/TRACESTATE in its environment"
ENV_TS='foo@=1,foo@@bar=2,bar=3,bar=4'
out=$(agent curl-env TRACEPARENT="00-$T-$P-01" TRACESTATE="$ENV_TS" curl -sS --max-time 10 "$DOWN/env?case=env") || true
expect "env: answered" ok "$out"

check "$N SERVER spans and $((N + 1)) CLIENT spans exported" wait_spans "$SINK_JSONL" $((2 * N + 1)) "http(s)"
stop_pid "$RELAY_PID" 10
expect "service exits 0 on SIGTERM under the agent" 0 "$STOP_RC"

pycheck "$SINK_JSONL" "$REC_LOG" "$WORK/cases" "$T" <<'PY'
import json
path, reclog, casefile, T = sys.argv[1:]
spans = load(path)
reqs = [json.loads(l) for l in open(reclog)]
cases = [l.rstrip('\n').split('\x1f') for l in open(casefile)]

def hdrs(r, name):
    return [v for k, v in r['headers'] if k.lower() == name]
def short(v):
    return v if v is None or len(v) < 80 else '%s...(%d chars)' % (v[:60], len(v))

for row in cases:
    name, want = row[0], None if row[1] == '-' else row[1]
    d = [r for r in reqs if r['path'] == '/down?case=' + name]
    if not check(len(d) == 1, name + ': one downstream request', len(d)):
        continue
    tp = hdrs(d[0], 'traceparent')
    check(len(tp) == 1 and tp[0].split('-')[1] == T, name + ': the incoming trace continues downstream', tp)
    got = hdrs(d[0], 'tracestate')
    expect(name + ': downstream tracestate', short(want), short(got[0]) if len(got) == 1 else (None if not got else got))
    srv = [s for s in spans if s.get('kind') == 'SERVER' and A(s).get('url.query') == 'case=' + name]
    if check(len(srv) == 1, name + ': one SERVER span', len(srv)):
        expect(name + ': SERVER span trace_state', short(want), short(srv[0].get('trace_state') or None))

d = [r for r in reqs if r['path'] == '/env?case=env']
if check(len(d) == 1, 'env: one request from curl'):
    expect('env: curl passes the Level 2 tracestate from TRACESTATE on, repeats dropped',
           ['foo@=1,foo@@bar=2,bar=3'], hdrs(d[0], 'tracestate'))
    tp = hdrs(d[0], 'traceparent')
    check(len(tp) == 1 and tp[0].split('-')[1] == T, 'env: curl continues the TRACEPARENT trace', tp)
PY

finish
