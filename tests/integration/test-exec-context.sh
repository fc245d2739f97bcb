#!/usr/bin/env bash
# test-exec-context: context across fork and exec: TRACEPARENT/TRACESTATE/BAGGAGE to exec'd programs when a span is current, TRACEPARENT at start, forked children, a traced shell script's curl and psql under one trace.
#
# build/tests/exec-probe (tests/exec-probe.c) serves HTTP under the agent and,
# inside each request's SERVER span, runs env(1) through one exec variant
# (execve, execv, execvp, execvpe, execl, execle, execlp, fexecve, execveat,
# vfork+execve, posix_spawn, posix_spawnp, system), answering the carrier
# variables env printed; outside any span (`run`) it does the same.
#   (a) a shell script running curl and psql: started with TRACEPARENT, and run
#       by a traced CPython handler through subprocess (vfork + exec): one trace,
#       curl's and psql's spans under the script's context
#   (b) fork inside a span: the child's span is a child of the span current at
#       the fork, with fresh ids; the parent's SERVER span is exported once
#   (c) every exec variant; the app's envp array untouched (posix_spawn); no
#       change without a current span; an app's own TRACEPARENT kept; stale
#       inherited TRACESTATE/BAGGAGE dropped; OTEL_PROPAGATORS=none; a valid
#       TRACEPARENT at start parents root spans, an invalid one is ignored
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

need_helper exec-probe
PROBE=$PWD/build/tests/exec-probe
command -v psql >/dev/null || die "psql is not installed"

start_sink
start_recorder
REC_URL=http://127.0.0.1:$REC_PORT

# The context the probe inherits, and the one each request brings.
INH_T=11111111111111111111111111111111
INH_S=2222222222222222
REQ_T=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
REQ_P=bbbbbbbbbbbbbbbb
VARIANTS=(execve execv execvp execvpe execl execle execlp fexecve execveat vfork posix_spawn posix_spawnp system)

start_listening probe env LD_PRELOAD="$AGENT" OTEL_EXPORTER_OTLP_ENDPOINT="$SINK_ENDPOINT" OTEL_SERVICE_NAME=probe \
	OTEL_BSP_SCHEDULE_DELAY=100 OTEL_LOG_LEVEL=warn \
	TRACEPARENT="00-$INH_T-$INH_S-01" TRACESTATE=old=1 BAGGAGE=inh=1 "$PROBE" serve
PROBE_PORT=$PORT
PROBE_PID=$BG_PID
mkdir -p "$WORK/bodies"

# ask PATH FILE [curl args...]: one request to the probe (curl not under the agent).
ask() {
	local path=$1 file=$2
	shift 2
	curl -sS --max-time 20 "$@" "http://127.0.0.1:$PROBE_PORT$path" >"$WORK/bodies/$file" 2>&1 || true
}

echo "== (c) every exec variant inside a SERVER span (request with tracestate and baggage)"
for v in "${VARIANTS[@]}"; do
	ask "/exec/$v" "$v" -H "traceparent: 00-$REQ_T-$REQ_P-01" -H 'tracestate: x=1' -H 'baggage: k=v'
done
echo "== (c) no tracestate or baggage in the request: the inherited ones are not passed on"
ask "/exec/execve?bare" bare -H "traceparent: 00-$REQ_T-$REQ_P-01"
echo "== (c) the app's own TRACEPARENT in its envp is kept"
ask "/exec/execve?env=own" own -H "traceparent: 00-$REQ_T-$REQ_P-01"
echo "== (b) fork inside a span: parent and child each make an HTTP call"
ask "/fork?port=$REC_PORT" fork -H "traceparent: 00-$REQ_T-$REQ_P-01"
ask /quit quit
wait "$PROBE_PID" 2>/dev/null || true
expect "the probe exited 0 after /quit" 0 "$(kill -0 "$PROBE_PID" 2>/dev/null && echo running || echo 0)"

