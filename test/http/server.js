#!/usr/bin/env node
// HTTP test server for pipeline_worker's HTTP steps (test/scripts/http.sh) and the HTTP benchmark endpoint.
// Node built-ins only; event-driven; no per-request logging.
//
// Usage: node test/http/server.js [--port N] [--host ADDR[,ADDR...]]
//   --port N      port to listen on (default 0 = a random free port)
//   --host ADDR   address(es) to listen on (default 127.0.0.1). A comma list listens on the same port on each
//                 address, e.g. --host 127.0.0.1,127.0.0.2,127.0.0.3 (egress allow-list tests need several
//                 loopback addresses; binding 127.0.0.1 alone refuses connections to 127.0.0.2).
// On startup prints exactly one line "PORT <n>" to stdout; diagnostics go to stderr. SIGTERM/SIGINT exit 0.
// Open connections are limited only by the fd limit (ulimit -n): raise it for 10,000 connections.
//
// Endpoints (any method unless stated; the whole request body is always read first):
//   /echo                 200 application/json {"method", "path", "query": {...}, "headers": {lower-cased: value},
//                         "body": request body parsed as JSON, else the raw string, null when empty}
//   /ok                   200 application/json {"ok":true}                      (cheapest; throughput)
//   /delay?ms=N[&status=S] after N ms: status S (default 200) application/json {"delayed":N}
//   /status/NNN[?retry_after=S]  status NNN text/plain "status NNN body" (no body for 204/304),
//                         Retry-After: S when given
//   /flaky?fail=N[&status=S]  the first N requests with the same Pipeline-Run-Id (counted per run id + path)
//                         answer S (default 500) text/plain "flaky failure k of N"; later ones answer like /echo
//   /close                destroys the socket without any response
//   /huge?bytes=N[&status=S]  status S (default 200) text/plain, N bytes of 'x', streamed (with Content-Length;
//                         &chunked=1: without)
//   /text                 200 text/plain "hello, world"
//   /empty                200, empty body (Content-Length: 0)
//   /binary               200 application/octet-stream ff fe 00 01 (not UTF-8)
//   /badjson              200 application/json '{"unterminated": ' (not JSON)
//   /deep?n=N             200 application/json: N nested arrays ([[...]])
//   /bomjson              200 application/json {"a": 1} after a UTF-8 byte order mark
//   /nuljson              200 application/json {"a": "\u0000"} (JSON that jsonb cannot store)
//   /badutf8json          200 application/json {"a": "<byte ff>"} (JSON by its grammar, not valid UTF-8)
//   /utf8error            500 text/plain "a" + 300 x "é" (2 bytes each: a 200-byte cut splits a character)
//   /redirect?to=URL[&code=C]  status C (default 302), Location: URL, empty body
//   anything else         404 text/plain "not found"
// Statistics (requests to these three are not counted anywhere):
//   GET /stats            {"requests", "by_path": {path: n}, "keys" (distinct Idempotency-Key values),
//                          "duplicates" (requests whose non-empty Idempotency-Key was seen before),
//                          "no_key", "in_flight" (received, not yet answered), "max_in_flight",
//                          "connections" (open now), "max_connections"}   (maxima: peaks since the last reset)
//   GET /keys             {"<Idempotency-Key>": count, ...}
//   POST|GET /reset       zeroes statistics and flaky counters -> {"reset":true}
'use strict';

const http = require('http');

// ------------------------------------------------------------------ arguments
let port = 0;
let hosts = ['127.0.0.1'];
{
    const argv = process.argv.slice(2);
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        let v;
        const eq = a.indexOf('=');
        const name = eq > 0 ? a.slice(0, eq) : a;
        const take = () => (eq > 0 ? a.slice(eq + 1) : argv[++i]);
        if (name === '--port') {
            v = take();
            port = Number(v);
            if (!Number.isInteger(port) || port < 0 || port > 65535) usage(`bad --port ${v}`);
        } else if (name === '--host') {
            v = take();
            if (!v) usage('bad --host');
            hosts = v.split(',').map((s) => s.trim()).filter(Boolean);
            if (hosts.length === 0) usage('bad --host');
        } else if (name === '-h' || name === '--help') {
            usage(null);
        } else {
            usage(`unknown argument ${a}`);
        }
    }
}
function usage(msg) {
    if (msg) process.stderr.write(`server.js: ${msg}\n`);
    process.stderr.write('usage: node server.js [--port N] [--host ADDR[,ADDR...]]\n');
    process.exit(msg ? 2 : 0);
}

