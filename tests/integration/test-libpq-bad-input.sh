#!/usr/bin/env bash
# test-libpq-bad-input: empty/NULL queries, NULL connections, 1 MB statements, invalid UTF-8, unterminated quotes and a killed backend behave exactly as without the agent.
#
# Every bad-input case of build/tests/pq-client (pq-client --list) runs without
# the agent, under it, and under it with every libpq option on (sqlcommenter,
# parameters, no sanitizer): stdout, stderr and the exit status must be
# identical, and no run may die of a signal. Then the spans: a statement the
# server rejected, or that could not be sent on a live connection, has status
# ERROR with error.type; one that ran has not; no connection, no span.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

command -v psql >/dev/null || die "psql is not installed"
PQ_FLAGS=$(pkg-config --cflags --libs libpq 2>/dev/null || echo "-I$(pg_config --includedir) -lpq")
# shellcheck disable=SC2086
need_helper pq-client $PQ_FLAGS
PQC=build/tests/pq-client

start_sink
pg_start
export DATABASE_URL

mapfile -t CASES < <("$PQC" --list | grep -v '^all$')
[[ ${#CASES[@]} -ge 9 ]] || die "pq-client --list gave ${#CASES[@]} cases"
ALL_ON=(TRACEAGENT_DB_SQLCOMMENTER=true TRACEAGENT_DB_CAPTURE_PARAMETERS=true
	OTEL_INSTRUMENTATION_COMMON_DB_STATEMENT_SANITIZER_ENABLED=false)

# run_case CASE LABEL [agent SERVICE VAR=value...]: out/err/rc in $WORK/CASE.LABEL.*
run_case() {
	local c=$1 label=$2 rc=0
	shift 2
	local base=$WORK/$c.$label
	if [[ ${1:-} == agent ]]; then
		shift
		timeout 60 env LD_PRELOAD="$AGENT" OTEL_EXPORTER_OTLP_ENDPOINT="$SINK_ENDPOINT" OTEL_SERVICE_NAME="$1" \
			OTEL_BSP_SCHEDULE_DELAY=100 OTEL_LOG_LEVEL=warn "${@:2}" \
			"$PQC" --case "$c" "$DATABASE_URL" >"$base.out" 2>"$base.err" || rc=$?
	else
		timeout 60 "$PQC" --case "$c" "$DATABASE_URL" >"$base.out" 2>"$base.err" || rc=$?
	fi
	echo "$rc" >"$base.rc"
}

for c in "${CASES[@]}"; do
	echo "== $c"
	run_case "$c" plain
	prc=$(cat "$WORK/$c.plain.rc")
	if ((prc > 128)); then fail "$c: pq-client dies of signal $((prc - 128)) even without the agent"; fi
	grep -q "^case $c: done$" "$WORK/$c.plain.out" || fail "$c: pq-client did not finish without the agent (exit $prc)"
	run_case "$c" agent agent "pq-bad-$c"
	run_case "$c" allon agent "pq-allon-$c" "${ALL_ON[@]}"
	for label in agent allon; do
		base=$WORK/$c.$label
		rc=$(cat "$base.rc")
		[[ $label == allon ]] && what="$c (agent, all DB options on)"
		[[ $label == agent ]] && what="$c (agent)"
		if ((rc > 128)); then
			fail "$what: killed by signal $((rc - 128))"
		else
			expect "$what: exit status as without the agent" "$prc" "$rc"
		fi
		check "$what: identical stdout" diff -u "$WORK/$c.plain.out" "$base.out"
		check "$what: identical stderr" diff -u "$WORK/$c.plain.err" "$base.err"
	done
done

# Control: a span from a program run after all of the above proves they have flushed.
agent pq-control "$PQC" --case multi "$DATABASE_URL" >/dev/null 2>&1 || true
check "control: spans arrive" wait_spans "$SINK_JSONL" 1 "s.get('service.name') == 'pq-control'" 20

pycheck "$SINK_JSONL" <<'PY'
sp = load(sys.argv[1])
def of(case, prefix='pq-bad-'):
    return sorted((s for s in sp if s.get('service.name') == prefix + case), key=lambda s: s.get('start_ns', 0))
def txt(s):
    return A(s).get('db.query.text')
def brief(ss):
    return [(s.get('name'), s.get('status'), A(s).get('error.type'), (txt(s) or '')[:60]) for s in ss]
for prefix in ('pq-bad-', 'pq-allon-'):
    tag = '' if prefix == 'pq-bad-' else ' [all options on]'
    # every span is a well-formed CLIENT db span; an ERROR has error.type; UNSET has none
    for s in [s for s in sp if s.get('service.name', '').startswith(prefix)]:
        a = A(s)
        ok = s.get('kind') == 'CLIENT' and a.get('db.system.name') == 'postgresql'
        if s.get('status') == 'ERROR':
            ok = ok and bool(a.get('error.type')) and any(e.get('name') == 'exception' for e in s.get('events') or [])
        else:
            ok = ok and 'error.type' not in a
        if not ok:
            check(False, '%s: well-formed span%s' % (s['service.name'], tag), show(s))
        if txt(s) is not None and '\ufffd' in txt(s):
            check(False, '%s: db.query.text is valid UTF-8 (invalid bytes as ?)%s' % (s['service.name'], tag), show(s))

    ss = of('empty', prefix)
    check(len(ss) >= 7, 'empty%s: spans for the empty statements' % tag, brief(ss))
    expect('empty%s: an empty query is not an error' % tag, [], [b for b in brief(ss) if b[1] == 'ERROR'])

    ss = of('null-query', prefix)
    ok = [s for s in ss if s.get('status') != 'ERROR']
    expect('null-query%s: only the final SELECT 1 succeeds' % tag, 1, len(ok))
    codes = [A(s).get('error.type') for s in ss if s.get('status') == 'ERROR']
    check(codes.count('26000') == 2 and codes.count('34000') == 1,
          'null-query%s: unknown prepared statement 26000 (x2), unknown portal 34000' % tag, codes)

    expect('null-conn%s: no connection, no span' % tag, [], brief(of('null-conn', prefix)))

    ss = of('big', prefix)
    expect('big%s: four statements, only the one with a missing parameter fails (42P02)' % tag,
           ['UNSET', 'UNSET', 'UNSET', '42P02'],
           [A(s).get('error.type') if s.get('status') == 'ERROR' else s.get('status') for s in ss])
    if ss:
        t = txt(ss[0]) or ''
        if prefix == 'pq-bad-':
            # the agent reads at most the first 64 KiB: there the literal is still open
            check(t in ('SELECT ? AS big', 'SELECT ?'), 'big: the 1 MB literal is sanitised', t)
        else:
            check(t.startswith("SELECT 'abcdefghij") and len(t.encode()) <= 4096,
                  'big%s: the 1 MB literal is kept but cut to the span capacity' % tag, len(t))

    ss = of('invalid-utf8', prefix)
    expect('invalid-utf8%s: four errors 22021, then the query after succeeds' % tag,
           ['22021', '22021', '22021', '22021', 'UNSET'],
           [A(s).get('error.type') if s.get('status') == 'ERROR' else s.get('status') for s in ss])

    ss = of('unterminated', prefix)
    expect('unterminated%s: six syntax errors 42601, then the query after succeeds' % tag,
           ['42601'] * 6 + ['UNSET'],
           [A(s).get('error.type') if s.get('status') == 'ERROR' else s.get('status') for s in ss])

    ss = of('multi', prefix)
    expect('multi%s: the batch with a missing table fails 42P01, the others not' % tag, ['UNSET', '42P01', 'UNSET'],
           [A(s).get('error.type') if s.get('status') == 'ERROR' else s.get('status') for s in ss])

    ss = of('copy', prefix)
    check(len(ss) >= 4, 'copy%s: spans for the COPY statements' % tag, brief(ss))
    expect('copy%s: no errors' % tag, [], [b for b in brief(ss) if b[1] == 'ERROR'])

    ss = of('terminated', prefix)
    killer = [s for s in ss if 'pg_terminate_backend' in (txt(s) or '') or 'pg_stat_activity' in (txt(s) or '')]
    victim = [s for s in ss if s not in killer]
    expect('terminated%s: the second connection\'s statements succeed' % tag, [],
           [b for b in brief(killer) if b[1] == 'ERROR'])
    check(len(victim) >= 3, 'terminated%s: spans for the statements on the terminated connection' % tag, brief(victim))
    expect('terminated%s: every statement on the terminated connection is an error' % tag, [],
           [b for b in brief(victim) if b[1] != 'ERROR'])
    if victim:
        check(A(victim[0]).get('error.type') in ('08006', '57P01'),
              'terminated%s: the first failure is a connection failure (08006 or 57P01)' % tag, brief(victim[:1]))
    print('note: terminated%s: %s' % (tag, brief(victim)))
PY

finish
