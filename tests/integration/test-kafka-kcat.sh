#!/usr/bin/env bash
# test-kafka-kcat: kcat itself under the agent, as producer and as consumer (legacy and -G group mode): output unchanged, PRODUCER spans whose context is the traceparent a consumer reads, CONSUMER spans that are its children.
#
# A mock broker (scripts/dev-kafka). The same kcat -P commands (plain, with
# -H headers, with an app traceparent, keyed with -K, to partition 1 of a
# 2-partition topic) run once without the agent (topics kk-plain,
# kk-p2-plain) and once under it (kk, kk-p2), each under its own service name:
#   (a) producer: same exit status and output; read back (kcat without the
#       agent), the messages are those of the plain run plus a trailing
#       traceparent header (none added to the app's own), whose ids are the
#       message's PRODUCER span's
#   (b) consumer (kcat -C -e: partition EOF events included): same output as
#       without the agent; one CONSUMER span per message, child of and linked
#       to its PRODUCER span (or the app's traceparent)
#   (c) consumer with -G (high-level consumer, rd_kafka_consumer_poll): the
#       same, plus messaging.consumer.group.name
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

command -v kcat >/dev/null || die "kcat is not installed"
TP=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
FMT='%p\t%o\t%k\t%h\t%s\n'

kafka_start --topic kk-plain --topic kk --topic kk-p2-plain:2 --topic kk-p2:2 --topic kk-big-plain --topic kk-big \
	--topic kk-tomb-plain --topic kk-tomb --topic kk-off-plain --topic kk-off
start_sink
KC=(timeout 20 kcat -b "$KAFKA_BROKERS" -q)

# kcat_run LABEL SERVICE|- CMD-ARGS... (stdin: the lines to produce): kcat
# with "${KC[@]}" ARGS, under the agent as SERVICE (or without it: -);
# SERVICE may be followed by VAR=value settings, in the same word, space separated;
# stdout and stderr in $WORK/LABEL.out/.err, exit status in $WORK/LABEL.rc.
kcat_run() {
	local label=$1 service=$2 rc=0
	shift 2
	if [[ $service == - ]]; then
		env -u LD_PRELOAD "${KC[@]}" "$@" >"$WORK/$label.out" 2>"$WORK/$label.err" || rc=$?
	else
		# shellcheck disable=SC2086 # SERVICE [VAR=value...], split
		agent $service "${KC[@]}" "$@" >"$WORK/$label.out" 2>"$WORK/$label.err" || rc=$?
	fi
	echo "$rc" >"$WORK/$label.rc"
}

# same_as_plain LABEL PLAIN-LABEL WHAT: exit status and output as without the agent.
same_as_plain() {
	expect "$3: exit status as without the agent ($(cat "$WORK/$2.rc"))" "$(cat "$WORK/$2.rc")" "$(cat "$WORK/$1.rc")"
	check "$3: stdout identical to the run without the agent" diff -u "$WORK/$2.out" "$WORK/$1.out"
	check "$3: stderr identical to the run without the agent" diff -u "$WORK/$2.err" "$WORK/$1.err"
}

echo "== (a) kcat -P under the agent"
# N SERVICE TOPIC-SUFFIX LINES ARGS...: the producer commands
PRODUCES=(
	"1|kk-prod-1||one\ntwo\n|"
	"2|kk-prod-2||three\n|-H app=1 -H x=y"
	"3|kk-prod-3||four\n|-H traceparent=$TP"
	"4|kk-prod-4||k1:five\nk2:six\n|-K:"
	"5|kk-prod-5|-p2|k3:seven\n|-p 1 -K: -H app=2"
)
for p in "${PRODUCES[@]}"; do
	IFS='|' read -r n service suffix lines args <<<"$p"
	# shellcheck disable=SC2086
	printf '%b' "$lines" | kcat_run "prod-$n-plain" - -P -t "kk$suffix-plain" $args
	# shellcheck disable=SC2086
	printf '%b' "$lines" | kcat_run "prod-$n" "$service" -P -t "kk$suffix" $args
	expect "(a) kcat -P $args: exit status 0" 0 "$(cat "$WORK/prod-$n.rc")"
	same_as_plain "prod-$n" "prod-$n-plain" "(a) kcat -P $args"
