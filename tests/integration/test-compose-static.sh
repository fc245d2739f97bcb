#!/usr/bin/env bash
# test-compose-static: the compose stack (compose/), checked without a Docker
# engine: docker-compose config -q (offline), every YAML and JSON file parses,
# scripts/check-compose's cross-references pass (and fail on deliberately
# broken copies, among them the three kinds the issue names: a deprecated
# Collector exporter name, an unpinned or latest image, a key the pinned Tempo
# release removed), scripts/check-dockerfile runs the Dockerfile's build steps
# here (and fails on broken ones), scripts/test-tempo-integration is valid bash
# and answers --help.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

# Debian's python3-yaml may belong to /usr/bin/python3 only (python3 on PATH
# can be a pyenv build without PyYAML).
YPY=$PY
if ! "$PY" -c 'import yaml' 2>/dev/null; then
	YPY=/usr/bin/python3
fi
"$YPY" -c 'import yaml' 2>/dev/null || die "no python3 with PyYAML (scripts/install-deps installs python3-yaml)"
command -v docker-compose >/dev/null || die "docker-compose is missing (scripts/install-deps installs it)"

echo "== docker-compose config -q"
# Offline: no daemon, no registry. An unusable DOCKER_HOST must not matter.
compose_config() { (cd "$(dirname "$1")" && DOCKER_HOST=unix:///nonexistent docker-compose -f "$(basename "$1")" config -q); }
check "docker-compose config -q accepts compose/docker-compose.yml" compose_config compose/docker-compose.yml
mkdir -p "$WORK/badkey"
cp -a compose "$WORK/badkey/"
sed -i 's/^    image: postgres:/    imagee: postgres:/' "$WORK/badkey/compose/docker-compose.yml"
check "docker-compose config -q rejects an unknown key (it does validate)" \
	bash -c "! (cd '$WORK/badkey/compose' && docker-compose config -q) 2>/dev/null"

echo "== every YAML and JSON file parses"
while IFS= read -r f; do
	check "YAML parses: $f" "$YPY" -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' "$f"
done < <(find compose -type f \( -name '*.yml' -o -name '*.yaml' \) | sort)
while IFS= read -r f; do
	check "JSON parses: $f" "$YPY" -c 'import json, sys; json.load(open(sys.argv[1]))' "$f"
done < <(find compose -type f -name '*.json' | sort)

echo "== scripts/check-compose"
check "check-compose passes on compose/" "$YPY" scripts/check-compose compose/docker-compose.yml

# broken NAME: a fresh copy of compose/ (and the Dockerfile's context) in $WORK/NAME.
broken() {
	rm -rf "${WORK:?}/$1"
	mkdir -p "$WORK/$1"
	cp -a compose .dockerignore "$WORK/$1/"
	B=$WORK/$1/compose
}
# mutate FILE OLD NEW: replaces the first OLD; the test stops if OLD is absent
# (a mutation that did not apply would prove nothing).
mutate() {
	"$YPY" - "$@" <<'PY' || die "mutation failed: $*"
import sys
f, old, new = sys.argv[1:4]
s = open(f).read()
if old not in s:
    sys.exit('%r is not in %s' % (old, f))
open(f, 'w').write(s.replace(old, new, 1))
PY
}
# rejects DESC TEXT: check-compose must exit 1 on $B and name the problem (TEXT).
rejects() {
	local out rc=0
	out=$("$YPY" scripts/check-compose "$B/docker-compose.yml" 2>&1) || rc=$?
	if [[ $rc == 1 ]] && grep -qF -- "$2" <<<"$out"; then
		pass "check-compose rejects $1"
	else
		fail "check-compose rejects $1 (exit $rc; wanted a problem mentioning '$2'; got: $(tr '\n' ' ' <<<"$out" | tail -c 400))"
	fi
}

broken ds-uid
mutate "$B/grafana/provisioning/datasources/datasources.yaml" "serviceMap:
        datasourceUid: prometheus" "serviceMap:
        datasourceUid: prometheus-old"
rejects "a wrong datasource uid in Tempo's service map" "datasourceUid 'prometheus-old', which is not provisioned"

broken exemplar-uid
mutate "$B/grafana/provisioning/datasources/datasources.yaml" "- name: traceID
          datasourceUid: tempo" "- name: traceID
          datasourceUid: Tempo"
rejects "Prometheus exemplars linked to a wrong uid" "datasourceUid 'Tempo', which is not provisioned"

broken dash-uid
mutate "$B/grafana/dashboards/task-manager.json" '"uid": "prometheus"' '"uid": "prom"'
rejects "a dashboard panel using an unknown data source uid" "uses data source uid 'prom', which is not provisioned"

broken latest
mutate "$B/docker-compose.yml" "image: grafana/grafana:13.3.0" "image: grafana/grafana:latest"
rejects "an image pinned to latest" "'grafana/grafana:latest' is unpinned"

broken no-tag
mutate "$B/docker-compose.yml" "image: postgres:18.7" "image: postgres"
rejects "an image without a tag" "'postgres' has no tag"

# A key given twice in one mapping: PyYAML and docker-compose 1.29 keep the
# last, so only this check sees it, but Compose v2 and Tempo refuse the file.
broken dup-service
mutate "$B/docker-compose.yml" "    depends_on:
      prometheus:
        condition: service_started

  prometheus:
" "    depends_on:
      - prometheus

  prometheus:
        condition: service_started

  prometheus:
"
rejects "a service defined twice" "key 'prometheus' is given twice in one mapping"
broken dup-key
mutate "$B/tempo/tempo.yaml" "stream_over_http_enabled: true" "stream_over_http_enabled: true
stream_over_http_enabled: false"
rejects "a key given twice in a mounted config" "key 'stream_over_http_enabled' is given twice in one mapping"

broken minor-tag
mutate "$B/docker-compose.yml" "image: grafana/tempo:3.0.3" "image: grafana/tempo:3.0"
rejects "an image pinned to a minor version only" "'grafana/tempo:3.0': tag '3.0' is not an exact version"

broken rc-tag
mutate "$B/docker-compose.yml" "image: apache/kafka:4.3.1" "image: apache/kafka:4.4.0-rc3"
rejects "an image pinned to a release candidate" "'apache/kafka:4.4.0-rc3': tag '4.4.0-rc3' is a pre-release"

broken from-unpinned
mutate "$B/Dockerfile" "FROM debian:12.15-slim AS build" "FROM debian:bookworm-slim AS build"
rejects "a Dockerfile FROM without a version" "'debian:bookworm-slim': tag 'bookworm-slim' is not an exact version"

broken missing-file
rm "$B/tempo/tempo.yaml"
rejects "a mounted file that does not exist" "mounted file"

broken missing-dashboards
rm "$B/grafana/dashboards/task-manager.json"
rejects "a dashboard directory with no dashboard" "no *.json in"

broken wrong-port
mutate "$B/tempo/tempo.yaml" "http://prometheus:9090/api/v1/write" "http://prometheus:9091/api/v1/write"
rejects "Tempo remote-writing to a port Prometheus does not listen on" "prometheus:9091: prometheus does not listen on port 9091"

broken wrong-host
mutate "$B/otel-collector/config.yaml" "endpoint: tempo:4317" "endpoint: tempo-db:4317"
rejects "the Collector exporting to a host that is no service" "host 'tempo-db' is not a service"

broken localhost-receiver
mutate "$B/otel-collector/config.yaml" "endpoint: 0.0.0.0:4318" "endpoint: localhost:4318"
rejects "a Collector receiver bound to localhost" "otel-collector binds port 4318 to localhost only"

broken grpc-port
mutate "$B/docker-compose.yml" "OTEL_SERVICE_NAME: task-manager
      OTEL_EXPORTER_OTLP_ENDPOINT: http://otel-collector:4318" "OTEL_SERVICE_NAME: task-manager
      OTEL_EXPORTER_OTLP_ENDPOINT: http://otel-collector:4317"
rejects "the agent pointed at the Collector's gRPC port" "is not an OTLP/HTTP port of otel-collector"

broken app-host
mutate "$B/docker-compose.yml" "      HOST: 0.0.0.0
" ""
rejects "the task-manager left on its default HOST=127.0.0.1" "task-manager binds port 3000 to localhost only"

broken kafka-listener
mutate "$B/docker-compose.yml" "KAFKA_BROKERS: kafka:9092" "KAFKA_BROKERS: kafka:29092"
rejects "a Kafka client using the host listener" "kafka:29092 is not an advertised listener of kafka"

broken kafka-rf
mutate "$B/docker-compose.yml" '      KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: "1"
' ""
rejects "a single broker without replication factor 1" "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR must be 1"

broken grafana-port
mutate "$B/docker-compose.yml" '"127.0.0.1:3001:3000"' '"127.0.0.1:3001:3001"'
rejects "Grafana published from a port it does not listen on" "publishes container port 3001, but grafana listens on 3000"

broken ld-preload
mutate "$B/docker-compose.yml" "LD_PRELOAD: /usr/local/lib/libtraceagent.so" "LD_PRELOAD: /usr/lib/libtraceagent.so"
rejects "LD_PRELOAD naming a file the image does not have" "LD_PRELOAD=/usr/lib/libtraceagent.so, but the Dockerfile does not install that file"

broken processors
mutate "$B/tempo/tempo.yaml" "processors: [service-graphs, span-metrics]" "processors: [service-graphs]"
rejects "Tempo without the span-metrics processor" "lacks span-metrics"

broken tempo-storage
mutate "$B/tempo/tempo.yaml" "path: /var/tempo/blocks" "path: /tmp/tempo/blocks"
rejects "Tempo's block storage off its volume" "storage.trace.local.path /tmp/tempo/blocks is not on a volume"

broken remote-write-flag
mutate "$B/docker-compose.yml" "      - --web.enable-remote-write-receiver
" ""
rejects "Prometheus without the remote-write receiver" "lacks --web.enable-remote-write-receiver"

broken pipeline
mutate "$B/otel-collector/config.yaml" "exporters: [otlp_grpc/tempo, debug]" "exporters: [otlp_grpc, debug]"
rejects "a Collector pipeline naming an undefined exporter" "exporter 'otlp_grpc' is not defined"

echo "== scripts/check-compose: what the pinned releases removed or renamed"
# The Collector (0.162.0): otlp and otlphttp are deprecated aliases since
# 0.144.0; the logging exporter was removed in 0.111.0.
broken exporter-otlp
mutate "$B/otel-collector/config.yaml" "  otlp_grpc/tempo:" "  otlp/tempo:"
mutate "$B/otel-collector/config.yaml" "exporters: [otlp_grpc/tempo, debug]" "exporters: [otlp/tempo, debug]"
rejects "the deprecated Collector exporter name otlp" \
	"exporters.otlp/tempo: 'otlp' is a deprecated exporter name since Collector 0.144.0"

broken exporter-otlphttp
mutate "$B/otel-collector/config.yaml" "  otlp_grpc/tempo:
    endpoint: tempo:4317" "  otlphttp/tempo:
    endpoint: http://tempo:4318"
mutate "$B/otel-collector/config.yaml" "exporters: [otlp_grpc/tempo, debug]" "exporters: [otlphttp/tempo, debug]"
rejects "the deprecated Collector exporter name otlphttp" \
	"exporters.otlphttp/tempo: 'otlphttp' is a deprecated exporter name since Collector 0.144.0 (it logs a deprecation warning): call it otlp_http/tempo"

broken exporter-logging
mutate "$B/otel-collector/config.yaml" "  debug:
    verbosity: basic" "  logging:
    verbosity: basic"
mutate "$B/otel-collector/config.yaml" "exporters: [otlp_grpc/tempo, debug]" "exporters: [otlp_grpc/tempo, logging]"
rejects "the Collector's removed logging exporter" "the logging exporter was removed in Collector 0.111.0: use debug"

# The facts are tied to releases: an older Collector with the old names passes.
broken old-collector
mutate "$B/docker-compose.yml" "otel/opentelemetry-collector-contrib:0.162.0" "otel/opentelemetry-collector-contrib:0.114.0"
mutate "$B/otel-collector/config.yaml" "  otlp_grpc/tempo:" "  otlp/tempo:"
mutate "$B/otel-collector/config.yaml" "exporters: [otlp_grpc/tempo, debug]" "exporters: [otlp/tempo, debug]"
check "check-compose accepts exporter otlp with a Collector older than 0.144.0" "$YPY" scripts/check-compose "$B/docker-compose.yml"

# Tempo 3.0.3: the ingester and compactor modules and the flat overrides are
# gone, unknown keys stop it, and (since 2.7) a receiver without an endpoint
# listens on localhost only.
broken tempo-compactor
mutate "$B/tempo/tempo.yaml" "backend_worker:
  compaction:" "compactor:
  compaction:"
rejects "Tempo 3 with a compactor block" "compactor: removed in Tempo 3.0.0, so Tempo 3.0.3 refuses to start"

broken tempo-ingester
mutate "$B/tempo/tempo.yaml" "storage:
  trace:" "ingester:
  max_block_duration: 5m

storage:
  trace:"
rejects "Tempo 3 with an ingester block" "ingester: removed in Tempo 3.0.0, so Tempo 3.0.3 refuses to start"

broken tempo-flat-overrides
mutate "$B/tempo/tempo.yaml" "overrides:
  defaults:
    metrics_generator:
      processors: [service-graphs, span-metrics]" "overrides:
  metrics_generator_processors: [service-graphs, span-metrics]"
rejects "Tempo 3 with flat (legacy) overrides" \
	"overrides.metrics_generator_processors: a flat (legacy) override, which Tempo 3.0.3 refuses to start with"

broken tempo-unknown-key
mutate "$B/tempo/tempo.yaml" "stream_over_http_enabled: true" "stream_over_http_enabled: true
search_enabled: true"
rejects "Tempo 3 with a key it does not know" "search_enabled: not a top-level key of Tempo 3"

broken tempo-target
mutate "$B/docker-compose.yml" '"-target=all"' '"-target=scalable-single-binary"'
rejects "Tempo 3 with the removed scalable-single-binary target" "target scalable-single-binary was removed in Tempo 3.0"

broken tempo-init
mutate "$B/docker-compose.yml" "  tempo:
    image: grafana/tempo:3.0.3" "  tempo-init:
    image: grafana/tempo:3.0.3
    user: root
    entrypoint: [\"chown\", \"-R\", \"10001:10001\", \"/var/tempo\"]
    volumes:
      - tempo-data:/var/tempo
    restart: \"no\"

  tempo:
    image: grafana/tempo:3.0.3"
rejects "Tempo 2.x's chown init container on the distroless Tempo 3 image" \
	"entrypoint 'chown': the grafana/tempo 3 image is distroless"

broken tempo-receiver-default
mutate "$B/tempo/tempo.yaml" "        grpc:
          endpoint: 0.0.0.0:4317" "        grpc: {}"
rejects "Tempo's gRPC receiver left on its default (localhost since 2.7)" "tempo binds port 4317 to localhost only"

# PostgreSQL 18 keeps its data under /var/lib/postgresql; 17 and older under
# /var/lib/postgresql/data.
broken pg-no-volume
mutate "$B/docker-compose.yml" "      - postgres-data:/var/lib/postgresql
" ""
rejects "PostgreSQL without a data volume" "PGDATA /var/lib/postgresql/18/docker is not on a volume"

broken pg18-volume
mutate "$B/docker-compose.yml" "      - postgres-data:/var/lib/postgresql
" "      - postgres-data:/var/lib/postgresql/data
"
rejects "PostgreSQL 18 with its volume on /var/lib/postgresql/data" \
	"mounts a volume at /var/lib/postgresql/data, but PostgreSQL 18+ images keep their data under /var/lib/postgresql"

broken pg17-volume
mutate "$B/docker-compose.yml" "image: postgres:18.7" "image: postgres:17.6"
mutate "$B/docker-compose.yml" "      - postgres-data:/var/lib/postgresql
" "      - postgres-data:/var/lib/postgresql/data
"
check "check-compose accepts PostgreSQL 17 with its volume on /var/lib/postgresql/data" "$YPY" scripts/check-compose "$B/docker-compose.yml"

# Kafka 4 is KRaft only; Prometheus 3 drops or ignores some feature flags.
broken kafka-zookeeper
mutate "$B/docker-compose.yml" '      KAFKA_NODE_ID: "1"
' '      KAFKA_NODE_ID: "1"
      KAFKA_ZOOKEEPER_CONNECT: "kafka:2181"
'
rejects "Kafka 4 configured for ZooKeeper" "KAFKA_ZOOKEEPER_CONNECT: Kafka 4 has no ZooKeeper mode"

broken prom-feature
mutate "$B/docker-compose.yml" "      - --enable-feature=exemplar-storage
" "      - --enable-feature=exemplar-storage,remote-write-receiver
"
rejects "Prometheus 3 with a feature flag it does not have" "--enable-feature=remote-write-receiver is not a feature of Prometheus 3.14.0"

broken prom-noop-feature
mutate "$B/docker-compose.yml" "      - --enable-feature=exemplar-storage
" "      - --enable-feature=exemplar-storage
      - --enable-feature=native-histograms
"
rejects "Prometheus 3 with a no-op feature flag" "--enable-feature=native-histograms is a no-op (or deprecated) in Prometheus 3"

echo "== scripts/check-dockerfile (the build steps, run here)"
# The real Dockerfile and four broken copies, all at once (each builds in its
# own temporary directory; the builds are the slow part).
# dockerfile_variant NAME OLD NEW: $WORK/Dockerfile.NAME with OLD replaced.
dockerfile_variant() {
	cp compose/Dockerfile "$WORK/Dockerfile.$1"
	mutate "$WORK/Dockerfile.$1" "$2" "$3"
}
dockerfile_variant step "make all" "make no-such-target"
dockerfile_variant apt "libmicrohttpd-dev libpq-dev" "libmicrohttpd-devel libpq-dev"
dockerfile_variant devpkg "librdkafka-dev libjansson-dev" "librdkafka-dev"
dockerfile_variant runtime "libcurl4 zlib1g \\
      libmicrohttpd12 libpq5" "libcurl4 zlib1g \\
      libmicrohttpd12"
DF_PIDS=()
for v in real step apt devpkg runtime; do
	f=$WORK/Dockerfile.$v
	if [[ $v == real ]]; then f=compose/Dockerfile; fi
	"$YPY" scripts/check-dockerfile --file "$f" --context . >"$WORK/check-dockerfile.$v.out" 2>&1 &
	DF_PIDS+=("$!")
	BG_PIDS+=("$!")   # stopped at exit if the test ends early
done
DF_RC=()
for pid in "${DF_PIDS[@]}"; do
	rc=0
	wait "$pid" || rc=$?
	DF_RC+=("$rc")
done
if [[ ${DF_RC[0]} == 0 ]]; then
	pass "check-dockerfile runs compose/Dockerfile's build steps: $(tail -n1 "$WORK/check-dockerfile.real.out")"
else
	sed 's/^/    /' "$WORK/check-dockerfile.real.out"
	fail "check-dockerfile on compose/Dockerfile (exit ${DF_RC[0]})"
fi
# dockerfile_rejects INDEX NAME DESC TEXT: that variant failed (exit 1) saying TEXT.
dockerfile_rejects() {
	local rc=${DF_RC[$1]} out=$WORK/check-dockerfile.$2.out
	if [[ $rc == 1 ]] && grep -qF -- "$4" "$out"; then
		pass "check-dockerfile rejects $3"
	else
		fail "check-dockerfile rejects $3 (exit $rc; wanted '$4'; got: $(tail -n 3 "$out" | tr '\n' ' '))"
	fi
}
dockerfile_rejects 1 step "a broken build step" "RUN rm -rf build && make no-such-target failed"
dockerfile_rejects 2 apt "a misspelt apt package" "libmicrohttpd-devel: not installed here and unknown to apt"
dockerfile_rejects 3 devpkg "a build stage without a -dev package the build uses" \
	"(from libjansson-dev) is not installed by the stage's apt-get"
dockerfile_rejects 4 runtime "a run-time image without a library the programs link or the agent dlopen()s" \
	"task-manager needs libpq.so.5 (package libpq5)"

echo "== scripts/test-tempo-integration"
check "test-tempo-integration is valid bash" bash -n scripts/test-tempo-integration
check "test-tempo-integration --help" bash -c 'scripts/test-tempo-integration --help | grep -q "^usage: scripts/test-tempo-integration"'
check "test-tempo-integration rejects an unknown option (exit 2)" \
	bash -c 'scripts/test-tempo-integration --no-such-option >/dev/null 2>&1; [ $? -eq 2 ]'

finish
