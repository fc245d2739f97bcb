#!/usr/bin/env bash
# test-exporter-tls: export over https with OTEL_EXPORTER_OTLP_CERTIFICATE, and mutual TLS with the client certificate and key.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

command -v openssl >/dev/null || die "openssl is missing"
cd "$WORK"
# A CA, a server certificate for 127.0.0.1 and a client certificate, all throwaway.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=test-ca -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >san.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile san.ext -out server.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=agent -keyout client.key -out client.csr 2>/dev/null
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -out client.pem 2>/dev/null
cd - >/dev/null

# An OTLP endpoint over TLS: answers 200 to POST /v1/traces; with "mtls" it
# requires a client certificate signed by the CA.
cat >"$WORK/tls.py" <<'PY'
import http.server, ssl, sys
work, mode = sys.argv[1], sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        open(work + "/posts-" + mode, "a").write("post\n")
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(work + "/server.pem", work + "/server.key")
if mode == "mtls":
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(work + "/ca.pem")
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("listening on 127.0.0.1:%d" % srv.server_address[1], flush=True)
srv.serve_forever()
PY
start_listening tls "$PY" "$WORK/tls.py" "$WORK" tls
tls_port=$PORT
start_listening mtls "$PY" "$WORK/tls.py" "$WORK" mtls
mtls_port=$PORT

emit() { env OTEL_LOG_LEVEL=error "$@" build/tests/emit-spans --trace 2>/dev/null || true; }

expect "https with the CA configured: all 5 spans exported" "exported 5 failed 0" \
	"$(emit OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=https://127.0.0.1:$tls_port/v1/traces OTEL_EXPORTER_OTLP_CERTIFICATE=$WORK/ca.pem)"
expect "https with an unknown CA: the batch fails, nothing hangs" "exported 0 failed 5" \
	"$(emit OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=https://127.0.0.1:$tls_port/v1/traces)"
expect "mutual TLS with the client certificate and key: exported" "exported 5 failed 0" \
	"$(emit OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=https://127.0.0.1:$mtls_port/v1/traces \
		OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE=$WORK/ca.pem \
		OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE=$WORK/client.pem OTEL_EXPORTER_OTLP_CLIENT_KEY=$WORK/client.key)"
# TLS 1.3 reports a refused client as a failed read, which is retried like
# any connection failure: a short export timeout ends the retries.
expect "mutual TLS without a client certificate: refused" "exported 0 failed 5" \
	"$(emit OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=https://127.0.0.1:$mtls_port/v1/traces OTEL_EXPORTER_OTLP_CERTIFICATE=$WORK/ca.pem \
		OTEL_BSP_EXPORT_TIMEOUT=2000)"
expect "the servers saw exactly the two accepted exports" "1 1" \
	"$(cat "$WORK/posts-tls" 2>/dev/null | wc -l) $(cat "$WORK/posts-mtls" 2>/dev/null | wc -l)"
finish