done
check "(a) 7 PRODUCER spans exported" wait_spans "$SINK_JSONL" 7 "s.get('service.name', '').startswith('kk-prod-')" 10
for t in kk-plain kk kk-p2-plain kk-p2; do
	env -u LD_PRELOAD "${KC[@]}" -C -t "$t" -e -o beginning -f "$FMT" 2>/dev/null | sort -t$'\t' -k1,1n -k2,2n >"$WORK/$t.msgs" || true
done

cat >"$WORK/kkcat.py" <<'PY'
import re
from spanq import load, A, check, expect, show

TP = ('4bf92f3577b34da6a3ce929d0e0e4736', '00f067aa0ba902b7')
TP_RE = re.compile(r'^00-([0-9a-f]{32})-([0-9a-f]{16})-0[13]$')
# topic -> [(partition, offset, producing service, key, payload, app headers)]
WANT = {
    'kk': [(0, 0, 'kk-prod-1', '', 'one', []), (0, 1, 'kk-prod-1', '', 'two', []),
           (0, 2, 'kk-prod-2', '', 'three', [('app', '1'), ('x', 'y')]),
           (0, 3, 'kk-prod-3', '', 'four', [('traceparent', '00-%s-%s-01' % TP)]),
           (0, 4, 'kk-prod-4', 'k1', 'five', []), (0, 5, 'kk-prod-4', 'k2', 'six', [])],
    'kk-p2': [(1, 0, 'kk-prod-5', 'k3', 'seven', [('app', '2')])],
}

def read_msgs(path):
    out = []
    for line in open(path):
        line = line.rstrip('\n')
        if line:
            p, o, k, h, v = line.split('\t', 4)
            out.append((int(p), int(o), k, [tuple(x.split('=', 1)) for x in h.split(',')] if h else [], v))
    return out

def strip_added(m, pm):
    """Message m without a trailing traceparent header that its plain twin pm lacks."""
    hs = m[3]
    if len(hs) == len(pm[3]) + 1 and hs[-1][0] == 'traceparent':
        hs = hs[:-1]
    return (m[0], m[1], m[2], hs, m[4])

def producer_spans(spans):
    return [s for s in spans if s.get('kind') == 'PRODUCER' and s.get('service.name', '').startswith('kk-prod-')]

def producer_of(prod, service, topic, partition, offset):
    if service == 'kk-prod-3':
        # kcat -H traceparent=...: the app's own traceparent, none of ours for
        # the delivery report to find the span by; it ended at acceptance.
        c = [s for s in prod if s.get('service.name') == service and A(s).get('messaging.destination.name') == topic
             and 'messaging.kafka.offset' not in A(s)]
        return c[0] if len(c) == 1 else None
    c = [s for s in prod if s.get('service.name') == service and A(s).get('messaging.destination.name') == topic
         and A(s).get('messaging.kafka.offset') == offset
         and A(s).get('messaging.destination.partition.id') == str(partition)]
    return c[0] if len(c) == 1 else None

def parent_ctx(prod, topic, w):
    """The context a consumer must see as the parent of message w."""
    partition, offset, service, key, payload, app = w
    if service == 'kk-prod-3':
        return TP
    p = producer_of(prod, service, topic, partition, offset)
    return (p['trace_id'], p['span_id']) if p else None

def check_consumer(label, spans, prod, group, port):
    """group: None, or {topic: the consumer group's name}."""
    cs = [s for s in spans if s.get('kind') == 'CONSUMER']
    expect(label + ': exactly one CONSUMER span per message (7), nothing else', (7, 7), (len(cs), len(spans)))
    for topic, ws in sorted(WANT.items()):
        for w in ws:
            partition, offset, service, key, payload, app = w
            l = '%s %s/%d@%d (%s)' % (label, topic, partition, offset, payload)
            c = [s for s in cs if A(s).get('messaging.destination.name') == topic
                 and A(s).get('messaging.destination.partition.id') == str(partition)
                 and A(s).get('messaging.kafka.offset') == offset]
            if not check(len(c) == 1, l + ': one CONSUMER span', 'found %d' % len(c)):
                continue
            s = c[0]
            a = A(s)
            want = {'messaging.system': 'kafka', 'messaging.operation.type': 'process',
                    'messaging.operation.name': 'process', 'messaging.kafka.message.key': key or None,
                    'messaging.message.body.size': len(payload), 'messaging.client.id': 'rdkafka',
                    'server.address': '127.0.0.1', 'server.port': port,
                    'messaging.consumer.group.name': group and group[topic]}
            got = {k: a.get(k) for k in want}
            check(s.get('name') == 'process ' + topic and s.get('status') == 'UNSET',
                  l + ': named "process %s", status unset' % topic, show(s))
            check(got == want, l + ': messaging attributes', {k: (want[k], got[k]) for k in want if want[k] != got[k]})
            ctx = parent_ctx(prod, topic, w)
            links = [(x.get('trace_id'), x.get('span_id')) for x in s.get('links') or []]
            expect(l + ': parent = the message\'s PRODUCER span (the app\'s traceparent for kk-prod-3)',
                   ctx, (s.get('trace_id'), s.get('parent_span_id')))
            expect(l + ': one link, to the same context', [ctx], links)
