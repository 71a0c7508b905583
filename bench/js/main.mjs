// Orchestrator of the pipeline_worker benchmark (started by run.sh against its throwaway cluster).
// Runs workload W1 on the extension and on the peers, verifies every timed run, prints one result
// line per figure on stdout (everything else goes to stderr) and, for --mode sweep, writes charts.
// See ../README.md for what each mode measures.
import { fork, execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CLK_TCK, clusterCpu, connect, cpuJiffies, fmt, hostBusyPct, NCPU, now, parseArgs, procMem, procStat, sleep,
} from './common.mjs';
import { steadyMode } from './steady.mjs';
import { flowMode } from './flow.mjs';
import { opsMode } from './ops.mjs';
import { workflowsMode } from './workflows.mjs';
import { httpLive } from './http_live.mjs';
import { floorCols, startFloor } from './floor.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BENCH = path.dirname(HERE);

// A usage error: message and exit 2 (run.sh then removes the unused cluster).
function usage(msg) {
  process.stderr.write(`main.mjs: ${msg}\n`);
  process.exit(2);
}

const o = parseArgs(process.argv.slice(2), {
  mode: 'drain', runs: '10000', workers: '10', peers: 'all', 'pw-configs': 'default,strict',
  'step-lang': 'plpgsql', rate: '100', duration: '30', 'poll-ms': '50', reps: '1',
  'quiet-wait': '60', 'quiet-pct': '15', timeout: '900', 'soak-runs': '200000', 'soak-batch': '10000',
  'sweep-workers': '1,2,4,10', out: path.join(BENCH, 'out'), pgdata: '', pglog: '', pgbin: '/usr/lib/postgresql/15/bin',
  'as-pg': '0', 'stall-timeout': '120', 'http-runs': '20000', 'http-figures': 'endpoint,live,drain,delay,inflight,latency',
  'http-endpoint': 'cpp', 'scale-backlogs': '10000,100000,1000000', 'steady-seconds': '1200', 'steady-backlog': '5000',
  'flow-future': '1000000', 'flow-figures': 'all', 'ops-figures': 'all', 'ops-history': '1000000',
  'ops-db-runs': '20000', 'ops-retention-history': '0', 'steady-retention': '', 'steady-submit': 'create_runs',
  'pg-setting': '',   // (run.sh --pg-setting: already in postgresql.conf; here for the results header only)
  'hold-snapshot': '0',
});
const N = Number(o.runs);
const W = Number(o.workers);
const REPS = Number(o.reps);
const TIMEOUT = Number(o.timeout);
const PIPELINE = o['step-lang'] === 'sql' ? 'w1_sql' : 'w1';
for (const [k, v] of Object.entries({ runs: N, workers: W, reps: REPS, timeout: TIMEOUT,
  rate: Number(o.rate), duration: Number(o.duration), 'http-runs': Number(o['http-runs']) })) {
  if (!Number.isInteger(v) || v < 1) usage(`--${k} must be a positive integer`);
}
if (!['plpgsql', 'sql'].includes(o['step-lang'])) usage('--step-lang must be plpgsql or sql');

// ------------------------------------------------------------------ runners

// pipeline_worker configurations (GUCs applied with ALTER SYSTEM + reload before each timed run)
const PW_CONFIGS = {
  // the extension's defaults: claim up to 8 runs per claim transaction, keep consecutive steps
  // of a run in one transaction for up to 10 ms (so W1's steps usually share one commit)
  default: { 'pipeline_worker.claim_batch': null, 'pipeline_worker.commit_interval_ms': null },
  // closest to W1's five commits per run: claim one run per transaction, commit after every step
  // (the last step and the run's finish still share one commit: 4 commits per run)
  strict: { 'pipeline_worker.claim_batch': '1', 'pipeline_worker.commit_interval_ms': '0' },
};
const pwConfigs = o['pw-configs'] === 'none' ? [] : o['pw-configs'].split(',');
for (const c of pwConfigs) if (!PW_CONFIGS[c]) usage(`unknown --pw-configs entry ${c} (default, strict)`);

const PEERS = {
  'node-pg': { latency: true, w1: true },
  'graphile-3step': { latency: true, w1: true, task: 'w1' },
  'graphile-noop': { task: 'noop' },
  'graphile-noop-batched': { task: 'noop', batched: true },
  'plpgsql-floor': { w1: true },
  'graphile-3step-batched': { w1: true, task: 'w1', batched: true },
};
const ALL_PEERS = Object.keys(PEERS);
let peers = o.peers === 'all' ? ALL_PEERS : o.peers === 'none' ? [] : o.peers.split(',');
for (const p of peers) if (!PEERS[p]) usage(`unknown peer ${p} (known: ${ALL_PEERS.join(', ')}, all, none)`);

// ------------------------------------------------------------------ database helpers

const ctl = await connect('pwbench-ctl');
ctl.on('error', (e) => log(`control connection error: ${e.message}`));
const q = async (sql, params) => (await ctl.query(sql, params)).rows;
const val = async (sql, params) => {
  const rows = await q(sql, params);
  return rows.length ? Object.values(rows[0])[0] : null;
};
const log = (msg) => process.stderr.write(`[bench] ${msg}\n`);
const results = [];
const outLines = [];
function emit(line) {
  console.log(line);
  outLines.push(line);
}
function emitHeader(line) {   // context for the results file; stderr only
  process.stderr.write(`${line}\n`);
  outLines.push(line);
}

// 'ok' or the problems reported by a verify function (an error in the check itself is a problem too).
async function check(fn, n) {
  try {
    return await val(`SELECT ${fn}($1)`, [n]);
  } catch (e) {
    return `verify_error: ${e.message}`;
  }
}

async function runSqlFile(name) {
  await ctl.query(fs.readFileSync(path.join(BENCH, 'sql', name), 'utf8'));
}

async function runSqlFileOn(client, name) {
  await client.query(fs.readFileSync(path.join(BENCH, 'sql', name), 'utf8'));
}

async function workerCount() {
  return Number(await val("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'"));
}

async function workerPids() {
  return (await q("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' ORDER BY pid"))
    .map((r) => r.pid);
}

async function reload() {
  await q('SELECT pg_reload_conf()');
}

// Set pipeline_worker.workers and wait (up to 30 s) until that many worker backends exist.
async function setWorkers(n) {
  await q(`ALTER SYSTEM SET pipeline_worker.workers = ${Number(n)}`);
  await reload();
  const t = now();
  for (;;) {
    const c = await workerCount();
    if (c === n) return;
    if (now() - t > 30000) throw new Error(`pipeline_worker.workers=${n}: ${c} workers after 30 s`);
    await sleep(50);
  }
}

async function applyConfig(name) {
  for (const [k, v] of Object.entries(PW_CONFIGS[name])) {
    await q(v == null ? `ALTER SYSTEM RESET ${k}` : `ALTER SYSTEM SET ${k} = ${v}`);
  }
  await reload();
  await sleep(200); // let the launcher/workers process the SIGHUP
}

async function configDesc() {
  return `claim_batch=${await val('SHOW pipeline_worker.claim_batch')} ` +
    `commit_interval_ms=${(await val('SHOW pipeline_worker.commit_interval_ms')).replace(/ms$/, '')}`;
}

async function insertRuns(from, to) {
  await q(`SELECT count(pipeline_worker.create_run($1, jsonb_build_object('value', g)))
             FROM generate_series($2::int, $3::int) AS g`, [PIPELINE, from, to]);
}

// Cheap progress probe: both counts come from the partial indexes on status.
const PW_LEFT = `SELECT (SELECT count(*) FROM pipeline_worker.runs WHERE status = 'pending')
                      + (SELECT count(*) FROM pipeline_worker.runs WHERE status = 'running') AS n`;

// Poll `sql` (one count) until it is 0. Fails after timeoutS, or after --stall-timeout s without
// any change of the count (a stuck runner should not hold the benchmark for the full timeout);
// `diagnose` (optional) is logged when the count has not moved for 10 s and when giving up.
async function waitZero(sql, timeoutS, everyMs = 20, diagnose = null) {
  const t = now();
  const stallS = Number(o['stall-timeout']);
  let last = NaN;
  let lastChange = now();
  let reported = 0;
  for (;;) {
    const n = Number(await val(sql));
    if (n === 0) return (now() - t) / 1000;
    if (n !== last) { last = n; lastChange = now(); reported = 0; }
    const still = (now() - lastChange) / 1000;
    if (diagnose && still >= 10 && reported === 0) { reported = 1; await diagnose(n, still); }
    if (now() - t > timeoutS * 1000 || still > stallS) {
      if (diagnose) await diagnose(n, still);
      throw new Error(still > stallS ? `stalled: ${n} left, no progress for ${Math.round(still)} s`
                                     : `timeout: ${n} left after ${timeoutS} s`);
    }
    // The count itself scans the partial indexes: with a large backlog, polling every 20 ms would take a good part
    // of a core from the runner measured. Timed figures come from server timestamps, not from the poll.
    await sleep(n > 20000 ? Math.max(everyMs, 500) : everyMs);
  }
}

