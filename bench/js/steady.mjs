// --steady: a continuous W1 load with the submitter and the workers running together and autovacuum at its
// defaults, for --steady-seconds (default 20 minutes). Production tables are never fresh: they hold finished runs,
// get analyzed by autovacuum every 2% of churn, and carry dead tuples. One line per 10 s window (runs/s,
// completion latency, table and index sizes, dead tuples, autovacuum/autoanalyze counts), each window's rate
// against a fresh-table drain measured first in the same run. See ../README.md.
import fs from 'node:fs';
import { CLK_TCK, clusterCpu, connect, cpuJiffies, fmt, NCPU, now, sleep } from './common.mjs';

const WINDOW_S = 10;

// Where the machine's CPU goes, by kind of process: the cluster's processes (the postmaster's children) are read
// from /proc every second, so that a process that exits (an autovacuum worker at the end of its pass) loses at most
// its last second. Kinds: the extension's workers, autovacuum (launcher and workers), client backends (the
// submitter and this benchmark's sampler), the rest of the cluster (walwriter, checkpointer, ...); the machine's
// total busy time comes from /proc/stat, and what is left of it is the orchestrator and everything else.
class CpuByKind {
  constructor(postmaster) {
    this.postmaster = postmaster;
    this.last = new Map(); // pid -> { kind, s }
    this.sum = { workers: 0, autovacuum: 0, backends: 0, pgOther: 0 };
    this.sample(); // (what the processes used before: not counted)
    this.sum = { workers: 0, autovacuum: 0, backends: 0, pgOther: 0 };
    this.busy0 = cpuJiffies()[0];
  }

  static kindOf(cmdline) {
    if (cmdline.includes('pipeline_worker')) return 'workers';
    if (cmdline.includes('autovacuum')) return 'autovacuum';
    if (cmdline.includes('[local]') || /\(\d+\)/.test(cmdline)) return 'backends'; // (user db [local] or host(port))
    return 'pgOther';
  }

  sample() {
    for (const [pid, s] of clusterCpu(this.postmaster)) {
      if (Number(pid) === this.postmaster) continue;
      let p = this.last.get(pid);
      if (p === undefined) {
        let cmd = '';
        try { cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' '); } catch { /* gone */ }
        p = { kind: CpuByKind.kindOf(cmd), s: 0 };
        this.last.set(pid, p);
      }
      if (s > p.s) { this.sum[p.kind] += s - p.s; p.s = s; }
    }
  }

  // CPU seconds by kind since the last take, and the machine's busy seconds
  take() {
    this.sample();
    const busy = cpuJiffies()[0];
    const r = { ...this.sum, machine: (busy - this.busy0) / CLK_TCK };
    this.sum = { workers: 0, autovacuum: 0, backends: 0, pgOther: 0 };
    this.busy0 = busy;
    return r;
  }
}

