#!/usr/bin/env bash
# test-kafka-produce: every librdkafka produce call under the agent makes one PRODUCER span whose context travels in the message's traceparent header; the app sees exactly what it sees without the agent (kafka-producer, valgrind).
#
# A mock broker (scripts/dev-kafka) with one 1-partition topic per run.
# build/tests/kafka-producer (tests/kafka-producer.c) produces one message
# through each produce API (rd_kafka_produce with F_COPY, F_FREE, F_BLOCK and
# a key, producev with an app header, with an app traceparent and with a
# header list, produceva, produce_batch). Each mode is run without the agent
# (its output must be the fixed expected text) and under it (the same text,
# except that the delivered messages' header names gain `traceparent`, but
# not where the app gave its own):
#   (a) dev-kafka start/status       (b) normal mode: spans, attributes, headers read back with kcat
#   (c) --no-dr: spans end at accept (d) --fail: refused produce calls and a purged message: ERROR spans
#   (e) valgrind (normal and --fail, F_FREE/F_COPY ownership) under the agent
#   (g) --partitioner: a partitioner_cb sees the app's msg_opaque
#   (f) dev-kafka stop
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

command -v kcat >/dev/null || die "kcat is not installed"
need_helper kafka-producer -lrdkafka
PRODUCER=build/tests/kafka-producer
TP=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01

echo "== (a) scripts/dev-kafka"
kafka_start --topic kp-plain --topic kp-main --topic kp-nodr-plain --topic kp-nodr \
	--topic kp-fail-plain --topic kp-fail --topic kp-vg --topic kp-vg-fail
check "dev-kafka start prints KAFKA_BROKERS=127.0.0.1:PORT (only that)" \
	grep -qxE 'KAFKA_BROKERS=127\.0\.0\.1:[0-9]+' <<<"$KAFKA_OUT"
expect "dev-kafka start on a running DIR prints the same address" "$KAFKA_OUT" \
	"$(bash scripts/dev-kafka start "$KAFKA_DIR" 2>&1)"
check "dev-kafka status: running" bash scripts/dev-kafka status "$KAFKA_DIR"
export KAFKA_BROKERS
K=(timeout 20 kcat -b "$KAFKA_BROKERS" -q)
for t in web-crawl-tasks task-status kp-main; do
	expect "topic $t exists with 1 partition" 1 \
		"$("${K[@]}" -L -t "$t" 2>/dev/null | sed -n "s/^ *topic \"$t\" with \([0-9]*\) partitions.*/\1/p")"
done

start_sink

# read_topic TOPIC FILE: every message of TOPIC (kcat, never under the agent),
# one line each: partition TAB offset TAB key TAB headers TAB payload.
read_topic() {
	env -u LD_PRELOAD "${K[@]}" -C -t "$1" -e -o beginning -f '%p\t%o\t%k\t%h\t%s\n' >"$2" 2>/dev/null || true
}

# with_traceparent: the expected output under the agent: each "headers:"
# line (names of the delivered message's headers) gains a trailing
# traceparent, except for the message whose app supplied its own, and the
# rd_kafka_produce right after a failed one (made as the app made it, so that
# rd_kafka_last_error() is reset exactly as librdkafka resets it).
with_traceparent() {
	awk '/^headers: / && $2 != "producev/traceparent" && $2 != "fail/after-error" { sub(/count=[0-9]+/, "count=" (substr($3, 7) + 1)); $0 = $0 " traceparent" } { print }'
}

# The checks shared by the span checks below (python, with the prelude).
cat >"$WORK/kprod.py" <<'PY'
import re
from spanq import load, A, check, expect, show

# flags: sampled (01), or 03 with W3C Level 2's random-trace-id flag on a trace the agent started
TP_RE = re.compile(r'^00-([0-9a-f]{32})-([0-9a-f]{16})-0[13]$')
KEYED = lambda case: not case.startswith('produce/') or case == 'produce/key-ua'

def producer_spans(path, service):
    return [s for s in load(path) if s.get('service.name') == service and s.get('kind') == 'PRODUCER']

