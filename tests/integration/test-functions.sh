#!/usr/bin/env bash
# test-functions: TRACEAGENT_FUNCTIONS makes INTERNAL spans for named functions of unmodified -O2 PIE programs (tests/functions/), nested where they run, and the programs behave exactly as without the agent.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

B=build/tests
for f in fn-app fn-app-cet fn-app-stripped libfntasks.so fn-cxx fn-cxx-static fn-unpatch; do
	[[ -e $B/$f ]] || die "$B/$f is missing (run make check)"
done
start_sink

# same NAME SERVICE SPECS PROG ARGS...: runs PROG without and with the agent;
# stdout and exit status must be the same. stderr with the agent in $WORK/NAME.err.
same() {
	local name=$1 svc=$2 specs=$3
	shift 3
	local rc0=0 rc1=0
	"$@" >"$WORK/$name.plain" 2>/dev/null </dev/null || rc0=$?
	agent "$svc" TRACEAGENT_FUNCTIONS="$specs" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" </dev/null || rc1=$?
	expect "$name: exit status as without the agent" "$rc0" "$rc1"
	if cmp -s "$WORK/$name.plain" "$WORK/$name.out"; then
		pass "$name: output as without the agent"
	else
		fail "$name: output differs: $(diff "$WORK/$name.plain" "$WORK/$name.out" | head -5 | tr '\n' ' ')"
	fi
}

same basic fn-basic 'task_lookup:error=null, task_*:error=neg,metrics_calculate:args=6,bad spec!,metrics_average:args=9,tail_*' \
	$B/fn-app basic
check "basic: one warning per invalid spec" grep -q 'invalid spec "bad spec!"' "$WORK/basic.err"
check "basic: args=9 is invalid" grep -q 'invalid spec "metrics_average:args=9"' "$WORK/basic.err"
same cet fn-cet 'task_apply:error=neg' $B/fn-app-cet basic
same recurse fn-recurse 'recurse' $B/fn-app recurse 5
same threads fn-threads 'work_unit' $B/fn-app threads
same longjmp fn-longjmp 'jump_*,task_count' $B/fn-app longjmp
same signal fn-signal 'signal_outer,in_handler' $B/fn-app signal
same fork fn-fork 'fork_work,task_count' $B/fn-app fork
same vfork fn-vfork 'vfork_*,task_count' $B/fn-app vfork
same coro fn-coro 'coro_step,task_count' $B/fn-app coro
same cxx fn-cxx 'cxx_*' $B/fn-cxx
same cxxexit fn-cxx-exit 'cxx_exit_*' $B/fn-cxx exit
# Threads cancelled inside traced calls: glibc's forced unwind must run the
# destructors and cleanup handlers above them.
same cxxcancel fn-cxx-cancel 'cxx_exit_*' $B/fn-cxx cancel
same cancel fn-cancel 'cancel_*,task_count' $B/fn-app cancel
same cxxfirst fn-cxx-first 'cxx_first_call' $B/fn-cxx first
# Linked with its own copy of the unwinder: refused, and it runs as without the agent.
same cxxstatic fn-cxx-static 'cxx_*' $B/fn-cxx-static
check "own unwinder: a warning" grep -q 'fn-cxx-static has its own copy of the C++ unwinder' "$WORK/cxxstatic.err"
# A destructor that throws and catches its own exception while another
# unwinds through traced calls.
same cxxnested fn-cxx-nested 'cxx_nested_*,cxx_quiet_throw' $B/fn-cxx nested
same cancelasync fn-cancel-async 'cancel_*,task_count' $B/fn-app cancel async
same dlopen fn-dlopen 'lib_*@libfntasks.so' $B/fn-app dlopen "$PWD/$B/libfntasks.so"
same unpatch fn-unpatch 'tiny,loopy' $B/fn-unpatch
check "too short: a warning with the reason" grep -q 'tiny in .* cannot be patched.*shorter than' "$WORK/unpatch.err"
check "a jump into the first bytes: a warning" grep -q 'loopy in .* cannot be patched.*jump back into' "$WORK/unpatch.err"
same stripped fn-stripped 'task_*' $B/fn-app-stripped basic
check "stripped: a warning" grep -q 'fn-app-stripped is stripped' "$WORK/stripped.err"
check "stripped: nothing found" grep -q 'no function matches task_\* in' "$WORK/stripped.err"

