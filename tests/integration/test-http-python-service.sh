#!/usr/bin/env bash
# test-http-python-service: a CPython service under the agent propagates the incoming trace to its outgoing urllib calls.
#
# Acceptance 3 of the HTTP hooks. The service (HTTP/1.1, threading) answers
# GET /work by making two urllib.request calls to a header-recording
# downstream NOT under the agent. Checked: CLIENT spans are children of the
# SERVER span, each outgoing traceparent names its own CLIENT span, the
# incoming tracestate travels on; an unsampled incoming parent is propagated
# with flags 00 and nothing is exported for it; an invalid incoming
# traceparent starts a new trace and its tracestate is dropped.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

start_sink
# The service: lib.sh's relay.py; /work calls DOWN/a and DOWN/b.
start_relay python-service a b
C=(curl -sS --max-time 20)

T_SAMPLED=0af7651916cd43dd8448eb211c80319c
P_SAMPLED=b7ad6b7169203331
T_UNSAMPLED=4bf92f3577b34da6a3ce929d0e0e4736
P_UNSAMPLED=00f067aa0ba902b7
T_BADVER=5b8efff798038103d269b633813fc60c
T_UPPER=A3CE929D0E0E47364BF92F3577B34DA6
TS='congo=t61rcWkgMzE,rojo=00f067aa0ba902b7'
BAGGAGE='userId=alice,isProduction=false'
T_KA=1bf92f3577b34da6a3ce929d0e0e4736
T_CONC_PREFIX=c0c0c0c0c0c0c0c0c0c0c0c0

echo "== requests"
expect "sampled parent: /work answered" "ok ok" \
	"$("${C[@]}" -H "traceparent: 00-$T_SAMPLED-$P_SAMPLED-01" -H "tracestate: $TS" -H "baggage: $BAGGAGE" "$RELAY_URL/work?case=sampled")"
expect "unsampled parent: /work answered" "ok ok" \
	"$("${C[@]}" -H "traceparent: 00-$T_UNSAMPLED-$P_UNSAMPLED-00" -H "tracestate: $TS" "$RELAY_URL/work?case=unsampled")"
expect "version ff traceparent: /work answered" "ok ok" \
	"$("${C[@]}" -H "traceparent: ff-$T_BADVER-$P_SAMPLED-01" -H "tracestate: $TS" "$RELAY_URL/work?case=badver")"
expect "uppercase traceparent: /work answered" "ok ok" \
	"$("${C[@]}" -H "traceparent: 00-$T_UPPER-$P_SAMPLED-01" -H "tracestate: $TS" "$RELAY_URL/work?case=upper")"
expect "no traceparent: /work answered" "ok ok" "$("${C[@]}" "$RELAY_URL/work?case=none")"
expect "keep-alive downstream: /work-ka answered" "ok ok" \
	"$("${C[@]}" -H "traceparent: 00-$T_KA-$P_SAMPLED-01" "$RELAY_URL/work-ka?case=ka")"
# Eight concurrent requests, each with its own trace, on the threading server.
CONC_PIDS=()
for i in 1 2 3 4 5 6 7 8; do
	"${C[@]}" -o "$WORK/conc.$i" -H "traceparent: 00-${T_CONC_PREFIX}0000000$i-$P_SAMPLED-01" "$RELAY_URL/work?case=conc$i" &
	CONC_PIDS+=("$!")
done
for p in "${CONC_PIDS[@]}"; do wait "$p" || true; done
expect "8 concurrent /work requests answered" "8" "$(cat "$WORK"/conc.* | grep -c '^ok ok$' || true)"
expect "downstream saw 28 requests" 28 "$(lines "$REC_LOG")"

echo "== spans"
# sampled, badver, upper, none, ka and conc1..8: 1 SERVER + 2 CLIENT each; the unsampled
# request exports nothing.
check "39 spans exported within 15 s" wait_spans "$SINK_JSONL" 39 "http(s)"
stop_pid "$RELAY_PID" 10
expect "service exits 0 on SIGTERM under the agent" 0 "$STOP_RC"

