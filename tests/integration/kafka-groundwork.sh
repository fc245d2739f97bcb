#!/usr/bin/env bash
# kafka-groundwork.sh: the Kafka test programs (kafka-producer, kafka-consumer, kcat) against scripts/dev-kafka, without the agent (not test-*: make check does not run it yet).
#
# Starts a mock broker (scripts/dev-kafka), produces one message through every
# produce API (tests/kafka-producer.c, normal, --no-dr and --fail modes),
# reads them back with every consume API (tests/kafka-consumer.c) and checks
# payload, key, partition, offset and headers against the expected output
# below; then a kcat round trip with a traceparent header. With a PostgreSQL
# server installed, also kafka-consumer --sql (scripts/dev-postgres).
# The broker is stopped at exit. Prints PASS:/FAIL: lines and "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/../.."
# lib.sh wants an agent file; nothing here runs under it.
[[ -n ${TRACEAGENT_SO:-} || -f build/libtraceagent.so ]] || export TRACEAGENT_SO=$PWD/tests/integration/kafka-groundwork.sh
. tests/integration/lib.sh

command -v kcat >/dev/null || die "kcat is not installed"
need_helper kafka-mock -lrdkafka
need_helper kafka-producer -lrdkafka
need_helper kafka-consumer -I/usr/include/postgresql -lrdkafka -lpq
PRODUCER=build/tests/kafka-producer
CONSUMER=build/tests/kafka-consumer
TP=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01

echo "== scripts/dev-kafka"
KDIR=$WORK/kafka
at_exit "bash scripts/dev-kafka stop '$KDIR'"
out=$(bash scripts/dev-kafka start --topic kg-main --topic kg-nodr --topic kg-fail --topic t1 "$KDIR" 2>"$WORK/dev-kafka.err") || {
	sed 's/^/    /' "$WORK/dev-kafka.err" >&2
	die "scripts/dev-kafka start failed"
}
check "dev-kafka start prints KAFKA_BROKERS=127.0.0.1:PORT (only that)" \
	grep -qxE 'KAFKA_BROKERS=127\.0\.0\.1:[0-9]+' <<<"$out"
export KAFKA_BROKERS=${out#KAFKA_BROKERS=}
expect "dev-kafka start on a running DIR prints the same address" "$out" \
	"$(bash scripts/dev-kafka start "$KDIR" 2>&1)"
check "dev-kafka status: running" bash scripts/dev-kafka status "$KDIR" >/dev/null
K=(timeout 30 kcat -b "$KAFKA_BROKERS" -q)
for t in web-crawl-tasks task-status kg-main; do
	expect "topic $t exists with 1 partition" 1 \
		"$("${K[@]}" -L -t "$t" 2>/dev/null | sed -n "s/^ *topic \"$t\" with \([0-9]*\) partitions.*/\1/p")"
done

echo "== kafka-producer"
rc=0
$PRODUCER --topic kg-main >"$WORK/prod.out" 2>"$WORK/prod.err" || rc=$?
expect "producer (all produce APIs) exit status" 0 "$rc"
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
check "producer: produce lines and delivery reports (partition, offset, opaque) as expected" \
	diff -u <(grep -v '^headers: ' "$WORK/prod.want") <(grep -v '^headers: ' "$WORK/prod.out")
check "producer: header names on the delivered messages as expected" \
	diff -u <(grep '^headers: ' "$WORK/prod.want") <(grep '^headers: ' "$WORK/prod.out")
check "producer: nothing on stderr" test ! -s "$WORK/prod.err"

rc=0
$PRODUCER --topic kg-nodr --no-dr >"$WORK/nodr.out" 2>"$WORK/nodr.err" || rc=$?
expect "producer --no-dr exit status" 0 "$rc"
expect "producer --no-dr: no delivery report, every message produced and flushed" \
	"0 flush err=NO_ERROR outq=0 summary produced=11 delivered=0 failed=0" \
	"$(grep -c '^dr ' "$WORK/nodr.out" || true) $(tail -n2 "$WORK/nodr.out" | tr '\n' ' ' | sed 's/ $//')"

rc=0
$PRODUCER --topic kg-fail --fail >"$WORK/fail.out" 2>"$WORK/fail.err" || rc=$?
expect "producer --fail exit status" 0 "$rc"
cat >"$WORK/fail.want" <<'EOF'
produce fail/produce-copy ret=-1 errno=EMSGSIZE err=MSG_SIZE_TOO_LARGE
produce fail/produce-free ret=-1 errno=EMSGSIZE err=MSG_SIZE_TOO_LARGE
produce fail/producev ret=MSG_SIZE_TOO_LARGE
produce fail/produceva ret=MSG_SIZE_TOO_LARGE
produce_batch fail/batch ret=0
produce fail/batch ret=MSG_SIZE_TOO_LARGE
produce fail/unknown-partition ret=-1 errno=ESRCH err=_UNKNOWN_PARTITION
produce fail/purged ret=NO_ERROR
purge err=NO_ERROR
dr fail/purged partition=0 offset=-1001 err=_PURGE_QUEUE opaque=1017
headers: fail/purged count=1 app-h
flush err=NO_ERROR outq=0
summary produced=1 delivered=0 failed=1
EOF
check "producer --fail: produce errors and the delivery error as expected" \
	diff -u <(grep -v '^headers: ' "$WORK/fail.want") <(grep -v '^headers: ' "$WORK/fail.out")
check "producer --fail: header names as expected" \
	diff -u <(grep '^headers: ' "$WORK/fail.want") <(grep '^headers: ' "$WORK/fail.out")