// h: the orchestrator's helpers (main.mjs).
export async function steadyMode(h) {
  const { q, val, log, emit, o, W, PIPELINE, results } = h;
  const seconds = Number(o['steady-seconds']);
  const backlog = Number(o['steady-backlog']);
  if (!Number.isInteger(seconds) || seconds < WINDOW_S) throw new Error(`--steady-seconds must be >= ${WINDOW_S}`);
  if (!Number.isInteger(backlog) || backlog < 100) throw new Error('--steady-backlog must be >= 100');
  const cfg = h.pwConfigs[0] ?? 'default';

  // 1. The reference: drains of fresh (truncated) tables, the median of three. (One drain of 10,000 runs lasts a
  // third of a second, of which the workers' start takes 15-50 ms: single drains gave 26,600-47,300 runs/s on the
  // same build in one afternoon, and every window's percentage followed that draw.)
  const drains = [];
  for (let i = 0; i < 3; i++) drains.push(await h.pwDrain(cfg, h.N, W));
  const fresh = drains.slice().sort((a, b) => a.rps - b.rps)[1];
  log(`steady: fresh-table drains ${drains.map((d) => fmt(d.rps)).join(' / ')} runs/s (${h.N} runs each; median taken); ` +
    `now ${seconds} s of continuous load ` +
    `(backlog kept at ${backlog}-${2 * backlog} runs), one line per ${WINDOW_S} s`);

  // 2. Continuous load; finished runs kept (the default: 7 days) or deleted after --steady-retention.
  await h.setWorkers(0);
  await h.applyConfig(cfg);
  const retention = o['steady-retention'];
  if (retention) {
    await q(`ALTER SYSTEM SET pipeline_worker.retention = '${retention.replace(/'/g, "''")}'`);
    await q('SELECT pg_reload_conf()');
    log(`steady: pipeline_worker.retention = '${retention}'`);
  }
  await q('TRUNCATE pipeline_worker.run_steps, pipeline_worker.runs RESTART IDENTITY');
  await h.setWorkers(W);
  const sub = await connect('pwbench-steady-submit');
  const sampler = await connect('pwbench-steady-sample');
  const sv = async (sql, params) => Object.values((await sampler.query(sql, params)).rows[0] ?? {})[0];
  const myPid = Number(await sv('SELECT pg_backend_pid()'));
  const postmaster = Number(fs.readFileSync(`/proc/${myPid}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
  let submitted = 0;
  let stop = false;
  // How the load is submitted: create_runs (one call per batch, the bulk API; default) or create_run per run (each
  // run as its own function call: ~4x the submitter's server CPU per run, taken from the workers' 2 cores).
  const submitMode = o['steady-submit'] ?? 'create_runs';
  if (!['create_runs', 'create_run'].includes(submitMode)) throw new Error('--steady-submit must be create_runs or create_run');
  const batchSubmit = submitMode === 'create_runs';
  // Keeps between `backlog` and 2 x `backlog` runs unfinished: the workers are never idle, and the queue does
  // not grow without bound. The backlog is the extension's own counters (metric_samples(): runs created minus runs
  // finished, from shared memory, a fraction of a millisecond), less what they said when the load started. Until
  // 2026-12-03 the submitter counted the pending and running runs through the partial indexes every 20 ms: under a
  // steady load those hold the entries of the millions of runs finished since the last VACUUM, and the counts took
  // 8-13 % of the machine's CPU in profiled windows -- from the workers measured.
  const counters = async (c = sub) => Number((await c.query(`SELECT COALESCE(sum(value) FILTER (WHERE metric = 'pipeline_worker_runs_created_total'), 0)
        - COALESCE(sum(value) FILTER (WHERE metric = 'pipeline_worker_runs_finished_total'), 0) AS n
      FROM pipeline_worker.metric_samples() WHERE pipeline = $1 AND database = current_database()`, [PIPELINE])).rows[0].n);
  const base = (await counters()) - Number((await sub.query(`SET enable_seqscan = off;
        SELECT (SELECT count(*) FROM pipeline_worker.runs WHERE status = 'pending')
             + (SELECT count(*) FROM pipeline_worker.runs WHERE status = 'running') AS n`))[1].rows[0].n);
  // How often the workers found no run to claim: every 250 ms, the share of them waiting on their latch for runs
  // (pg_stat_activity: wait event Extension, query "waiting for runs"). (2026-12-06 night: 3-32 % of looks with the
  // backlog at 5,000-10,000 and one submitter, each time with no run pending: the queue had run empty.)
  const idleConn = await connect('pwbench-steady-idle');
  let idle = { looks: 0, idle: 0 };
  const idleTicker = setInterval(() => {
    idleConn.query(`SELECT count(*) FILTER (WHERE query = 'waiting for runs' AND wait_event = 'Extension')::float8 AS i,
                           count(*)::float8 AS n FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'`)
      .then((r) => { idle.looks += Number(r.rows[0].n); idle.idle += Number(r.rows[0].i); })
      .catch(() => {});
  }, 250);
  // --steady-submitters S (default 1) sessions submit, each topping up its share of the backlog. One session's
  // create_runs gets one process's share of the 2 cores among the 10 workers: at 45,000 runs/s the queue ran empty
  // (0 runs pending with every worker waiting for runs, at about a fifth of the looks; 2026-12-06 night).
  const nSub = Number(o['steady-submitters']);
  if (!Number.isInteger(nSub) || nSub < 1) throw new Error('--steady-submitters must be >= 1');
  const subs = [sub];
  for (let i = 1; i < nSub; i++) subs.push(await connect(`pwbench-steady-submit-${i + 1}`));
  const submitter = Promise.all(subs.map((c) => (async () => {
    while (!stop) {
      const left = (await counters(c)) - base;
      if (left < backlog) {
        const n = Math.ceil((2 * backlog - left) / nSub);
        const from = submitted + 1;
        submitted += n;  // (reserved before the call: the sessions' values never overlap)
        if (batchSubmit) {
          await c.query(`SELECT count(*) FROM pipeline_worker.create_runs($1, (SELECT jsonb_agg(jsonb_build_object('value', g))
                             FROM generate_series($2::int, $3::int) AS g))`, [PIPELINE, from, from + n - 1]);
        } else {
          await c.query(`SELECT count(pipeline_worker.create_run($1, jsonb_build_object('value', g)))
                             FROM generate_series($2::int, $3::int) AS g`, [PIPELINE, from, from + n - 1]);
        }
      } else {
        await sleep(20);
      }
    }
  })()));

  // A window's runs are those whose finished_at falls in it, counted through runs_stats_finished_idx (an index
  // range of the window's own runs per pipeline and status) three seconds after the window ended (a batch commits its finished_at
  // commit_interval_ms later, or later still across an fsync stall; a run committed after the count is missed, so
  // --steady-retention must be well above 13 s). Until 2026-12-02 17:00 windows were cut by the lowest unfinished id, whose
  // min(id) WHERE status = 'pending' the planner answered by walking the primary key through every finished
  // run: with 20 million runs in the table that query took up to a minute and a core, stealing CPU from the
  // workers and merging windows (several lines with the same t_s and a rate near 0).
  const LAG_MS = 3000;
  const windowStats = async (from, to) => (await sampler.query(`SELECT count(*)::float8 AS n,
        percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY ms) AS pc
      FROM (SELECT extract(epoch FROM r.finished_at - r.created_at) * 1000 AS ms
              FROM pipeline_worker.pipelines p, (VALUES ('succeeded'), ('failed'), ('cancelled')) st(status),
                   LATERAL (SELECT * FROM pipeline_worker.runs r WHERE r.pipeline_id = p.id
                             AND r.status IN ('succeeded', 'failed', 'cancelled') AND r.status = st.status
                             AND r.finished_at >= $1 AND r.finished_at < $2) r) s`,
    [from, to])).rows[0];
  const serverNow = async () => new Date(Number(await sv('SELECT extract(epoch FROM clock_timestamp()) * 1000')));
  await sampler.query('SET enable_seqscan = off');
  const windows = [];
  const t0 = now();
  let edgePrev = await serverNow();
  let finishedTotal = 0;
  // WAL written and checkpoints (cumulative): a window's WAL per run and its full-page images show what a checkpoint
  // costs the load (every page first changed after one is written whole); a fresh drain never meets one.
  // (PostgreSQL 17 moved the checkpoint counts to pg_stat_checkpointer)
  const ckptSql = Number(await sv('SHOW server_version_num')) >= 170000
    ? '(SELECT num_timed + num_requested FROM pg_stat_checkpointer)'
    : '(SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter)';
  const walNow = async () => (await sampler.query(`SELECT w.wal_bytes::float8 AS bytes, w.wal_fpi::float8 AS fpi,
      ${ckptSql} AS ckpt FROM pg_stat_wal w`)).rows[0];
  let walPrev = await walNow();
  const cpu = new CpuByKind(postmaster);
  const cpuTicker = setInterval(() => cpu.sample(), 1000);
  let cpuAt = now();
  for (let k = 1; (now() - t0) / 1000 < seconds; k++) {
    await sleep(Math.max(0, t0 + k * WINDOW_S * 1000 - now()));
    const edge = await serverNow();
    const t = now();
    const wal = await walNow();
    const c = cpu.take();
    const idleSeen = idle;
    idle = { looks: 0, idle: 0 };
    const wallS = (t - cpuAt) / 1000;
    cpuAt = t;
    await sleep(LAG_MS);
    const ws = await windowStats(edgePrev, edge);
    const rps = Number(ws.n) / ((edge - edgePrev) / 1000);
    finishedTotal += Number(ws.n);
    const lat = ws.pc ?? [NaN, NaN];
    const st = Object.fromEntries((await sampler.query(`SELECT relname, pg_relation_size(relid) AS heap,
          pg_indexes_size(relid) AS idx, n_dead_tup, autovacuum_count, autoanalyze_count, vacuum_count
        FROM pg_stat_user_tables WHERE schemaname = 'pipeline_worker' AND relname IN ('runs', 'run_steps')`))
      .rows.map((r) => [r.relname, r]));
    const mb = (x) => fmt(Number(x) / 1048576, 1);
    const ran = Math.max(1, Number(ws.n));
    const w = { k, rps, p50: Number(lat[0]), p99: Number(lat[1]),
      runsMb: fmt((Number(st.runs?.heap) + Number(st.runs?.idx) + Number(st.run_steps?.heap) + Number(st.run_steps?.idx)) / 1048576, 1) };
    windows.push(w);
    emit(`runner=pipeline_worker config=${cfg} mode=steady window=${k} t_s=${fmt((t - t0) / 1000, 0)} ` +
      `runs_per_s=${fmt(rps)} pct_of_fresh=${fmt((100 * rps) / fresh.rps)} ` +
      `pct_of_window1=${fmt((100 * rps) / windows[0].rps)} latency_p50_ms=${fmt(w.p50)} ` +
      `latency_p99_ms=${fmt(w.p99)} finished_total=${finishedTotal} ` +
      `runs_mb=${mb(st.runs?.heap)} runs_idx_mb=${mb(st.runs?.idx)} run_steps_mb=${mb(st.run_steps?.heap)} ` +
      `run_steps_idx_mb=${mb(st.run_steps?.idx)} runs_dead=${st.runs?.n_dead_tup} run_steps_dead=${st.run_steps?.n_dead_tup} ` +
      `runs_autovacuum=${st.runs?.autovacuum_count} runs_autoanalyze=${st.runs?.autoanalyze_count} ` +
      `runs_vacuum=${st.runs?.vacuum_count} run_steps_vacuum=${st.run_steps?.vacuum_count} ` +
      `run_steps_autovacuum=${st.run_steps?.autovacuum_count} run_steps_autoanalyze=${st.run_steps?.autoanalyze_count} ` +
      `wal_kb_per_run=${fmt((wal.bytes - walPrev.bytes) / 1024 / ran, 2)} fpi_per_run=${fmt((wal.fpi - walPrev.fpi) / ran, 3)} ` +
      `checkpoints=${Number(wal.ckpt) - Number(walPrev.ckpt)} ` +
      `cpu_s_pw_workers=${fmt(c.workers, 2)} cpu_s_autovacuum=${fmt(c.autovacuum, 2)} ` +
      `cpu_s_backends=${fmt(c.backends, 2)} cpu_s_pg_other=${fmt(c.pgOther, 2)} ` +
      `cpu_s_rest=${fmt(c.machine - c.workers - c.autovacuum - c.backends - c.pgOther, 2)} ` +
      `cpu_s_capacity=${fmt(NCPU * wallS, 2)} worker_cpu_us_per_run=${fmt((1e6 * c.workers) / ran, 1)} ` +
      `workers_idle_pct=${fmt(idleSeen.looks ? (100 * idleSeen.idle) / idleSeen.looks : NaN, 1)}`);
    walPrev = wal;
    edgePrev = edge;
  }
  clearInterval(cpuTicker);
  clearInterval(idleTicker);
  stop = true;
  await submitter;
  for (const c of subs) await c.end();
  let verified = 'ok';
  try {
    await h.waitZero(h.PW_LEFT, Number(o.timeout), 50, h.pwDiagnose);
  } catch (e) {
    verified = h.failText(e.message);
  }
  await sampler.end();
  await idleConn.end();
  await h.setWorkers(0);
  if (retention) {
    await q('ALTER SYSTEM RESET pipeline_worker.retention');
    await q('SELECT pg_reload_conf()');
  }
  if (verified === 'ok') {
    // with retention, the runs left are checked (the others were deleted once finished and expired)
    const left = retention ? Number(await val('SELECT count(*) FROM pipeline_worker.runs')) : submitted;
    const v = await h.check('pwbench.verify', left);
    if (v !== 'ok') verified = h.failText(v);
  }
  const rates = windows.map((w) => w.rps).sort((a, b) => a - b);
  const minPct = (100 * rates[0]) / fresh.rps;
  const medPct = (100 * rates[Math.floor(rates.length / 2)]) / fresh.rps;
  const below = windows.filter((w) => w.rps < 0.8 * fresh.rps).length;
  // The drain runs no submitter; the windows share the 2 cores with one (create_run costs CPU too). The first
  // window -- the same load on empty tables -- is the like-for-like reference of how the tables' age costs.
  const first = windows[0].rps;
  const belowFirst = windows.filter((w) => w.rps < 0.8 * first).length;
  emit(`runner=pipeline_worker config=${cfg} mode=steady_summary seconds=${seconds} windows=${windows.length} ` +
    `runs=${submitted} fresh_runs_per_s=${fmt(fresh.rps)} min_window_pct=${fmt(minPct)} median_window_pct=${fmt(medPct)} ` +
    `windows_below_80pct=${below} target=${below === 0 ? 'met' : 'MISSED'} window1_runs_per_s=${fmt(first)} ` +
    `min_window_pct_of_window1=${fmt((100 * rates[0]) / first)} windows_below_80pct_of_window1=${belowFirst} ` +
    `workers=${W} retention=${retention || 'default'} submit=${submitMode} runs_mb_first=${windows[0].runsMb} ` +
    `runs_mb_last=${windows.at(-1).runsMb} so=${h.BUILD.so} verified=${verified}`);
  results.push({ runner: 'pipeline_worker', mode: 'steady', verified });
  log(`steady: ${submitted} runs; windows at ${fmt(minPct)}-${fmt((100 * rates.at(-1)) / fresh.rps)} % of the fresh ` +
    `drain (median ${fmt(medPct)} %), ${below} below 80 %`);
}
