#!/usr/bin/env bash
# test-kafka-consume: every librdkafka consume call under the agent makes one CONSUMER span per message, a child of (and linked to) the traceparent in its headers; SQL run while handling it is its child; producer to consumer end to end.
#
# A mock broker (scripts/dev-kafka). kcat (never under the agent) produces six
# keyed or keyless messages to kc-in: with a valid traceparent (and an app
# header), with none, with an invalid one, with an all-zero trace id, with a
# tracestate, and a keyless one. build/tests/kafka-consumer
# (tests/kafka-consumer.c) then reads them under the agent:
#   (a) through every consume API: output identical to the run without the
#       agent; exactly one CONSUMER span per message, parent and link as the
#       header says (a new trace without a valid one), messaging attributes
#   (b) with --sql (PQexec "SELECT 1" per message, PostgreSQL from
#       scripts/dev-postgres): the SELECT span is the CONSUMER span's child
#   (c) a consumer timing out: output as without the agent, no extra span
#   (d) end to end: kafka-producer under the agent, then kafka-consumer under
#       the agent: each CONSUMER span's parent is its message's PRODUCER span
#   (e) when the span ends, single-message APIs (poll, consume_queue):
#       --sql-when both (SELECT 1 while handling, the message destroyed, then
#       SELECT 2): the span ended at the destroy, as before, so SELECT 2 is
#       in no message's trace; --sql-when after (the message destroyed before
#       anything is done with it, as a binding does, then SELECT 2): the span
#       stays current, SELECT 2 is its child, within it
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

command -v kcat >/dev/null || die "kcat is not installed"
PQ_FLAGS=$(pkg-config --cflags --libs libpq 2>/dev/null || echo "-I$(pg_config --includedir) -lpq")
need_helper kafka-producer -lrdkafka
# shellcheck disable=SC2086
need_helper kafka-consumer $PQ_FLAGS -lrdkafka
PRODUCER=build/tests/kafka-producer
CONSUMER=build/tests/kafka-consumer
APIS=(poll consume consume_queue batch batch_queue callback callback_queue)
TPA=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
TPB=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01
TPC=00-a1b2c3d4e5f60718293a4b5c6d7e8f90-1122334455667788-01
TS=congo=t61rcWkgMzE,rojo=00f067aa0ba902b7

kafka_start --topic kc-in --topic ke2e
export KAFKA_BROKERS KAFKA_PORT
start_sink
pg_start
K=(env -u LD_PRELOAD timeout 20 kcat -b "$KAFKA_BROKERS" -q)

# The messages (offset order). kcat -P: one line, one message; -K: splits the key.
produce() { # produce LINE [kcat args...]
	local line=$1
	shift
	printf '%s\n' "$line" | "${K[@]}" -P -t kc-in "$@"
}
produce 'k0:with-parent' -K: -H app=1 -H "traceparent=$TPA"
produce 'k1:no-header' -K:
produce 'k2:invalid-header' -K: -H 'traceparent=00-not-a-valid-traceparent-01'
produce 'k3:zero-trace-id' -K: -H 'traceparent=00-00000000000000000000000000000000-00f067aa0ba902b7-01'
produce 'k4:with-tracestate' -K: -H "traceparent=$TPB" -H "tracestate=$TS"
produce 'keyless-parent' -H "traceparent=$TPC"
expect "kc-in holds the six messages, in order" \
	"0 k0 with-parent|1 k1 no-header|2 k2 invalid-header|3 k3 zero-trace-id|4 k4 with-tracestate|5  keyless-parent" \
	"$("${K[@]}" -C -t kc-in -e -o beginning -f '%o %k %s\n' 2>/dev/null | paste -sd '|')"
expect "kcat -C -f '%h' shows the first message's headers as given" "app=1,traceparent=$TPA" \
	"$("${K[@]}" -C -t kc-in -e -o beginning -c 1 -f '%h\n' 2>/dev/null)"

# The expectations per offset, shared by the checks.
cat >"$WORK/kcons.py" <<'PY'
import os, re
from spanq import load, A, check, expect, show, HEX16, HEX32

