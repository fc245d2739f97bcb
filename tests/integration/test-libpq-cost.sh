#!/usr/bin/env bash
# test-libpq-cost: the instructions the libpq hooks spend on a statement, counted by callgrind on pgbench -S -c 1 (simple, extended and prepared protocol, sampled and always_off), are within bounds.
#
# Counts, not time: valgrind --tool=callgrind counts every instruction of
# pgbench run under the agent at N1 and N2 transactions (one SELECT each);
# the cost of a statement is the difference over N2 - N1, so start-up and
# exit cancel out. What is counted is what hooks/libpq.c and agent/sql.c
# run (the hooks, the summary, the sanitised text, the cache, the
# connection's state) with everything they call, except the calls they
# forward to libpq and agent/span.c (span records: counted by the span
# code's own measures), and the export thread, which is not called from
# them. The instruction counts of a program under callgrind are the same
# from run to run but for the few polls pgbench makes while it waits, and
# those are libpq's, not ours.
#
# Bounds (instructions per statement), with the figures when written:
#   simple protocol, sampled (sanitised text, cached summary) <= 1500  (~940; 5400 before the cache)
#   extended or prepared, sampled ($n text, no sanitising)    <= 1100  (~650; 4100-4200 before)
#   simple protocol, OTEL_TRACES_SAMPLER=always_off          <= 450   (~300; 3650 before)
# Settings: LIBPQ_COST_N1 (300), LIBPQ_COST_N2 (1300).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

command -v valgrind >/dev/null || die "valgrind is not installed"
command -v pgbench >/dev/null || die "pgbench is not installed"
N1=${LIBPQ_COST_N1:-300}
N2=${LIBPQ_COST_N2:-1300}

start_sink
pg_start
echo "note: PostgreSQL on 127.0.0.1:$PG_PORT, database $PG_DB"
# pgbench itself, not Debian's wrapper script (callgrind follows no exec)
PGBENCH=$PG_BIN/pgbench
[[ -x $PGBENCH ]] || PGBENCH=$(command -v pgbench)
"$PGBENCH" -h 127.0.0.1 -p "$PG_PORT" -U postgres -i -s 1 -q "$PG_DB" >"$WORK/init.log" 2>&1 ||
	die "pgbench -i failed: $(tail -3 "$WORK/init.log")"

# The instructions of one callgrind profile spent in hooks/libpq.c and
# agent/sql.c, with their callees but for span.c and the forwarded calls.
cat >"$WORK/share.py" <<'PY'
import collections, re, sys

FORWARDED = {'PQsendQuery', 'PQgetResult', 'PQexec', 'PQexecParams', 'PQprepare', 'PQexecPrepared',
             'PQsendQueryParams', 'PQsendPrepare', 'PQsendQueryPrepared', 'PQdescribePrepared',
             'PQdescribePortal', 'PQconnectdb', 'PQconnectdbParams', 'PQconnectStart',
             'PQconnectStartParams', 'PQfinish'}

def ours(f):
    return f is not None and ('hooks/libpq.c' in f or 'agent/sql.c' in f)

def share(path):
    files, names = {}, {}
    def name(table, s):
        m = re.match(r'\((\d+)\)(?: (.*))?', s)
        if not m:
            return s
        if m.group(2) is not None:
            table[m.group(1)] = m.group(2)
        return table.get(m.group(1))
    total, fl, fn_file, callee_file, callee, in_call = 0, None, None, None, None, False
    for line in open(path):
        if line.startswith('fl='):
            fl = fn_file = name(files, line[3:].strip())
        elif line.startswith(('fi=', 'fe=')):
            name(files, line[3:].strip())
        elif line.startswith('fn='):
            name(names, line[3:].strip())
            fn_file = fl
        elif line.startswith(('cfi=', 'cfl=')):
            callee_file = name(files, line[4:].strip())
        elif line.startswith('cfn='):
            callee = name(names, line[4:].strip())
        elif line.startswith('calls='):
            in_call = True
        elif line[:1].isdigit() or line[:1] in '+-*':
            cost = int(line.split()[-1]) if len(line.split()) > 1 else 0
            if in_call:
                cf = callee_file if callee_file is not None else fl
                if ours(fn_file) and not ours(cf) and 'span.c' not in (cf or '') \
                   and not callee.startswith('span_') and callee not in FORWARDED and not callee.startswith('0x'):
                    total += cost
                in_call, callee_file = False, None
            elif ours(fn_file):
                total += cost
    return total

a, b, n1, n2 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
print(round((share(b) - share(a)) / (n2 - n1)))
PY

# per_statement LABEL BOUND [VAR=value...] -- PGBENCH ARGS: callgrind at N1
# and N2, checks the hooks' instructions per statement against BOUND.
per_statement() {
	local label=$1 bound=$2 n
	shift 2
	local vars=()
	while [[ $1 != -- ]]; do vars+=("$1"); shift; done
	shift
	agent_cmd "cost-$label"
	for n in "$N1" "$N2"; do
		"${AGENT_CMD[@]}" "${vars[@]}" valgrind --tool=callgrind --callgrind-out-file="$WORK/$label.$n.cg" \
			"$PGBENCH" -h 127.0.0.1 -p "$PG_PORT" -U postgres -n -c 1 -t "$n" "$@" "$PG_DB" \
			>"$WORK/$label.$n.log" 2>&1 || { fail "$label: pgbench -t $n under callgrind failed"; tail -5 "$WORK/$label.$n.log"; return; }
	done
	local cost
	cost=$("$PY" "$WORK/share.py" "$WORK/$label.$N1.cg" "$WORK/$label.$N2.cg" "$N1" "$N2")
	echo "note: $label: $cost instructions per statement in the libpq hooks (bound $bound)"
	if ((cost > 0 && cost <= bound)); then
		pass "$label: the hooks' instructions per statement ($cost) within $bound"
	else
		fail "$label: the hooks' instructions per statement ($cost) within $bound"
	fi
}

per_statement simple 1500 -- -S
per_statement extended 1100 -- -S -M extended
per_statement prepared 1100 -- -S -M prepared
per_statement unsampled 450 OTEL_TRACES_SAMPLER=always_off -- -S

# The counted runs were traced: every statement of the sampled runs is a span.
check "simple: spans of the counted runs exported" \
	wait_spans "$SINK_JSONL" $((N1 + N2)) \
	"s.get('service.name') == 'cost-simple' and s['name'] == 'SELECT pgbench_accounts'" 30
expect "unsampled: no spans" 0 \
	"$(count_spans "$SINK_JSONL" "s.get('service.name') == 'cost-unsampled'")"
finish
