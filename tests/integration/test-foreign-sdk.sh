#!/usr/bin/env bash
# Acceptance check: traces exported by the official OpenTelemetry JS SDK arrive at otlp-sink and print as trees.
#
# The SDK packages (pinned in tests/integration/sdk-node/package.json and its lockfile)
# are installed once into a cache outside the repository,
# ${TRACEAGENT_NPM_CACHE:-$HOME/.cache/traceagent-npm}, and reused while the pins are
# unchanged. Needs node (>= 18.19) and npm with access to the npm registry.
set -euo pipefail

cd "$(dirname "$0")/../.."
. tests/integration/lib.sh
SINK=${OTLP_SINK:-$SINK}
SDK_DIR=tests/integration/sdk-node
CACHE=${TRACEAGENT_NPM_CACHE:-$HOME/.cache/traceagent-npm}

[[ -x $SINK ]] || die "$SINK is missing (run make build/otlp-sink)"
for tool in node npm python3 curl; do
	command -v "$tool" >/dev/null || die "$tool is not installed (scripts/install-deps)"
done

# --- SDK install: skipped when the cache already holds exactly these pins ---
install_sdk() {
	mkdir -p "$CACHE"
	# Held until this script exits: a parallel run must neither reinstall under
	# us nor use a half-installed cache.
	exec 9>"$CACHE/.lock"
	if command -v flock >/dev/null && ! flock -w 600 9; then
		echo "cannot lock $CACHE/.lock"
		return 1
	fi
	if [[ -d $CACHE/node_modules ]] &&
		cmp -s "$SDK_DIR/package.json" "$CACHE/package.json" &&
		cmp -s "$SDK_DIR/package-lock.json" "$CACHE/package-lock.json" &&
		node -e '
			const want = require(process.argv[1]).dependencies;
			for (const [name, version] of Object.entries(want)) {
				const got = require(process.argv[2] + "/node_modules/" + name + "/package.json").version;
				if (got !== version) process.exit(1);
			}' "$PWD/$SDK_DIR/package.json" "$CACHE" 2>/dev/null; then
		return 0
	fi
	echo "installing the OpenTelemetry JS SDK into $CACHE"
	cp "$SDK_DIR/package.json" "$SDK_DIR/package-lock.json" "$CACHE/"
	# ci installs exactly the lockfile; no install scripts are needed by these packages.
	if ! (cd "$CACHE" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >"$WORK/npm.log" 2>&1); then
		cat "$WORK/npm.log"
		rm -f "$CACHE/package.json"	# so the next run retries
		return 1
	fi
}
if install_sdk; then
	pass "OpenTelemetry JS SDK installed ($(node -p 'require(process.argv[1]).version' \
		"$CACHE/node_modules/@opentelemetry/sdk-trace-base/package.json") sdk-trace-base)"
else
	fail "npm could not install the OpenTelemetry JS SDK"
	finish
fi

# run_sink NAME ARGS...: a sink on a free port, output in $WORK/NAME.{out,err};
# sets PORT, URL and PID (stopped at exit by lib.sh).
run_sink() {
	local name=$1
	shift
	start_listening "$name" "$SINK" --port 0 "$@"
	PID=$BG_PID
	URL="http://127.0.0.1:$PORT/v1/traces"
}

# run_export NAME [ENV...]: runs the Node exporter against $URL.
run_export() {
	local name=$1
	shift
	env NODE_PATH="$CACHE/node_modules" OTLP_TRACES_URL="$URL" SDK_TRACE_OUT="$WORK/$name.ids" "$@" \
		timeout 60 node "$SDK_DIR/export.js" >"$WORK/$name.node.out" 2>"$WORK/$name.node.err"
}

cat >"$WORK/check.py" <<'PY'
# check.py SPANS.jsonl IDS.json REQUESTS.jsonl ENCODING CONTENT_TYPE: what the sink got matches what node sent.
import json, sys
spans = [json.loads(l) for l in open(sys.argv[1])]
ids = json.load(open(sys.argv[2]))
reqs = [json.loads(l) for l in open(sys.argv[3])]
encoding = sys.argv[4]
content_type = sys.argv[5]
errors = []
def eq(what, want, got):
    if want != got: errors.append(f'{what}: want {want!r}, got {got!r}')
eq('span count', 3, len(spans))
by_id = {s['span_id']: s for s in spans}
eq('span ids', sorted([ids['root'], ids['db'], ids['http']]), sorted(by_id))
for s in spans:
    eq('trace_id of ' + s['name'], ids['trace_id'], s['trace_id'])
    eq('service.name of ' + s['name'], 'node-sdk', s['service.name'])
    eq('scope of ' + s['name'], 'traceagent-sdk-check', s['scope'])
    if s['end_ns'] < s['start_ns'] or s['start_ns'] < 10**18:
        errors.append('bad times on ' + s['name'])
