#!/usr/bin/env bash
# test-otlp-decode: our protobuf encoding, read back by the independent decoder in shared/tools (not our .proto).
set -euo pipefail
cd "$(dirname "$0")/../.."

decoder=""
for d in ../shared/tools/otlp-decode.js /work/shared/tools/otlp-decode.js; do
	[ -f "$d" ] && { decoder=$d; break; }
done
if [ -z "$decoder" ]; then
	echo "FAIL: shared/tools/otlp-decode.js not found beside the repository"
	exit 1
fi
prefix=${OTLP_DECODER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/traceagent-otlp-decoder}
if [ ! -f "$prefix/node_modules/@opentelemetry/otlp-transformer/package.json" ]; then
	npm install --silent --no-audit --no-fund --prefix "$prefix" @opentelemetry/otlp-transformer@0.216.0 >/dev/null
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
OTEL_SERVICE_NAME=decode-test OTEL_RESOURCE_ATTRIBUTES='deployment.environment.name=dev%20one' \
	build/tests/emit-spans --dump "$tmp/body.pb"
OTLP_DECODER_DIR=$prefix node "$decoder" "$tmp/body.pb" >"$tmp/spans.jsonl"

python3 - "$tmp/spans.jsonl" <<'PY'
import json, sys
spans = [json.loads(l) for l in open(sys.argv[1])]
by = {s["name"]: s for s in spans}
fail = []
def check(cond, what):
    (fail.append(what) if not cond else None)
check(len(spans) == 5, "5 spans decoded")
srv = by["GET /api/tasks/{id}"]
check(srv["traceId"] == "0af7651916cd43dd8448eb211c80319c", "trace id from the remote parent")
check(srv["parentSpanId"] == "b7ad6b7169203331", "remote parent id")
check(srv["flags"] == 0x301, "span flags: sampled + has-is-remote + is-remote")
check(srv["traceState"] == "congo=t61rcWkgMzE", "tracestate")
check(srv["kind"] == "SERVER" and srv["status"] == "ERROR", "kind and status")
a = srv["attrs"]
check(a["http.response.status_code"] == 500 and a["test.double"] == 1.5 and a["test.bool"] is True, "typed attributes")
check("arrayValue" in str(a["http.request.header.accept"]), "string array attribute")
check(int(srv["end"]) - int(srv["start"]) == 1000, "start/end as fixed64")
cli = by["SELECT tasks"]
check(cli["parentSpanId"] == srv["spanId"] and cli["flags"] == 0x101, "local parent flags")
check(cli["events"] == ["exception"] and cli["links"] == 1, "event and link")
check([by[n]["kind"] for n in ("send web-crawl-tasks", "process web-crawl-tasks", "work")] == ["PRODUCER", "CONSUMER", "INTERNAL"], "kinds")
check(by["work"]["status"] == "OK", "status OK")
r = srv["resource"]
check(r["service.name"] == "decode-test", "service.name")
check(r["deployment.environment.name"] == "dev one", "percent-decoded resource attribute")
check(isinstance(r["process.pid"], int) and r["telemetry.sdk.name"] == "libtraceagent", "detected resource attributes")
check(srv["scope"] == "libtraceagent", "scope name")
for f in fail:
    print("FAIL:", f)
print("PASS: independent decoder reads %d spans as encoded" % len(spans) if not fail else "")
sys.exit(1 if fail else 0)
PY