PORT = int(os.environ['KAFKA_PORT'])

TPA = ('4bf92f3577b34da6a3ce929d0e0e4736', '00f067aa0ba902b7')
TPB = ('0af7651916cd43dd8448eb211c80319c', 'b7ad6b7169203331')
TPC = ('a1b2c3d4e5f60718293a4b5c6d7e8f90', '1122334455667788')
TS = 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7'
# offset -> (key, payload, parent context or None)
MSGS = {
    0: ('k0', 'with-parent', TPA),
    1: ('k1', 'no-header', None),
    2: ('k2', 'invalid-header', None),
    3: ('k3', 'zero-trace-id', None),
    4: ('k4', 'with-tracestate', TPB),
    5: (None, 'keyless-parent', TPC),
}

def of_service(path, service):
    return [s for s in load(path) if s.get('service.name') == service]

def consumer_spans(spans):
    return [s for s in spans if s.get('kind') == 'CONSUMER']

def by_offset(label, spans):
    """{offset: span}, checking there is one span per offset."""
    res = {}
    for s in spans:
        res.setdefault(A(s).get('messaging.kafka.offset'), []).append(s)
    dup = {o: len(v) for o, v in res.items() if len(v) != 1}
    check(not dup, label + ': one CONSUMER span per offset', 'offsets with several spans: %r' % dup)
    return {o: v[0] for o, v in res.items()}

def attrs(label, s, topic, offset, key, payload, group):
    a = A(s)
    want = {'messaging.system': 'kafka', 'messaging.operation.type': 'process',
            'messaging.operation.name': 'process', 'messaging.destination.name': topic,
            'messaging.destination.partition.id': '0', 'messaging.kafka.offset': offset,
            'messaging.kafka.message.key': key, 'messaging.client.id': 'rdkafka',
            'messaging.message.body.size': len(payload), 'server.address': '127.0.0.1',
            'server.port': PORT, 'messaging.consumer.group.name': group}
    got = {k: a.get(k) for k in want}
    ok = check(s.get('name') == 'process ' + topic, label + ': named "process %s"' % topic, show(s))
    ok &= check(s.get('kind') == 'CONSUMER' and s.get('status') == 'UNSET', label + ': CONSUMER, status unset', show(s))
    ok &= check(got == want, label + ': messaging attributes (group only with a group)',
                {k: (want[k], got[k]) for k in want if want[k] != got[k]})
    return ok

def parented(label, s, ctx, state=None):
    """The span is a child of ctx (trace id, span id) with one link to it; or a new trace when ctx is None."""
    links = [(l.get('trace_id'), l.get('span_id')) for l in s.get('links') or []]
    if ctx is None:
        return check(s.get('parent_span_id') == '' and not links and HEX32.match(s.get('trace_id', ''))
                     and s['trace_id'] != '0' * 32 and s['trace_id'] not in (TPA[0], TPB[0], TPC[0]),
                     label + ': no valid header: a new trace (root, no link)', show(s) + ' links=%r' % links)
    ok = expect(label + ': parent = the header\'s context (trace id, span id)', ctx,
                (s.get('trace_id'), s.get('parent_span_id')))
    ok &= expect(label + ': one link, to the same context', [ctx], links)
    if state is not None:
        ok &= expect(label + ': the header\'s tracestate is carried', state, s.get('trace_state'))
    return ok
PY