def read_topic(path):
    """kcat lines -> list of dicts (partition, offset, key, headers [(n, v)], payload)."""
    out = []
    for line in open(path):
        line = line.rstrip('\n')
        if not line:
            continue
        p, o, k, h, v = line.split('\t', 4)
        hs = [tuple(x.split('=', 1)) for x in h.split(',')] if h else []
        out.append({'partition': int(p), 'offset': int(o), 'key': k, 'headers': hs, 'payload': v})
    return out

def dr_lines(path):
    """kafka-producer's dr lines -> {case: (partition, offset, err, opaque)}."""
    res = {}
    for line in open(path):
        m = re.match(r'^dr (\S+) partition=(-?\d+) offset=(-?\d+) err=(\S+) opaque=(\d+)$', line)
        if m:
            res[m.group(1)] = (int(m.group(2)), int(m.group(3)), m.group(4), int(m.group(5)))
    return res

def common_attrs(label, s, topic, port):
    """The attributes every PRODUCER span carries."""
    a = A(s)
    ok = True
    ok &= check(s.get('name') == 'send ' + topic, label + ': named "send %s"' % topic, show(s))
    ok &= check(s.get('kind') == 'PRODUCER', label + ': kind PRODUCER', show(s))
    want = {'messaging.system': 'kafka', 'messaging.operation.type': 'send', 'messaging.operation.name': 'send',
            'messaging.destination.name': topic, 'messaging.client.id': 'rdkafka',
            'server.address': '127.0.0.1', 'server.port': port}
    got = {k: a.get(k) for k in want}
    ok &= check(got == want, label + ': messaging.*, client.id and server.* attributes', 'got %r' % got)
    return ok

def traceparent_of(msg):
    """The value of the message's traceparent header(s) (list)."""
    return [v for n, v in msg['headers'] if n == 'traceparent']
PY

echo "== (b) kafka-producer, one message through every produce API"
cat >"$WORK/prod.want" <<'EOF'
produce produce/copy-p0 ret=0
produce produce/free-ua ret=0
produce produce/block-ua ret=0
produce produce/key-ua ret=0
produce producev/app-header ret=NO_ERROR
produce producev/traceparent ret=NO_ERROR
produce producev/headers ret=NO_ERROR
produce produceva ret=NO_ERROR
produce_batch batch/ ret=3
produce batch/0 ret=NO_ERROR
produce batch/1 ret=NO_ERROR
produce batch/2 ret=NO_ERROR
dr produce/copy-p0 partition=0 offset=0 err=NO_ERROR opaque=1000
headers: produce/copy-p0 count=0
dr produce/free-ua partition=0 offset=1 err=NO_ERROR opaque=1001
headers: produce/free-ua count=0
dr produce/block-ua partition=0 offset=2 err=NO_ERROR opaque=1002
headers: produce/block-ua count=0
dr produce/key-ua partition=0 offset=3 err=NO_ERROR opaque=1003
headers: produce/key-ua count=0
dr producev/app-header partition=0 offset=4 err=NO_ERROR opaque=1004
headers: producev/app-header count=1 app-h
dr producev/traceparent partition=0 offset=5 err=NO_ERROR opaque=1005
headers: producev/traceparent count=2 traceparent app-h
dr producev/headers partition=0 offset=6 err=NO_ERROR opaque=1006
headers: producev/headers count=2 app-h app-x
dr produceva partition=0 offset=7 err=NO_ERROR opaque=1007
headers: produceva count=1 app-h
dr batch/0 partition=0 offset=8 err=NO_ERROR opaque=1008
headers: batch/0 count=0
dr batch/1 partition=0 offset=9 err=NO_ERROR opaque=1009
headers: batch/1 count=0
dr batch/2 partition=0 offset=10 err=NO_ERROR opaque=1010
headers: batch/2 count=0
flush err=NO_ERROR outq=0
summary produced=11 delivered=11 failed=0
EOF
with_traceparent <"$WORK/prod.want" >"$WORK/prod-agent.want"