# traceagent --check CMD: each spec's functions and whether each can be patched.
TRACEAGENT_FUNCTIONS='task_*,tiny,loopy' OTEL_TRACES_EXPORTER=none bash scripts/traceagent --check $B/fn-unpatch \
	>"$WORK/check.out" 2>&1 || true
check "--check: a function that cannot be patched, with the reason" \
	grep -q 'loopy (.*fn-unpatch): cannot be patched: a jump back into' "$WORK/check.out"
check "--check: a pattern that finds nothing" grep -q 'no function matches task_\* in' "$WORK/check.out"
TRACEAGENT_FUNCTIONS='task_*' OTEL_TRACES_EXPORTER=none bash scripts/traceagent --check $B/fn-app >"$WORK/check2.out" 2>&1 || true
check "--check: the functions a glob finds, patchable" grep -q 'task_apply (.*fn-app): can be patched' "$WORK/check2.out"

# A function run while an HTTP request is served, making an HTTP call of its own.
start_agent_bg http fn-http TRACEAGENT_FUNCTIONS='handle_request,upstream_call' $B/fn-app http "$SINK_PORT"
wait_line http "$BG_PID" 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' || die "fn-app http did not start"
expect "http: the request is served" "upstream 0" "$(curl -s -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' "http://127.0.0.1:$LINE/x")"
wait "$BG_PID" || true

if command -v valgrind >/dev/null; then
	rc=0
	agent fn-valgrind TRACEAGENT_FUNCTIONS='task_*:error=neg,work_unit' valgrind -q --error-exitcode=99 \
		$B/fn-app longjmp >"$WORK/vg.out" 2>"$WORK/vg.err" || rc=$?
	expect "valgrind: the traced program runs clean" 4 "$rc"
	rc=0
	agent fn-valgrind TRACEAGENT_FUNCTIONS='cxx_exit_*' valgrind -q --error-exitcode=99 \
		$B/fn-cxx cancel >"$WORK/vgc.out" 2>"$WORK/vgc.err" || rc=$?
	expect "valgrind: a thread cancelled inside traced calls, clean" 7 "$rc"
	check "valgrind: the destructor above them ran" grep -q 'guard destroyed' "$WORK/vgc.out"
fi

wait_spans "$SINK_JSONL" 1 "s.get('service.name') == 'fn-http' and s['kind'] == 'CLIENT'" || true
wait_spans "$SINK_JSONL" 200 "s.get('service.name') == 'fn-threads'" || true
wait_spans "$SINK_JSONL" 12 "s.get('service.name') == 'fn-cxx'" || true

# code.line.number is the line table's row at the function's entry: gcc puts
# it on the line of the body's opening brace, the one after the declarator.
brace_line() {
	local n
	n=$(grep -n "^NOINLINE int $2(" "$1" | cut -d: -f1)
	[[ -n $n && $(sed -n "$((n + 1))p" "$1") == "{" ]] || die "$1: no '{' line after $2's declarator"
	echo $((n + 1))
}
export APPLY_LINE LIB_TASK_LINE
APPLY_LINE=$(brace_line tests/functions/fn-app.c task_apply)
LIB_TASK_LINE=$(brace_line tests/functions/fn-lib.c lib_task)

pycheck "$SINK_JSONL" <<'PY'
all_spans = load(sys.argv[1])
def svc(name):
    return [s for s in all_spans if s.get('service.name') == name]
def named(spans, n):
    return [s for s in spans if s['name'] == n]
def by_id(spans):
    return {s['span_id']: s for s in spans}

b = svc('fn-basic')
ap = named(b, 'task_apply')
expect("basic: a span per task_apply call", 2, len(ap))
check(all(s['kind'] == 'INTERNAL' for s in b), "basic: INTERNAL spans", [s['kind'] for s in b])
check(all(A(s).get('code.function.name') == s['name'] for s in b), "basic: code.function.name")
check(b and all(str(A(s).get('code.file.path', '')).endswith('/tests/functions/fn-app.c') for s in b),
      "basic: code.file.path from the line table (-g)", sorted({A(s).get('code.file.path') for s in b}))
check(str(A(ap[0]).get('code.file.path', '')).startswith('/') if ap else False,
      "basic: code.file.path absolute (compilation directory + file)", A(ap[0]).get('code.file.path') if ap else None)
