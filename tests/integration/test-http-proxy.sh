#!/usr/bin/env bash
# test-http-proxy: nginx, haproxy and lighttpd as reverse proxies under the agent: one chain client -> proxy SERVER -> proxy CLIENT -> backend SERVER, the backend's request unchanged but for the traceparent value.
#
# A proxy forwards its client's traceparent as it is; the agent replaces
# that forwarded copy, in place, by the proxy's CLIENT span context (and
# only that: a traceparent the proxy sets itself goes out untouched). The
# backend is the lib's header-recording server, itself under the agent. Each
# proxy also runs once without the agent, on its own port, so the headers
# the backend received can be compared with what it gets untraced. Upstream
# CLIENT spans name the server from the Host header (server.address/port,
# url.full) and the connected socket (network.peer.address/port).
# nginx runs a master and 2 worker processes, haproxy 2 threads: requests
# are sent until each worker and thread has answered one, and every chain
# must be whole. The proxies run in the foreground with their own
# configuration, logs and temporary files in $WORK, and are stopped at exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

for prog in nginx haproxy lighttpd; do
	command -v "$prog" >/dev/null || PATH=$PATH:/usr/sbin
	command -v "$prog" >/dev/null || die "$prog is missing (scripts/install-deps)"
done

start_sink
BE_LOG=$WORK/backend.requests
: >"$BE_LOG"
start_listening backend agent backend "$PY" "$WORK/recorder.py" "$BE_LOG"
BE_PORT=$PORT

T=(0af7651916cd43dd8448eb211c8031a1 0af7651916cd43dd8448eb211c8031a2 0af7651916cd43dd8448eb211c8031a3
	0af7651916cd43dd8448eb211c8031a4 0af7651916cd43dd8448eb211c8031a5)
P=b7ad6b7169203331
OWN=00-11111111111111111111111111111111-2222222222222222-01
C=(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -H 'Host: app.test' -H 'X-Order: 1')

# --- configurations ---

# nginx_conf DIR PORT: a master and 2 workers (reuseport: the kernel spreads
# connections over them), upstream HTTP/1.0 (nginx's default), an HTTP/1.1
# keep-alive upstream under /ka/, a traceparent of nginx's own under /own/.
# nginx clears its workers' environment: the env directives keep the agent's.
nginx_conf() {
	local dir=$1 port=$2
	mkdir -p "$dir/tmp"
	cat >"$dir/nginx.conf" <<EOF
user root;
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/error.log notice;
env OTEL_EXPORTER_OTLP_ENDPOINT;
env OTEL_SERVICE_NAME;
env OTEL_BSP_SCHEDULE_DELAY;
env OTEL_LOG_LEVEL;
events { worker_connections 64; }
http {
	access_log $dir/access.log;
	client_body_temp_path $dir/tmp/body;
	proxy_temp_path $dir/tmp/proxy;
	fastcgi_temp_path $dir/tmp/fastcgi;
	uwsgi_temp_path $dir/tmp/uwsgi;
	scgi_temp_path $dir/tmp/scgi;
	upstream backend { server 127.0.0.1:$BE_PORT; }
	upstream backend_ka { server 127.0.0.1:$BE_PORT; keepalive 4; }
	server {
		listen 127.0.0.1:$port reuseport;
		add_header X-Worker \$pid always;
		location / { proxy_pass http://backend; }
		location /ka/ {
			proxy_pass http://backend_ka;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
		}
		location /own/ {
			proxy_pass http://backend;
			proxy_set_header traceparent "$OWN";
		}
	}
}
EOF
}

# haproxy_conf DIR PORT: mode http, 2 threads; X-Thread names the one that answered.
haproxy_conf() {
	local dir=$1 port=$2
	mkdir -p "$dir"
	cat >"$dir/haproxy.cfg" <<EOF
global
	nbthread 2
defaults
	mode http
	timeout connect 5s
	timeout client 10s
	timeout server 10s
frontend fe
	bind 127.0.0.1:$port
	http-response set-header X-Thread %[thread]
	default_backend be
backend be
	server s1 127.0.0.1:$BE_PORT
EOF
}

lighttpd_conf() {
	local dir=$1 port=$2
	mkdir -p "$dir/www"
	cat >"$dir/lighttpd.conf" <<EOF
server.document-root = "$dir/www"
server.bind = "127.0.0.1"
server.port = $port
server.errorlog = "$dir/error.log"
server.modules = ( "mod_proxy" )
proxy.server = ( "" => ( ( "host" => "127.0.0.1", "port" => $BE_PORT ) ) )
EOF
}

# start_proxy NAME traced|untraced: the proxy NAME in the foreground on a
# free port, under the agent (service NAME) or not; sets PXPORT.
start_proxy() {
	local name=$1 mode=$2 dir=$WORK/$1-$2 i
	PXPORT=$(free_port)
	local pre=(env -u LD_PRELOAD)
	[[ $mode == traced ]] && { agent_cmd "$name"; pre=("${AGENT_CMD[@]}"); }
	case $name in
	nginx)
		nginx_conf "$dir" "$PXPORT"
		start_bg "$name-$mode" "${pre[@]}" nginx -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;'
		;;
	haproxy)
		haproxy_conf "$dir" "$PXPORT"
		start_bg "$name-$mode" "${pre[@]}" haproxy -db -f "$dir/haproxy.cfg"
		;;
	lighttpd)
		lighttpd_conf "$dir" "$PXPORT"
		start_bg "$name-$mode" "${pre[@]}" lighttpd -D -f "$dir/lighttpd.conf"
		;;
	esac
	# Ready once it answers (through to the backend: those spans are not counted).
	for ((i = 0; i < 200; i++)); do
		curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PXPORT/ready" && return 0
		kill -0 "$BG_PID" 2>/dev/null || break
		sleep 0.05
	done
	sed 's/^/    /' "$WORK/$name-$mode.err" >&2
	die "$name ($mode) did not start"
}