pycheck "$SINK_JSONL" "$REC_LOG" "$REC_PORT" "$T_SAMPLED" "$P_SAMPLED" "$T_UNSAMPLED" "$T_BADVER" "$T_UPPER" "$TS" \
	"$BAGGAGE" "$T_KA" "$T_CONC_PREFIX" <<'PY'
import json
path, reclog, dport, T_S, P_S, T_U, T_BV, T_UP, TS, BAGGAGE, T_KA, T_CONC = sys.argv[1:]
dport = int(dport)
spans = load(path)
reqs = [json.loads(l) for l in open(reclog)]

def hdrs(r, name):
    return [v for k, v in r['headers'] if k.lower() == name]
def tp(r):
    v = hdrs(r, 'traceparent')
    return v[0].split('-') if len(v) == 1 and len(v[0].split('-')) == 4 else None
def downstream(case):
    return {r['path'].split('?')[0]: r for r in reqs if r['path'].endswith('case=' + case)}
def servers(pred):
    return [s for s in spans if s.get('kind') == 'SERVER' and pred(s)]

check(all(s.get('service.name') == 'python-service' for s in spans), 'service.name is python-service')
check(all(len(hdrs(r, 'traceparent')) == 1 for r in reqs), 'every downstream request carries exactly one traceparent',
      [hdrs(r, 'traceparent') for r in reqs])

def family(case, want_trace, want_parent, want_flags=('01',), legs=('/a', '/b'), path='/work'):
    """Checks the SERVER span of a case and its two CLIENT children against the downstream headers."""
    d = downstream(case)
    if not check(set(d) == set(legs), case + ': downstream got ' + ' and '.join(legs), sorted(d)):
        return None
    parts = {leg: tp(r) for leg, r in d.items()}
    if not check(all(parts.values()), case + ': downstream traceparents are well formed', parts):
        return None
    la, lb = legs
    trace = parts[la][1]
    expect(case + ': both downstream calls carry the same trace id', trace, parts[lb][1])
    if want_trace:
        expect(case + ': downstream trace id is the incoming one', want_trace, trace)
    check(parts[la][2] != parts[lb][2], case + ': the two calls carry different parent ids', parts)
    check(parts[la][3] in want_flags and parts[lb][3] in want_flags, case + ': flags %s downstream' % ' or '.join(want_flags),
          [parts[la][3], parts[lb][3]])
    srv = servers(lambda s: A(s).get('url.query') == 'case=' + case)
    if not check(len(srv) == 1, case + ': exactly one SERVER span', [show(s) for s in srv]):
        return None
    srv = srv[0]
    expect(case + ': SERVER span trace id == downstream trace id', trace, srv['trace_id'])
    expect(case + ': SERVER span parent', want_parent, srv['parent_span_id'])
    expect(case + ': SERVER span status code', 200, A(srv).get('http.response.status_code'))
    expect(case + ': SERVER span url.path', path, A(srv).get('url.path'))
    # OTLP span flags: trace flags in bits 0-7; 0x100 = "is-remote known", 0x200 = parent is remote
    expect(case + ': SERVER span flags (sampled%s)' % (', remote parent' if want_parent else ''),
           0x301 if want_parent else 0x101, srv.get('flags', 0) & 0x301)
    kids = [s for s in spans if s.get('kind') == 'CLIENT' and s['trace_id'] == trace]
    if not check(len(kids) == 2, case + ': two CLIENT spans in the trace', [show(s) for s in kids]):
        return trace
    for leg in legs:
        url = 'http://127.0.0.1:%d%s?case=%s' % (dport, leg, case)
        m = [s for s in kids if A(s).get('url.full') == url]
        if not check(len(m) == 1, case + leg + ': one CLIENT span with url.full ' + url, [A(s).get('url.full') for s in kids]):
            continue
        c = m[0]
        expect(case + leg + ': CLIENT span is a child of the SERVER span', srv['span_id'], c['parent_span_id'])
        expect(case + leg + ': downstream parent-id == this CLIENT span id', c['span_id'], parts[leg][2])
        expect(case + leg + ': name', 'GET', c['name'])
        a = A(c)
        expect(case + leg + ': http.request.method', 'GET', a.get('http.request.method'))
        expect(case + leg + ': server.address', '127.0.0.1', a.get('server.address'))
        expect(case + leg + ': server.port', dport, a.get('server.port'))
        expect(case + leg + ': http.response.status_code', 200, a.get('http.response.status_code'))
        expect(case + leg + ': status UNSET', 'UNSET', c['status'])
        expect(case + leg + ': CLIENT span flags (sampled, local parent)', 0x101, c.get('flags', 0) & 0x301)
        check(srv['start_ns'] <= c['start_ns'] and c['end_ns'] <= srv['end_ns'], case + leg + ': CLIENT span within the SERVER span')
    return trace