echo "== (c) outside any span: the child gets the environment as it is"
for v in execve execv execvp execl execlp fexecve vfork posix_spawn posix_spawnp; do
	agent probe-run TRACEPARENT="00-$INH_T-$INH_S-01" TRACESTATE=old=1 BAGGAGE=inh=1 \
		"$PROBE" run "$v" "$SINK_PORT" >"$WORK/bodies/run-$v" 2>&1 || echo "exit $?" >>"$WORK/bodies/run-$v"
done
agent probe-run env -u TRACEPARENT -u TRACESTATE -u BAGGAGE "$PROBE" run execve "$SINK_PORT" \
	>"$WORK/bodies/run-none" 2>&1 || echo "exit $?" >>"$WORK/bodies/run-none"

echo "== (c) OTEL_PROPAGATORS=none: nothing passed even inside a span"
start_listening probe-none env LD_PRELOAD="$AGENT" OTEL_EXPORTER_OTLP_ENDPOINT="$SINK_ENDPOINT" \
	OTEL_SERVICE_NAME=probe-none OTEL_BSP_SCHEDULE_DELAY=100 OTEL_PROPAGATORS=none "$PROBE" serve
curl -sS --max-time 20 -H "traceparent: 00-$REQ_T-$REQ_P-01" "http://127.0.0.1:$PORT/exec/execve" \
	>"$WORK/bodies/prop-none" 2>&1 || true
curl -sS --max-time 5 "http://127.0.0.1:$PORT/quit" >/dev/null 2>&1 || true

echo "== (c) TRACEPARENT at start: root spans' parent; an invalid one is ignored"
out=$(agent start-valid TRACEPARENT="00-$INH_T-$INH_S-01" TRACESTATE=old=1 "$PROBE" get "$REC_PORT" /start-valid 2>&1) || true
expect "valid TRACEPARENT: request answered" "HTTP/1.1 200 OK" "$out"
for bad in "00-$INH_T-0000000000000000-01" "zz-not-a-traceparent" "00-${REQ_T^^}-$INH_S-01"; do
	out=$(agent start-invalid TRACEPARENT="$bad" TRACESTATE=old=1 "$PROBE" get "$REC_PORT" "/start-invalid?$bad" 2>"$WORK/invalid.err") || true
	expect "invalid TRACEPARENT '$bad': request answered" "HTTP/1.1 200 OK" "$out"
	expect "invalid TRACEPARENT '$bad': nothing on stderr at the default log level" "" "$(cat "$WORK/invalid.err")"
done
agent start-debug OTEL_LOG_LEVEL=debug TRACEPARENT=bogus "$PROBE" get "$REC_PORT" /start-debug >/dev/null 2>"$WORK/debug.err" || true
check "invalid TRACEPARENT: one debug line says it is ignored" grep -q 'TRACEPARENT.*not a valid.*ignored' "$WORK/debug.err"

echo "== (a) a traced shell script running curl and psql"
pg_start
cat >"$WORK/script.sh" <<'SH'
#!/bin/bash
# curl and psql, each under its own service name; TAG marks this run.
set -e
TAG=$1
OTEL_SERVICE_NAME=script-curl curl -sS --max-time 10 -o /dev/null "$REC_URL/from-script?$TAG"
OTEL_SERVICE_NAME=script-psql psql -X -q -At -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$PG_DB" -c "SELECT 42 AS $TAG" >/dev/null
echo "script saw TRACEPARENT=${TRACEPARENT:-none}"
SH
export REC_URL PG_PORT PG_DB
SCRIPT_T=cccccccccccccccccccccccccccccccc
SCRIPT_S=dddddddddddddddd
out=$(agent script TRACEPARENT="00-$SCRIPT_T-$SCRIPT_S-01" bash "$WORK/script.sh" fromenv 2>&1) || true
expect "script started with TRACEPARENT: ran" "script saw TRACEPARENT=00-$SCRIPT_T-$SCRIPT_S-01" "$out"