expect("basic: code.line.number is task_apply's first line", [int(os.environ['APPLY_LINE'])] * 2,
       [A(s).get('code.line.number') for s in ap])
err = [s for s in ap if s['status'] == 'ERROR']
expect("basic: error=neg: the negative return is an Error span", 1, len(err))
if err:
    expect("basic: error.type is the value returned", '-2', A(err[0]).get('error.type'))
lk = named(b, 'task_lookup')
expect("basic: error=null: one of two lookups is an Error", 1, len([s for s in lk if s['status'] == 'ERROR']))
expect("basic: the glob task_* also took task_count", 1, len(named(b, 'task_count')))
mc = named(b, 'metrics_calculate')
expect("basic: args=6 records the six integer arguments", [1, 2, 3, 4, 5, 6],
       [A(mc[0]).get('traceagent.function.arg.%d' % i) for i in range(6)] if mc else None)
check(not any(k.startswith('traceagent.function.arg') for s in ap for k in A(s)), "basic: no arguments unless asked")
expect("basic: the invalid spec metrics_average:args=9 makes no span", 0, len(named(b, 'metrics_average')))
to, ti = named(b, 'tail_outer'), named(b, 'tail_inner')
expect("tail call: both functions make a span", (1, 1), (len(to), len(ti)))
if to and ti:
    expect("tail call: the function jumped to nests under the one that jumped", to[0]['span_id'], ti[0]['parent_span_id'])
    check(ti[0]['end_ns'] <= to[0]['end_ns'], "tail call: the inner span ends first")
expect("endbr64 entries (-fcf-protection) are patched too", 2, len(named(svc('fn-cet'), 'task_apply')))

r = svc('fn-recurse')
expect("recursion: a span per call (depth 5 and the base case)", 6, len(r))
ids = by_id(r)
roots = [s for s in r if s['parent_span_id'] not in ids]
expect("recursion: one root", 1, len(roots))
depth, cur = 0, roots[0] if roots else None
while cur:
    depth += 1
    kids = [s for s in r if s['parent_span_id'] == cur['span_id']]
    cur = kids[0] if len(kids) == 1 else None
expect("recursion: each call the child of the one that made it", 6, depth)

t = svc('fn-threads')
expect("8 threads: 200 spans", 200, len(t))
expect("8 threads: each call its own trace (no cross-thread parents)", 200, len({s['trace_id'] for s in t}))

j = svc('fn-longjmp')
jo, ji, tc = named(j, 'jump_outer'), named(j, 'jump_inner'), named(j, 'task_count')
expect("longjmp: both calls jumped past end", (1, 1), (len(jo), len(ji)))
if jo and ji:
    expect("longjmp: inner under outer", jo[0]['span_id'], ji[0]['parent_span_id'])
if tc:
    check(tc[0]['trace_id'] not in {s['trace_id'] for s in jo}, "longjmp: a call after the jump is not parented under a frame it left")

sg = svc('fn-signal')
so, ih = named(sg, 'signal_outer'), named(sg, 'in_handler')
expect("signal: two calls, two handler calls", (2, 2), (len(so), len(ih)))
check(all(h['parent_span_id'] in {s['span_id'] for s in so} for h in ih), "signal: the handler's call nests under the call it interrupted")

f = svc('fn-fork')
fw, fc = named(f, 'fork_work'), named(f, 'task_count')
expect("fork: the parent's call and the child's call", (1, 1), (len(fw), len(fc)))
if fw and fc:
    expect("fork: the child's call nests under the call that forked", fw[0]['span_id'], fc[0]['parent_span_id'])

v = svc('fn-vfork')
expect("vfork: the parent's calls end, with the one its child left", (2, 2), (len(named(v, 'vfork_outer')), len(named(v, 'task_count'))))

co = svc('fn-coro')
expect("coroutines (swapcontext): a span per call, none lost", (2, 1), (len(named(co, 'coro_step')), len(named(co, 'task_count'))))

c = svc('fn-cxx')
expect("C++: spans with the written names", {'cxx_catcher': 3, 'cxx_middle': 4, 'cxx_thrower': 4, 'cxx_rethrower': 1},
       {n: len(named(c, n)) for n in ('cxx_catcher', 'cxx_middle', 'cxx_thrower', 'cxx_rethrower')})
