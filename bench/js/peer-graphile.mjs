// Peers on graphile-worker 0.18.0 (LISTEN/NOTIFY + SKIP LOCKED job queue in schema graphile_worker).
//
//   --task w1   : one job per W1 run (payload {run_id}); the task claims that run
//                 (UPDATE ... WHERE id = $1 AND status = 'pending'), runs the three steps and the
//                 finish through helpers.query: graphile's get_job + W1's 5 transactions + complete_job
//   --task noop : a no-op task: graphile's own get + complete per job, the queue's upper bound
//   --batched 1 : graphile's documented batching: localQueue.size = 2W, completeJobBatchDelay = 0
//
//   --phase setup : migrate graphile_worker; in drain mode add one job per run (or N noop jobs) in
//                   one addJobs() call. Untimed.
//   --phase run   : --mode drain: start run() with concurrency W (maxPoolSize W + 2), time until N
//                   jobs succeeded AND the queue table is empty (completions committed).
//                   --mode latency: start run(), report 'ready', run until main.mjs sends 'stop'.
import { EventEmitter } from 'node:events';
import pg from 'pg';
import { run, runMigrations, makeWorkerUtils, Logger } from 'graphile-worker';
import { PEER_SQL, executeW1, now, parseArgs, send, sleep, stopSignal, watchdog, connString } from './common.mjs';

const o = parseArgs(process.argv.slice(2),
  { phase: 'run', mode: 'drain', task: 'w1', workers: '10', runs: '0', batched: '0', timeout: '900' });
const W = Number(o.workers);
const N = Number(o.runs);
watchdog(Number(o.timeout), `graphile-${o.task}`);
const dsn = connString();

// Completed jobs are logged at info level by default; keep warnings and errors only.
const logger = new Logger(() => (level, message) => {
  if (level === 'error' || level === 'warning') console.error(`[graphile ${level}] ${message}`);
});

const identifier = o.task === 'noop' ? 'noop' : 'w1';
const taskList = {
  noop: async () => {},
  w1: async (payload, helpers) => {
    const q = (text, params) => helpers.query(text, params);
    const { rows } = await q(PEER_SQL.claimById, [payload.run_id]);
    if (rows.length !== 1) throw new Error(`run ${payload.run_id} is not pending (delivered twice?)`);
    await executeW1(q, rows[0]);
  },
};

async function scalar(sql) {
  const c = new pg.Client({ connectionString: dsn });
  await c.connect();
  try { return Object.values((await c.query(sql)).rows[0])[0]; } finally { await c.end(); }
}

if (o.phase === 'setup') {
  await runMigrations({ connectionString: dsn, logger });
  if (o.mode === 'drain') {
    let specs;
    if (identifier === 'w1') {
      const ids = await scalar('SELECT coalesce(array_agg(id ORDER BY id), \'{}\') FROM w1_peer.runs');
      if (ids.length !== N) throw new Error(`found ${ids.length} runs, expected ${N}`);
      specs = ids.map((id) => ({ identifier, payload: { run_id: Number(id) } }));
    } else {
      specs = Array.from({ length: N }, (_, i) => ({ identifier, payload: { i } }));
    }
    const utils = await makeWorkerUtils({ connectionString: dsn, logger });
    await utils.addJobs(specs);
    await utils.release();
  }
  send({ type: 'result', ok: true });
  process.exit(0);
}

// ---------------------------------------------------------------- run
const events = new EventEmitter();
const succeeded = new Set();
const errors = [];
let target = o.mode === 'drain' ? N : Infinity;
let reached;
const allDone = new Promise((r) => (reached = r));
events.on('job:success', ({ job }) => {
  succeeded.add(String(job.id));
  if (succeeded.size >= target) reached();
});
events.on('job:error', ({ job, error }) => errors.push(`job ${job.id}: ${error?.message}`));

const cpu0 = process.cpuUsage();
const t0 = now();
const runner = await run({
  connectionString: dsn,
  concurrency: W,
  maxPoolSize: W + 2,
  noHandleSignals: true,
  taskList,
  events,
  logger,
  ...(o.batched === '1' && { preset: { worker: { localQueue: { size: 2 * W }, completeJobBatchDelay: 0 } } }),
});

async function queueEmpty() {   // job:success fires before complete_job commits
  const c = new pg.Client({ connectionString: dsn });
  await c.connect();
  try {
    for (;;) {
      const { rows } = await c.query('SELECT count(*)::int AS n FROM graphile_worker._private_jobs');
      if (rows[0].n === 0) return;
      await sleep(2);
    }
  } finally { await c.end(); }
}

if (o.mode === 'latency') {
  send({ type: 'ready' });
  await stopSignal();          // main.mjs has seen every submitted run succeed
  await queueEmpty();
} else {
  await Promise.race([allDone, runner.promise]);
  await queueEmpty();
}
const seconds = (now() - t0) / 1000;
await runner.stop();
const cpu = process.cpuUsage(cpu0);
send({ type: 'result', seconds, done: succeeded.size, errors: errors.slice(0, 3), nerrors: errors.length,
       client_cpu_s: (cpu.user + cpu.system) / 1e6 });
process.exit(0);