echo "== (a) every consume API under the agent"
rc=0
env -u LD_PRELOAD $CONSUMER --topic kc-in --count 6 --api consume >"$WORK/plain.out" 2>"$WORK/plain.err" || rc=$?
expect "without the agent: exit status" 0 "$rc"
cat >"$WORK/plain.want" <<EOF
msg topic=kc-in partition=0 offset=0 key=k0 payload=with-parent
headers: count=2 app=1 traceparent=$TPA
msg topic=kc-in partition=0 offset=1 key=k1 payload=no-header
headers: count=0
msg topic=kc-in partition=0 offset=2 key=k2 payload=invalid-header
headers: count=1 traceparent=00-not-a-valid-traceparent-01
msg topic=kc-in partition=0 offset=3 key=k3 payload=zero-trace-id
headers: count=1 traceparent=00-00000000000000000000000000000000-00f067aa0ba902b7-01
msg topic=kc-in partition=0 offset=4 key=k4 payload=with-tracestate
headers: count=2 traceparent=$TPB tracestate=$TS
msg topic=kc-in partition=0 offset=5 key=(null) payload=keyless-parent
headers: count=1 traceparent=$TPC
consumed 6
EOF
check "without the agent: the six messages, keys and headers as kcat produced them" diff -u "$WORK/plain.want" "$WORK/plain.out"
for api in "${APIS[@]}"; do
	rc=0
	agent "kc-$api" $CONSUMER --topic kc-in --count 6 --api "$api" --group "kc-$api" \
		>"$WORK/$api.out" 2>"$WORK/$api.err" || rc=$?
	expect "(a) --api $api: exit status" 0 "$rc"
	check "(a) --api $api: output (messages, keys, headers) identical to the run without the agent" \
		diff -u "$WORK/plain.out" "$WORK/$api.out"
	check "(a) --api $api: nothing on stderr" test ! -s "$WORK/$api.err"
	check "(a) --api $api: six CONSUMER spans exported" \
		wait_spans "$SINK_JSONL" 6 "s.get('service.name') == 'kc-$api' and s['kind'] == 'CONSUMER'" 10
	pycheck "$SINK_JSONL" "$api" <<'PY'
from kcons import *
path, api = sys.argv[1], sys.argv[2]
label = '(a) --api ' + api
spans = of_service(path, 'kc-' + api)
cs = consumer_spans(spans)
expect(label + ': exactly one CONSUMER span per message (6), and no other span', (6, 6), (len(cs), len(spans)))
offs = by_offset(label, cs)
expect(label + ': the spans\' offsets', sorted(MSGS), sorted(offs, key=str))
new_traces = set()
for off, (key, payload, ctx) in sorted(MSGS.items()):
    s = offs.get(off)
    if s is None:
        continue
    l = '%s offset %d (%s)' % (label, off, payload)
    attrs(l, s, 'kc-in', off, key, payload, 'kc-poll' if api == 'poll' else None)
    parented(l, s, ctx, TS if off == 4 else None)
    if ctx is None:
        new_traces.add(s['trace_id'])
expect(label + ': each message without a valid header starts its own trace', 3, len(new_traces))
PY
done

echo "== (b) --sql: the SQL run while a message is handled is its CONSUMER span's child"
rc=0
env -u LD_PRELOAD $CONSUMER --topic kc-in --count 6 --api consume --sql "$DATABASE_URL" \
	>"$WORK/sql-plain.out" 2>"$WORK/sql-plain.err" || rc=$?
expect "(b) without the agent: exit status" 0 "$rc"
expect "(b) without the agent: SELECT 1 once per message" 6 "$(grep -c '^sql: 1$' "$WORK/sql-plain.out" || true)"
check "(b) without the agent: messages as without --sql" diff -u "$WORK/plain.out" <(grep -v '^sql: ' "$WORK/sql-plain.out")
for api in poll callback_queue batch callback; do
	rc=0
	agent "kcs-$api" $CONSUMER --topic kc-in --count 6 --api "$api" --group "kcs-$api" --sql "$DATABASE_URL" \
		>"$WORK/sql-$api.out" 2>"$WORK/sql-$api.err" || rc=$?
	expect "(b) --api $api --sql: exit status" 0 "$rc"
	check "(b) --api $api --sql: output identical to the run without the agent" \
		diff -u "$WORK/sql-plain.out" "$WORK/sql-$api.out"
	check "(b) --api $api --sql: six CONSUMER and six SQL spans exported" \
		wait_spans "$SINK_JSONL" 12 "s.get('service.name') == 'kcs-$api'" 10
	pycheck "$SINK_JSONL" "$api" <<'PY'