expect "producer --fail: nothing reached topic kg-fail" "" \
	"$("${K[@]}" -C -t kg-fail -e -o beginning 2>/dev/null)"

echo "== kafka-consumer, every consume API"
cat >"$WORK/cons.want" <<EOF
msg topic=kg-main partition=0 offset=0 key=(null) payload=payload produce/copy-p0
headers: count=0
msg topic=kg-main partition=0 offset=1 key=(null) payload=payload produce/free-ua
headers: count=0
msg topic=kg-main partition=0 offset=2 key=(null) payload=payload produce/block-ua
headers: count=0
msg topic=kg-main partition=0 offset=3 key=key-produce/key-ua payload=payload produce/key-ua
headers: count=0
msg topic=kg-main partition=0 offset=4 key=key-producev/app-header payload=payload producev/app-header
headers: count=1 app-h=1
msg topic=kg-main partition=0 offset=5 key=key-producev/traceparent payload=payload producev/traceparent
headers: count=2 traceparent=$TP app-h=tp
msg topic=kg-main partition=0 offset=6 key=key-producev/headers payload=payload producev/headers
headers: count=2 app-h=2 app-x=x
msg topic=kg-main partition=0 offset=7 key=key-produceva payload=payload produceva
headers: count=1 app-h=3
msg topic=kg-main partition=0 offset=8 key=key-batch/0 payload=payload batch/0
headers: count=0
msg topic=kg-main partition=0 offset=9 key=key-batch/1 payload=payload batch/1
headers: count=0
msg topic=kg-main partition=0 offset=10 key=key-batch/2 payload=payload batch/2
headers: count=0
consumed 11
EOF
for api in poll consume consume_queue batch batch_queue callback callback_queue; do
	rc=0
	$CONSUMER --topic kg-main --count 11 --api "$api" --group "kg-$api" \
		>"$WORK/cons-$api.out" 2>"$WORK/cons-$api.err" || rc=$?
	expect "consumer --api $api: exit status" 0 "$rc"
	check "consumer --api $api: topic, partition, offset, key, payload as produced" \
		diff -u <(grep -v '^headers: ' "$WORK/cons.want") <(grep -v '^headers: ' "$WORK/cons-$api.out")
	check "consumer --api $api: the app's headers, names and values" \
		diff -u <(grep '^headers: ' "$WORK/cons.want") <(grep '^headers: ' "$WORK/cons-$api.out")
done
rc=0
$CONSUMER --topic kg-nodr --count 11 --api consume >"$WORK/cons-nodr.out" 2>/dev/null || rc=$?
check "consumer: the --no-dr messages arrived intact ($rc)" \
	diff -u <(sed 's/topic=kg-main/topic=kg-nodr/' "$WORK/cons.want") "$WORK/cons-nodr.out"
rc=0
start=$SECONDS
$CONSUMER --topic kg-main --count 12 --api consume --timeout 3 \
	>"$WORK/cons-timeout.out" 2>"$WORK/cons-timeout.err" || rc=$?
expect "consumer: 12 wanted, 11 there: exit status 1 at the timeout" 1 "$rc"
check "consumer: the timeout is bounded (3 s asked, took $((SECONDS - start)) s)" test $((SECONDS - start)) -le 10
expect "consumer: 11 consumed before the timeout" "consumed 11" "$(tail -n1 "$WORK/cons-timeout.out")"

echo "== kcat with a traceparent header"
printf 'hello\n' | "${K[@]}" -P -t t1 -H "traceparent=$TP" || true
expect "kcat -C shows the header" "traceparent=$TP hello" \
	"$("${K[@]}" -C -t t1 -e -o beginning -f '%h %s\n' 2>/dev/null)"
rc=0
$CONSUMER --topic t1 --api consume_queue >"$WORK/cons-kcat.out" 2>/dev/null || rc=$?
expect "kafka-consumer reads kcat's header" "headers: count=1 traceparent=$TP" \
	"$(grep '^headers: ' "$WORK/cons-kcat.out")"

echo "== kafka-consumer --sql"
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || [[ -n ${PGBIN:-} ]]; then
	# shellcheck disable=SC2119
	pg_start
	for api in poll callback; do
		rc=0
		$CONSUMER --topic kg-main --count 11 --api "$api" --group "kg-sql-$api" --sql "$DATABASE_URL" \
			>"$WORK/sql-$api.out" 2>"$WORK/sql-$api.err" || rc=$?
		expect "consumer --api $api --sql: exit status" 0 "$rc"
		expect "consumer --api $api --sql: SELECT 1 once per message" 11 "$(grep -c '^sql: 1$' "$WORK/sql-$api.out" || true)"
		check "consumer --api $api --sql: messages as without --sql" \
			diff -u "$WORK/cons.want" <(grep -v '^sql: ' "$WORK/sql-$api.out")
	done
else
	echo "note: no PostgreSQL server installed; --sql not checked"
fi

echo "== scripts/dev-kafka stop"
# shellcheck disable=SC1091
pid=$(. "$KDIR/dev-kafka.state" && echo "$KAFKA_PID")
bash scripts/dev-kafka stop "$KDIR"
# (a zombie waiting for init to reap it counts as gone)
check "dev-kafka stop: the broker is gone" \
	bash -c "! kill -0 $pid 2>/dev/null || [[ \$(ps -o stat= -p $pid) == Z* ]]"
check "dev-kafka stop: DIR removed" test ! -e "$KDIR"
check "dev-kafka stop again: not an error" bash scripts/dev-kafka stop "$KDIR"

finish
