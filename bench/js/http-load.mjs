// Load generator for `run.sh --http` figure "http endpoint alone": the HTTP endpoint's own capacity,
// with no database involved. Node built-ins only. --concurrency loops share one keep-alive
// http.Agent (maxSockets = --concurrency); each loop POSTs a small JSON body (about the size of a
// step context) to --url with a unique Idempotency-Key, reads the whole answer and sends the next
// request, until --requests requests are answered (after --warmup untimed ones: Node's JIT).
// Reports {requests, seconds, req_per_s, errors, first_error, client_cpu_s} over IPC.
import http from 'node:http';
import { now, parseArgs, send, watchdog } from './common.mjs';

const o = parseArgs(process.argv.slice(2), { url: '', requests: '20000', warmup: '2000', concurrency: '64', timeout: '300' });
if (!o.url) throw new Error('--url is required');
const url = new URL(o.url);
const N = Number(o.requests);
const WARMUP = Number(o.warmup);
const C = Number(o.concurrency);
watchdog(Number(o.timeout), 'http-load');

const agent = new http.Agent({ keepAlive: true, maxSockets: C });
let errors = 0;
let firstError = '';

function request(i) {
  const body = JSON.stringify({ run_id: i, position: 1, attempt: 1, input: {}, prev: {}, steps: {} });
  return new Promise((resolve) => {
    const req = http.request({
      agent, host: url.hostname, port: url.port, path: url.pathname + url.search, method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body),
        'Idempotency-Key': `load:${i}` },
    }, (res) => {
      res.on('data', () => {});
      res.on('end', () => {
        if (res.statusCode !== 200) { errors++; firstError ||= `status ${res.statusCode}`; }
        resolve();
      });
      res.on('error', (e) => { errors++; firstError ||= e.message; resolve(); });
    });
    req.on('error', (e) => { errors++; firstError ||= e.message; resolve(); });
    req.end(body);
  });
}

async function phase(from, count) {
  let next = from;
  const end = from + count;
  const loop = async () => { while (next < end) await request(next++); };
  await Promise.all(Array.from({ length: Math.min(C, count) }, loop));
}

await phase(1, WARMUP);
const cpu0 = process.cpuUsage();
const t0 = now();
await phase(WARMUP + 1, N);
const seconds = (now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
agent.destroy();
send({ type: 'result', requests: N, warmup: WARMUP, seconds, req_per_s: N / seconds, errors, first_error: firstError,
       client_cpu_s: (cpu.user + cpu.system) / 1e6 });
process.exit(0);