# sampled parent with tracestate and baggage: carried on
family('sampled', T_S, P_S)
d = downstream('sampled')
expect('sampled: the incoming tracestate travels downstream (each call)', [[TS], [TS]],
       [hdrs(d.get(leg, {'headers': []}), 'tracestate') for leg in ('/a', '/b')])
expect('sampled: the incoming baggage travels downstream (each call)', [[BAGGAGE], [BAGGAGE]],
       [hdrs(d.get(leg, {'headers': []}), 'baggage') for leg in ('/a', '/b')])
srv = servers(lambda s: A(s).get('url.query') == 'case=sampled')
if srv:
    expect('sampled: SERVER span trace_state is the incoming tracestate', TS, srv[0].get('trace_state'))
    kids = [s for s in spans if s.get('kind') == 'CLIENT' and s['trace_id'] == T_S]
    expect('sampled: CLIENT spans carry the tracestate too', [TS] * len(kids), [s.get('trace_state') for s in kids])

# two calls on one kept-alive connection (http.client): one traceparent each, own span ids
family('ka', T_KA, P_S, legs=('/ka1', '/ka2'), path='/work-ka')
d = downstream('ka')
if len(d) == 2:
    expect('ka: both downstream requests came on one connection', 1, len({r['peer_port'] for r in d.values()}))

# concurrency: each request's outgoing calls carry its own trace
for i in range(1, 9):
    family('conc%d' % i, T_CONC + '0000000%d' % i, P_S)

# unsampled parent: flags 00, same trace id, nothing exported
d = downstream('unsampled')
if check(set(d) == {'/a', '/b'}, 'unsampled: downstream got /a and /b'):
    parts = [tp(d[leg]) for leg in ('/a', '/b')]
    if check(all(parts), 'unsampled: downstream traceparents well formed', parts):
        expect('unsampled: downstream trace id is the incoming one', [T_U, T_U], [p[1] for p in parts])
        expect('unsampled: downstream flags 00', ['00', '00'], [p[3] for p in parts])
    expect('unsampled: tracestate still propagated', [[TS], [TS]], [hdrs(d[leg], 'tracestate') for leg in ('/a', '/b')])
expect('unsampled: no span exported for the unsampled trace', [], [show(s) for s in spans if s['trace_id'] == T_U])

# invalid incoming traceparents: new trace, tracestate dropped
for case, bad in (('badver', T_BV), ('upper', T_UP)):
    # a new trace: sampled, and maybe W3C Level 2's random-trace-id flag (03)
    trace = family(case, None, '', ('01', '03'))
    if trace:
        check(trace not in (bad, bad.lower()), case + ': a new trace id downstream', trace)
    d = downstream(case)
    expect(case + ': tracestate dropped downstream', [[], []], [hdrs(d.get(leg, {'headers': []}), 'tracestate') for leg in ('/a', '/b')])

# no traceparent at all
trace = family('none', None, '', ('01', '03'))
d = downstream('none')
expect('none: no tracestate downstream', [[], []], [hdrs(d.get(leg, {'headers': []}), 'tracestate') for leg in ('/a', '/b')])

traces = [downstream(c).get('/a') for c in ('sampled', 'badver', 'upper', 'none')]
ids = [tp(r)[1] for r in traces if r and tp(r)]
check(len(set(ids)) == len(ids) == 4, 'four different traces for the four sampled cases', ids)
expect('spans: 13 SERVER + 26 CLIENT', (13, 26), (len([s for s in spans if s.get('kind') == 'SERVER']),
                                                 len([s for s in spans if s.get('kind') == 'CLIENT'])))
PY

finish