root, db, http = by_id.get(ids['root'], {}), by_id.get(ids['db'], {}), by_id.get(ids['http'], {})
eq('root parent', '', root.get('parent_span_id'))
eq('db parent', ids['root'], db.get('parent_span_id'))
eq('http parent', ids['root'], http.get('parent_span_id'))
eq('kinds', ['SERVER', 'CLIENT', 'CLIENT'], [root.get('kind'), db.get('kind'), http.get('kind')])
eq('root name', 'GET /api/users/:id', root.get('name'))
eq('http status', ('ERROR', 'upstream 503'), (http.get('status'), http.get('status_message')))
eq('db status', 'UNSET', db.get('status'))
a = http.get('attributes', {})
eq('int attribute', 503, a.get('http.response.status_code'))
eq('bool attribute', True, a.get('retry.enabled'))
eq('double attribute', 0.25, a.get('sample.ratio'))
eq('array attribute', ['a', 'b'], a.get('tags'))
events = [e['name'] for e in http.get('events', [])]
eq('events', ['retry', 'exception'], events)
exc = [e for e in http.get('events', []) if e['name'] == 'exception']
if exc: eq('exception.message', 'avatar service unavailable', exc[0]['attributes'].get('exception.message'))
eq('resource service.version', '0.0.1', root.get('resource', {}).get('service.version'))
ok = [r for r in reqs if r['status'] == 200]
eq('requests', 1, len(ok))
if ok:
    r = ok[0]
    eq('content_type', content_type, r['content_type'])
    eq('content_encoding', encoding, r['content_encoding'])
    eq('custom header', 'node', r['headers'].get('x-sdk-check'))
    if not r['user_agent'].startswith('OTel-OTLP-Exporter-JavaScript/'):
        errors.append('user_agent: ' + r['user_agent'])
for e in errors: print('   ', e)
sys.exit(1 if errors else 0)
PY

# check_tree OUT IDS: the sink printed the node trace as a tree.
check_tree() {
	local out=$1 trace
	trace=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["trace_id"])' "$2")
	grep -q "^trace $trace  (3 spans)$" "$out" &&
		grep -qE '^  node-sdk  SERVER   GET /api/users/:id  [0-9.]+ms  http\.response\.status_code=200$' "$out" &&
		grep -qE '^  node-sdk  ├─ CLIENT   SELECT users  [0-9.]+ms  db\.system\.name=postgresql  db\.query\.summary=SELECT users$' "$out" &&
		grep -qE '^  node-sdk  └─ CLIENT   GET  [0-9.]+ms  ERROR "upstream 503"  http\.response\.status_code=503  error\.type=503  exception=Error$' "$out"
}

echo "== node SDK, OTLP/HTTP protobuf"
run_sink plain --jsonl "$WORK/plain.jsonl" --requests-log "$WORK/plain.requests"
if run_export plain; then pass "node exporter reports success"; else fail "node exporter failed"; cat "$WORK/plain.node.err"; fi
stop_pid "$PID"
check "sink exits 0 on SIGTERM" test "$STOP_RC" -eq 0
check "sink got 3 spans: one trace id, parent links, service.name node-sdk, attributes, events" \
	python3 "$WORK/check.py" "$WORK/plain.jsonl" "$WORK/plain.ids" "$WORK/plain.requests" "" application/x-protobuf
check "sink printed the trace as a tree" check_tree "$WORK/plain.out" "$WORK/plain.ids"
sed -n '2,5p' "$WORK/plain.out"

echo "== node SDK, gzip, partial success"
run_sink gzip --jsonl "$WORK/gzip.jsonl" --requests-log "$WORK/gzip.requests" --partial-success 2
if run_export gzip OTLP_COMPRESSION=gzip; then pass "node exporter (gzip) reports success"; else fail "node exporter (gzip) failed"; cat "$WORK/gzip.node.err"; fi
stop_pid "$PID"
check "gzip: sink got the same trace, Content-Encoding gzip" \
	python3 "$WORK/check.py" "$WORK/gzip.jsonl" "$WORK/gzip.ids" "$WORK/gzip.requests" gzip application/x-protobuf
check "gzip: sink printed the trace as a tree" check_tree "$WORK/gzip.out" "$WORK/gzip.ids"
# The SDK decodes our ExportTraceServiceResponse with its own protobuf code: an
# independent check of what the sink encodes.
check "node SDK decoded the sink's partial_success (rejectedSpans 2)" \
	grep -q 'Received Partial Success response:.*"rejectedSpans":"\?2"\?' "$WORK/gzip.node.err"

echo "== node SDK, OTLP/HTTP JSON"
# The SDK's JSON exporter is a second, independent encoder to check the sink's
# OTLP/JSON decoding against, and its JSON response decoding against ours.
run_sink json --jsonl "$WORK/json.jsonl" --requests-log "$WORK/json.requests" --partial-success 1
if run_export json OTLP_PROTOCOL=http/json; then pass "node JSON exporter reports success"; else fail "node JSON exporter failed"; cat "$WORK/json.node.err"; fi
stop_pid "$PID"
check "json: sink got the same trace" \
	python3 "$WORK/check.py" "$WORK/json.jsonl" "$WORK/json.ids" "$WORK/json.requests" "" application/json
check "json: sink printed the trace as a tree" check_tree "$WORK/json.out" "$WORK/json.ids"
check "json: node SDK decoded the sink's partialSuccess (rejectedSpans 1)" \
	grep -q 'Received Partial Success response:.*"rejectedSpans":"\?1"\?' "$WORK/json.node.err"

finish
