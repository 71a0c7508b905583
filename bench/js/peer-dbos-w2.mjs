// W2 on DBOS Transact (@dbos-inc/dbos-sdk, bench/README.md, --workflows): the fan-out of DBOS's queue tutorial.
// Started by workflows.mjs with PGDATABASE = the peer's own database (pw_dbos), whose schema w2app holds the application
// tables (sql/w2-peers.sql) and whose schema dbos holds DBOS's system tables.
//   --phase setup  untimed: DBOS.migrate() the system schema; register the two queues (runs: --workers at a time,
//                  squares: --concurrency at a time, both polled every --poll-ms); enqueue one parent workflow w2Run per
//                  pending w2app.runs row with DBOSClient (workflow ID w2-<run id>)
//   --phase run    timed: DBOS.launch() in this process; its queue dispatcher starts the parents; each parent runs
//                  step claim (the run's row: running, attempts + 1), step split ([1..n]), then starts one child
//                  workflow w2Square per element on the squares queue (DBOS.startWorkflow with queueName), awaits the
//                  children's results in order (handle.getResult), step sum, step finish (the run's row: succeeded,
//                  result). A child runs one step, square, that inserts its w2app.squares row and returns x².
//                  The clock runs from launch() until every run's row is succeeded and every workflow (N parents,
//                  N·n children) is SUCCESS in dbos.workflow_status; the result goes to the parent over IPC.
// DBOS polls: the queue dispatcher reads each queue every minPollingIntervalMs, and getResult() of a child polls its
// status every pollingIntervalMs; both default to 1000 ms, which limits a queue to about `concurrency` workflows per
// second. Both are set to --poll-ms (default 10; see bench/README.md).
import pg from 'pg';
import { DBOS, DBOSClient } from '@dbos-inc/dbos-sdk';
import { assertLocal, now, parseArgs, send, sleep, watchdog } from './common.mjs';

const o = parseArgs(process.argv.slice(2), {
  phase: 'run', runs: '200', n: '100', workers: '10', concurrency: '10', 'poll-ms': '10', timeout: '900',
});
const RUNS = Number(o.runs), W = Number(o.workers), C = Number(o.concurrency);
const POLL = Number(o['poll-ms']);
const APP = 'pwbench_w2';
const VERSION = 'pwbench-w2-1';      // fixed, so that the setup's enqueued workflows match the running executor
const SCHEMA = 'dbos';
const RUN_QUEUE = 'w2_runs';
const SQUARE_QUEUE = 'w2_squares';

// DBOS takes a connection URL; the cluster listens on a unix socket only: a URL with a host name for DBOS and the
// socket directory as the host parameter, which node-postgres prefers to the URL's host.
function systemDbUrl() {
  assertLocal();
  const e = process.env;
  const user = encodeURIComponent(e.PGUSER ?? 'postgres');
  const db = encodeURIComponent(e.PGDATABASE ?? 'postgres');
  const port = e.PGPORT ?? '5432';
  const host = e.PGHOST ?? '';
  return host.startsWith('/') ? `postgresql://${user}@localhost:${port}/${db}?host=${encodeURIComponent(host)}`
    : `postgresql://${user}@${host || 'localhost'}:${port}/${db}`;
}
const URL_ = systemDbUrl();

if (o.phase === 'setup') {
  await DBOS.migrate(URL_, { schemaName: SCHEMA });
  const client = await DBOSClient.create({ systemDatabaseUrl: URL_, systemDatabaseSchemaName: SCHEMA, applicationName: APP });
  await client.registerQueue(RUN_QUEUE, { workerConcurrency: W, minPollingIntervalMs: POLL, onConflict: 'always_update' });
  await client.registerQueue(SQUARE_QUEUE, { workerConcurrency: C, minPollingIntervalMs: POLL, onConflict: 'always_update' });
  const db = new pg.Client({ application_name: 'pwbench-dbos-setup' });
  await db.connect();
  const ids = (await db.query(`SELECT id FROM w2app.runs WHERE status = 'pending' ORDER BY id`)).rows.map((r) => Number(r.id));
  await db.end();
  if (ids.length !== RUNS) throw new Error(`${ids.length} pending runs, expected ${RUNS}`);
  // in run id order, a few enqueues at a time (untimed)
  for (let i = 0; i < ids.length; i += 20) {
    await Promise.all(ids.slice(i, i + 20).map((id) => client.enqueue(
      { queueName: RUN_QUEUE, workflowName: 'w2Run', workflowID: `w2-${id}`, appVersion: VERSION }, id)));
  }
  await client.destroy();
  process.exit(0);
}