# A call made by the catching function after the catch nests under the
# catcher's call, which is still running (it ends after it).
cat_ = {s['span_id']: s for s in named(c, 'cxx_catcher')}
aft = named(c, 'cxx_after')
expect("C++: one call after each catch", 1, len(aft))
for a in aft:
    p = cat_.get(a['parent_span_id'])
    check(p is not None, "C++: the call after the catch nests under the catching call")
    if p:
        check(p['end_ns'] >= a['end_ns'], "C++: the catching call ends after it (not at the throw)")
thr = named(c, 'cxx_thrower')
mid = {s['span_id']: s for s in named(c, 'cxx_middle')}
check(all(t['parent_span_id'] in mid for t in thr), "C++: each thrower call under a middle call")
last = [s for s in c if s['name'] == 'cxx_catcher']
last = max(last, key=lambda s: s['start_ns']) if last else None
if last:
    tr = [s for s in c if s['trace_id'] == last['trace_id']]
    expect("C++: after the exceptions a call nests as usual (catcher > middle > thrower)", 3, len(tr))

ce = svc('fn-cxx-exit')
expect("pthread_exit inside a traced call: both calls end", (1, 1),
       (len(named(ce, 'cxx_exit_outer')), len(named(ce, 'cxx_exit_inner'))))

ne = svc('fn-cxx-nested')
expect("C++ nested exception: each traced call ends once", (1, 1, 1),
       tuple(len(named(ne, n)) for n in ('cxx_nested_outer', 'cxx_nested_inner', 'cxx_quiet_throw')))
for name in ('fn-cxx-cancel',):
    cc = svc(name)
    expect("C++ cancellation inside traced calls: both calls end", (1, 1),
           (len(named(cc, 'cxx_exit_outer')), len(named(cc, 'cxx_exit_inner'))))
for name in ('fn-cancel', 'fn-cancel-async'):
    cn = svc(name)
    co_, cw = named(cn, 'cancel_outer'), named(cn, 'cancel_wait')
    expect(name + ": the cancelled calls end, and the call after them", (1, 1, 1),
           (len(co_), len(cw), len(named(cn, 'task_count'))))
    if co_ and cw:
        expect(name + ": the inner call nests under the outer", co_[0]['span_id'], cw[0]['parent_span_id'])
        check(all(s['status'] != 'ERROR' for s in co_ + cw), name + ": no error status (the app may recover)")

d = svc('fn-dlopen')
lt, lh = named(d, 'lib_task'), named(d, 'lib_helper')
expect("dlopen: @OBJECT functions patched before dlopen returns", (1, 2), (len(lt), len(lh)))
if lt:
    check(any(s['parent_span_id'] == lt[0]['span_id'] for s in lh), "dlopen: lib_helper under lib_task")
    expect("dlopen: a shared object's function has its file and line",
           ('/tests/functions/fn-lib.c', int(os.environ['LIB_TASK_LINE'])),
           (str(A(lt[0]).get('code.file.path', ''))[-len('/tests/functions/fn-lib.c'):], A(lt[0]).get('code.line.number')))
expect("unpatchable: no spans", 0, len(svc('fn-unpatch')))
expect("own unwinder: no spans", 0, len(svc('fn-cxx-static')))
expect("stripped: no spans", 0, len(svc('fn-stripped')))

h = svc('fn-http')
srv = [s for s in h if s['kind'] == 'SERVER']
hr, uc = named(h, 'handle_request'), named(h, 'upstream_call')
cl = [s for s in h if s['kind'] == 'CLIENT']
expect("http: one SERVER span", 1, len(srv))
if srv and hr and uc and cl:
    expect("http: the traced handler nests under the SERVER span", srv[0]['span_id'], hr[0]['parent_span_id'])
    expect("http: the function it calls nests under it", hr[0]['span_id'], uc[0]['parent_span_id'])
    expect("http: the HTTP call made inside nests under that", uc[0]['span_id'], cl[0]['parent_span_id'])
    expect("http: all in the caller's trace", {'4bf92f3577b34da6a3ce929d0e0e4736'}, {s['trace_id'] for s in h})
else:
    check(False, "http: SERVER, handle_request, upstream_call and CLIENT spans", [(s['name'], s['kind']) for s in h])
PY
finish
