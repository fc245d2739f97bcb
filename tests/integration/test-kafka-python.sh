#!/usr/bin/env bash
# test-kafka-python: Debian's python3-confluent-kafka consumer under the agent: the message's CONSUMER span stays current while the app handles it (the binding copies and destroys each message inside poll()), so its HTTP and SQL calls are its children, in the producer's trace; it ends at the next poll, a commit, close or thread exit.
#
# A mock broker (scripts/dev-kafka); kcat (never under the agent) produces
# three keyed messages, each with its own traceparent (the producer's trace).
# $WORK/consumer.py (Debian's /usr/bin/python3, confluent_kafka 1.7.0 over
# Debian's librdkafka) reads them under the agent and, for each message,
# makes an urllib GET to a header-recording server (not under the agent) and
# a psycopg2 SELECT (PostgreSQL from scripts/dev-postgres), then per mode:
#   poll    a second GET, next poll; after the last message close(), then a
#           GET after close
#   commit  commit(message=m) (synchronous, then asynchronous: both are
#           rd_kafka_commit_queue), then a GET after the commit
#   thread  poll loop as in poll, in a threading.Thread that ends without
#           close (the main thread closes after joining it)
#   exit    poll loop as in poll, then exit without close()
#   batch   consume(num_messages=...) (rd_kafka_consume_batch_queue)
# Checked in every mode: exit status, stdout and stderr as without the agent;
# one CONSUMER span per message, its parent the header's context; no span
# but those and the handler's calls. poll, thread, exit: the GETs (and in
# poll the SELECT) made while handling a message are its CONSUMER span's
# children, in the producer's trace, and lie within it (its duration covers
# the handling); poll: the downstream received that trace in traceparent,
# and the GET after close() is in no message's trace and starts after the
# last span ended. commit: the GET and the SELECT before the commit are its
# children; the GET after it is in no message's trace and starts after the
# span ended. batch (the binding destroys every message of the call before
# the app sees one): no call is parented by another message's span.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

# Debian's interpreter, where python3-confluent-kafka and python3-psycopg2 are
# installed (scripts/install-deps); python3 on PATH may be another one.
DPY=/usr/bin/python3
"$DPY" -c 'import confluent_kafka' 2>/dev/null || die "python3-confluent-kafka is missing (run scripts/install-deps)"
"$DPY" -c 'import psycopg2' 2>/dev/null || die "python3-psycopg2 is missing (run scripts/install-deps)"
command -v kcat >/dev/null || die "kcat is not installed"

T0=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
T1=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01
T2=00-a1b2c3d4e5f60718293a4b5c6d7e8f90-1122334455667788-01

kafka_start --topic kp-in
export KAFKA_BROKERS
start_sink
start_recorder downstream
export DOWN=http://127.0.0.1:$REC_PORT
pg_start
export DATABASE_URL

K=(env -u LD_PRELOAD timeout 20 kcat -b "$KAFKA_BROKERS" -q)
printf 'k0:v0\n' | "${K[@]}" -P -t kp-in -K: -H "traceparent=$T0"
printf 'k1:v1\n' | "${K[@]}" -P -t kp-in -K: -H "traceparent=$T1"
printf 'k2:v2\n' | "${K[@]}" -P -t kp-in -K: -H "traceparent=$T2"
expect "kp-in holds the three messages" "0 k0 v0|1 k1 v1|2 k2 v2" \
	"$("${K[@]}" -C -t kp-in -e -o beginning -f '%o %k %s\n' 2>/dev/null | paste -sd '|')"

cat >"$WORK/consumer.py" <<'PY'
import os, sys, threading, time, urllib.request
import psycopg2
from confluent_kafka import Consumer

mode, group, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
DOWN = os.environ['DOWN']
db = psycopg2.connect(os.environ['DATABASE_URL'])
db.autocommit = True
c = Consumer({'bootstrap.servers': os.environ['KAFKA_BROKERS'], 'group.id': group,
              'auto.offset.reset': 'earliest', 'enable.auto.commit': False})
c.subscribe(['kp-in'])

def get(path):
    with urllib.request.urlopen(DOWN + path, timeout=10) as r:
        return r.read().decode()