// ------------------------------------------------------------------ run phase
const app = new pg.Pool({ max: C + 2, application_name: 'pwbench-dbos-app' });
let squaresDone = 0, runsDone = 0;
const errors = [];

const claim = DBOS.registerStep(async (runId) => {
  const r = await app.query(`UPDATE w2app.runs SET status = 'running', attempts = attempts + 1, started_at = clock_timestamp()
                              WHERE id = $1 AND status = 'pending' RETURNING n`, [runId]);
  if (r.rowCount !== 1) throw new Error(`run ${runId} is not pending`);
  return r.rows[0].n;
}, { name: 'claim' });
const split = DBOS.registerStep(async (n) => Array.from({ length: n }, (_, i) => i + 1), { name: 'split' });
const square = DBOS.registerStep(async (runId, idx, x) => {
  await app.query('INSERT INTO w2app.squares (run_id, idx, v) VALUES ($1, $2, $3)', [runId, idx, x * x]);
  squaresDone++;
  return x * x;
}, { name: 'square' });
const sum = DBOS.registerStep(async (values) => values.reduce((a, b) => a + b, 0), { name: 'sum' });
const finish = DBOS.registerStep(async (runId, value) => {
  const r = await app.query(`UPDATE w2app.runs SET status = 'succeeded', result = $2, finished_at = clock_timestamp()
                              WHERE id = $1 AND status = 'running'`, [runId, JSON.stringify({ value })]);
  if (r.rowCount !== 1) throw new Error(`run ${runId}: finish updated ${r.rowCount} rows`);
}, { name: 'finish' });

const w2Square = DBOS.registerWorkflow(async (runId, idx, x) => square(runId, idx, x), { name: 'w2Square' });

DBOS.registerWorkflow(async (runId) => {
  try {
    const n = await claim(runId);
    const items = await split(n);
    const handles = [];
    for (let i = 0; i < items.length; i++) {
      handles.push(await DBOS.startWorkflow(w2Square, { queueName: SQUARE_QUEUE, workflowID: `${DBOS.workflowID}-${i + 1}` })(
        runId, i + 1, items[i]));
    }
    const values = [];
    for (const h of handles) values.push(await h.getResult({ pollingIntervalMs: POLL }));
    const total = await sum(values);
    await finish(runId, total);
    runsDone++;
    return total;
  } catch (e) {
    errors.push(`run ${runId}: ${e.message}`);
    throw e;
  }
}, { name: 'w2Run' });

DBOS.setConfig({
  name: APP,
  systemDatabaseUrl: URL_,
  systemDatabaseSchemaName: SCHEMA,
  applicationVersion: VERSION,
  logLevel: 'warn',
  runMigrations: false,   // done in setup
});

watchdog(Number(o.timeout), 'peer-dbos-w2');
const probe = new pg.Client({ application_name: 'pwbench-dbos-probe' });
await probe.connect();
const count = async (sql) => Number((await probe.query(sql)).rows[0].n);
const t0 = now();
await DBOS.launch();
// done when every run's row is succeeded, then when DBOS has recorded every workflow (the parent's SUCCESS is written
// after its function returned)
while (errors.length === 0 && await count(`SELECT count(*) AS n FROM w2app.runs WHERE status <> 'succeeded'`) > 0) await sleep(50);
while (errors.length === 0 && await count(`SELECT count(*) AS n FROM ${SCHEMA}.workflow_status WHERE status <> 'SUCCESS'`) > 0) {
  await sleep(20);
}
const seconds = (now() - t0) / 1000;
await DBOS.shutdown();
await app.end();
await probe.end();
send({ type: 'result', seconds, squares: squaresDone, runs: runsDone, errors: errors.slice(0, 5) });
process.exit(0);