from kcons import *
path, api = sys.argv[1], sys.argv[2]
label = '(b) --api %s --sql' % api
spans = of_service(path, 'kcs-' + api)
cs = consumer_spans(spans)
dbs = [s for s in spans if A(s).get('db.system.name') == 'postgresql']
expect(label + ': 6 CONSUMER spans, 6 SQL spans, nothing else', (6, 6, 12), (len(cs), len(dbs), len(spans)))
offs = by_offset(label, cs)
for off, (key, payload, ctx) in sorted(MSGS.items()):
    c = offs.get(off)
    if c is None:
        check(False, '%s offset %d: a CONSUMER span' % (label, off))
        continue
    l = '%s offset %d (%s)' % (label, off, payload)
    parented(l, c, ctx)
    kids = [d for d in dbs if d.get('parent_span_id') == c['span_id']]
    if not check(len(kids) == 1, l + ': one SQL span whose parent is this CONSUMER span',
                 'children: %d; SQL parents: %r' % (len(kids), [d.get('parent_span_id') for d in dbs])):
        continue
    d = kids[0]
    check(d.get('kind') == 'CLIENT' and d.get('name') == 'SELECT' and d.get('trace_id') == c.get('trace_id'),
          l + ': the child is the SELECT CLIENT span, in the same trace', show(d))
    check(c['start_ns'] <= d['start_ns'] and d['end_ns'] <= c['end_ns'],
          l + ': the SELECT lies within the CONSUMER span', 'consumer %d..%d, select %d..%d' %
          (c['start_ns'], c['end_ns'], d['start_ns'], d['end_ns']))
PY
done

echo "== (c) a consumer that times out"
rc=0
agent kc-timeout $CONSUMER --topic kc-in --count 7 --api consume --timeout 2 \
	>"$WORK/timeout.out" 2>"$WORK/timeout.err" || rc=$?
expect "(c) 7 wanted, 6 there: exit status 1 at the timeout" 1 "$rc"
check "(c) output identical to the run without the agent (six messages)" diff -u "$WORK/plain.out" "$WORK/timeout.out"
check "(c) six CONSUMER spans" wait_spans "$SINK_JSONL" 6 "s.get('service.name') == 'kc-timeout'" 10
expect "(c) no span beyond the six messages" 6 "$(count_spans "$SINK_JSONL" "s.get('service.name') == 'kc-timeout'")"

echo "== (d) end to end: kafka-producer under the agent, then kafka-consumer under the agent"
rc=0
agent ke-prod $PRODUCER --topic ke2e >"$WORK/e2e-prod.out" 2>"$WORK/e2e-prod.err" || rc=$?
expect "(d) producer exit status" 0 "$rc"
check "(d) 11 PRODUCER spans" wait_spans "$SINK_JSONL" 11 "s.get('service.name') == 'ke-prod' and s['kind'] == 'PRODUCER'" 10
rc=0
env -u LD_PRELOAD $CONSUMER --topic ke2e --count 11 --api consume --sql "$DATABASE_URL" \
	>"$WORK/e2e-plain.out" 2>/dev/null || rc=$?