rc=0
env -u LD_PRELOAD $PRODUCER --topic kp-plain >"$WORK/plain.out" 2>"$WORK/plain.err" || rc=$?
expect "(b) without the agent: exit status" 0 "$rc"
check "(b) without the agent: nothing on stderr" test ! -s "$WORK/plain.err"
check "(b) without the agent: produce lines, delivery reports and header names as expected" \
	diff -u "$WORK/prod.want" "$WORK/plain.out"
rc=0
agent kp-main $PRODUCER --topic kp-main >"$WORK/main.out" 2>"$WORK/main.err" || rc=$?
expect "(b) under the agent: exit status" 0 "$rc"
check "(b) under the agent: produce lines and delivery reports (partition, offset, err, opaque) unchanged" \
	diff -u <(grep -v '^headers: ' "$WORK/prod.want") <(grep -v '^headers: ' "$WORK/main.out")
check "(b) under the agent: header names = the app's, then traceparent (none added to the app's own traceparent)" \
	diff -u <(grep '^headers: ' "$WORK/prod-agent.want") <(grep '^headers: ' "$WORK/main.out")
check "(b) under the agent: nothing on stderr" test ! -s "$WORK/main.err"
[[ -s $WORK/main.err ]] && sed 's/^/    /' "$WORK/main.err" | head -n 20
check "(b) 11 PRODUCER spans exported" wait_spans "$SINK_JSONL" 11 "s.get('service.name') == 'kp-main' and s['kind'] == 'PRODUCER'" 10
read_topic kp-plain "$WORK/kp-plain.msgs"
read_topic kp-main "$WORK/kp-main.msgs"

pycheck "$SINK_JSONL" "$WORK/main.out" "$WORK/kp-main.msgs" "$WORK/kp-plain.msgs" "$KAFKA_PORT" "$TP" <<'PY'
from kprod import *
path, out, msgs_path, plain_path, port, app_tp = sys.argv[1:7]
port = int(port)
ss = producer_spans(path, 'kp-main')
drs = dr_lines(out)
msgs = read_topic(msgs_path)
plain = read_topic(plain_path)
expect('(b) exactly one PRODUCER span per message (11)', 11, len(ss))
expect('(b) kcat reads 11 messages back', 11, len(msgs))
expect('(b) span ids all distinct', len(ss), len({s['span_id'] for s in ss}))
by_off = {}
for s in ss:
    by_off.setdefault(A(s).get('messaging.kafka.offset'), []).append(s)
by_msg = {m['offset']: m for m in msgs}
plain_by = {m['offset']: m for m in plain}
for case, (part, off, err, opaque) in sorted(drs.items(), key=lambda kv: kv[1][1]):
    label = '(b) %s (offset %d)' % (case, off)
    own_tp = case == 'producev/traceparent'
    if own_tp:
        # The app's own traceparent: the report finds a span by ours, so
        # this one ended when the message was accepted (no offset).
        cand = [s for s in ss if A(s).get('messaging.kafka.message.key') == 'key-' + case]
        if not check(len(cand) == 1 and 'messaging.kafka.offset' not in A(cand[0]),
                     label + ': one span, ended at acceptance (no messaging.kafka.offset)', [show(s) for s in cand]):
            continue
    else:
        cand = by_off.get(off, [])
        if not check(len(cand) == 1, label + ': one span with messaging.kafka.offset=%d' % off,
                     'found %d; offsets seen %r' % (len(cand), sorted(by_off, key=str))):
            continue
    s = cand[0]
    a = A(s)
    common_attrs(label, s, 'kp-main', port)
    check(s.get('status') == 'UNSET' and 'error.type' not in a, label + ': status unset, no error.type', show(s))
    check(s.get('parent_span_id') == '', label + ': a root (no current context in the producer)', show(s))
    if not own_tp:
        expect(label + ': messaging.destination.partition.id = the delivery report\'s, as a string', str(part),
               a.get('messaging.destination.partition.id'))
    expect(label + ': messaging.message.body.size', len('payload ' + case), a.get('messaging.message.body.size'))
    if KEYED(case):
        expect(label + ': messaging.kafka.message.key', 'key-' + case, a.get('messaging.kafka.message.key'))
    else:
        check('messaging.kafka.message.key' not in a, label + ': no key attribute (no key)', show(s))
    m = by_msg.get(off)
    if not check(m is not None, label + ': the message is in the topic'):
        continue
    p = plain_by.get(off)
    # payload, key and partition unchanged: as produced without the agent
    expect(label + ': payload, key and partition as without the agent',
           p and (p['payload'], p['key'], p['partition']), (m['payload'], m['key'], m['partition']))
    expect(label + ': payload', 'payload ' + case, m['payload'])
    tps = traceparent_of(m)
    app_headers = p['headers'] if p else None
    if case == 'producev/traceparent':
        expect(label + ': the app\'s headers exactly, its own traceparent untouched (nothing added)',
               [('traceparent', app_tp), ('app-h', 'tp')], m['headers'])
        continue
    expect(label + ': headers = the app\'s, in order, then one traceparent',
           (app_headers or []) + [('traceparent', tps[0] if tps else None)], m['headers'])
    if not check(len(tps) == 1 and TP_RE.match(tps[0]), label + ': one valid traceparent header', tps):
        continue
    t, sp = TP_RE.match(tps[0]).groups()
    expect(label + ': traceparent = 00-<span trace id>-<span id>-0[13]', (s['trace_id'], s['span_id']), (t, sp))
