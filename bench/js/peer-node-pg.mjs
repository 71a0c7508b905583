// Peer "node-pg": the plain Node worker pool a team would write without an extension.
// A pg.Pool of W connections; W async worker loops, each holding one connection. A loop claims the
// oldest pending run with FOR UPDATE SKIP LOCKED, runs the three W1 steps in JS (one INSERT each)
// and marks the run succeeded: five autocommit transactions per run.
//
//   --mode drain   : loops exit when a claim finds nothing; reports the time from creating the pool
//                    to the last finish (forked by main.mjs; result over IPC)
//   --mode latency : loops sleep --poll-ms after an empty claim and run until main.mjs sends 'stop'
import pg from 'pg';
import { PEER_SQL, executeW1, now, parseArgs, send, sleep, stopSignal, watchdog, assertLocal } from './common.mjs';

const o = parseArgs(process.argv.slice(2), { mode: 'drain', workers: '10', 'poll-ms': '50', timeout: '900' });
const W = Number(o.workers);
const pollMs = Number(o['poll-ms']);
watchdog(Number(o.timeout), 'node-pg');
assertLocal();

let stopping = false;
let done = 0;
const errors = [];

async function workerLoop(pool) {
  const c = await pool.connect();
  const q = (text, params) => c.query(text, params);
  try {
    for (;;) {
      const { rows } = await q(PEER_SQL.claimNext);
      if (rows.length === 0) {
        if (o.mode === 'drain' || stopping) return;
        await sleep(pollMs);
        continue;
      }
      await executeW1(q, rows[0]);
      done++;
    }
  } catch (e) {
    errors.push(e.message);
  } finally {
    c.release();
  }
}

const cpu0 = process.cpuUsage();
const t0 = now();
const pool = new pg.Pool({ max: W, application_name: 'pwbench-node-pg' });
const loops = Array.from({ length: W }, () => workerLoop(pool));
if (o.mode === 'latency') {
  send({ type: 'ready' });
  await stopSignal();
  stopping = true;
}
await Promise.all(loops);
const seconds = (now() - t0) / 1000;
await pool.end();
const cpu = process.cpuUsage(cpu0);
send({ type: 'result', seconds, done, errors: errors.slice(0, 3), nerrors: errors.length,
       client_cpu_s: (cpu.user + cpu.system) / 1e6 });
process.exit(0);