// What the extension is doing when runs stop finishing: the unfinished runs and the workers.
async function pwDiagnose(n, still) {
  try {
    log(`${n} runs unfinished, no progress for ${Math.round(still)} s. Unfinished runs (up to 10):`);
    for (const r of await q(`SELECT id, status, worker_pid, started_at, not_before, now() - created_at AS age
                               FROM pipeline_worker.runs WHERE status IN ('pending', 'running')
                              ORDER BY id LIMIT 10`)) log(`  ${JSON.stringify(r)}`);
    log('workers (pg_stat_activity):');
    for (const r of await q(`SELECT pid, state, wait_event_type, wait_event, left(query, 80) AS query, xact_start
                               FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' ORDER BY pid`)) {
      log(`  ${JSON.stringify(r)}`);
    }
    const w = await q('SELECT * FROM pipeline_worker.workers()').catch(() => []);
    if (w.length) log(`pipeline_worker.workers(): ${JSON.stringify(w)}`);
  } catch (e) {
    log(`diagnosis failed: ${e.message}`);
  }
}

// Same starting point for every timed run: fresh statistics, no checkpoint pending, and (waiting up
// to --quiet-wait s) a machine whose CPUs are at most --quiet-pct % busy. Returns that busy %.
async function settle() {
  await q('VACUUM (ANALYZE)');
  await q('CHECKPOINT');
  const deadline = now() + Number(o['quiet-wait']) * 1000;
  let busy = await hostBusyPct();
  while (busy > Number(o['quiet-pct']) && now() < deadline) busy = await hostBusyPct();
  return busy;
}

// WAL position, server log size and CPU counters at one instant.
async function mark() {
  return {
    lsn: await val('SELECT pg_current_wal_lsn()::text'),
    logSize: o.pglog && fs.existsSync(o.pglog) ? fs.statSync(o.pglog).size : 0,
    cpu: cpuJiffies(),
    t: now(),
  };
}