PY

echo "== (c) kafka-producer --no-dr: spans end when the message is accepted"
rc=0
env -u LD_PRELOAD $PRODUCER --topic kp-nodr-plain --no-dr >"$WORK/nodr-plain.out" 2>/dev/null || rc=$?
expect "(c) without the agent: exit status" 0 "$rc"
expect "(c) without the agent: no delivery report, every message produced and flushed" \
	"0 flush err=NO_ERROR outq=0 summary produced=11 delivered=0 failed=0" \
	"$(grep -c '^dr ' "$WORK/nodr-plain.out" || true) $(tail -n2 "$WORK/nodr-plain.out" | tr '\n' ' ' | sed 's/ $//')"
rc=0
agent kp-nodr $PRODUCER --topic kp-nodr --no-dr >"$WORK/nodr.out" 2>"$WORK/nodr.err" || rc=$?
expect "(c) under the agent: exit status" 0 "$rc"
check "(c) under the agent: output identical to the run without the agent" diff -u "$WORK/nodr-plain.out" "$WORK/nodr.out"
check "(c) under the agent: nothing on stderr" test ! -s "$WORK/nodr.err"
check "(c) 11 PRODUCER spans exported" wait_spans "$SINK_JSONL" 11 "s.get('service.name') == 'kp-nodr' and s['kind'] == 'PRODUCER'" 10
read_topic kp-nodr-plain "$WORK/nodr-plain.msgs"
read_topic kp-nodr "$WORK/nodr.msgs"

pycheck "$SINK_JSONL" "$WORK/nodr.msgs" "$WORK/nodr-plain.msgs" "$KAFKA_PORT" <<'PY'
from kprod import *
path, msgs_path, plain_path, port = sys.argv[1:5]
port = int(port)
ss = producer_spans(path, 'kp-nodr')
msgs = read_topic(msgs_path)
plain = read_topic(plain_path)
expect('(c) exactly one PRODUCER span per message (11)', 11, len(ss))
expect('(c) the messages (payload, key, partition) as without the agent',
       [(m['payload'], m['key'], m['partition']) for m in plain],
       [(m['payload'], m['key'], m['partition']) for m in msgs])
