// W1 on the extension: a timed drain of pre-inserted runs and a latency run (open-loop submission, with the floor
// of a bare INSERT's commit beside it), each verified; and the modes that run them next to the peers' runs
// (peers.mjs): drain, latency and sweep (drains at --sweep-workers, ratios, charts).
import path from 'node:path';
import { fmt, hostBusyPct } from './common.mjs';
import { floorCols, startFloor } from './floor.mjs';
import { latencyCols } from './measure.mjs';
import { PEERS } from './options.mjs';

// h: the orchestrator's helpers (main.mjs: options, report, cluster, measures, children).
export function pwRunners(h) {
  const { o, TIMEOUT, PIPELINE, BUILD, log, emit, results, q, check, setWorkers, applyConfig, configDesc, insertRuns,
    waitZero, PW_LEFT, pwDiagnose, failText, settle, mark, between, latencies, commitLatencies, holdSnapshot,
    timedWorkers, childResult } = h;

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

  return { pwDrain, pwLatency };
}

// --mode drain: each pipeline_worker configuration and each peer, --reps times, then the ratio lines.
export async function drainMode(h) {
  const { N, W, REPS, pwConfigs, peers, pwDrain, peerDrain, printRatios } = h;
  for (let rep = 1; rep <= REPS; rep++) {
    for (const cfg of pwConfigs) await pwDrain(cfg, N, W);
    for (const p of peers) await peerDrain(p, N, W);
  }
  if (pwConfigs.length && peers.length) printRatios([W]);
}

// --mode latency: the same at --rate runs/s for --duration s (the peers that have a latency mode).
export async function latencyMode(h) {
  const { W, REPS, pwConfigs, peers, log, pwLatency, peerLatency } = h;
  const skipped = peers.filter((x) => !PEERS[x].latency);
  if (skipped.length) log(`latency mode: skipping ${skipped.join(', ')} (drain-only peers)`);
  for (let rep = 1; rep <= REPS; rep++) {
    for (const cfg of pwConfigs) await pwLatency(cfg, W);
    for (const p of peers.filter((x) => PEERS[x].latency)) await peerLatency(p, W);
  }
}

// --mode sweep: drains at each of --sweep-workers, one latency run each at --workers, ratios and charts.
export async function sweepMode(h) {
  const { o, N, W, REPS, pwConfigs, peers, log, pwDrain, peerDrain, pwLatency, peerLatency, printRatios, charts } = h;
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
}
