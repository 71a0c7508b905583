// Latency-mode submitter: one connection runs --sql (with $1 = the run's input value 1, 2, ...)
// every 1000/--rate ms for --duration s, open loop: each submission is due at t0 + i/rate whatever
// the previous ones took; a late one is sent at once and the lag is reported, the schedule does
// not shift. Reports {submitted, seconds, max_lag_ms, p99_lag_ms, commits}: commits lists, per submission,
// [the id --sql returned, the wall-clock time (epoch ms) at which its autocommit returned, the transaction id
// --sql returned as its second column (or null)] -- the start of "create_run commit -> run finished".
import { connect, now, parseArgs, send, sleep, watchdog } from './common.mjs';

const o = parseArgs(process.argv.slice(2), { rate: '100', duration: '30', sql: '', timeout: '900' });
if (!o.sql) throw new Error('--sql is required');
const rate = Number(o.rate);
const durationMs = Number(o.duration) * 1000;
watchdog(Number(o.timeout), 'submit');

const c = await connect('pwbench-submit');
const lags = [];
const commits = [];
const t0 = now();
let i = 0;
for (;;) {
  const due = (i * 1000) / rate;
  if (due >= durationMs) break;
  const wait = t0 + due - now();
  if (wait > 0) await sleep(wait);
  lags.push(Math.max(0, now() - (t0 + due)));
  const res = await c.query({ name: 'submit', text: o.sql, values: [i + 1], rowMode: 'array' });
  const row = res.rows?.[0] ?? [];
  commits.push([Number(row[0]), performance.timeOrigin + performance.now(), row[1] == null ? null : String(row[1])]);
  i++;
}
const seconds = (now() - t0) / 1000;
await c.end();
lags.sort((a, b) => a - b);
send({ type: 'result', submitted: i, seconds, max_lag_ms: lags.at(-1) ?? 0,
       p99_lag_ms: lags[Math.floor(0.99 * (lags.length - 1))] ?? 0, commits });
process.exit(0);