by_id = {s['span_id']: s for s in ss}
used = set()
for m in msgs:
    case = m['payload'][len('payload '):]
    label = '(c) %s' % case
    tps = traceparent_of(m)
    if case == 'producev/traceparent':
        check(len(tps) == 1, label + ': only the app\'s traceparent', m['headers'])
        continue
    if not check(len(tps) == 1 and TP_RE.match(tps[0]), label + ': one valid traceparent header', m['headers']):
        continue
    t, sp = TP_RE.match(tps[0]).groups()
    s = by_id.get(sp)
    if not check(s is not None and s['trace_id'] == t, label + ': traceparent names one of the PRODUCER spans', tps[0]):
        continue
    used.add(sp)
    a = A(s)
    common_attrs(label, s, 'kp-nodr', port)
    check(s.get('status') == 'UNSET', label + ': status unset', show(s))
    expect(label + ': messaging.message.body.size', len(m['payload']), a.get('messaging.message.body.size'))
    expect(label + ': messaging.kafka.message.key', m['key'] or None, a.get('messaging.kafka.message.key'))
    if case in ('produce/copy-p0', 'producev/headers'):
        expect(label + ': messaging.destination.partition.id (explicit partition 0)', '0',
               a.get('messaging.destination.partition.id'))
expect('(c) the PRODUCER span of each message, each a different one (10 with the agent\'s header)', 10, len(used))
PY

echo "== (d) kafka-producer --fail: refused produce calls and a failed delivery"
cat >"$WORK/fail.want" <<'EOF'
produce fail/produce-copy ret=-1 errno=EMSGSIZE err=MSG_SIZE_TOO_LARGE
produce fail/produce-free ret=-1 errno=EMSGSIZE err=MSG_SIZE_TOO_LARGE
produce fail/producev ret=MSG_SIZE_TOO_LARGE
produce fail/produceva ret=MSG_SIZE_TOO_LARGE
produce_batch fail/batch ret=0
produce fail/batch ret=MSG_SIZE_TOO_LARGE
produce fail/unknown-partition ret=-1 errno=ESRCH err=_UNKNOWN_PARTITION
produce fail/after-error ret=0
last_error NO_ERROR
produce fail/purged ret=NO_ERROR
purge err=NO_ERROR
dr fail/after-error partition=0 offset=-1001 err=_PURGE_QUEUE opaque=1017
headers: fail/after-error count=0
dr fail/purged partition=0 offset=-1001 err=_PURGE_QUEUE opaque=1018
headers: fail/purged count=1 app-h
flush err=NO_ERROR outq=0
summary produced=2 delivered=0 failed=2
EOF
with_traceparent <"$WORK/fail.want" >"$WORK/fail-agent.want"
rc=0
env -u LD_PRELOAD $PRODUCER --topic kp-fail-plain --fail >"$WORK/fail-plain.out" 2>"$WORK/fail-plain.err" || rc=$?
expect "(d) without the agent: exit status" 0 "$rc"
# (sorted: the two purged messages' reports come in either order)
check "(d) without the agent: produce errors and the delivery errors as expected" \
	diff -u <(sort "$WORK/fail.want") <(sort "$WORK/fail-plain.out")
rc=0
agent kp-fail $PRODUCER --topic kp-fail --fail >"$WORK/fail.out" 2>"$WORK/fail.err" || rc=$?
expect "(d) under the agent: exit status" 0 "$rc"
check "(d) under the agent: return values, errno, rd_kafka_last_error, purge and the app's delivery report unchanged" \
	diff -u <(grep -v '^headers: ' "$WORK/fail.want" | sort) <(grep -v '^headers: ' "$WORK/fail.out" | sort)
check "(d) under the agent: the purged messages' header names: the app's, then traceparent (none after an error)" \
	diff -u <(grep '^headers: ' "$WORK/fail-agent.want" | sort) <(grep '^headers: ' "$WORK/fail.out" | sort)
check "(d) under the agent: nothing on stderr" test ! -s "$WORK/fail.err"
expect "(d) nothing reached the topic (with the agent)" "" "$("${K[@]}" -C -t kp-fail -e -o beginning 2>/dev/null)"
expect "(d) nothing reached the topic (without the agent)" "" "$("${K[@]}" -C -t kp-fail-plain -e -o beginning 2>/dev/null)"
check "(d) 8 PRODUCER spans exported" wait_spans "$SINK_JSONL" 8 "s.get('service.name') == 'kp-fail' and s['kind'] == 'PRODUCER'" 10