def handle(m):
    off = m.offset()
    print('msg offset=%d key=%s value=%s headers=%r' % (off, m.key().decode(), m.value().decode(),
                                                      [(k, v.decode()) for k, v in m.headers() or []]))
    print('get:', get('/%s/handle?off=%d&leg=1' % (mode, off)))
    with db.cursor() as cur:
        cur.execute('SELECT %s::int + 1', (off,))
        print('sql:', cur.fetchone()[0])
    if mode == 'commit':
        # synchronous for the first message, asynchronous for the others
        c.commit(message=m, asynchronous=off > 0)
        print('committed', off)
        print('get:', get('/%s/after-commit?off=%d' % (mode, off)))
    else:
        print('get:', get('/%s/handle?off=%d&leg=2' % (mode, off)))
    sys.stdout.flush()

def loop():
    n = 0
    deadline = time.monotonic() + 30
    while n < count and time.monotonic() < deadline:
        if mode == 'batch':
            ms = c.consume(num_messages=count - n, timeout=1)
        else:
            m = c.poll(1)
            ms = [m] if m is not None else []
        for m in ms:
            if m.error():
                print('error', m.error())
                continue
            handle(m)
            n += 1
    print('consumed', n, flush=True)
    return n

if mode == 'thread':
    got = []
    t = threading.Thread(target=lambda: got.append(loop()))
    t.start()
    t.join()
    n = got[0] if got else 0
else:
    n = loop()
if mode == 'exit':
    # no close(): the interpreter destroys the consumer as it exits
    sys.exit(0 if n == count else 1)
c.close()
if mode != 'commit':
    print('get:', get('/%s/after-close' % mode), flush=True)
sys.exit(0 if n == count else 1)
PY

cat >"$WORK/kpy.py" <<'PY'
import re
from spanq import load, A, check, expect, show, HEX32

HDR = {0: ('4bf92f3577b34da6a3ce929d0e0e4736', '00f067aa0ba902b7'),
       1: ('0af7651916cd43dd8448eb211c80319c', 'b7ad6b7169203331'),
       2: ('a1b2c3d4e5f60718293a4b5c6d7e8f90', '1122334455667788')}
TRACES = {t for t, _ in HDR.values()}

def url_path(s):
    u = A(s).get('url.full') or ''
    return re.sub(r'^http://[^/]+', '', u)

def recorded(log):
    """{path: traceparent header} as the downstream received them."""
    import json
    out = {}
    for line in open(log):
        r = json.loads(line)
        out[r['path']] = dict((k.lower(), v) for k, v in r['headers']).get('traceparent')
    return out

def consumer_by_offset(label, cs):
    res = {}
    for s in cs:
        res.setdefault(A(s).get('messaging.kafka.offset'), []).append(s)
    check(sorted(res, key=str) == [0, 1, 2] and all(len(v) == 1 for v in res.values()),
          label + ': one CONSUMER span per message (offsets 0, 1, 2)', {o: len(v) for o, v in res.items()})
    return {o: v[0] for o, v in res.items()}

def within(label, c, kids):
    return check(all(c['start_ns'] <= k['start_ns'] and k['end_ns'] <= c['end_ns'] for k in kids),
                 label + ': the handler\'s calls lie within the CONSUMER span (it covers the handling)',
                 'consumer %d..%d, calls %r' % (c['start_ns'], c['end_ns'],
                                                [(k['name'], k['start_ns'], k['end_ns']) for k in kids]))

def after(label, c, s):
    """s (made after the message's span should have ended) is in none of the messages' traces."""
    ok = check(s is not None, label + ': a CLIENT span')
    if not ok:
        return False
    ok &= check(s.get('parent_span_id') == '' and s['trace_id'] not in TRACES,
                label + ': in no message\'s trace (a root CLIENT span)', show(s))
    ok &= check(c['end_ns'] <= s['start_ns'], label + ': the message\'s CONSUMER span ended before it started',
                'consumer end %d, call start %d' % (c['end_ns'], s['start_ns']))
    return ok