expect "(d) consumer without the agent: exit status" 0 "$rc"
# What the consumer prints for kafka-producer's messages: the app's headers,
# then the agent's traceparent (written TP here), except on the message
# whose app gave its own; SELECT 1 after each.
cat >"$WORK/e2e.want" <<EOF
msg topic=ke2e partition=0 offset=0 key=(null) payload=payload produce/copy-p0
headers: count=1 traceparent=TP
msg topic=ke2e partition=0 offset=1 key=(null) payload=payload produce/free-ua
headers: count=1 traceparent=TP
msg topic=ke2e partition=0 offset=2 key=(null) payload=payload produce/block-ua
headers: count=1 traceparent=TP
msg topic=ke2e partition=0 offset=3 key=key-produce/key-ua payload=payload produce/key-ua
headers: count=1 traceparent=TP
msg topic=ke2e partition=0 offset=4 key=key-producev/app-header payload=payload producev/app-header
headers: count=2 app-h=1 traceparent=TP
msg topic=ke2e partition=0 offset=5 key=key-producev/traceparent payload=payload producev/traceparent
headers: count=2 traceparent=$TPA app-h=tp
msg topic=ke2e partition=0 offset=6 key=key-producev/headers payload=payload producev/headers
headers: count=3 app-h=2 app-x=x traceparent=TP
msg topic=ke2e partition=0 offset=7 key=key-produceva payload=payload produceva
headers: count=2 app-h=3 traceparent=TP
msg topic=ke2e partition=0 offset=8 key=key-batch/0 payload=payload batch/0
headers: count=1 traceparent=TP
msg topic=ke2e partition=0 offset=9 key=key-batch/1 payload=payload batch/1
headers: count=1 traceparent=TP
msg topic=ke2e partition=0 offset=10 key=key-batch/2 payload=payload batch/2
headers: count=1 traceparent=TP
consumed 11
EOF
# (the app's own traceparent, at offset 5, is TPA: kept as it is)
check "(d) consumer without the agent: the messages, with the app's headers and the agent's traceparent" \
	diff -u "$WORK/e2e.want" <(grep -v '^sql: ' "$WORK/e2e-plain.out" |
		sed -E "/ traceparent=$TPA /!s/ traceparent=00-[0-9a-f]{32}-[0-9a-f]{16}-0[13]( |\$)/ traceparent=TP\\1/")
expect "(d) consumer without the agent: SELECT 1 once per message" 11 "$(grep -c '^sql: 1$' "$WORK/e2e-plain.out" || true)"
for api in callback_queue poll; do
	rc=0
	agent "ke-$api" $CONSUMER --topic ke2e --count 11 --api "$api" --group "ke-$api" --sql "$DATABASE_URL" \
		>"$WORK/e2e-$api.out" 2>"$WORK/e2e-$api.err" || rc=$?
	expect "(d) --api $api --sql: exit status" 0 "$rc"
	check "(d) --api $api --sql: output identical to the run without the agent" \
		diff -u "$WORK/e2e-plain.out" "$WORK/e2e-$api.out"
	check "(d) --api $api: 11 CONSUMER and 11 SQL spans" wait_spans "$SINK_JSONL" 22 "s.get('service.name') == 'ke-$api'" 10
	pycheck "$SINK_JSONL" "$api" "$WORK/e2e-$api.out" <<'PY'
from kcons import *
path, api, out = sys.argv[1:4]
label = '(d) --api ' + api
spans = load(path)
prod = [s for s in spans if s.get('service.name') == 'ke-prod' and s.get('kind') == 'PRODUCER']
mine = [s for s in spans if s.get('service.name') == 'ke-' + api]
cs = consumer_spans(mine)
dbs = [s for s in mine if A(s).get('db.system.name') == 'postgresql']
expect(label + ': 11 PRODUCER, 11 CONSUMER, 11 SQL spans', (11, 11, 11), (len(prod), len(cs), len(dbs)))
pby = {A(s).get('messaging.kafka.offset'): s for s in prod}
cby = by_offset(label, cs)
# the traceparent each message carried, as the app printed it
seen = {}
off = None
for line in open(out):
    m = re.match(r'^msg topic=\S+ partition=\d+ offset=(\d+) ', line)
    if m:
        off = int(m.group(1))
    m = re.search(r' traceparent=00-([0-9a-f]{32})-([0-9a-f]{16})-0[13]( |$)', line)
    if line.startswith('headers: ') and m:
        seen[off] = (m.group(1), m.group(2))
# producev/traceparent (offset 5) carries the app's own traceparent, none of
# ours for the delivery report to find its span by: it ended at acceptance.
pby[5] = next((s for s in prod if A(s).get('messaging.kafka.message.key') == 'key-producev/traceparent'
               and 'messaging.kafka.offset' not in A(s)), None)