pycheck "$SINK_JSONL" "$KAFKA_PORT" <<'PY'
from kprod import *
path, port = sys.argv[1], int(sys.argv[2])
ss = producer_spans(path, 'kp-fail')
expect('(d) exactly one PRODUCER span per produce attempt (8)', 8, len(ss))
# (case, error.type, body size, key, partition.id or None when not checked)
WANT = [
    ('fail/produce-copy', 'MSG_SIZE_TOO_LARGE', 5000, None, '0'),
    ('fail/produce-free', 'MSG_SIZE_TOO_LARGE', 5000, None, None),
    ('fail/producev', 'MSG_SIZE_TOO_LARGE', 5000, None, None),
    ('fail/produceva', 'MSG_SIZE_TOO_LARGE', 5000, None, None),
    ('fail/batch', 'MSG_SIZE_TOO_LARGE', 5000, 'key-fail/batch', None),
    ('fail/unknown-partition', '_UNKNOWN_PARTITION', len('payload fail/unknown-partition'), None, '7'),
    # made as the app made it (no header of ours to find it by at the
    # report): the span ends when the message is accepted
    ('fail/after-error', None, len('payload fail/after-error'), None, None),
    ('fail/purged', '_PURGE_QUEUE', len('payload fail/purged'), None, '0'),
]
expect('(d) error.type of the spans (5 too large, 1 unknown partition, 1 accepted, 1 purged)',
       sorted(str(w[1]) for w in WANT), sorted(str(A(s).get('error.type')) for s in ss))
check(all(s.get('status') == ('UNSET' if 'error.type' not in A(s) else 'ERROR') for s in ss),
      '(d) every span with an error.type has status ERROR, the accepted one UNSET',
      [show(s) for s in ss])
check(all('messaging.kafka.offset' not in A(s) for s in ss), '(d) no offset attribute on failed messages',
      [show(s) for s in ss if 'messaging.kafka.offset' in A(s)])
for s in ss:
    common_attrs('(d) span %s (%s)' % (s['span_id'], A(s).get('error.type')), s, 'kp-fail', port)
# the produce order is the start order
ss.sort(key=lambda s: (s.get('start_ns', 0), s.get('end_ns', 0)))
if len(ss) == len(WANT):
    for (case, et, size, key, part), s in zip(WANT, ss):
        a = A(s)
        label = '(d) %s' % case
        expect(label + ': error.type', et, a.get('error.type'))
        expect(label + ': messaging.message.body.size', size, a.get('messaging.message.body.size'))
        expect(label + ': messaging.kafka.message.key', key, a.get('messaging.kafka.message.key'))
        if part is not None:
            expect(label + ': messaging.destination.partition.id', part, a.get('messaging.destination.partition.id'))
PY

echo "== (e) valgrind: kafka-producer under the agent (F_FREE, F_COPY ownership)"
if command -v valgrind >/dev/null; then
	VG=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --trace-children=no)
	# LD_PRELOAD is passed to valgrind's guest (after valgrind's own preloads).
	rc=0
	agent kp-vg TRACEAGENT_EXIT_TIMEOUT=10000 "${VG[@]}" $PRODUCER --topic kp-vg \
		>"$WORK/vg.out" 2>"$WORK/vg.err" || rc=$?
	expect "(e) valgrind, normal mode: exit status 0 (no memory error, no definite leak)" 0 "$rc"
	[[ $rc -ne 0 ]] && sed 's/^/    /' "$WORK/vg.err" | head -n 60
	check "(e) valgrind, normal mode: output as under the agent without valgrind" diff -u "$WORK/prod-agent.want" "$WORK/vg.out"
	rc=0
	agent kp-vg-fail TRACEAGENT_EXIT_TIMEOUT=10000 "${VG[@]}" $PRODUCER --topic kp-vg-fail --fail \
		>"$WORK/vg-fail.out" 2>"$WORK/vg-fail.err" || rc=$?
	expect "(e) valgrind, --fail mode: exit status 0 (no memory error, no definite leak)" 0 "$rc"
	[[ $rc -ne 0 ]] && sed 's/^/    /' "$WORK/vg-fail.err" | head -n 60
	check "(e) valgrind, --fail mode: output as under the agent without valgrind" diff -u <(sort "$WORK/fail-agent.want") <(sort "$WORK/vg-fail.out")
	check "(e) valgrind: the spans were made and exported (11 + 7)" \
		wait_spans "$SINK_JSONL" 18 "s.get('service.name') in ('kp-vg', 'kp-vg-fail') and s['kind'] == 'PRODUCER'" 10
