// W2 on pgflow (@pgflow/core's SQL on pgmq, bench/README.md, --workflows): flow w2 = split -> square (map step) -> sum,
// executed by Node worker loops that make the SQL calls pgflow's own worker (@pgflow/edge-worker) makes. Started by
// workflows.mjs with PGDATABASE = the peer's own database (pw_pgflow), which holds pgmq (SQL-only install), the
// realtime stand-in, pgflow's schema (@pgflow/core's migrations) and the application tables (schema w2app).
//   --phase setup  untimed: create the flow with pgflow's stock options (create_flow, add_step x 3, the square step
//                  with step_type => 'map'), then start_flow('w2', {"run_id": id, "n": n}) per pending w2app.runs row
//   --phase run    timed: --loops worker loops, each registered in pgflow.workers with its own connection, each doing
//                  what pgflow's worker does per batch: pgmq.read_with_poll(queue, vt 2 s, up to --batch messages,
//                  wait up to 2 s, checking every 100 ms) -> pgflow.start_tasks(flow, msg_ids, worker_id) -> the
//                  batch's handlers at once, each followed by pgflow.complete_task (or fail_task) -> the next batch
//                  once the whole batch is done. Handlers and completions use a pg.Pool of --loops x --batch.
//                  Handlers: split claims the run's row (running, attempts + 1) and returns [1..n]; square (one task
//                  per element, input = the element) inserts its w2app.squares row and returns x²; sum gets
//                  {"run": ..., "square": [...]} (pgflow gathers the map's outputs in task order), adds them and
//                  finishes the run's row. The clock runs from starting the loops until every run's row is succeeded
//                  and every flow run is completed in pgflow.runs; the result goes to the parent over IPC.
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { now, parseArgs, send, sleep, watchdog } from './common.mjs';

const o = parseArgs(process.argv.slice(2), {
  phase: 'run', runs: '200', n: '100', loops: '1', batch: '10', timeout: '900',
});
const RUNS = Number(o.runs), LOOPS = Number(o.loops), BATCH = Number(o.batch);
const FLOW = 'w2';
// pgflow's worker defaults (createFlowWorker): visibilityTimeout 2 s, maxPollSeconds 2, pollIntervalMs 100
const VT = 2, MAX_POLL_S = 2, POLL_MS = 100;

if (o.phase === 'setup') {
  const c = new pg.Client({ application_name: 'pwbench-pgflow-setup' });
  await c.connect();
  await c.query(`SELECT pgflow.create_flow($1)`, [FLOW]);
  await c.query(`SELECT pgflow.add_step($1, 'split')`, [FLOW]);
  await c.query(`SELECT pgflow.add_step($1, 'square', ARRAY['split'], step_type => 'map')`, [FLOW]);
  await c.query(`SELECT pgflow.add_step($1, 'sum', ARRAY['square'])`, [FLOW]);
  const runs = (await c.query(`SELECT id, n FROM w2app.runs WHERE status = 'pending' ORDER BY id`)).rows;
  if (runs.length !== RUNS) throw new Error(`${runs.length} pending runs, expected ${RUNS}`);
  for (const r of runs) {
    await c.query('SELECT run_id FROM pgflow.start_flow($1, $2::jsonb)', [FLOW, { run_id: Number(r.id), n: r.n }]);
  }
  await c.end();
  process.exit(0);
}

// ------------------------------------------------------------------ run phase
const pool = new pg.Pool({ max: LOOPS * BATCH, application_name: 'pwbench-pgflow-app' });
// a map task's input is its element alone: the application run behind each flow run, read before the clock starts
const appRun = new Map();
for (const r of (await pool.query(`SELECT run_id, (input->>'run_id')::bigint AS id FROM pgflow.runs`)).rows) {
  appRun.set(r.run_id, Number(r.id));
}
let squaresDone = 0, runsDone = 0;
const errors = [];

const handlers = {
  async split(input) {
    const r = await pool.query(`UPDATE w2app.runs SET status = 'running', attempts = attempts + 1, started_at = clock_timestamp()
                                 WHERE id = $1 AND status = 'pending' RETURNING n`, [input.run.run_id]);
    if (r.rowCount !== 1) throw new Error(`run ${input.run.run_id} is not pending`);
    return Array.from({ length: r.rows[0].n }, (_, i) => i + 1);
  },
  async square(x, task) {
    await pool.query('INSERT INTO w2app.squares (run_id, idx, v) VALUES ($1, $2, $3)',
      [appRun.get(task.run_id), task.task_index + 1, x * x]);
    squaresDone++;
    return x * x;
  },
  async sum(input) {
    const total = input.square.reduce((a, b) => a + b, 0);
    const r = await pool.query(`UPDATE w2app.runs SET status = 'succeeded', result = $2, finished_at = clock_timestamp()
                                 WHERE id = $1 AND status = 'running'`, [input.run.run_id, JSON.stringify({ value: total })]);
    if (r.rowCount !== 1) throw new Error(`run ${input.run.run_id}: finish updated ${r.rowCount} rows`);
    runsDone++;
    return { value: total };
  },
};

async function execute(task) {
  try {
    const out = await handlers[task.step_slug](task.input, task);
    await pool.query('SELECT pgflow.complete_task($1::uuid, $2::text, $3::int, $4::jsonb)',
      [task.run_id, task.step_slug, task.task_index, JSON.stringify(out)]);
  } catch (e) {
    errors.push(`${task.step_slug}[${task.task_index}]: ${e.message}`);
    await pool.query('SELECT pgflow.fail_task($1::uuid, $2::text, $3::int, $4::text)',
      [task.run_id, task.step_slug, task.task_index, e.message]).catch(() => {});
  }
}

let stopping = false;
async function workerLoop() {
  const c = new pg.Client({ application_name: 'pwbench-pgflow-worker' });
  await c.connect();
  const workerId = randomUUID();
  await c.query(`INSERT INTO pgflow.workers (worker_id, queue_name, function_name) VALUES ($1, $2, 'pwbench-w2')`,
    [workerId, FLOW]);
  try {
    while (!stopping) {
      const msgs = (await c.query('SELECT msg_id FROM pgmq.read_with_poll($1, $2, $3, $4, $5)',
        [FLOW, VT, BATCH, MAX_POLL_S, POLL_MS])).rows;
      if (msgs.length === 0) continue;
      const tasks = (await c.query('SELECT * FROM pgflow.start_tasks($1, $2::bigint[], $3::uuid)',
        [FLOW, msgs.map((m) => m.msg_id), workerId])).rows;
      await Promise.all(tasks.map(execute));
    }
  } finally {
    await c.end();
  }
}

watchdog(Number(o.timeout), 'peer-pgflow-w2');
const probe = new pg.Client({ application_name: 'pwbench-pgflow-probe' });
await probe.connect();
const count = async (sql) => Number((await probe.query(sql)).rows[0].n);
const t0 = now();
const loops = Array.from({ length: LOOPS }, workerLoop);
while (errors.length === 0 && await count(`SELECT count(*) AS n FROM w2app.runs WHERE status <> 'succeeded'`) > 0) await sleep(50);
while (errors.length === 0 && await count(`SELECT count(*) AS n FROM pgflow.runs WHERE status <> 'completed'`) > 0) await sleep(20);
const seconds = (now() - t0) / 1000;
stopping = true;
await Promise.all(loops);   // each ends after its current read (up to 2 s)
await pool.end();
await probe.end();
send({ type: 'result', seconds, squares: squaresDone, runs: runsDone, errors: errors.slice(0, 5) });
process.exit(0);