// ------------------------------------------------------------------ statistics
let requests = 0;
let byPath = new Map();
let keys = new Map();
let duplicates = 0;
let noKey = 0;
let inFlight = 0;
let maxInFlight = 0;
let connections = 0;
let maxConnections = 0;
let flaky = new Map();

function resetStats() {
    requests = 0;
    byPath = new Map();
    keys = new Map();
    duplicates = 0;
    noKey = 0;
    maxInFlight = inFlight;
    maxConnections = connections;
    flaky = new Map();
}

function onConnection(socket) {
    connections++;
    if (connections > maxConnections) maxConnections = connections;
    socket.on('close', onConnectionClose);
    socket.on('error', noop);
}
function onConnectionClose() { connections--; }
function noop() {}

// a counted response leaves in_flight exactly once: on 'close' (after finish, or when the connection dies)
function onResClose() {
    inFlight--;
    if (this.pwTimer !== undefined) {
        clearTimeout(this.pwTimer);
        this.pwTimer = undefined;
    }
}

// ------------------------------------------------------------------ constant responses
const JSON_TYPE = 'application/json';
const TEXT_TYPE = 'text/plain';
const OK_BODY = Buffer.from('{"ok":true}');
const OK_HEADERS = { 'Content-Type': JSON_TYPE, 'Content-Length': String(OK_BODY.length) };
const TEXT_BODY = Buffer.from('hello, world');
const TEXT_HEADERS = { 'Content-Type': TEXT_TYPE, 'Content-Length': String(TEXT_BODY.length) };
const EMPTY_HEADERS = { 'Content-Length': '0' };
const BINARY_BODY = Buffer.from([0xff, 0xfe, 0x00, 0x01]);
const BINARY_HEADERS = { 'Content-Type': 'application/octet-stream', 'Content-Length': String(BINARY_BODY.length) };
const BADJSON_BODY = Buffer.from('{"unterminated": ');
const BADJSON_HEADERS = { 'Content-Type': JSON_TYPE, 'Content-Length': String(BADJSON_BODY.length) };
const NOTFOUND_BODY = Buffer.from('not found');
const NOTFOUND_HEADERS = { 'Content-Type': TEXT_TYPE, 'Content-Length': String(NOTFOUND_BODY.length) };
const CHUNK = Buffer.alloc(64 * 1024, 'x');

function send(res, status, type, body) {
    const buf = typeof body === 'string' ? Buffer.from(body) : body;
    const headers = { 'Content-Length': String(buf.length) };
    if (type) headers['Content-Type'] = type;
    res.writeHead(status, headers);
    res.end(buf);
}
function sendJson(res, status, value) { send(res, status, JSON_TYPE, JSON.stringify(value)); }
function noBodyStatus(s) { return s === 204 || s === 304 || (s >= 100 && s < 200); }
function validStatus(s) { return Number.isInteger(s) && s >= 200 && s <= 599; }

function parseQuery(q) {
    const out = {};
    if (!q) return out;
    for (const [k, v] of new URLSearchParams(q)) {
        if (!Object.prototype.hasOwnProperty.call(out, k)) out[k] = v;
        else if (Array.isArray(out[k])) out[k].push(v);
        else out[k] = [out[k], v];
    }
    return out;
}
function queryValue(q, name) {
    return q ? new URLSearchParams(q).get(name) : null;
}
function intParam(q, name, dflt) {
    const v = queryValue(q, name);
    if (v === null || v === '') return dflt;
    const n = Number(v);
    return Number.isFinite(n) ? Math.trunc(n) : dflt;
}