cat >"$WORK/handler.py" <<'PY'
import http.server, subprocess, sys
from testhttp import Handler, listen
SCRIPT = sys.argv[1]
class H(Handler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        r = subprocess.run(['bash', SCRIPT, 'viahandler'], capture_output=True)
        self.reply(200, r.stdout + r.stderr + b'rc=%d\n' % r.returncode)
listen(H, http.server.HTTPServer).serve_forever()
PY
start_listening handler env LD_PRELOAD="$AGENT" OTEL_EXPORTER_OTLP_ENDPOINT="$SINK_ENDPOINT" OTEL_SERVICE_NAME=handler \
	OTEL_BSP_SCHEDULE_DELAY=100 OTEL_LOG_LEVEL=warn "$PY" "$WORK/handler.py" "$WORK/script.sh"
HANDLER_PORT=$PORT
out=$(curl -sS --max-time 30 "http://127.0.0.1:$HANDLER_PORT/run") || true
check "handler ran the script (rc=0)" grep -q '^rc=0$' <<<"$out"
HANDLER_TP=$(sed -n 's/^script saw TRACEPARENT=//p' <<<"$out")

echo "== spans"
check "probe SERVER spans exported" wait_spans "$SINK_JSONL" $((${#VARIANTS[@]} + 4)) "s.get('service.name') == 'probe' and s['kind'] == 'SERVER'" 20
check "the forked child's CLIENT span exported" wait_spans "$SINK_JSONL" 1 "'/from-child' in a.get('url.full', '')" 20
check "script spans exported (curl, psql, twice)" wait_spans "$SINK_JSONL" 4 "s.get('service.name') in ('script-curl', 'script-psql')" 20
check "start spans exported" wait_spans "$SINK_JSONL" 4 "s.get('service.name') in ('start-valid', 'start-invalid')" 20
check "handler SERVER span exported" wait_spans "$SINK_JSONL" 1 "s.get('service.name') == 'handler'" 20

pycheck "$SINK_JSONL" "$WORK/bodies" "$REC_LOG" "$INH_T" "$INH_S" "$REQ_T" "$REQ_P" "$SCRIPT_T" "$SCRIPT_S" "$HANDLER_TP" "${VARIANTS[@]}" <<'PY'
import json, os
path, bodies, reclog, inh_t, inh_s, req_t, req_p, script_t, script_s, handler_tp = sys.argv[1:11]
variants = sys.argv[11:]
spans = load(path)
reqs = [json.loads(l) for l in open(reclog)]

def body(name):
    try:
        return open(os.path.join(bodies, name)).read()
    except FileNotFoundError:
        return ''
def vars_of(text):
    out = {}
    for line in text.splitlines():
        if '=' in line:
            k, v = line.split('=', 1)
            out.setdefault(k, []).append(v)
    return out
def server(p):
    m = [s for s in spans if s.get('service.name') == 'probe' and s['kind'] == 'SERVER' and
         (A(s).get('url.path', '') + ('?' + A(s)['url.query'] if A(s).get('url.query') else '')) == p]
    check(len(m) == 1, 'one SERVER span for ' + p, [show(s) for s in m])
    return m[0] if m else None
inh_tp = '00-%s-%s-01' % (inh_t, inh_s)

# (c) every variant inside a span
envp_forms = {'execve', 'execvpe', 'execle', 'fexecve', 'execveat', 'vfork', 'posix_spawn', 'posix_spawnp'}
for v in variants:
    b = vars_of(body(v))
    s = server('/exec/' + v)
    if v == 'system':
        # glibc's system() spawns through an internal call: environ as it is
        expect('system(): the child sees the inherited TRACEPARENT (documented limit)', [inh_tp], b.get('TRACEPARENT'))
        continue
    if s:
        expect(v + ': TRACEPARENT is the SERVER span current at exec', ['00-%s-%s-01' % (req_t, s['span_id'])], b.get('TRACEPARENT'))
        expect(v + ': SERVER span continues the request trace', (req_t, req_p), (s['trace_id'], s['parent_span_id']))
    expect(v + ': TRACESTATE is the request\'s', ['x=1'], b.get('TRACESTATE'))
    expect(v + ': BAGGAGE is the request\'s', ['k=v'], b.get('BAGGAGE'))
    if v in envp_forms:
        expect(v + ': the rest of the app\'s envp is passed', ['1'], b.get('APPVAR'))
    if v.startswith('posix_spawn'):
        expect(v + ': the app\'s envp array and strings are unchanged afterwards', ['yes'], b.get('envp-intact'))

b = vars_of(body('bare'))
s = server('/exec/execve?bare')
if s:
    expect('request without tracestate/baggage: TRACEPARENT is the span', ['00-%s-%s-01' % (req_t, s['span_id'])], b.get('TRACEPARENT'))
expect('request without tracestate: the inherited TRACESTATE is not passed on', None, b.get('TRACESTATE'))
expect('request without baggage: the inherited BAGGAGE is not passed on', None, b.get('BAGGAGE'))

b = vars_of(body('own'))
expect('app\'s own TRACEPARENT in envp: kept', ['00-abababababababababababababababab-cdcdcdcdcdcdcdcd-01'], b.get('TRACEPARENT'))
expect('app\'s own TRACEPARENT in envp: its TRACESTATE kept', ['own=1'], b.get('TRACESTATE'))

# outside any span: untouched
for v in ('execve', 'execv', 'execvp', 'execl', 'execlp', 'fexecve', 'vfork', 'posix_spawn', 'posix_spawnp'):
    b = vars_of(body('run-' + v))
    expect(v + ' outside any span: inherited TRACEPARENT as it was', [inh_tp], b.get('TRACEPARENT'))
    expect(v + ' outside any span: inherited TRACESTATE as it was', ['old=1'], b.get('TRACESTATE'))
    expect(v + ' outside any span: inherited BAGGAGE as it was', ['inh=1'], b.get('BAGGAGE'))
    if v.startswith('posix_spawn'):
        expect(v + ' outside any span: envp unchanged', ['yes'], b.get('envp-intact'))
expect('outside any span, nothing inherited: no TRACEPARENT', None, vars_of(body('run-none')).get('TRACEPARENT'))
expect('OTEL_PROPAGATORS=none: nothing passed', (None, None), (vars_of(body('prop-none')).get('TRACEPARENT'), vars_of(body('prop-none')).get('BAGGAGE')))

# (b) fork
srv_fork = [s for s in spans if s.get('service.name') == 'probe' and s['kind'] == 'SERVER' and A(s).get('url.path') == '/fork']
check(len(srv_fork) == 1, 'fork: the SERVER span current at the fork is exported exactly once (not again by the child)', [show(s) for s in srv_fork])
check(body('fork').startswith('forked rc=0'), 'fork: the child\'s request succeeded', body('fork'))
child = [s for s in spans if A(s).get('url.full', '').endswith('/from-child')]
parent = [s for s in spans if A(s).get('url.full', '').endswith('/from-parent')]
if check(len(child) == 1 and len(parent) == 1 and len(srv_fork) == 1, 'fork: one CLIENT span each from parent and child'):
    f, c, p = srv_fork[0], child[0], parent[0]
    expect('fork: child\'s span is a child of the span current at the fork', (f['trace_id'], f['span_id']), (c['trace_id'], c['parent_span_id']))
    expect('fork: parent\'s span too', (f['trace_id'], f['span_id']), (p['trace_id'], p['parent_span_id']))
    check(c['span_id'] != p['span_id'], 'fork: fresh ids (child and parent made their next span id independently)', (c['span_id'], p['span_id']))
    check(c['span_id'] not in [s['span_id'] for s in spans if s is not c], 'fork: the child\'s span id is unique')
    # the child's request carried its own span as traceparent
    r = [q for q in reqs if q['path'] == '/from-child']
    tps = [v for k, v in r[0]['headers'] if k.lower() == 'traceparent'] if r else []
    expect('fork: the child\'s request carries its span', ['00-%s-%s-01' % (c['trace_id'], c['span_id'])], tps)

# start: valid TRACEPARENT parents root spans; invalid ignored
sv = [s for s in spans if s.get('service.name') == 'start-valid']
if check(len(sv) == 1, 'valid TRACEPARENT at start: one CLIENT span', [show(s) for s in sv]):
    expect('valid TRACEPARENT at start: the root span\'s parent is it', (inh_t, inh_s), (sv[0]['trace_id'], sv[0]['parent_span_id']))
    r = [q for q in reqs if q['path'] == '/start-valid']
    ts = [v for k, v in r[0]['headers'] if k.lower() == 'tracestate'] if r else []
    expect('valid TRACEPARENT at start: its TRACESTATE travels on', ['old=1'], ts)
si = [s for s in spans if s.get('service.name') == 'start-invalid']
expect('invalid TRACEPARENT at start: three CLIENT spans', 3, len(si))
for s in si:
    check(s['parent_span_id'] == '' and s['trace_id'] != inh_t, 'invalid TRACEPARENT ignored: a root span in a new trace', show(s))
r = [q for q in reqs if q['path'].startswith('/start-invalid')]
check(r and all(not [v for k, v in q['headers'] if k.lower() == 'tracestate'] for q in r),
      'invalid TRACEPARENT: its TRACESTATE is ignored with it')

# (a) the shell script: curl's and psql's spans under the script's context
def script_spans(tag):
    c = [s for s in spans if s.get('service.name') == 'script-curl' and A(s).get('url.full', '').endswith('?' + tag)]
    q = [s for s in spans if s.get('service.name') == 'script-psql' and tag in A(s).get('db.query.text', '')]
    return c, q
c, q = script_spans('fromenv')
if check(len(c) == 1 and len(q) == 1, 'script with TRACEPARENT: one curl span and one psql span', [show(s) for s in c + q]):
    expect('script with TRACEPARENT: curl\'s span under the script\'s context', (script_t, script_s), (c[0]['trace_id'], c[0]['parent_span_id']))
    expect('script with TRACEPARENT: psql\'s span under the script\'s context', (script_t, script_s), (q[0]['trace_id'], q[0]['parent_span_id']))
    expect('psql span is a SQL CLIENT span', ('CLIENT', 'postgresql'), (q[0]['kind'], A(q[0]).get('db.system.name')))

h = [s for s in spans if s.get('service.name') == 'handler' and s['kind'] == 'SERVER']
c, q = script_spans('viahandler')
if check(len(h) == 1 and len(c) == 1 and len(q) == 1, 'handler: one SERVER span, one curl span, one psql span', [show(s) for s in h + c + q]):
    h = h[0]
    # a root SERVER span: flags 03 (sampled, and W3C Level 2's random trace id)
    expect('handler: the script got the SERVER span as TRACEPARENT (subprocess, vfork + exec)', '00-%s-%s-03' % (h['trace_id'], h['span_id']), handler_tp)
    expect('handler: curl\'s span is a child of the SERVER span', (h['trace_id'], h['span_id']), (c[0]['trace_id'], c[0]['parent_span_id']))
    expect('handler: psql\'s span is a child of the SERVER span', (h['trace_id'], h['span_id']), (q[0]['trace_id'], q[0]['parent_span_id']))
    # the curl request went out with its own span as parent, in the same trace
    r = [x for x in reqs if x['path'] == '/from-script?viahandler']
    tps = [v for k, v in r[0]['headers'] if k.lower() == 'traceparent'] if r else []
    expect('handler: curl sent traceparent = its span, same trace', ['00-%s-%s-03' % (h['trace_id'], c[0]['span_id'])], tps)
    check(len({s['trace_id'] for s in (h, c[0], q[0])}) == 1, 'handler: one trace')
PY

finish