def mode_spans(path, mode):
    """MODE's spans under the agent: (label, all of them, CONSUMER spans by
    offset, HTTP CLIENT spans by path, SQL spans)."""
    label = '(%s)' % mode
    spans = [s for s in load(path) if s.get('service.name') == 'kpy-' + mode]
    cs = consumer_by_offset(label, [s for s in spans if s['kind'] == 'CONSUMER'])
    https = {url_path(s): s for s in spans if s['kind'] == 'CLIENT' and 'url.full' in A(s)}
    dbs = [s for s in spans if A(s).get('db.system.name') == 'postgresql']
    return label, spans, cs, https, dbs

def legs(https, mode, off):
    """The CLIENT spans of the two GETs made while handling message OFF (None where missing)."""
    return [https.get('/%s/handle?off=%d&leg=%d' % (mode, off, n)) for n in (1, 2)]

def consumer_parent(l, c, ctx):
    return expect(l + ': CONSUMER parent = the header\'s context', ctx, (c['trace_id'], c['parent_span_id']))

def each_message(label, cs, how=lambda off: ''):
    """(offset, header context, CONSUMER span, label) of each message whose
    CONSUMER span is there (checked, and its parent the header's context)."""
    for off, ctx in sorted(HDR.items()):
        c = cs.get(off)
        l = '%s offset %d%s' % (label, off, how(off))
        if not check(c is not None, l + ': a CONSUMER span'):
            continue
        consumer_parent(l, c, ctx)
        yield off, ctx, c, l

def legs_children(label, mode, cs, https):
    """Each message's two GETs are its CONSUMER span's children, in the producer's trace, within it."""
    for off, ctx in sorted(HDR.items()):
        c = cs.get(off)
        l = '%s offset %d' % (label, off)
        gs = legs(https, mode, off)
        if not check(c is not None and all(gs), l + ': a CONSUMER span and both GETs'):
            continue
        expect(l + ': both GETs are the CONSUMER span\'s children, in the producer\'s trace',
               [(ctx[0], c['span_id'])] * 2, [(g['trace_id'], g['parent_span_id']) for g in gs])
        within(l, c, gs)

def nothing_else(label, spans, n_http):
    expect('%s nothing else: 3 CONSUMER + %d HTTP + 3 SQL spans' % (label, n_http), 6 + n_http, len(spans))
PY

# check_mode MODE N WHAT <<'PY' ... PY: runs consumer.py in MODE without and
# with the agent (exit status, output as without it), waits for the N spans
# (WHAT) of the traced run, then runs the python checks (stdin) of them with
# kpy imported, sys.argv[1:3] the sink's and the downstream's logs, and
# label, spans, cs, https, dbs set by mode_spans.
check_mode() {
	local mode=$1 rc=0 body
	body=$(cat)
	env -u LD_PRELOAD "$DPY" "$WORK/consumer.py" "$mode" "plain-$mode" 3 \
		>"$WORK/$mode-plain.out" 2>"$WORK/$mode-plain.err" || rc=$?
	expect "($mode) without the agent: exit status" 0 "$rc"
	expect "($mode) without the agent: three messages handled" 3 "$(grep -c '^msg offset=' "$WORK/$mode-plain.out" || true)"
	rc=0
	agent "kpy-$mode" "$DPY" "$WORK/consumer.py" "$mode" "agent-$mode" 3 \
		>"$WORK/$mode.out" 2>"$WORK/$mode.err" || rc=$?
	expect "($mode) under the agent: exit status" 0 "$rc"
	check "($mode) under the agent: stdout identical to the run without the agent" \
		diff -u "$WORK/$mode-plain.out" "$WORK/$mode.out"
	check "($mode) under the agent: stderr identical to the run without the agent" \
		diff -u "$WORK/$mode-plain.err" "$WORK/$mode.err"
	check "($mode) $3 exported" wait_spans "$SINK_JSONL" "$2" "s.get('service.name') == 'kpy-$mode'" 10
	pycheck "$SINK_JSONL" "$REC_LOG" "$mode" <<PY
from kpy import *
label, spans, cs, https, dbs = mode_spans(sys.argv[1], sys.argv[3])
$body
PY
}