// ------------------------------------------------------------------ request handling
function handler(req, res) {
    req.on('error', noop);
    const url = req.url;
    const qi = url.indexOf('?');
    const path = qi < 0 ? url : url.slice(0, qi);
    const query = qi < 0 ? '' : url.slice(qi + 1);

    // statistics endpoints: not counted
    if (path === '/stats' || path === '/keys' || path === '/reset') {
        req.resume();
        req.on('end', () => {
            if (path === '/stats') {
                sendJson(res, 200, {
                    requests,
                    by_path: Object.fromEntries(byPath),
                    keys: keys.size,
                    duplicates,
                    no_key: noKey,
                    in_flight: inFlight,
                    max_in_flight: maxInFlight,
                    connections,
                    max_connections: maxConnections,
                });
            } else if (path === '/keys') {
                sendJson(res, 200, Object.fromEntries(keys));
            } else {
                resetStats();
                sendJson(res, 200, { reset: true });
            }
        });
        return;
    }

    // counted request
    requests++;
    byPath.set(path, (byPath.get(path) || 0) + 1);
    const key = req.headers['idempotency-key'];
    if (key === undefined || key === '') {
        noKey++;
    } else {
        const seen = keys.get(key);
        if (seen === undefined) keys.set(key, 1);
        else { keys.set(key, seen + 1); duplicates++; }
    }
    inFlight++;
    if (inFlight > maxInFlight) maxInFlight = inFlight;
    res.on('close', onResClose);

    if (path === '/ok') {
        req.resume();
        req.on('end', () => {
            res.writeHead(200, OK_HEADERS);
            res.end(OK_BODY);
        });
        return;
    }
    if (path === '/echo' || path === '/flaky' || path === '/delay') {
        // these look at the body (echo) or may answer like /echo
        readBody(req, (body) => respondBodied(req, res, path, query, body));
        return;
    }
    req.resume();
    req.on('end', () => respondSimple(req, res, path, query));
}

function readBody(req, cb) {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => cb(chunks.length === 0 ? null : chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
}

function echo(req, res, path, query, body) {
    let parsed = null;
    if (body !== null && body.length > 0) {
        const text = body.toString('utf8');
        try {
            parsed = JSON.parse(text);
        } catch (e) {
            parsed = text;
        }
    }
    sendJson(res, 200, {
        method: req.method,
        path,
        query: parseQuery(query),
        headers: req.headers,
        body: parsed,
    });
}

function respondBodied(req, res, path, query, body) {
    if (res.destroyed) return;
    if (path === '/echo') return echo(req, res, path, query, body);

    if (path === '/flaky') {
        const fail = intParam(query, 'fail', 0);
        let status = intParam(query, 'status', 500);
        if (!validStatus(status)) status = 500;
        const runId = req.headers['pipeline-run-id'] || '';
        const fk = runId + '\u0000' + path;
        const k = (flaky.get(fk) || 0) + 1;
        flaky.set(fk, k);
        if (k <= fail) {
            if (noBodyStatus(status)) {
                res.writeHead(status);
                res.end();
            } else {
                send(res, status, TEXT_TYPE, `flaky failure ${k} of ${fail}`);
            }
            return;
        }
        return echo(req, res, path, query, body);
    }

    // /delay
    let ms = intParam(query, 'ms', 0);
    if (ms < 0) ms = 0;
    if (ms > 2147483647) ms = 2147483647;
    let status = intParam(query, 'status', 200);
    if (!validStatus(status)) status = 200;
    const reply = () => {
        res.pwTimer = undefined;
        if (res.destroyed) return;
        if (noBodyStatus(status)) {
            res.writeHead(status);
            res.end();
        } else {
            send(res, status, JSON_TYPE, `{"delayed":${ms}}`);
        }
    };
    if (ms === 0) reply();
    else res.pwTimer = setTimeout(reply, ms);
}

function respondSimple(req, res, path, query) {
    if (res.destroyed) return;
    switch (path) {
    case '/deep': {
        const n = intParam(query, 'n', 1);
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end('['.repeat(n) + ']'.repeat(n));
        return;
    }
    case '/bomjson':
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end('\ufeff{"a": 1}');
        return;
    case '/nuljson':
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end('{"a": "\\u0000"}');
        return;
    case '/badutf8json':
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(Buffer.concat([Buffer.from('{"a": "'), Buffer.from([0xff]), Buffer.from('"}')]));
        return;
    case '/utf8error':
        res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' });
        res.end('a' + '\u00e9'.repeat(300));
        return;
    case '/text':
        res.writeHead(200, TEXT_HEADERS);
        res.end(TEXT_BODY);
        return;
    case '/empty':
        res.writeHead(200, EMPTY_HEADERS);
        res.end();
        return;
    case '/binary':
        res.writeHead(200, BINARY_HEADERS);
        res.end(BINARY_BODY);
        return;
    case '/badjson':
        res.writeHead(200, BADJSON_HEADERS);
        res.end(BADJSON_BODY);
        return;
    case '/close':
        req.socket.destroy();
        return;
    case '/huge':
        return huge(res, intParam(query, 'bytes', 0), intParam(query, 'status', 200),
                    queryValue(query, 'chunked') === '1');
    case '/redirect': {
        const to = queryValue(query, 'to');
        if (!to) return send(res, 400, TEXT_TYPE, 'redirect needs ?to=URL');
        let code = intParam(query, 'code', 302);
        if (!Number.isInteger(code) || code < 300 || code > 399) code = 302;
        res.writeHead(code, { Location: to, 'Content-Length': '0' });
        res.end();
        return;
    }
    default:
        break;
    }
    if (path.startsWith('/status/')) {
        const code = Number(path.slice(8));
        if (!validStatus(code)) return send(res, 400, TEXT_TYPE, 'bad status');
        const headers = {};
        const ra = queryValue(query, 'retry_after');
        if (ra !== null) headers['Retry-After'] = ra;
        if (noBodyStatus(code)) {
            res.writeHead(code, headers);
            res.end();
            return;
        }
        const body = Buffer.from(`status ${code} body`);
        headers['Content-Type'] = TEXT_TYPE;
        headers['Content-Length'] = String(body.length);
        res.writeHead(code, headers);
        res.end(body);
        return;
    }
    res.writeHead(404, NOTFOUND_HEADERS);
    res.end(NOTFOUND_BODY);
}

function huge(res, bytes, status, chunked) {
    if (!(bytes > 0)) bytes = 0;
    if (!validStatus(status) || noBodyStatus(status)) status = 200;
    const headers = { 'Content-Type': TEXT_TYPE };
    if (!chunked) headers['Content-Length'] = String(bytes);
    res.writeHead(status, headers);
    let left = bytes;
    const pump = () => {
        while (left > 0) {
            if (res.destroyed) return;
            const n = Math.min(left, CHUNK.length);
            left -= n;
            const ok = res.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n));
            if (!ok && left > 0) {
                res.once('drain', pump);
                return;
            }
        }
        if (!res.destroyed) res.end();
    };
    pump();
}