for off in range(11):
    c, p = cby.get(off), pby.get(off)
    l = '%s offset %d' % (label, off)
    if not check(c is not None and p is not None, l + ': a PRODUCER and a CONSUMER span'):
        continue
    if off == 5:  # producev/traceparent: the app's own header wins
        ctx = TPA
    else:
        ctx = (p['trace_id'], p['span_id'])
    expect(l + ': the header the consumer saw', ctx, seen.get(off))
    parented(l, c, ctx)
    kids = [d for d in dbs if d.get('parent_span_id') == c['span_id'] and d.get('trace_id') == c.get('trace_id')]
    expect(l + ': its SELECT is the CONSUMER span\'s child', 1, len(kids))
PY
done

echo "== (e) a message handled then destroyed, and one destroyed before it is handled"
for when in both after; do
	rc=0
	env -u LD_PRELOAD $CONSUMER --topic kc-in --count 6 --api consume --sql "$DATABASE_URL" --sql-when $when \
		>"$WORK/when-$when-plain.out" 2>"$WORK/when-$when-plain.err" || rc=$?
	expect "(e) --sql-when $when without the agent: exit status" 0 "$rc"
	expect "(e) --sql-when $when without the agent: SELECT 2 once per message" 6 \
		"$(grep -c '^after: 2$' "$WORK/when-$when-plain.out" || true)"
	for api in poll consume_queue; do
		svc="kw-$when-$api"
		rc=0
		agent "$svc" $CONSUMER --topic kc-in --count 6 --api "$api" --group "$svc" --sql "$DATABASE_URL" \
			--sql-when $when >"$WORK/$svc.out" 2>"$WORK/$svc.err" || rc=$?
		expect "(e) --api $api --sql-when $when: exit status" 0 "$rc"
		check "(e) --api $api --sql-when $when: output identical to the run without the agent" \
			diff -u "$WORK/when-$when-plain.out" "$WORK/$svc.out"
		n=$([[ $when == both ]] && echo 18 || echo 12)
		check "(e) --api $api --sql-when $when: 6 CONSUMER spans and $((n - 6)) SQL spans" \
			wait_spans "$SINK_JSONL" $n "s.get('service.name') == '$svc'" 10
		pycheck "$SINK_JSONL" "$svc" "$when" <<'PY'
from kcons import *
path, svc, when = sys.argv[1:4]
label = '(e) %s' % svc
spans = of_service(path, svc)
cs = consumer_spans(spans)
offs = by_offset(label, cs)
dbs = [s for s in spans if A(s).get('db.system.name') == 'postgresql']
expect(label + ': 6 CONSUMER spans, 6 SQL spans per statement run, nothing else',
       (6, 12 if when == 'both' else 6, 18 if when == 'both' else 12), (len(cs), len(dbs), len(spans)))
by_id = {c['span_id']: c for c in cs}
# The statements in the order they ran (one connection, one thread).
dbs.sort(key=lambda d: d['start_ns'])
afters = dbs[1::2] if when == 'both' else dbs
handles = dbs[0::2] if when == 'both' else []
for off in sorted(MSGS):
    c = offs.get(off)
    l = '%s offset %d' % (label, off)
    if c is None or off >= len(afters):
        check(False, l + ': a CONSUMER span and its statements')
        continue
    a = afters[off]
    if when == 'both':
        h = handles[off]
        expect(l + ': SELECT 1 while handling: the CONSUMER span\'s child', (c['trace_id'], c['span_id']),
               (h['trace_id'], h['parent_span_id']))
        check(a['parent_span_id'] not in by_id and not any(a['trace_id'] == x['trace_id'] for x in cs),
              l + ': SELECT 2 after the destroy: in no message\'s trace (the span ended at the destroy)', show(a))
        check(c['end_ns'] <= a['start_ns'], l + ': the CONSUMER span ended before SELECT 2 started',
              (c['end_ns'], a['start_ns']))
    else:
        expect(l + ': SELECT 2 after a destroy before any handling: the CONSUMER span\'s child',
               (c['trace_id'], c['span_id']), (a['trace_id'], a['parent_span_id']))
        check(c['start_ns'] <= a['start_ns'] and a['end_ns'] <= c['end_ns'],
              l + ': SELECT 2 lies within the CONSUMER span', (c['start_ns'], a['start_ns'], a['end_ns'], c['end_ns']))
PY
	done
done

finish