// Commits, WAL volume, whole-machine CPU and server log problems between two marks.
async function between(m0, m1, n) {
  const walBytes = Number(await val('SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)', [m1.lsn, m0.lsn]));
  let commits = NaN;
  if (o.pgdata && walBytes > 0) {
    try {
      const cmd = [path.join(o.pgbin, 'pg_waldump'), '-p', path.join(o.pgdata, 'pg_wal'), '-s', m0.lsn, '-e', m1.lsn,
        '--stats=record'];
      const out = o['as-pg'] === '1'
        ? execFileSync('runuser', ['-u', 'postgres', '--', ...cmd], { cwd: '/tmp', timeout: 120000, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
        : execFileSync(cmd[0], cmd.slice(1), { timeout: 120000, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      const m = out.match(/^Transaction\/COMMIT\s+(\d+)/m);
      commits = m ? Number(m[1]) : 0;
    } catch (e) {
      log(`pg_waldump failed (commit count unavailable): ${String(e.stderr || e.message).split('\n')[0]}`);
    }
  }
  let problems = [];
  if (o.pglog && fs.existsSync(o.pglog)) {
    const fd = fs.openSync(o.pglog, 'r');
    const len = Math.max(0, m1.logSize - m0.logSize);
    const buf = Buffer.alloc(Math.min(len, 16 * 1024 * 1024));
    fs.readSync(fd, buf, 0, buf.length, m0.logSize);
    fs.closeSync(fd);
    problems = buf.toString('utf8').split('\n')
      .filter((l) => /(ERROR|FATAL|PANIC):|terminated by signal|exited with exit code/.test(l));
    for (const l of problems.slice(0, 5)) log(`server log: ${l}`);
  }
  const busyJ = m1.cpu[0] - m0.cpu[0];
  return {
    commits_per_run: commits / n,
    wal_kb_per_run: walBytes / 1024 / n,
    cpu_ms_per_run: ((busyJ / CLK_TCK) * 1000) / n,
    log_errors: problems.length,
  };
}

// Fork a child driver. stdout/stderr of the child go to our stderr; results come over IPC.
function runChild(script, args, timeoutS = TIMEOUT + 60) {
  const child = fork(path.join(HERE, script), args.map(String), { stdio: ['ignore', 2, 2, 'ipc'] });
  let result = null;
  let readyResolve;
  const ready = new Promise((r) => (readyResolve = r));
  child.on('message', (m) => {
    if (m?.type === 'ready') readyResolve(true);
    if (m?.type === 'result') result = m;
  });
  const timer = setTimeout(() => {
    log(`${script}: no result after ${timeoutS} s, killing it`);
    child.kill('SIGKILL');
  }, timeoutS * 1000);
  const done = new Promise((resolve) => child.on('exit', (code, sig) => {
    clearTimeout(timer);
    readyResolve(false);
    resolve({ code, sig, result });
  }));
  return { child, ready, done };
}

async function childResult(script, args, timeoutS) {
  const { done } = runChild(script, args, timeoutS);
  const r = await done;
  if (r.code !== 0 || !r.result) throw new Error(`${script} ${args.join(' ')} failed (exit ${r.code ?? r.sig})`);
  return r.result;
}

function latencyCols(p) {
  return `p50_ms=${fmt(p.p50)} p90_ms=${fmt(p.p90)} p99_ms=${fmt(p.p99)} max_ms=${fmt(p.max)}`;
}

const CURVE = [0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999];
async function latencies(table) {
  const r = (await q(`SELECT percentile_cont($1::float8[]) WITHIN GROUP (ORDER BY ms) AS pc, max(ms) AS max
                        FROM (SELECT extract(epoch FROM finished_at - created_at) * 1000 AS ms
                                FROM ${table} WHERE finished_at IS NOT NULL) s`, [CURVE]))[0];
  const pc = (r.pc ?? []).map(Number);
  return { p50: pc[2], p90: pc[4], p99: pc[6], max: Number(r.max), curve: pc };
}

// The issue's measure, "create_run commit -> run finished": from the commit timestamp of the submitter's
// transaction (its xid is returned by the submitting statement) to the commit timestamp of the transaction that
// finished the run (the xmin of the run's final row version). Both are stamped the same way by the server, just
// before each commit's WAL flush (track_commit_timestamp = on in latency modes). created_at, by contrast, is
// stamped when the submitter's transaction starts.
async function commitLatencies(table, commits) {
  const c = (commits ?? []).filter((x) => x[2] != null);
  if (!c.length) return null;
  const rows = await q(`SELECT extract(epoch FROM pg_catalog.pg_xact_commit_timestamp(r.xmin)
                                 - pg_catalog.pg_xact_commit_timestamp(u.x::text::xid)) * 1000 AS ms
                          FROM ${table} r JOIN unnest($1::bigint[], $2::bigint[]) AS u(id, x) ON r.id = u.id
                         WHERE r.finished_at IS NOT NULL ORDER BY 1`,
                       [c.map((x) => x[0]), c.map((x) => x[2])]);
  const ms = rows.map((r) => Number(r.ms)).filter((x) => !Number.isNaN(x));
  if (!ms.length) return null;
  const at = (p) => ms[Math.min(ms.length - 1, Math.floor(p * (ms.length - 1)))];
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: ms.at(-1) };
}

// --hold-snapshot 1: another session keeps a snapshot (its xmin) for the whole of each timed drain, as a long report,
// pg_dump or a client idle in a transaction does. It touches no table (no lock: the setups' TRUNCATE goes on).
// Returns the function that ends it (and says whether it was held throughout).
async function holdSnapshot() {
  if (o['hold-snapshot'] !== '1') return async () => '';
  const c = await connect('pwbench-held-snapshot');
  await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
  const pid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
  return async () => {
    const held = (await q('SELECT backend_xmin IS NOT NULL AS held FROM pg_stat_activity WHERE pid = $1', [pid]))[0];
    await c.query('ROLLBACK');
    await c.end();
    return held?.held ? ' snapshot_held=yes' : ' snapshot_held=LOST';
  };
}

// ------------------------------------------------------------------ pipeline_worker runs

// The timed part of every extension drain: the clock starts (m0, and the server clock t0srv) just before
// `workers = W` + reload, then the runs left are polled until none. `error` is the poll's failure, if any.
async function timedWorkers(w) {
  const m0 = await mark();
  const t0srv = await val('SELECT clock_timestamp()::text');
  await q(`ALTER SYSTEM SET pipeline_worker.workers = ${w}`);
  await reload();
  let error = null;
  try {
    await waitZero(PW_LEFT, TIMEOUT, 20, pwDiagnose);
  } catch (e) {
    error = e.message;
  }
  return { m0, t0srv, error, pollSeconds: (now() - m0.t) / 1000 };
}

const failText = (msg) => `FAIL(${msg.replace(/\s+/g, '_')})`;

async function pwDrain(cfg, n, w) {
  await setWorkers(0);
  await applyConfig(cfg);
  const desc = await configDesc();
  await q('TRUNCATE pipeline_worker.run_steps, pipeline_worker.runs RESTART IDENTITY');
  await insertRuns(1, n);
  const busyBefore = await settle();
  log(`pipeline_worker/${cfg} (${desc}) drain: ${n} runs, ${w} workers`);
  const release = await holdSnapshot();
  const { m0, t0srv, error, pollSeconds } = await timedWorkers(w);
  const held = await release();
  let verified = error ? failText(error) : 'ok';
  const m1 = await mark();
  const busyAfter = await hostBusyPct();
  const t = (await q(`SELECT extract(epoch FROM max(finished_at) - $1::timestamptz) AS secs,
                             extract(epoch FROM min(started_at) - $1::timestamptz) * 1000 AS first_ms,
                             count(DISTINCT worker_pid) AS used
                        FROM pipeline_worker.runs`, [t0srv]))[0];
  await setWorkers(0);
  if (verified === 'ok') {
    const v = await check('pwbench.verify', n);
    if (v !== 'ok') verified = failText(v);
  }
  const x = await between(m0, m1, n);
  const seconds = Number(t.secs);
  const rec = { runner: 'pipeline_worker', config: cfg, mode: 'drain', workers: w, runs: n, seconds,
    rps: n / seconds, verified, ...x };
  results.push(rec);
  emit(`runner=pipeline_worker config=${cfg} mode=drain runs=${n} workers=${w} seconds=${fmt(seconds, 3)} ` +
    `runs_per_s=${fmt(rec.rps)} poll_seconds=${fmt(pollSeconds, 3)} first_claim_ms=${fmt(Number(t.first_ms))} ` +
    `workers_used=${t.used} commits_per_run=${fmt(x.commits_per_run, 2)} wal_kb_per_run=${fmt(x.wal_kb_per_run, 2)} ` +
    `cpu_ms_per_run=${fmt(x.cpu_ms_per_run, 3)} ${desc} steps=${o['step-lang']} so=${BUILD.so} verified=${verified} ` +
    `log_errors=${x.log_errors} host_busy_pct=${busyBefore}/${busyAfter}${held}`);
  return rec;
}

async function pwLatency(cfg, w) {
  await setWorkers(0);
  await applyConfig(cfg);
  const desc = await configDesc();
  await q('TRUNCATE pipeline_worker.run_steps, pipeline_worker.runs RESTART IDENTITY');
  await setWorkers(w);
  const busyBefore = await settle();
  log(`pipeline_worker/${cfg} (${desc}) latency: ${o.rate} runs/s for ${o.duration} s, ${w} workers`);
  const m0 = await mark();
  let verified = 'ok';
  // the floor, side by side: a bare INSERT's commit latency at the same rate, during the same seconds
  const floorDone = startFloor({ pgbin: o.pgbin, rate: o.rate, seconds: o.duration, q, log });
  const sub = await childResult('submit.mjs', ['--rate', o.rate, '--duration', o.duration, '--timeout', TIMEOUT,
    '--sql', `SELECT pipeline_worker.create_run('${PIPELINE}', jsonb_build_object('value', $1::int)),`
             + ' pg_catalog.xid(pg_catalog.pg_current_xact_id())::text']);
  try {
    await waitZero(PW_LEFT, TIMEOUT, 20, pwDiagnose);
  } catch (e) {
    verified = failText(e.message);
  }
  const m1 = await mark();
  const busyAfter = await hostBusyPct();
  await setWorkers(0);
  if (verified === 'ok') {
    const v = await check('pwbench.verify', sub.submitted);
    if (v !== 'ok') verified = failText(v);
  }
  const lat = await latencies('pipeline_worker.runs');
  const clat = await commitLatencies('pipeline_worker.runs', sub.commits);
  const floor = await floorDone;
  const x = await between(m0, m1, sub.submitted);
  const rec = { runner: 'pipeline_worker', config: cfg, mode: 'latency', workers: w, runs: sub.submitted, lat, verified };
  results.push(rec);
  emit(`runner=pipeline_worker config=${cfg} mode=latency workers=${w} rate=${o.rate} duration_s=${o.duration} ` +
    `runs=${sub.submitted} ${latencyCols(lat)} (finished_at-created_at) ` +
    (clat ? `commit_to_commit: p50_ms=${fmt(clat.p50, 2)} p90_ms=${fmt(clat.p90, 2)} p99_ms=${fmt(clat.p99, 2)} max_ms=${fmt(clat.max, 2)} ` : '') +
    `${floorCols(clat, floor, fmt)} submit_lag_p99_ms=${fmt(sub.p99_lag_ms)} ` +
    `commits_per_run=${fmt(x.commits_per_run, 2)} cpu_ms_per_run=${fmt(x.cpu_ms_per_run, 3)} ${desc} so=${BUILD.so} ` +
    `verified=${verified} log_errors=${x.log_errors} host_busy_pct=${busyBefore}/${busyAfter}`);
  return rec;
}

// ------------------------------------------------------------------ peers

async function resetPeer(peer, mode, n, w) {
  await setWorkers(0);
  await runSqlFile('peer.sql');
  if (PEERS[peer].task) {
    await q('DROP SCHEMA IF EXISTS graphile_worker CASCADE');
    if (mode === 'drain' && PEERS[peer].w1) await q('SELECT w1_peer.seed($1)', [n]);
    await childResult('peer-graphile.mjs', ['--phase', 'setup', '--mode', mode, '--task', PEERS[peer].task,
      '--runs', n, '--workers', w], 600);
  } else if (mode === 'drain') {
    await q('SELECT w1_peer.seed($1)', [n]);
  }
}

function peerChild(peer, mode, n, w) {
  const p = PEERS[peer];
  if (peer === 'node-pg') {
    return ['peer-node-pg.mjs', ['--mode', mode, '--workers', w, '--poll-ms', o['poll-ms'], '--timeout', TIMEOUT]];
  }
  if (peer === 'plpgsql-floor') return ['peer-sql-floor.mjs', ['--workers', w, '--timeout', TIMEOUT]];
  return ['peer-graphile.mjs', ['--phase', 'run', '--mode', mode, '--task', p.task, '--runs', n, '--workers', w,
    '--batched', p.batched ? 1 : 0, '--timeout', TIMEOUT]];
}

async function peerDrain(peer, n, w) {
  const p = PEERS[peer];
  await resetPeer(peer, 'drain', n, w);
  const busyBefore = await settle();
  log(`${peer} drain: ${n} ${p.w1 ? 'runs' : 'no-op jobs'}, ${w} workers`);
  const release = await holdSnapshot();
  const m0 = await mark();
  const [script, args] = peerChild(peer, 'drain', n, w);
  const r = await runChild(script, args).done;
  const m1 = await mark();
  const held = await release();
  const busyAfter = await hostBusyPct();
  const problems = [];
  if (r.code !== 0 || !r.result) problems.push(`driver_exit_${r.code ?? r.sig}`);
  const res = r.result ?? {};
  if (res.nerrors) problems.push(`${res.nerrors}_errors:${res.errors?.[0]}`);
  if (res.done != null && res.done !== n) problems.push(`${res.done}_done_expected_${n}`);
  if (p.w1 && r.result) {
    const v = await check('w1_peer.verify', n);
    if (v !== 'ok') problems.push(v);
  }
  const verified = problems.length ? failText(problems.join(';')) : 'ok';
  const x = await between(m0, m1, n);
  const seconds = res.seconds ?? NaN;
  const rec = { runner: peer, config: '', mode: 'drain', workers: w, runs: n, seconds, rps: n / seconds, verified, w1: !!p.w1, ...x };
  results.push(rec);
  emit(`runner=${peer} mode=drain runs=${n} workers=${w} seconds=${fmt(seconds, 3)} runs_per_s=${fmt(rec.rps)} ` +
    `commits_per_run=${fmt(x.commits_per_run, 2)} wal_kb_per_run=${fmt(x.wal_kb_per_run, 2)} ` +
    `cpu_ms_per_run=${fmt(x.cpu_ms_per_run, 3)} client_cpu_s=${fmt(res.client_cpu_s, 2)}` +
    `${p.w1 ? '' : ' note=noop_jobs_not_W1'} verified=${verified} log_errors=${x.log_errors} ` +
    `host_busy_pct=${busyBefore}/${busyAfter}${held}`);
  return rec;
}

async function peerLatency(peer, w) {
  if (!PEERS[peer].latency) return null;
  await resetPeer(peer, 'latency', 0, w);
  const busyBefore = await settle();
  log(`${peer} latency: ${o.rate} runs/s for ${o.duration} s, ${w} workers`);
  const [script, args] = peerChild(peer, 'latency', 0, w);
  const c = runChild(script, args);
  const problems = [];
  if (!(await c.ready)) problems.push('driver_did_not_start');
  const m0 = await mark();
  const sql = PEERS[peer].task
    ? `WITH r AS (INSERT INTO w1_peer.runs (input) VALUES (jsonb_build_object('value', $1::int)) RETURNING id)
       SELECT graphile_worker.add_job('w1', json_build_object('run_id', r.id)) FROM r`
    : `INSERT INTO w1_peer.runs (input) VALUES (jsonb_build_object('value', $1::int))`;
  let sub = { submitted: 0 };
  if (!problems.length) {
    sub = await childResult('submit.mjs', ['--rate', o.rate, '--duration', o.duration, '--timeout', TIMEOUT, '--sql', sql]);
    try {
      await waitZero("SELECT count(*) FROM w1_peer.runs WHERE status <> 'succeeded'", TIMEOUT);
    } catch (e) {
      problems.push(e.message);
    }
  }
  c.child.send?.({ type: 'stop' });
  const r = await c.done;
  const m1 = await mark();
  const busyAfter = await hostBusyPct();
  if (r.code !== 0 || !r.result) problems.push(`driver_exit_${r.code ?? r.sig}`);
  if (r.result?.nerrors) problems.push(`${r.result.nerrors}_errors:${r.result.errors?.[0]}`);
  const v = await check('w1_peer.verify', sub.submitted);
  if (v !== 'ok') problems.push(v);
  const verified = problems.length ? failText(problems.join(';')) : 'ok';
  const lat = await latencies('w1_peer.runs');
  const x = await between(m0, m1, Math.max(1, sub.submitted));
  const rec = { runner: peer, config: '', mode: 'latency', workers: w, runs: sub.submitted, lat, verified };
  results.push(rec);
  emit(`runner=${peer} mode=latency workers=${w} rate=${o.rate} duration_s=${o.duration} runs=${sub.submitted} ` +
    `${latencyCols(lat)} submit_lag_p99_ms=${fmt(sub.p99_lag_ms)} commits_per_run=${fmt(x.commits_per_run, 2)} ` +
    `cpu_ms_per_run=${fmt(x.cpu_ms_per_run, 3)}${peer === 'node-pg' ? ` poll_ms=${o['poll-ms']}` : ''} ` +
    `verified=${verified} log_errors=${x.log_errors} host_busy_pct=${busyBefore}/${busyAfter}`);
  return rec;
}

// ------------------------------------------------------------------ summaries

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN;
};
const label = (r) => (r.config ? `${r.runner}/${r.config}` : r.runner);

// Median runs/s of verified drain results, by label and worker count.
function drainTable() {
  const t = new Map();
  for (const r of results.filter((x) => x.mode === 'drain' && x.verified === 'ok')) {
    const k = `${label(r)}@${r.workers}`;
    if (!t.has(k)) t.set(k, []);
    t.get(k).push(r.rps);
  }
  return (lbl, w) => median(t.get(`${lbl}@${w}`) ?? []);
}

function printRatios(workersList) {
  const rps = drainTable();
  for (const w of workersList) {
    for (const cfg of pwConfigs) {
      const ours = rps(`pipeline_worker/${cfg}`, w);
      for (const peer of peers) {
        const theirs = rps(peer, w);
        emit(`ratio runner=pipeline_worker config=${cfg} vs=${peer} workers=${w} ours_runs_per_s=${fmt(ours)} ` +
          `peer_runs_per_s=${fmt(theirs)} ratio=${fmt(ours / theirs, 2)}` +
          `${PEERS[peer].w1 ? '' : ' note=peer_is_noop_jobs'}`);
      }
    }
  }
}

function writeOut(name, text) {
  fs.mkdirSync(o.out, { recursive: true });
  fs.writeFileSync(path.join(o.out, name), text);
  return path.join(o.out, name);
}

function gnuplot(script, name) {
  const f = writeOut(name, script);
  try {
    execFileSync('gnuplot', [f], { cwd: o.out, timeout: 60000, stdio: ['ignore', 2, 2] });
  } catch (e) {
    log(`gnuplot failed for ${name}: ${e.message} (data files are in ${o.out})`);
  }
}

function charts(workersList) {
  const rps = drainTable();
  const labels = [...pwConfigs.map((c) => `pipeline_worker/${c}`), ...peers];
  let dat = `workers ${labels.map((l) => (PEERS[l] && !PEERS[l].w1 ? `${l}(noop)` : l)).join(' ')}\n`;
  for (const w of workersList) dat += `${w} ${labels.map((l) => fmt(rps(l, w))).join(' ')}\n`;
  writeOut('throughput.dat', dat);
  const host = `${NCPU} CPUs`;
  gnuplot(`set terminal pngcairo size 1000,640 noenhanced font ',10'
set output 'throughput.png'
set title "W1 drain throughput, ${N} runs per point (${host}, PostgreSQL 15, synchronous_commit=on)"
set xlabel 'workers (W)'
set ylabel 'runs/s, log scale (no-op peers: jobs/s)'
set logscale x 2
set logscale y
set xrange [0.8:${Math.max(...workersList) * 1.25}]
set xtics (${workersList.join(',')})
set grid
set key outside right top
set datafile missing 'nan'
plot for [i=2:${labels.length + 1}] 'throughput.dat' using 1:i with linespoints lw 2 pt 7 title columnheader(i)
`, 'throughput.gp');

  const lat = results.filter((r) => r.mode === 'latency' && r.lat?.curve?.length);
  if (lat.length) {
    const names = lat.map((r) => `${label(r)}(W=${r.workers})`);
    let ld = `percentile ${names.join(' ')}\n`;
    CURVE.forEach((p, i) => { ld += `p${(p * 100).toString()} ${lat.map((r) => fmt(r.lat.curve[i], 2)).join(' ')}\n`; });
    writeOut('latency.dat', ld);
    gnuplot(`set terminal pngcairo size 1000,640 noenhanced font ',10'
set output 'latency.png'
set title "W1 latency (finished_at - created_at), open-loop submission at ${o.rate} runs/s for ${o.duration} s"
set xlabel 'percentile'
set ylabel 'ms (log scale)'
set logscale y
set grid
set key outside right top
set datafile missing 'nan'
plot for [i=2:${names.length + 1}] 'latency.dat' using 0:i:xtic(1) with linespoints lw 2 pt 7 title columnheader(i)
`, 'latency.gp');
  }
}

// ------------------------------------------------------------------ soak

async function soak() {
  const total = Number(o['soak-runs']);
  const batch = Math.min(Number(o['soak-batch']), total);
  const cfg = pwConfigs[0] ?? 'default';
  await setWorkers(0);
  await applyConfig(cfg);
  const desc = await configDesc();
  await q('TRUNCATE pipeline_worker.run_steps, pipeline_worker.runs RESTART IDENTITY');
  await q('VACUUM (ANALYZE) pipeline_worker.runs, pipeline_worker.run_steps');
  await setWorkers(W);
  await sleep(1000);
  const pids0 = await workerPids();
  const mem = (pids) => {
    const m = pids.map(procMem).filter(Boolean);
    const max = (k) => Math.max(...m.map((x) => x[k]));
    const mean = (k) => m.reduce((a, x) => a + x[k], 0) / Math.max(1, m.length);
    return { rssMax: max('rss'), rssMean: mean('rss'), anonMax: max('anon'), anonMean: mean('anon'), n: m.length };
  };
  const memStart = mem(pids0);
  let memAfter1 = null;
  log(`soak: ${total} runs in batches of ${batch}, ${W} workers (${cfg}: ${desc}); worker RSS at start: ` +
    `max ${memStart.rssMax} kB, anon max ${memStart.anonMax} kB`);
  const m0 = await mark();
  const t0 = now();
  const rates = [];
  let verified = 'ok';
  for (let from = 1, b = 1; from <= total; from += batch, b++) {
    const to = Math.min(total, from + batch - 1);
    const tb = now();
    await insertRuns(from, to);
    const ti = now();
    try {
      await waitZero(PW_LEFT, TIMEOUT, 50, pwDiagnose);
    } catch (e) {
      verified = `FAIL(batch_${b}:${e.message.replace(/\s+/g, '_')})`;
      break;
    }
    const rate = (to - from + 1) / ((now() - ti) / 1000);
    rates.push(rate);
    const pids = await workerPids();
    const m = mem(pids);
    if (b === 1) memAfter1 = m;
    const sizes = (await q(`SELECT pg_total_relation_size('pipeline_worker.runs') AS runs,
                                   pg_total_relation_size('pipeline_worker.run_steps') AS steps`))[0];
    log(`soak batch ${b}: runs ${from}-${to} insert ${fmt((ti - tb) / 1000, 2)} s, drained at ${fmt(rate)} runs/s; ` +
      `workers ${pids.length} rss max ${m.rssMax} kB anon max ${m.anonMax} kB; ` +
      `runs ${fmt(sizes.runs / 1048576)} MB run_steps ${fmt(sizes.steps / 1048576)} MB`);
  }
  const seconds = (now() - t0) / 1000;
  const m1 = await mark();
  const pids1 = await workerPids();
  const memEnd = mem(pids1);
  const restarted = pids1.filter((p) => !pids0.includes(p)).length;
  const statsSql = `SELECT relname, n_live_tup, n_dead_tup, n_tup_upd, n_tup_hot_upd, autovacuum_count
                      FROM pg_stat_user_tables WHERE schemaname = 'pipeline_worker'
                       AND relname IN ('runs', 'run_steps') ORDER BY relname`;
  const st = Object.fromEntries((await q(statsSql)).map((r) => [r.relname, r]));
  const sizes = (await q(`SELECT pg_total_relation_size('pipeline_worker.runs') AS runs,
                                 pg_total_relation_size('pipeline_worker.run_steps') AS steps,
                                 (SELECT dead_tuple_count FROM pgstattuple('pipeline_worker.runs')) AS runs_dead,
                                 (SELECT dead_tuple_count FROM pgstattuple('pipeline_worker.run_steps')) AS steps_dead`))[0];
  // Workers report their table statistics when they exit: read them again after stopping them.
  await setWorkers(0);
  await sleep(1500);
  const st2 = Object.fromEntries((await q(statsSql)).map((r) => [r.relname, r]));
  if (verified === 'ok') {
    const v = await check('pwbench.verify', total);
    if (v !== 'ok') verified = failText(v);
  }
  const x = await between(m0, m1, total);
  const g = (s, t, k) => s[t]?.[k] ?? 'nan';
  emit(`runner=pipeline_worker config=${cfg} mode=soak runs=${total} workers=${W} batch=${batch} ` +
    `seconds=${fmt(seconds, 1)} runs_per_s=${fmt(total / seconds)} first_batch_runs_per_s=${fmt(rates[0])} ` +
    `last_batch_runs_per_s=${fmt(rates.at(-1))} ` +
    `rss_max_kb_start=${memStart.rssMax} rss_max_kb_after_batch1=${memAfter1?.rssMax ?? 'nan'} rss_max_kb_end=${memEnd.rssMax} ` +
    `anon_max_kb_start=${memStart.anonMax} anon_max_kb_after_batch1=${memAfter1?.anonMax ?? 'nan'} anon_max_kb_end=${memEnd.anonMax} ` +
    `workers_restarted=${restarted} ` +
    `runs_mb=${fmt(sizes.runs / 1048576)} run_steps_mb=${fmt(sizes.steps / 1048576)} ` +
    `runs_n_dead_tup=${g(st, 'runs', 'n_dead_tup')} run_steps_n_dead_tup=${g(st, 'run_steps', 'n_dead_tup')} ` +
    `runs_dead_exact=${sizes.runs_dead} run_steps_dead_exact=${sizes.steps_dead} ` +
    `runs_n_dead_tup_after_worker_exit=${g(st2, 'runs', 'n_dead_tup')} ` +
    `runs_hot_upd=${g(st2, 'runs', 'n_tup_hot_upd')}/${g(st2, 'runs', 'n_tup_upd')} ` +
    `runs_autovacuums=${g(st2, 'runs', 'autovacuum_count')} run_steps_autovacuums=${g(st2, 'run_steps', 'autovacuum_count')} ` +
    `commits_per_run=${fmt(x.commits_per_run, 2)} wal_kb_per_run=${fmt(x.wal_kb_per_run, 2)} ` +
    `${desc} so=${BUILD.so} verified=${verified} log_errors=${x.log_errors}`);
  results.push({ runner: 'pipeline_worker', mode: 'soak', verified });
}

// ------------------------------------------------------------------ scale (--scale)
// Drain throughput and claim cost against the size of the backlog, then with the last backlog's runs left in
// the tables as finished history. See ../README.md.

// Median microseconds of the worker's claim statement taking 32 runs from the head of the queue.
async function claimUs() {
  return Number(await val('SELECT pwbench.claim_probe(40, 0)'));
}

async function scaleDrain(cfg, n, w, fresh, baseRps = null) {
  await setWorkers(0);
  let first = 1;
  if (fresh) {
    await q('TRUNCATE pipeline_worker.run_steps, pipeline_worker.runs RESTART IDENTITY');
  } else {
    first = Number(await val('SELECT coalesce(max(id), 0) + 1 FROM pipeline_worker.runs'));
  }
  const history = first - 1;
  const ti = now();
  for (let from = first; from < first + n; from += 200000) await insertRuns(from, Math.min(first + n - 1, from + 199999));
  const insertS = (now() - ti) / 1000;
  const busyBefore = await settle();
  const claimStart = await claimUs();
  log(`scale: ${n} runs (history ${history} finished runs), ${w} workers; inserted in ${fmt(insertS, 1)} s; ` +
    `probe: a claim of 32 from the head ${claimStart} us`);
  await q('SELECT pg_stat_statements_reset()');
  const { m0, t0srv, error } = await timedWorkers(w);
  let verified = error ? failText(error) : 'ok';
  const m1 = await mark();
  // the workers' claim statements during the drain (hinted and from the head: one statement text)
  const cl = (await q(`SELECT coalesce(sum(calls), 0) AS calls, coalesce(sum(rows), 0) AS rows,
                              coalesce(sum(total_exec_time), 0) AS ms
                         FROM pg_stat_statements
                        WHERE query LIKE '%FROM pipeline_worker.runs%FOR UPDATE SKIP LOCKED%'
                          AND query NOT LIKE '%count(*)%'`))[0];
  const claim = { calls: Number(cl.calls), rows: Number(cl.rows), ms: Number(cl.ms) };
  const t = (await q(`SELECT extract(epoch FROM max(finished_at) - $1::timestamptz) AS secs
                        FROM pipeline_worker.runs WHERE id >= $2`, [t0srv, first]))[0];
  await setWorkers(0);
  if (verified === 'ok') {
    const v = await check('pwbench.verify', history + n);
    if (v !== 'ok') verified = failText(v);
  }
  const x = await between(m0, m1, n);
  const seconds = Number(t.secs);
  const rps = n / seconds;
  const sizes = (await q(`SELECT pg_total_relation_size('pipeline_worker.runs') AS runs,
                                 pg_total_relation_size('pipeline_worker.run_steps') AS steps`))[0];
  results.push({ runner: 'pipeline_worker', config: cfg, mode: 'scale', workers: w, runs: n, seconds, rps, verified });
  emit(`runner=pipeline_worker config=${cfg} mode=scale backlog=${n} history=${history} workers=${w} ` +
    `seconds=${fmt(seconds, 3)} runs_per_s=${fmt(rps)} ` +
    `pct_of_base=${baseRps ? fmt((100 * rps) / baseRps, 1) : 100} ` +
    `claims=${claim.calls} runs_per_claim=${fmt(claim.rows / claim.calls, 1)} ` +
    `claim_us=${fmt((1000 * claim.ms) / claim.calls, 1)} claim_us_per_run=${fmt((1000 * claim.ms) / claim.rows, 2)} ` +
    `probe_claim32_us_head=${claimStart} insert_s=${fmt(insertS, 1)} runs_mb=${fmt(sizes.runs / 1048576)} ` +
    `run_steps_mb=${fmt(sizes.steps / 1048576)} commits_per_run=${fmt(x.commits_per_run, 2)} wal_kb_per_run=${fmt(x.wal_kb_per_run, 2)} ` +
    `cpu_ms_per_run=${fmt(x.cpu_ms_per_run, 3)} so=${BUILD.so} verified=${verified} log_errors=${x.log_errors} ` +
    `host_busy_pct=${busyBefore}`);
  return rps;
}

async function scaleMode() {
  const cfg = pwConfigs[0] ?? 'default';
  const backlogs = o['scale-backlogs'].split(',').map(Number);
  for (const b of backlogs) if (!Number.isInteger(b) || b < 1) usage('--scale-backlogs: positive integers');
  await applyConfig(cfg);
  await q('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  log(`scale: ${cfg} (${await configDesc()}), backlogs ${backlogs.join(', ')} (the first ${REPS} times), then ` +
    `${backlogs[0]} runs ${REPS} times on top of the last backlog's finished runs`);
  const baseRates = [];
  for (let r = 0; r < REPS; r++) baseRates.push(await scaleDrain(cfg, backlogs[0], W, true));
  const base = median(baseRates);
  const rows = [[backlogs[0], 0, base]];
  for (const b of backlogs.slice(1)) rows.push([b, 0, await scaleDrain(cfg, b, W, true, base)]);
  const hist = [];
  const history = backlogs.length > 1 ? backlogs.at(-1) : 0;
  for (let r = 0; r < REPS; r++) hist.push(await scaleDrain(cfg, backlogs[0], W, false, base));
  rows.push([backlogs[0], history, median(hist)]);
  for (const [b, h, rps] of rows) {
    emit(`scale summary: backlog=${b} history=${h} runs_per_s=${fmt(rps)} pct_of_base=${fmt((100 * rps) / base, 1)}` +
      `${b === backlogs[0] ? ` (median of ${REPS})` : ''}`);
  }
}

// ------------------------------------------------------------------ HTTP steps (--http)
// pipeline_worker only: one-step HTTP pipelines against the Node endpoint test/http/server.js
// (started here, on 127.0.0.1, a random port). See ../README.md, "HTTP (--http)".

const HTTP_FIGURES = ['endpoint', 'live', 'drain', 'delay', 'inflight', 'latency'];
const httpFigures = o['http-figures'].split(',');
for (const f of httpFigures) if (!HTTP_FIGURES.includes(f)) usage(`unknown --http-figures entry ${f} (${HTTP_FIGURES.join(', ')})`);
const HTTP_TARGET_STEPS_PER_S = 5000;   // figure 2
const HTTP_DELAY_RUNS = 10000;          // figure 3: runs against /delay?ms=100 ...
const HTTP_DELAY_TARGET_S = 3;          // ... all finished within this
const HTTP_INFLIGHT_RUNS = 10000;       // figure 4: runs against /delay?ms=2000 ...
const HTTP_INFLIGHT_PER_WORKER = 2500;  // ... with this pipeline_worker.http_max_in_flight

let endpoint = null;   // { child, pid, port, base }

async function startEndpoint() {
  // cpp (default): bench/endpoint/endpoint.cpp, built by run.sh -- a few µs of CPU per request, so that on 2 cores
  // the endpoint does not eat the CPU the database needs; node: the test suite's endpoint test/http/server.js.
  const cpp = o['http-endpoint'] !== 'node';
  const js = cpp ? process.env.PWBENCH_ENDPOINT_BIN : path.join(path.dirname(BENCH), 'test', 'http', 'server.js');
  if (!js || !fs.existsSync(js)) throw new Error(`endpoint ${js} not found`);
  const child = cpp ? spawn(js, ['--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(process.execPath, [js, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr.on('data', (d) => process.stderr.write(`[endpoint] ${d}`));
  const port = await new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error('the endpoint printed no PORT line within 10 s')), 10000);
    child.stdout.on('data', (d) => {
      buf += d;
      const m = buf.match(/^PORT (\d+)$/m);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    child.on('exit', (code, sig) => { clearTimeout(timer); reject(new Error(`the endpoint exited (${code ?? sig})`)); });
  });
  endpoint = { child, pid: child.pid, port, base: `http://127.0.0.1:${port}` };
  log(`endpoint: ${cpp ? 'C++ bench/endpoint' : 'node test/http/server.js'} pid ${child.pid} on ${endpoint.base}, ` +
    `open files ${fdLimit(child.pid)}`);
}

function stopEndpoint() {
  if (endpoint && endpoint.child.exitCode == null) endpoint.child.kill('SIGTERM');
}

// "soft/hard" open file limit of a process
function fdLimit(pid) {
  try {
    const m = fs.readFileSync(`/proc/${pid}/limits`, 'utf8').match(/^Max open files\s+(\S+)\s+(\S+)/m);
    return m ? `${m[1]}/${m[2]}` : '?';
  } catch {
    return '?';
  }
}

// CPU seconds (user + system) a process has used, or 0 when it is gone
const procCpuS = (pid) => procStat(pid)?.cpuS ?? 0;

let POSTMASTER = 0;

// TCP connections opened on this machine (all processes): ActiveOpens of /proc/net/snmp
function tcpActiveOpens() {
  const l = fs.readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((x) => x.startsWith('Tcp:'));
  const k = l[0].split(/\s+/);
  return Number(l[1].split(/\s+/)[k.indexOf('ActiveOpens')]);
}

// CPU and connection counters at one instant, for the split of a timed phase (cpuSplit)
function cpuMark() {
  return { endpoint: procCpuS(endpoint.pid), bench: process.cpuUsage(), cluster: clusterCpu(POSTMASTER), opens: tcpActiveOpens() };
}

// Where the machine's busy CPU time between two marks (and cpuMarks) went: the endpoint, the
// extension's workers (pids), the cluster's other processes (backends, autovacuum, walwriter, ...;
// processes that exited meanwhile are missed), this orchestrator, and the rest (everything else on the
// machine: other users' processes, the kernel's own threads). Also the TCP connections opened.
function cpuSplit(m0, m1, c0, c1, workerPidList) {
  const machine = (m1.cpu[0] - m0.cpu[0]) / CLK_TCK;
  const endpointS = c1.endpoint - c0.endpoint;
  let workers = 0;
  let pgOther = 0;
  for (const [pid, cpu] of c1.cluster) {
    const d = cpu - (c0.cluster.get(pid) ?? 0);
    if (workerPidList.includes(Number(pid))) workers += d; else pgOther += d;
  }
  const b = process.cpuUsage(c0.bench);
  const bench = (b.user + b.system) / 1e6;
  return { machine, endpoint: endpointS, workers, pgOther, bench, rest: machine - endpointS - workers - pgOther - bench,
    opens: c1.opens - c0.opens };
}

function cpuCols(c, wallS) {
  return `cpu_s_endpoint=${fmt(c.endpoint, 2)} cpu_s_pw_workers=${fmt(c.workers, 2)} ` +
    `cpu_s_pg_other=${fmt(c.pgOther, 2)} cpu_s_bench=${fmt(c.bench, 2)} cpu_s_rest=${fmt(c.rest, 2)} ` +
    `cpu_s_capacity=${fmt(NCPU * wallS, 2)}`;
}

// a request to the endpoint's statistics (not counted by it)
async function srv(p, method = 'GET') {
  const r = await fetch(endpoint.base + p, { method, signal: AbortSignal.timeout(15000) });
  if (!r.ok) throw new Error(`endpoint ${method} ${p}: HTTP ${r.status}`);
  return r.json();
}

async function httpSetup() {
  await startEndpoint();
  await setWorkers(0);
  await applyConfig('default');   // the extension's claim_batch / commit_interval_ms defaults
  await q("ALTER SYSTEM SET pipeline_worker.http_allowed_hosts = '127.0.0.1'");
  await q('ALTER SYSTEM RESET pipeline_worker.http_max_in_flight');
  await reload();
  const defs = { http_ok: '/ok', http_delay100: '/delay?ms=100', http_delay2000: '/delay?ms=2000' };
  for (const [name, p] of Object.entries(defs)) {
    if (Number(await val('SELECT count(*) FROM pipeline_worker.pipelines WHERE name = $1', [name]))) {
      await q('SELECT pipeline_worker.drop_pipeline($1)', [name]);
    }
    await q('SELECT pipeline_worker.create_pipeline($1, $2::jsonb)',
      [name, JSON.stringify([{ name: 'call', http: { url: `${endpoint.base}${p}` } }])]);
  }
  POSTMASTER = Number(fs.readFileSync(path.join(o.pgdata, 'postmaster.pid'), 'utf8').split('\n')[0]);
  log(`http: endpoint ${endpoint.base}; http_allowed_hosts=${await val('SHOW pipeline_worker.http_allowed_hosts')}; ` +
    `open files: postmaster ${fdLimit(POSTMASTER)}, endpoint ${fdLimit(endpoint.pid)}; ${NCPU} CPUs; ` +
    `${await configDesc()}`);
}

// The endpoint saw every run's request exactly once: requests = keys = n, no duplicate, no request
// without a key, and for every run the key "<run id>:1:1" exactly once. Returns a list of problems.
async function endpointProblems(n, stats) {
  const p = [];
  if (stats.requests !== n) p.push(`endpoint_requests=${stats.requests}_expected_${n}`);
  if (stats.keys !== n) p.push(`endpoint_keys=${stats.keys}_expected_${n}`);
  if (stats.duplicates !== 0) p.push(`endpoint_duplicates=${stats.duplicates}`);
  if (stats.no_key !== 0) p.push(`endpoint_no_key=${stats.no_key}`);
  const keys = await srv('/keys');
  const ids = (await q('SELECT id FROM pipeline_worker.runs')).map((r) => r.id);
  const notOnce = ids.filter((id) => keys[`${id}:1:1`] !== 1).length;
  if (notOnce) p.push(`${notOnce}_runs_whose_key_<id>:1:1_was_not_seen_exactly_once`);
  return p;
}

// Lines of the server log between two marks that match re.
function logLines(m0, m1, re) {
  if (!o.pglog || !fs.existsSync(o.pglog)) return [];
  const fd = fs.openSync(o.pglog, 'r');
  const buf = Buffer.alloc(Math.min(Math.max(0, m1.logSize - m0.logSize), 16 * 1024 * 1024));
  fs.readSync(fd, buf, 0, buf.length, m0.logSize);
  fs.closeSync(fd);
  return buf.toString('utf8').split('\n').filter((l) => re.test(l));
}

// Figure 1: the endpoint alone, driven by js/http-load.mjs (keep-alive, 64 sockets).
async function httpEndpointAlone() {
  const n = 20000;
  const conc = 64;
  const busyBefore = await settle();
  await srv('/reset', 'POST');
  log(`http endpoint alone: ${n} POST /ok, keep-alive, ${conc} sockets (js/http-load.mjs)`);
  const c0 = cpuMark();
  const m0 = await mark();
  let res = {};
  const problems = [];
  try {
    res = await childResult('http-load.mjs', ['--url', `${endpoint.base}/ok`, '--requests', n, '--concurrency', conc,
      '--timeout', TIMEOUT]);
  } catch (e) {
    problems.push(e.message);
  }
  const m1 = await mark();
  const cpu = cpuSplit(m0, m1, c0, cpuMark(), []);
  const cpuE = cpu.endpoint;
  const busyAfter = await hostBusyPct();
  const st = await srv('/stats');
  if (res.errors) problems.push(`${res.errors}_errors:${res.first_error}`);
  const total = n + (res.warmup ?? 0);
  if (st.requests !== total) problems.push(`endpoint_requests=${st.requests}_expected_${total}`);
  if (st.duplicates !== 0) problems.push(`endpoint_duplicates=${st.duplicates}`);
  const verified = problems.length ? failText(problems.join(';')) : 'ok';
  const machineS = (m1.cpu[0] - m0.cpu[0]) / CLK_TCK;   // includes the warm-up
  results.push({ runner: 'http', config: 'endpoint', mode: 'http', verified });
  emit(`http endpoint alone: endpoint=${o["http-endpoint"] === "node" ? "node" : "cpp"} requests=${n} warmup=${res.warmup ?? 'nan'} method=POST path=/ok keepalive=yes sockets=${conc} ` +
    `seconds=${fmt(res.seconds, 3)} req_per_s=${fmt(res.req_per_s)} endpoint_cpu_s=${fmt(cpuE, 2)} ` +
    `endpoint_req_per_cpu_s=${fmt(total / cpuE)} loadgen_cpu_s=${fmt(res.client_cpu_s, 2)} ` +
    `machine_busy_cpu_s=${fmt(machineS, 2)} max_connections=${st.max_connections} ` +
    `verified=${verified} host_busy_pct=${busyBefore}/${busyAfter}`);
  return res.req_per_s;
}

// n pre-inserted runs of `pipeline`, w workers started at the clock start, timed until all finished;
// then the extension's tables (pwbench.verify_http) and the endpoint's statistics are checked.
async function httpDrain(what, pipeline, n, w, expect, maxInFlight = null) {
  await setWorkers(0);
  await q(maxInFlight == null ? 'ALTER SYSTEM RESET pipeline_worker.http_max_in_flight'
    : `ALTER SYSTEM SET pipeline_worker.http_max_in_flight = ${Number(maxInFlight)}`);
  await reload();
  await sleep(200);
  const mif = await val('SHOW pipeline_worker.http_max_in_flight');
  await q('TRUNCATE pipeline_worker.run_steps, pipeline_worker.runs RESTART IDENTITY');
  await q(`SELECT count(pipeline_worker.create_run($1, jsonb_build_object('i', g)))
             FROM generate_series(1, $2::int) AS g`, [pipeline, n]);
  const busyBefore = await settle();
  await srv('/reset', 'POST');
  log(`${what}: ${n} runs of ${pipeline}, ${w} workers, http_max_in_flight=${mif}`);
  const c0 = cpuMark();
  const { m0, t0srv, error, pollSeconds } = await timedWorkers(w);
  const problems = error ? [error] : [];
  const m1 = await mark();
  const c1 = cpuMark();
  const cpu = cpuSplit(m0, m1, c0, c1, await workerPids());
  const busyAfter = await hostBusyPct();
  const st = await srv('/stats');
  const t = (await q(`SELECT extract(epoch FROM max(finished_at) - $1::timestamptz) AS secs,
                             extract(epoch FROM min(started_at) - $1::timestamptz) * 1000 AS first_ms,
                             count(DISTINCT worker_pid) AS used,
                             count(*) FILTER (WHERE status <> 'succeeded') AS lost,
                             (SELECT extract(epoch FROM max(started_at) - $1::timestamptz)
                                FROM pipeline_worker.run_steps) AS last_step_s
                        FROM pipeline_worker.runs`, [t0srv]))[0];
  await setWorkers(0);
  const v = await checkHttp(n, expect);
  if (v !== 'ok') problems.push(v);
  problems.push(...await endpointProblems(n, st));
  const verified = problems.length ? failText(problems.join(';')) : 'ok';
  const x = await between(m0, m1, n);
  const fdCapped = logLines(m0, m1, /holds this worker to \d+ HTTP requests/);
  for (const l of fdCapped.slice(0, 2)) log(`server log: ${l}`);
  const seconds = Number(t.secs);
  const rec = { runner: 'http', config: what, mode: 'http', seconds, sps: n / seconds, verified, stats: st,
    lost: Number(t.lost) };
  results.push(rec);
  rec.cols = `runs=${n} workers=${w} http_max_in_flight=${mif} seconds=${fmt(seconds, 3)} ` +
    `steps_per_s=${fmt(rec.sps)} poll_seconds=${fmt(pollSeconds, 3)} first_claim_ms=${fmt(Number(t.first_ms))} ` +
    `last_step_started_s=${fmt(Number(t.last_step_s), 3)} workers_used=${t.used} lost=${rec.lost} requests=${st.requests} keys=${st.keys} duplicates=${st.duplicates} ` +
    `max_in_flight=${st.max_in_flight} max_connections=${st.max_connections} tcp_connects=${cpu.opens} ` +
    `${cpuCols(cpu, pollSeconds)} ` +
    `commits_per_run=${fmt(x.commits_per_run, 2)} wal_kb_per_run=${fmt(x.wal_kb_per_run, 2)} ` +
    `fd_capped_workers=${fdCapped.length} so=${BUILD.so} verified=${verified} log_errors=${x.log_errors} ` +
    `host_busy_pct=${busyBefore}/${busyAfter}`;
  return rec;
}

async function checkHttp(n, expect) {
  try {
    return await val('SELECT pwbench.verify_http($1, $2::jsonb)', [n, JSON.stringify(expect)]);
  } catch (e) {
    return `verify_error: ${e.message}`;
  }
}

const met = (ok) => (ok ? 'met' : 'MISSED');

async function httpLatency(w) {
  await setWorkers(0);
  await q('ALTER SYSTEM RESET pipeline_worker.http_max_in_flight');
  await reload();
  await q('TRUNCATE pipeline_worker.run_steps, pipeline_worker.runs RESTART IDENTITY');
  await setWorkers(w);
  const busyBefore = await settle();
  await srv('/reset', 'POST');
  log(`http latency: ${o.rate} runs/s of http_ok for ${o.duration} s, ${w} workers (js/submit.mjs)`);
  const m0 = await mark();
  const problems = [];
  let sub = { submitted: 0 };
  try {
    sub = await childResult('submit.mjs', ['--rate', o.rate, '--duration', o.duration, '--timeout', TIMEOUT,
      '--sql', "SELECT pipeline_worker.create_run('http_ok', jsonb_build_object('i', $1::int)),"
        + ' pg_catalog.xid(pg_catalog.pg_current_xact_id())::text']);
    await waitZero(PW_LEFT, TIMEOUT, 20, pwDiagnose);
  } catch (e) {
    problems.push(e.message);
  }
  const m1 = await mark();
  const busyAfter = await hostBusyPct();
  const st = await srv('/stats');
  await setWorkers(0);
  const v = await checkHttp(sub.submitted, { ok: true });
  if (v !== 'ok') problems.push(v);
  problems.push(...await endpointProblems(sub.submitted, st));
  const verified = problems.length ? failText(problems.join(';')) : 'ok';
  const lat = await latencies('pipeline_worker.runs');
  const clat = await commitLatencies('pipeline_worker.runs', sub.commits);
  const x = await between(m0, m1, Math.max(1, sub.submitted));
  results.push({ runner: 'http', config: 'latency', mode: 'http', verified });
  emit(`http latency: path=/ok rate=${o.rate} duration_s=${o.duration} runs=${sub.submitted} workers=${w} ` +
    `${latencyCols(lat)} (finished_at-created_at) ` +
    (clat ? `commit_to_commit: p50_ms=${fmt(clat.p50, 2)} p90_ms=${fmt(clat.p90, 2)} p99_ms=${fmt(clat.p99, 2)} max_ms=${fmt(clat.max, 2)} ` : '') +
    `submit_lag_p99_ms=${fmt(sub.p99_lag_ms)} requests=${st.requests} ` +
    `duplicates=${st.duplicates} commits_per_run=${fmt(x.commits_per_run, 2)} ` +
    `cpu_ms_per_run=${fmt(x.cpu_ms_per_run, 3)} so=${BUILD.so} verified=${verified} log_errors=${x.log_errors} ` +
    `host_busy_pct=${busyBefore}/${busyAfter}`);
}

async function httpMode() {
  await httpSetup();
  const n = Number(o['http-runs']);
  const capacity = httpFigures.includes('endpoint') ? await httpEndpointAlone() : null;
  // First: on run tables as young as a new installation's (the case users met first).
  if (httpFigures.includes('live')) {
    await httpLive({ q, val, log, emit, srv, reps: Math.max(REPS, 3), o, results, BUILD, setWorkers, reload,
      waitZero, PW_LEFT, pwDiagnose, failText, checkHttp, endpointProblems }, Math.min(n, 10000), W, capacity);
  }
  if (httpFigures.includes('drain')) {
    const reps = [];
    for (let rep = 1; rep <= REPS; rep++) {
      const r = await httpDrain('http drain /ok', 'http_ok', n, W, { ok: true });
      emit(`http drain /ok rep=${rep}/${REPS}: ${r.cols}`);
      reps.push(r);
    }
    const ok = reps.filter((r) => r.verified === 'ok');
    const sps = median(ok.map((r) => r.sps));
    emit(`http drain /ok: runs=${n} workers=${W} reps=${REPS} verified_reps=${ok.length} ` +
      `steps_per_s_median=${fmt(sps)} seconds_median=${fmt(median(ok.map((r) => r.seconds)), 3)} ` +
      `steps_per_s_reps=${reps.map((r) => fmt(r.sps)).join(',')} target=>=${HTTP_TARGET_STEPS_PER_S}_steps/s ` +
      `${met(sps >= HTTP_TARGET_STEPS_PER_S)}`);
  }
  if (httpFigures.includes('delay')) {
    const r = await httpDrain('http 100ms endpoint', 'http_delay100', HTTP_DELAY_RUNS, W, { delayed: 100 });
    emit(`http 100ms endpoint: path=/delay?ms=100 ${r.cols} target=<=${HTTP_DELAY_TARGET_S}_s ` +
      `${met(r.verified === 'ok' && r.seconds <= HTTP_DELAY_TARGET_S)}`);
  }
  if (httpFigures.includes('inflight')) {
    const r = await httpDrain('http 10k in flight', 'http_delay2000', HTTP_INFLIGHT_RUNS, W, { delayed: 2000 },
      HTTP_INFLIGHT_PER_WORKER);
    emit(`http 10k in flight: path=/delay?ms=2000 max_in_flight=${r.stats.max_in_flight}/${HTTP_INFLIGHT_RUNS} ` +
      `total_seconds=${fmt(r.seconds, 3)} lost=${r.lost} duplicated=${r.stats.duplicates} ` +
      `requests=${r.stats.requests} | ${r.cols}`);
    await q('ALTER SYSTEM RESET pipeline_worker.http_max_in_flight');
    await reload();
  }
  if (httpFigures.includes('latency')) await httpLatency(W);
  emit('reference (quoted from the issue, NOT measured here): pg_net finishes 1,000 calls to a 100 ms endpoint ' +
    'in ~4.9 s at defaults / ~0.8 s tuned');
  emit('reference (quoted from the issue, NOT measured here): pg_net makes ~190 / ~700 calls/s against an ' +
    'immediate endpoint (defaults / tuned)');
}

// ------------------------------------------------------------------ main

const watchdogS = Number(o['max-seconds'] ?? 0);
if (watchdogS > 0) setTimeout(() => { log(`overall limit of ${watchdogS} s reached, giving up`); process.exit(3); }, watchdogS * 1000).unref();

// Which build of the extension is measured (it is rebuilt often): md5 of the installed library
// (loaded by the postmaster when run.sh started the cluster) and the work tree's commit.
function buildId() {
  let so = 'unknown';
  let tree = 'unknown';
  try {
    const lib = execFileSync(path.join(o.pgbin, 'pg_config'), ['--pkglibdir'], { encoding: 'utf8' }).trim();
    so = crypto.createHash('md5').update(fs.readFileSync(path.join(lib, 'pipeline_worker.so'))).digest('hex').slice(0, 8);
  } catch { /* reported as unknown */ }
  try {
    tree = execFileSync('git', ['-C', path.dirname(BENCH), 'describe', '--always', '--dirty'],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch { /* not a git checkout */ }
  return { so, tree };
}
const BUILD = buildId();

try {
  await runSqlFile('pw.sql');
  emitHeader(`# pipeline_worker.so md5 ${BUILD.so}, work tree ${BUILD.tree}, ${new Date().toISOString()}, ` +
    `args: ${process.argv.slice(2).filter((a, i, all) => !['--pgdata', '--pglog', '--pgbin', '--as-pg'].includes(a) &&
      !['--pgdata', '--pglog', '--pgbin', '--as-pg'].includes(all[i - 1])).join(' ')}`);
  await setWorkers(0);
  log(`server ${await val('SHOW server_version')}, synchronous_commit=${await val('SHOW synchronous_commit')}, ` +
    `shared_buffers=${await val('SHOW shared_buffers')}, pipeline '${PIPELINE}' (${o['step-lang']} steps)`);
  if (o.mode === 'drain') {
    for (let rep = 1; rep <= REPS; rep++) {
      for (const cfg of pwConfigs) await pwDrain(cfg, N, W);
      for (const p of peers) await peerDrain(p, N, W);
    }
    if (pwConfigs.length && peers.length) printRatios([W]);
  } else if (o.mode === 'latency') {
    const skipped = peers.filter((x) => !PEERS[x].latency);
    if (skipped.length) log(`latency mode: skipping ${skipped.join(', ')} (drain-only peers)`);
    for (let rep = 1; rep <= REPS; rep++) {
      for (const cfg of pwConfigs) await pwLatency(cfg, W);
      for (const p of peers.filter((x) => PEERS[x].latency)) await peerLatency(p, W);
    }
  } else if (o.mode === 'sweep') {
    const ws = o['sweep-workers'].split(',').map(Number);
    for (let rep = 1; rep <= REPS; rep++) {
      for (const w of ws) {
        for (const cfg of pwConfigs) await pwDrain(cfg, N, w);
        for (const p of peers) await peerDrain(p, N, w);
      }
    }
    for (const cfg of pwConfigs) await pwLatency(cfg, W);
    for (const p of peers.filter((x) => PEERS[x].latency)) await peerLatency(p, W);
    if (pwConfigs.length && peers.length) printRatios(ws);
    charts(ws);
    log(`charts: ${path.join(o.out, 'throughput.png')} ${path.join(o.out, 'latency.png')}`);
  } else if (o.mode === 'soak') {
    await soak();
  } else if (o.mode === 'scale') {
    await scaleMode();
  } else if (o.mode === 'http') {
    await httpMode();
  } else if (o.mode === 'flow') {
    await flowMode({ q, val, log, emit, o, W, N, PIPELINE, results, peers, setWorkers, applyConfig, waitZero, PW_LEFT,
      pwDiagnose, failText, check, peerDrain });
  } else if (o.mode === 'ops') {
    await opsMode({ q, val, log, emit, o, W, N, PIPELINE, results, setWorkers, waitZero, PW_LEFT, pwDiagnose, failText,
      runSqlFileOn });
  } else if (o.mode === 'workflows') {
    await workflowsMode({ q, val, log, emit, o, W, N, PIPELINE, results, setWorkers, waitZero, PW_LEFT, pwDiagnose,
      failText, runSqlFileOn, ctl });
  } else if (o.mode === 'steady') {
    await steadyMode({ q, val, log, emit, o, W, N, PIPELINE, results, pwConfigs, BUILD, pwDrain, setWorkers,
      applyConfig, waitZero, PW_LEFT, pwDiagnose, failText, check });
  } else {
    throw new Error(`unknown --mode ${o.mode}`);
  }
} finally {
  await setWorkers(0).catch(() => {});
  stopEndpoint();
  await q('DROP SCHEMA IF EXISTS graphile_worker CASCADE').catch(() => {});
  await ctl.end().catch(() => {});
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  if (outLines.length) log(`result lines also in ${writeOut(`results-${o.mode}-${stamp}.txt`, `${outLines.join('\n')}\n`)}`);
}

const failed = results.filter((r) => r.verified !== 'ok');
if (failed.length) {
  log(`VERIFICATION FAILED for ${failed.length} result(s): ${failed.map(label).join(', ')}`);
  process.exit(1);
}
process.exit(0);