// ------------------------------------------------------------------ servers
function makeServer() {
    const s = http.createServer({
        keepAliveTimeout: 60000,
        headersTimeout: 65000,
        requestTimeout: 0,
        noDelay: true,
    }, handler);
    s.keepAliveTimeout = 60000;
    s.headersTimeout = 65000;
    s.requestTimeout = 0;
    s.on('connection', onConnection);
    s.on('clientError', (err, socket) => {
        if (socket.writable && err.code !== 'ECONNRESET') {
            socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
        }
        socket.destroy();
    });
    return s;
}

function listen(server, p, host) {
    return new Promise((resolve, reject) => {
        const onError = (err) => reject(err);
        server.once('error', onError);
        server.listen({ port: p, host, backlog: 65535 }, () => {
            server.removeListener('error', onError);
            server.on('error', (err) => process.stderr.write(`server.js: server error: ${err.stack || err}\n`));
            resolve(server.address().port);
        });
    });
}

async function start() {
    for (let attempt = 1; ; attempt++) {
        const servers = [];
        try {
            let p = port;
            for (const host of hosts) {
                const s = makeServer();
                servers.push(s);
                p = await listen(s, p, host);
            }
            return p;
        } catch (err) {
            for (const s of servers) { try { s.close(); } catch (e) { /* not listening */ } }
            // with a random port, a later address may have it taken: try another one
            if (port !== 0 || hosts.length === 1 || err.code !== 'EADDRINUSE' || attempt >= 20) throw err;
        }
    }
}

process.on('uncaughtException', (err) => {
    process.stderr.write(`server.js: uncaught exception: ${err.stack || err}\n`);
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
process.stdout.on('error', noop);

start().then((p) => {
    process.stdout.write(`PORT ${p}\n`);
    process.stderr.write(`server.js: listening on ${hosts.join(', ')} port ${p}\n`);
}, (err) => {
    process.stderr.write(`server.js: cannot listen: ${err.stack || err}\n`);
    process.exit(1);
});
