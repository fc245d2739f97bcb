// Exports one small trace with the official OpenTelemetry JS SDK over OTLP/HTTP (protobuf or JSON).
//
// Used by tests/integration/test-foreign-sdk.sh to check that otlp-sink decodes what
// another language's SDK sends. The trace: a SERVER root with two CLIENT children,
// attributes of several types, an ERROR status and an exception event on one child.
// Environment: OTLP_TRACES_URL (required); OTLP_PROTOCOL, "http/protobuf" (the default)
// or "http/json"; OTLP_COMPRESSION, "gzip" or "none" (the default); SDK_TRACE_OUT, an
// optional file that gets the trace id and span ids as JSON, so the test can compare
// them with what arrived.
'use strict';

const fs = require('fs');
const api = require('@opentelemetry/api');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { BasicTracerProvider, BatchSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const protocol = process.env.OTLP_PROTOCOL || 'http/protobuf';
if (protocol !== 'http/protobuf' && protocol !== 'http/json') {
	console.error('export.js: OTLP_PROTOCOL must be http/protobuf or http/json');
	process.exit(2);
}
const { OTLPTraceExporter } = protocol === 'http/json'
	? require('@opentelemetry/exporter-trace-otlp-http')
	: require('@opentelemetry/exporter-trace-otlp-proto');

const url = process.env.OTLP_TRACES_URL;
if (!url) {
	console.error('export.js: set OTLP_TRACES_URL, e.g. http://127.0.0.1:4318/v1/traces');
	process.exit(2);
}

// Export failures are only reported through diag; make them visible and fatal.
let exportFailed = false;
api.diag.setLogger({
	error: (...args) => { exportFailed = true; console.error('otel error:', ...args); },
	warn: (...args) => console.error('otel warn:', ...args),
	info: () => {},
	debug: () => {},
	verbose: () => {},
}, api.DiagLogLevel.WARN);

const exporter = new OTLPTraceExporter({
	url,
	headers: { 'x-sdk-check': 'node' },
	compression: process.env.OTLP_COMPRESSION === 'gzip' ? 'gzip' : 'none',
	timeoutMillis: 5000,
});
const provider = new BasicTracerProvider({
	resource: resourceFromAttributes({
		'service.name': 'node-sdk',
		'service.version': '0.0.1',
		'deployment.environment.name': 'test',
	}),
	spanProcessors: [new BatchSpanProcessor(exporter, { scheduledDelayMillis: 100 })],
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
	const tracer = provider.getTracer('traceagent-sdk-check', '1.0.0');
	// No context manager is registered, so parents are passed explicitly.
	const root = tracer.startSpan('GET /api/users/:id', {
		kind: api.SpanKind.SERVER,
		attributes: {
			'http.request.method': 'GET',
			'http.route': '/api/users/:id',
			'http.response.status_code': 200,
			'url.path': '/api/users/42',
		},
	});
	const ctx = api.trace.setSpan(api.context.active(), root);
	await sleep(2);

	const db = tracer.startSpan('SELECT users', {
		kind: api.SpanKind.CLIENT,
		attributes: {
			'db.system.name': 'postgresql',
			'db.query.summary': 'SELECT users',
			'db.response.returned_rows': 1,
			'server.port': 5432,
		},
	}, ctx);
	await sleep(3);
	db.end();

	const http = tracer.startSpan('GET', {
		kind: api.SpanKind.CLIENT,
		attributes: {
			'http.request.method': 'GET',
			'url.full': 'http://avatars.internal/u/42',
			'http.response.status_code': 503,
			'error.type': '503',
			'retry.enabled': true,
			'sample.ratio': 0.25,
			'tags': ['a', 'b'],
		},
	}, ctx);
	http.addEvent('retry', { 'retry.attempt': 1 });
	http.recordException(new Error('avatar service unavailable'));
	http.setStatus({ code: api.SpanStatusCode.ERROR, message: 'upstream 503' });
	await sleep(1);
	http.end();

	root.end();

	if (process.env.SDK_TRACE_OUT) {
		fs.writeFileSync(process.env.SDK_TRACE_OUT, JSON.stringify({
			trace_id: root.spanContext().traceId,
			root: root.spanContext().spanId,
			db: db.spanContext().spanId,
			http: http.spanContext().spanId,
		}) + '\n');
	}
	await provider.forceFlush();
	await provider.shutdown();
	if (exportFailed) {
		console.error('export.js: export failed');
		process.exit(1);
	}
	console.log(`export.js: exported 3 spans to ${url} (${protocol})`);
}

main().catch((err) => {
	console.error('export.js:', err);
	process.exit(1);
});