# --- requests ---

for px in nginx haproxy lighttpd; do
	echo "== $px"
	start_proxy "$px" traced
	TP=$PXPORT
	start_proxy "$px" untraced
	UP=$PXPORT
	B=http://127.0.0.1:$TP/$px
	U=http://127.0.0.1:$UP/$px

	# r1: the client's own traceparent, tracestate and baggage; the same request untraced.
	h=(-H "traceparent: 00-${T[0]}-$P-01" -H 'tracestate: vendor=opaque' -H 'baggage: k=v')
	expect "$px: r1 answered" 200 "$("${C[@]}" "${h[@]}" "$B/tp?r=${px}1")"
	expect "$px: r1 answered untraced" 200 "$("${C[@]}" "${h[@]}" "$U/tp?r=${px}1u")"
	# r2: no traceparent: the proxy starts the trace and injects, as for any client.
	expect "$px: r2 answered" 200 "$("${C[@]}" "$B/notp?r=${px}2")"
	# r3: a POST with a body, traced and untraced.
	head -c 5000 /dev/zero | tr '\0' 'b' >"$WORK/body"
	h=(-H "traceparent: 00-${T[1]}-$P-01" --data-binary "@$WORK/body")
	expect "$px: r3 POST answered" 200 "$("${C[@]}" "${h[@]}" "$B/post?r=${px}3")"
	expect "$px: r3 POST answered untraced" 200 "$("${C[@]}" "${h[@]}" "$U/post?r=${px}3u")"
	if [[ $px == nginx ]]; then
		# r4: nginx sets a traceparent of its own: not a forwarded copy, left alone.
		expect "$px: r4 answered" 200 "$("${C[@]}" -H "traceparent: 00-${T[2]}-$P-01" "http://127.0.0.1:$TP/own/x?r=4")"
		# r5: two requests on one client connection (so one worker), over
		# one keep-alive upstream connection.
		expect "$px: r5a, r5b answered" 200200 \
			"$("${C[@]}" -H "traceparent: 00-${T[3]}-$P-01" "http://127.0.0.1:$TP/ka/x?r=5a" \
				--next "${C[@]:1}" -H "traceparent: 00-${T[4]}-$P-01" "http://127.0.0.1:$TP/ka/x?r=5b")"
	fi
	# Workers (nginx) and threads (haproxy): until each one has answered (at most 100 requests).
	seen=()
	: >"$WORK/$px.who"
	for ((i = 0; i < 100; i++)); do
		tid=$(printf '%032x' $((0x5000 + i)))
		who=$(curl -sS --max-time 10 -o /dev/null -D - -H 'Host: app.test' -H "traceparent: 00-$tid-$P-01" \
			"$B/who?w=$px$i" | tr -d '\r' | sed -n 's/^x-\(worker\|thread\): //Ip') || true
		echo "$i $tid $who" >>"$WORK/$px.who"
		[[ $px == lighttpd ]] && break
		[[ -n $who && " ${seen[*]} " != *" $who "* ]] && seen+=("$who")
		((${#seen[@]} >= 2)) && break
	done
	[[ $px == lighttpd ]] || expect "$px: two workers or threads answered" 2 "${#seen[@]}"
	if [[ $px != lighttpd ]]; then
		# r6: 24 clients at once: an event loop reads other requests
		# before it forwards each one, which must still be recognised.
		args=()
		for ((i = 0; i < 24; i++)); do
			tid=$(printf '%032x' $((0x6000 + i)))
			((i > 0)) && args+=(--next)
			args+=(-sS --max-time 10 -o /dev/null -H 'Host: app.test' -H "traceparent: 00-$tid-$P-01" "$B/par?c=$px$i")
		done
		curl --parallel --parallel-immediate --parallel-max 24 "${args[@]}" || true
	fi
done

# A forwarder in python (under the agent) passes the client's traceparent on
# the way its mode says: one sendmsg whose iovecs cut the value in pieces,
# os.writev likewise, a non-blocking socket with a small send buffer that
# takes the request (and a 1 MB body) in several partial sends, or the head
# in two writes, the first ending inside the value (already sent before the
# head is complete: it must go out as it was).
cat >"$WORK/forward.py" <<'PY'
import os, select, socket, sys
be_port = int(sys.argv[1])
srv = socket.socket()
srv.bind(('127.0.0.1', 0))
srv.listen(8)
print('listening on 127.0.0.1:%d' % srv.getsockname()[1], flush=True)
BODY = bytes(range(256)) * 4000
while True:
    c, _ = srv.accept()
    head = b''
    while b'\r\n\r\n' not in head:
        head += c.recv(65536)
    line, *fields = head.split(b'\r\n\r\n')[0].split(b'\r\n')
    path = line.split(b' ')[1]
    mode = path.split(b'?')[0].split(b'/')[2]
    tp = [f.split(b':', 1)[1].strip() for f in fields if f.lower().startswith(b'traceparent:')][0]
    body = BODY if mode == b'partial' else b'0123456789' * 10
    pre = (b'POST ' + path + b' HTTP/1.1\r\nHost: be.test:81\r\nX-Before: 1\r\ntraceparent: ')
    post = b'\r\nX-After: 2\r\nContent-Length: %d\r\n\r\n' % len(body)
    u = socket.create_connection(('127.0.0.1', be_port))
    if mode == b'iov':
        u.sendmsg([pre, tp[:3], tp[3:10], tp[10:11], tp[11:40], tp[40:], post[:1], post[1:], body])
    elif mode == b'writev':
        os.writev(u.fileno(), [pre + tp[:20], tp[20:54], tp[54:] + post, body])
    elif mode == b'pieces':
        u.sendall(pre + tp[:30])
        u.sendall(tp[30:] + post + body)
    else:
        u.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        u.setblocking(False)
        data, sends = pre + tp + post + body, 0
        while data:
            select.select([], [u], [])
            try:
                n = u.send(data)
            except BlockingIOError:
                continue
            data = data[n:]
            sends += 1
        u.setblocking(True)
        print('partial: %d sends' % sends, flush=True)
    resp = b''
    while b'\r\n\r\n' not in resp:
        resp += u.recv(65536)
    u.close()
    c.sendall(b'HTTP/1.1 ' + resp.split(b' ')[1] + b' X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok')
    c.close()
PY
echo "== python forwarder"
start_listening forward agent pyfwd "$PY" "$WORK/forward.py" "$BE_PORT"
for mode in iov writev partial pieces; do
	expect "forwarder $mode: answered" 200 \
		"$("${C[@]}" -H "traceparent: 00-${T[2]}-$P-01" "http://127.0.0.1:$PORT/fwd/$mode?r=fwd$mode")"
done

n=$(lines "$WORK/nginx.who")
m=$(lines "$WORK/haproxy.who")
# Spans: 3 per request through a traced proxy (its SERVER and CLIENT, the
# backend's SERVER), 1 per request through an untraced one.
want=$((3 * 3 + 2 + 3 * 3 + (3 * 3 + 2) * 2 + 3 * (n + m + 1) + 3 * 4 + 3 * 24 * 2))
check "$want spans exported within 15 s" wait_spans "$SINK_JSONL" "$want" \
	"s['kind'] in ('SERVER', 'CLIENT') and '/ready' not in a.get('url.path', '') + a.get('url.full', '')"

pycheck "$SINK_JSONL" "$BE_LOG" "$BE_PORT" "$P" "$OWN" "$WORK" "${T[@]}" <<'PY'
import json
path, belog, be_port, P, OWN, work = sys.argv[1:7]
T = sys.argv[7:]
be_port = int(be_port)
spans = load(path)
reqs = [json.loads(l) for l in open(belog)]

def by_query(svc, kind, q):
    return [s for s in spans if s.get('service.name') == svc and s['kind'] == kind and
            (A(s).get('url.query') == q or A(s).get('url.full', '').endswith('?' + q))]
def received(q):
    return [r for r in reqs if r['path'].endswith('?' + q)]
def hdrs(r, name):
    return [v for k, v in r['headers'] if k.lower() == name]

def one(label, lst):
    if check(len(lst) == 1, label, [show(s) for s in lst]):
        return lst[0]
    return None

# chain: the proxy's SERVER and CLIENT spans and the backend's SERVER span
# for the request with query q; returns (server, client, backend, record).
def chain(px, q, trace=None, parent=None):
    label = '%s %s: ' % (px, q)
    srv = one(label + 'one proxy SERVER span', by_query(px, 'SERVER', q))
    cli = one(label + 'one proxy CLIENT span', by_query(px, 'CLIENT', q))
    be = one(label + 'one backend SERVER span', by_query('backend', 'SERVER', q))
    rec = one(label + 'the backend received it once', received(q))
    if not (srv and cli and be and rec):
        return None
    if trace:
        expect(label + 'proxy SERVER: the client\'s trace', trace, srv['trace_id'])
        expect(label + 'proxy SERVER: child of the client', parent, srv['parent_span_id'])
    else:
        expect(label + 'proxy SERVER: a root', '', srv['parent_span_id'])
    expect(label + 'proxy CLIENT: child of the proxy SERVER', (srv['trace_id'], srv['span_id']),
           (cli['trace_id'], cli['parent_span_id']))
    expect(label + 'backend SERVER: child of the proxy CLIENT', (cli['trace_id'], cli['span_id']),
           (be['trace_id'], be['parent_span_id']))
    tps = hdrs(rec, 'traceparent')
    if check(len(tps) == 1, label + 'the backend got one traceparent', tps):
        p = tps[0].split('-')
        expect(label + 'it names the proxy CLIENT span', ['00', cli['trace_id'], cli['span_id']], p[:3])
    return srv, cli, be, rec

# The backend's request, but for the traceparent value, is the one the
# untraced proxy sends (same headers, same order, same body).
def same_as_untraced(px, q, qu):
    a, b = received(q), received(qu)
    if not check(len(a) == 1 and len(b) == 1, '%s %s: traced and untraced requests recorded' % (px, q)):
        return
    a, b = a[0], b[0]
    strip = lambda r: [[k, '<tp>' if k.lower() == 'traceparent' else v] for k, v in r['headers']]
    expect('%s %s: headers as without the agent, but for the traceparent value' % (px, q), strip(b), strip(a))
    expect('%s %s: request line and body as without the agent' % (px, q),
           (b['method'], b['path'].replace(qu, q), b['version'], b['body_len'], b['body_fnv']),
           (a['method'], a['path'], a['version'], a['body_len'], a['body_fnv']))

# Host header and socket: where the upstream CLIENT span says it went.
def peer(px, cli, host, port, url):
    a = A(cli)
    expect(px + ': CLIENT server.address/port from the Host header', (host, port),
           (a.get('server.address'), a.get('server.port')))
    expect(px + ': CLIENT url.full from the Host header', url, a.get('url.full'))
    expect(px + ': CLIENT network.peer.address/port: the backend socket', ('127.0.0.1', be_port),
           (a.get('network.peer.address'), a.get('network.peer.port')))

for px, host in (('nginx', 'backend'), ('haproxy', 'app.test'), ('lighttpd', 'app.test')):
    c = chain(px, 'r=%s1' % px, T[0], P)
    if c:
        rec = c[3]
        expect(px + ' r1: the client\'s tracestate forwarded as it was', ['vendor=opaque'], hdrs(rec, 'tracestate'))
        expect(px + ' r1: the client\'s baggage forwarded as it was', ['k=v'], hdrs(rec, 'baggage'))
        peer(px, c[1], host, 80, 'http://%s/%s/tp?r=%s1' % (host, px, px))
    same_as_untraced(px, 'r=%s1' % px, 'r=%s1u' % px)
    chain(px, 'r=%s2' % px)
    chain(px, 'r=%s3' % px, T[1], P)
    same_as_untraced(px, 'r=%s3' % px, 'r=%s3u' % px)
    # every request sent while looking for the workers or threads: one whole chain each
    who = [l.split() for l in open('%s/%s.who' % (work, px))]
    pids = set()
    for w in who:
        c = chain(px, 'w=%s%s' % (px, w[0]), w[1], P)
        if c:
            pids.add(c[0]['resource'].get('process.pid'))
    if px == 'nginx':
        workers = set(int(w[2]) for w in who if len(w) > 2)
        expect('nginx: spans from each worker that answered (process.pid)', workers, pids)
        check(len(pids) == 2, 'nginx: two worker processes', pids)

# 24 requests at once through each event-loop proxy: every chain whole.
for px in ('nginx', 'haproxy'):
    for i in range(24):
        chain(px, 'c=%s%d' % (px, i), '%032x' % (0x6000 + i), P)

# nginx's own traceparent: sent as nginx set it.
rec = one('nginx r=4: the backend received it once', received('r=4'))
if rec:
    expect('nginx r=4: a traceparent nginx sets itself is not replaced', [OWN], hdrs(rec, 'traceparent'))
be = one('nginx r=4: one backend SERVER span', by_query('backend', 'SERVER', 'r=4'))
if be:
    expect('nginx r=4: the backend is the child of what nginx sent', OWN.split('-')[1:3],
           [be['trace_id'], be['parent_span_id']])

# keep-alive upstream: each request on the reused connection replaced for its own span
a = chain('nginx', 'r=5a', T[3], P)
b = chain('nginx', 'r=5b', T[4], P)
if a and b:
    expect('nginx r=5: one upstream connection for both', a[3]['peer_port'], b[3]['peer_port'])

# The forwarder: the value replaced across iovec cuts and partial sends,
# everything else as the forwarder wrote it.
def fnv(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
    return '%016x' % h
for mode in ('iov', 'writev', 'partial', 'pieces'):
    q = 'r=fwd' + mode
    body = bytes(range(256)) * 4000 if mode == 'partial' else b'0123456789' * 10
    if mode != 'pieces':
        c = chain('pyfwd', q, T[2], P)
        if c:
            peer('pyfwd ' + mode, c[1], 'be.test', 81, 'http://be.test:81/fwd/%s?%s' % (mode, q))
    rec = one('pyfwd %s: the backend received it once' % mode, received(q))
    if not rec:
        continue
    tp = hdrs(rec, 'traceparent')
    expect('pyfwd %s: headers in order, as written' % mode,
           ['Host', 'X-Before', 'traceparent', 'X-After', 'Content-Length'], [k for k, v in rec['headers']])
    expect('pyfwd %s: body intact' % mode, (len(body), fnv(body)), (rec['body_len'], rec['body_fnv']))
    if mode == 'pieces':
        expect('pyfwd pieces: a value already sent when the head ended went out as it was',
               ['00-%s-%s-01' % (T[2], P)], tp)
PY

finish