echo "== (poll) poll(), a GET and a SELECT and a GET per message, close()"
check_mode poll 13 "3 CONSUMER, 6+1 HTTP and 3 SQL spans" <<'PY'
rec = recorded(sys.argv[2])
for off, ctx, c, l in each_message(label, cs):
    gs = legs(https, 'poll', off)
    if not check(all(gs), l + ': both GETs made while handling it have CLIENT spans', sorted(https)):
        continue
    sql = [d for d in dbs if d.get('parent_span_id') == c['span_id']]
    for n, g in enumerate(gs, 1):
        expect('%s: GET leg %d: parent = the CONSUMER span, in the producer\'s trace' % (l, n),
               (ctx[0], c['span_id']), (g['trace_id'], g['parent_span_id']))
        expect('%s: GET leg %d: the downstream received that trace and span' % (l, n),
               '00-%s-%s-01' % (ctx[0], g['span_id']), rec.get('/poll/handle?off=%d&leg=%d' % (off, n)))
    check(len(sql) == 1 and sql[0]['trace_id'] == ctx[0] and sql[0]['kind'] == 'CLIENT',
          l + ': the SELECT is the CONSUMER span\'s child, in the producer\'s trace',
          [show(d) for d in dbs])
    within(l, c, gs + sql)
after('(poll) GET after close()', cs.get(2), https.get('/poll/after-close'))
nothing_else(label, spans, 7)
PY

echo "== (commit) the span ends at commit(): synchronous and asynchronous"
check_mode commit 12 "3 CONSUMER, 6 HTTP and 3 SQL spans" <<'PY'
for off, ctx, c, l in each_message(label, cs, lambda off: ' (%s commit)' % ('synchronous' if off == 0 else 'asynchronous')):
    g = https.get('/commit/handle?off=%d&leg=1' % off)
    sql = [d for d in dbs if d.get('parent_span_id') == c['span_id']]
    if not check(g is not None and len(sql) == 1, l + ': the GET and the SELECT before the commit are its children',
                 (sorted(https), [d.get('parent_span_id') for d in dbs])):
        continue
    expect(l + ': GET before the commit: parent = the CONSUMER span', (ctx[0], c['span_id']),
           (g['trace_id'], g['parent_span_id']))
    within(l, c, [g] + sql)
    after(l + ': GET after the commit', c, https.get('/commit/after-commit?off=%d' % off))
nothing_else(label, spans, 6)
PY

echo "== (thread) the poll loop in a thread that ends without close()"
check_mode thread 13 "3 CONSUMER, 6+1 HTTP and 3 SQL spans" <<'PY'
legs_children(label, 'thread', cs, https)
a = https.get('/thread/after-close')
check(a is not None and a['parent_span_id'] == '' and a['trace_id'] not in TRACES,
      '(thread) the GET on the main thread after close() is in no message\'s trace', a and show(a))
nothing_else(label, spans, 7)
PY

echo "== (exit) the poll loop, then exit without close()"
check_mode exit 12 "3 CONSUMER, 6 HTTP and 3 SQL spans" <<'PY'
legs_children(label, 'exit', cs, https)
nothing_else(label, spans, 6)
PY

echo "== (batch) consume(num_messages=N): no call is parented by another message"
check_mode batch 13 "3 CONSUMER, 6+1 HTTP and 3 SQL spans" <<'PY'
for off, ctx in sorted(HDR.items()):
    c = cs.get(off)
    if c is not None:
        consumer_parent('%s offset %d' % (label, off), c, ctx)
by_id = {c['span_id']: o for o, c in cs.items()}
calls = [s for s in spans if s['kind'] == 'CLIENT']
wrong = []
for s in calls:
    m = re.search(r'off=(\d)', url_path(s))
    if s.get('parent_span_id') in by_id and (m is None or int(m.group(1)) != by_id[s['parent_span_id']]):
        wrong.append((url_path(s), by_id[s['parent_span_id']]))
sql = [s for s in calls if A(s).get('db.system.name') == 'postgresql']
check(not wrong, label + ': no GET is the child of another message\'s CONSUMER span', wrong)
check(all(s['parent_span_id'] not in by_id or s['trace_id'] == cs[by_id[s['parent_span_id']]]['trace_id']
          for s in sql), label + ': a SELECT under a CONSUMER span is in its trace')
nothing_else(label, spans, 7)
PY

finish