else
	fail "(e) valgrind is not installed (scripts/install-deps)"
fi

echo "== (e2) a delivery that times out: a broker that never answers"
# A socket that listens but never reads: the connection is up (so kcat does
# not give up on "all brokers down"), no metadata ever comes, and the message
# waits until message.timeout.ms; its delivery report says _MSG_TIMED_OUT.
start_listening mute "$PY" -c 'import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
print("listening on 127.0.0.1:%d" % s.getsockname()[1], flush=True)
time.sleep(120)'
rc=0
printf 'lost\n' | agent kp-timeout timeout 30 kcat -b "127.0.0.1:$PORT" -P -t kp-timeout \
	-X message.timeout.ms=1000 -X topic.metadata.refresh.interval.ms=100 >"$WORK/timeout.out" 2>"$WORK/timeout.err" || rc=$?
check "(e2) kcat reports the failed delivery and exits non-zero ($rc)" test "$rc" -ne 0 -a "$rc" -ne 124
check "(e2) PRODUCER span exported" wait_spans "$SINK_JSONL" 1 "s.get('service.name') == 'kp-timeout'" 10
pycheck "$SINK_JSONL" <<'PY'
sp = select(load(sys.argv[1]), "s.get('service.name') == 'kp-timeout'")
expect("(e2) one PRODUCER span", 1, len(sp))
if sp:
    s = sp[0]
    expect("(e2) status ERROR", "ERROR", s["status"])
    expect("(e2) error.type _MSG_TIMED_OUT", "_MSG_TIMED_OUT", s["attributes"].get("error.type"))
    expect("(e2) name", "send kp-timeout", s["name"])
PY

echo "== (g) a custom partitioner_cb sees the app's own msg_opaque (the agent never swaps it)"
env -u LD_PRELOAD $PRODUCER --topic kp-part-plain --partitioner >"$WORK/part-plain.out" 2>"$WORK/part-plain.err" || true
rc=0
agent kp-part $PRODUCER --topic kp-part --partitioner >"$WORK/part.out" 2>"$WORK/part.err" || rc=$?
expect "(g) under the agent: exit status" 0 "$rc"
expect "(g) without the agent: the partitioner saw opaques 1, 2, 3" \
	"partitioner key=k1 opaque=1 partitioner key=k2 opaque=2 partitioner key=k3 opaque=3" \
	"$(grep '^partitioner ' "$WORK/part-plain.out" | tr '\n' ' ' | sed 's/ $//')"
# (sorted: the three partitions' reports arrive in any order)
check "(g) under the agent: the partitioner lines, produce results and delivery reports (partition, opaque) unchanged" \
	diff -u <(grep -v '^headers: ' "$WORK/part-plain.out" | sort) <(grep -v '^headers: ' "$WORK/part.out" | sort)
check "(g) three PRODUCER spans, each ended by its delivery report (an offset)" wait_spans "$SINK_JSONL" 3 \
	"s.get('service.name') == 'kp-part' and s['kind'] == 'PRODUCER' and 'messaging.kafka.offset' in a" 10

echo "== (f) scripts/dev-kafka stop"
# shellcheck disable=SC1091,SC2153
pid=$(. "$KAFKA_DIR/dev-kafka.state" && echo "$KAFKA_PID")
bash scripts/dev-kafka stop "$KAFKA_DIR"
# (a zombie waiting for init to reap it counts as gone)
check "dev-kafka stop: the broker is gone" \
	bash -c "! kill -0 $pid 2>/dev/null || [[ \$(ps -o stat= -p $pid) == Z* ]]"
check "dev-kafka stop: DIR removed" test ! -e "$KAFKA_DIR"
check "dev-kafka stop again: not an error" bash scripts/dev-kafka stop "$KAFKA_DIR"

finish