PY

pycheck "$SINK_JSONL" "$WORK" "$KAFKA_PORT" <<'PY'
from kkcat import *
path, work, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
prod = producer_spans(load(path))
expect('(a) one PRODUCER span per message, per kcat run', {'kk-prod-1': 2, 'kk-prod-2': 1, 'kk-prod-3': 1, 'kk-prod-4': 2,
       'kk-prod-5': 1}, {sv: sum(1 for s in prod if s['service.name'] == sv) for sv in sorted({s['service.name'] for s in prod})})
check(all(s.get('status') == 'UNSET' and s.get('parent_span_id') == '' for s in prod),
      '(a) every PRODUCER span: status unset, a root (kcat has no current context)',
      [show(s) for s in prod if s.get('status') != 'UNSET' or s.get('parent_span_id')])
for topic, ws in sorted(WANT.items()):
    msgs = read_msgs('%s/%s.msgs' % (work, topic))
    plain = read_msgs('%s/%s-plain.msgs' % (work, topic))
    # the agent's messages, less the one traceparent header the agent appended
    stripped = [strip_added(m, pm) for m, pm in zip(msgs, plain)] + msgs[len(plain):]
    expect('(a) %s: partition, offset, key, payload and app headers as in the plain run' % topic, plain, stripped)
    expect('(a) %s: the messages (partition, offset, key, payload)' % topic,
           [(w[0], w[1], w[3], w[4]) for w in ws], [(m[0], m[1], m[2], m[4]) for m in msgs])
    for w, m in zip(ws, msgs):
        partition, offset, service, key, payload, app = w
        l = '(a) %s/%d@%d (%s, %s)' % (topic, partition, offset, payload, service)
        s = producer_of(prod, service, topic, partition, offset)
        if not check(s is not None, l + ': its PRODUCER span (by topic, partition id, offset)'):
            continue
        a = A(s)
        want = {'messaging.system': 'kafka', 'messaging.operation.type': 'send', 'messaging.operation.name': 'send',
                'messaging.kafka.message.key': key or None, 'messaging.message.body.size': len(payload),
                'messaging.client.id': 'rdkafka', 'server.address': '127.0.0.1', 'server.port': port}
        got = {k: a.get(k) for k in want}
        check(s.get('name') == 'send ' + topic, l + ': named "send %s"' % topic, show(s))
        check(got == want, l + ': messaging attributes', {k: (want[k], got[k]) for k in want if want[k] != got[k]})
        hs = m[3]
        if service == 'kk-prod-3':
            expect(l + ': the app\'s traceparent alone, nothing added', app, hs)
            continue
        tps = [v for n, v in hs if n == 'traceparent']
        expect(l + ': headers = the app\'s, then one traceparent', app + [('traceparent', tps[0] if tps else None)], hs)
        if check(len(tps) == 1 and TP_RE.match(tps[0]), l + ': a valid traceparent', tps):
            expect(l + ': traceparent = 00-<PRODUCER trace id>-<PRODUCER span id>-..',
                   (s['trace_id'], s['span_id']), TP_RE.match(tps[0]).groups())
PY

echo "== (b) kcat -C -e under the agent"
kcat_run cons-plain - -C -t kk -e -o beginning -f "$FMT"
kcat_run cons kk-cons -C -t kk -e -o beginning -f "$FMT"
same_as_plain cons cons-plain "(b) kcat -C -t kk -e"
expect "(b) kcat -C -t kk: six messages" 6 "$(lines "$WORK/cons.out")"
kcat_run cons2-plain - -C -t kk-p2 -e -o beginning -f "$FMT"
kcat_run cons2 kk-cons -C -t kk-p2 -e -o beginning -f "$FMT"
same_as_plain cons2 cons2-plain "(b) kcat -C -t kk-p2 -e (2 partitions)"
expect "(b) kcat -C -t kk-p2: one message" 1 "$(lines "$WORK/cons2.out")"
check "(b) 7 CONSUMER spans exported" wait_spans "$SINK_JSONL" 7 "s.get('service.name') == 'kk-cons'" 10
pycheck "$SINK_JSONL" "$KAFKA_PORT" <<'PY'
from kkcat import *
path, port = sys.argv[1], int(sys.argv[2])
spans = load(path)
check_consumer('(b) kcat -C', [s for s in spans if s.get('service.name') == 'kk-cons'], producer_spans(spans), None, port)
PY

