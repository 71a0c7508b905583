// --scale: drain throughput and claim cost against the size of the backlog, then with the last backlog's runs left in
// the tables as finished history. See ../README.md.
import { fmt, median, now } from './common.mjs';
import { usage } from './options.mjs';

// h: the orchestrator's helpers (main.mjs).
export async function scaleMode(h) {
  const { o, W, REPS, pwConfigs, BUILD, log, emit, results, q, val, check, setWorkers, applyConfig, configDesc,
    insertRuns, failText, settle, mark, between, timedWorkers } = h;

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