echo "== (c) kcat -C -G (group) under the agent"
# Both topics in one group: the two topics' messages may interleave in any order, so sorted.
kcat_run g-plain - -C -G kk-grp-plain -o beginning -e -f "$FMT" kk kk-p2
kcat_run g kk-cons-g -C -G kk-grp -o beginning -e -f "$FMT" kk kk-p2
expect "(c) kcat -C -G kk kk-p2: exit status as without the agent ($(cat "$WORK/g-plain.rc"))" \
	"$(cat "$WORK/g-plain.rc")" "$(cat "$WORK/g.rc")"
check "(c) kcat -C -G kk kk-p2: stdout (sorted) identical to the run without the agent" \
	diff -u <(sort "$WORK/g-plain.out") <(sort "$WORK/g.out")
check "(c) kcat -C -G kk kk-p2: stderr identical to the run without the agent" diff -u "$WORK/g-plain.err" "$WORK/g.err"
expect "(c) kcat -C -G: seven messages" 7 "$(lines "$WORK/g.out")"
check "(c) 7 CONSUMER spans exported" wait_spans "$SINK_JSONL" 7 "s.get('service.name') == 'kk-cons-g'" 10
pycheck "$SINK_JSONL" "$KAFKA_PORT" <<'PY'
from kkcat import *
path, port = sys.argv[1], int(sys.argv[2])
spans = load(path)
check_consumer('(c) kcat -C -G', [s for s in spans if s.get('service.name') == 'kk-cons-g'], producer_spans(spans),
               {'kk': 'kk-grp', 'kk-p2': 'kk-grp'}, port)
PY

echo "== (d) a message that fits message.max.bytes only without the agent's headers"
# message.max.bytes=1000 takes a 940-byte payload, but not 940 bytes plus
# ~70 of traceparent header: the agent sends it without the header. A small
# message in the same run still gets one. (kcat -P FILE...: one message per file.)
printf small >"$WORK/small.msg"
"$PY" -c 'import sys; sys.stdout.write("b" * 940)' >"$WORK/big.msg"
kcat_run big-plain - -P -t kk-big-plain -X message.max.bytes=1000 "$WORK/small.msg" "$WORK/big.msg"
kcat_run big kk-big -P -t kk-big -X message.max.bytes=1000 "$WORK/small.msg" "$WORK/big.msg"
expect "(d) kcat -P -X message.max.bytes=1000: exit status 0" 0 "$(cat "$WORK/big.rc")"
same_as_plain big big-plain "(d) kcat -P -X message.max.bytes=1000"
check "(d) 2 PRODUCER spans exported" wait_spans "$SINK_JSONL" 2 "s.get('service.name') == 'kk-big'" 10
env -u LD_PRELOAD "${KC[@]}" -C -t kk-big -e -o beginning -f "$FMT" >"$WORK/kk-big.msgs" 2>/dev/null || true
pycheck "$SINK_JSONL" "$WORK/kk-big.msgs" <<'PY'
from kkcat import *
path, msgs = sys.argv[1], read_msgs(sys.argv[2])
ps = [s for s in load(path) if s.get('service.name') == 'kk-big']
check([(m[1], m[4]) for m in msgs] == [(0, 'small'), (1, 'b' * 940)], '(d) both messages arrived, payloads intact',
      [(m[1], len(m[4])) for m in msgs])
expect('(d) two PRODUCER spans, status unset (both delivered)', ['UNSET', 'UNSET'], [s.get('status') for s in ps])
by = {A(s).get('messaging.kafka.offset'): s for s in ps}
if len(msgs) == 2:
    small, big = msgs
    tps = [v for n, v in small[3] if n == 'traceparent']
    s = by.get(0)
    check(s is not None and len(tps) == 1 and TP_RE.match(tps[0]) and
          TP_RE.match(tps[0]).groups() == (s['trace_id'], s['span_id']),
          '(d) the small message carries its PRODUCER span\'s traceparent', (tps, s and show(s)))
    expect('(d) the big message went without headers', [], big[3])
    # no traceparent of ours for the delivery report to find it by: ended at acceptance
    expect('(d) the big message\'s span: ended at acceptance (no offset), body size 940', 940,
           by.get(None) and A(by[None]).get('messaging.message.body.size'))
PY

echo "== (e) a tombstone (kcat -Z: NULL value)"
printf 'k9:\n' | kcat_run tomb-plain - -P -t kk-tomb-plain -K: -Z
printf 'k9:\n' | kcat_run tomb kk-tomb -P -t kk-tomb -K: -Z
same_as_plain tomb tomb-plain "(e) kcat -P -Z"
kcat_run tombc-plain - -C -t kk-tomb -Z -e -o beginning -f '%p %o %k %S %s\n'
kcat_run tombc kk-tomb-c -C -t kk-tomb -Z -e -o beginning -f '%p %o %k %S %s\n'
same_as_plain tombc tombc-plain "(e) kcat -C -Z"
expect "(e) a NULL value with key k9" "0 0 k9 -1 NULL" "$(cat "$WORK/tombc.out")"
check "(e) PRODUCER and CONSUMER spans exported" wait_spans "$SINK_JSONL" 2 "s.get('service.name') in ('kk-tomb', 'kk-tomb-c')" 10
pycheck "$SINK_JSONL" <<'PY'
from kkcat import *
spans = load(sys.argv[1])
p = [s for s in spans if s.get('service.name') == 'kk-tomb']
c = [s for s in spans if s.get('service.name') == 'kk-tomb-c']
if check(len(p) == 1 and len(c) == 1 and p[0]['kind'] == 'PRODUCER' and c[0]['kind'] == 'CONSUMER',
         '(e) one PRODUCER and one CONSUMER span', [show(s) for s in p + c]):
    for s in p + c:
        expect('(e) %s: messaging.kafka.message.tombstone' % s['kind'], True, A(s).get('messaging.kafka.message.tombstone'))
        expect('(e) %s: messaging.kafka.message.key' % s['kind'], 'k9', A(s).get('messaging.kafka.message.key'))
    expect('(e) the CONSUMER span is the PRODUCER span\'s child', (p[0]['trace_id'], p[0]['span_id']),
           (c[0]['trace_id'], c[0]['parent_span_id']))
PY

echo "== (f) OTEL_INSTRUMENTATION_KAFKA_ENABLED=false, OTEL_INSTRUMENTATION_KAFKA_PRODUCER_PROPAGATION_ENABLED=false"
printf 'off\n' | kcat_run off-plain - -P -t kk-off-plain
printf 'off\n' | kcat_run off "kk-off OTEL_INSTRUMENTATION_KAFKA_ENABLED=false" -P -t kk-off
same_as_plain off off-plain "(f) kcat -P, Kafka instrumentation disabled"
kcat_run offc "kk-off OTEL_INSTRUMENTATION_KAFKA_ENABLED=false" -C -t kk-off -e -o beginning -f "$FMT"
expect "(f) disabled: the message as sent, no header" "$(printf '0\t0\t\t\toff')" "$(cat "$WORK/offc.out")"
printf 'noprop\n' | kcat_run noprop "kk-noprop OTEL_INSTRUMENTATION_KAFKA_PRODUCER_PROPAGATION_ENABLED=false" -P -t kk-off
expect "(f) no propagation: kcat -P exit status 0" 0 "$(cat "$WORK/noprop.rc")"
expect "(f) no propagation: the message has no header" "$(printf '0\t1\t\t\tnoprop')" \
	"$(env -u LD_PRELOAD "${KC[@]}" -C -t kk-off -o 1 -e -f "$FMT" 2>/dev/null)"
check "(f) no propagation: the PRODUCER span is still made (ended at acceptance: no header to find it by at the report)" \
	wait_spans "$SINK_JSONL" 1 "s.get('service.name') == 'kk-noprop' and s['kind'] == 'PRODUCER' and a.get('messaging.destination.name') == 'kk-off' and 'messaging.kafka.offset' not in a" 10
# every process above has exited, so its spans were flushed at exit
expect "(f) disabled: no span at all" 0 "$(count_spans "$SINK_JSONL" "s.get('service.name') == 'kk-off'")"

finish
