// --flow: the flow-control figures of release 0.2, side by side in one run on one cluster (bench/README.md):
// plain W1 drain and graphile-worker's tuned no-op rate (the reference pair), W1 with priorities over 10 levels,
// W1 with 100 concurrency keys at "concurrency_per_key": 1, W1 at "concurrency": 4 with a backlog, a 10,000-run drain with 1,000,000 future-dated runs in
// the table, run_at start lateness, create_runs against create_run, and 100 '1 seconds' schedules.
import { fmt, sleep } from './common.mjs';

// h: the orchestrator's helpers (main.mjs).
export async function flowMode(h) {
  const { q, val, log, emit, W, N, PIPELINE } = h;
  const only = (h.o['flow-figures'] ?? 'all').split(',');
  const want = (name) => only.includes('all') || only.includes(name);
  const pct = (a, b) => `${fmt((100 * a) / b)}%`;
  const quantile = (xs, p) => xs.length ? xs[Math.min(xs.length - 1, Math.floor(p * xs.length))] : NaN;

  // A drain of whatever `fill` queued (the workers stopped meanwhile); `left` counts what must finish.
  const LEFT_READY = `SELECT (SELECT count(*) FROM pipeline_worker.runs WHERE status = 'running')
    + (SELECT count(*) FROM pipeline_worker.runs WHERE status = 'pending' AND not_before IS NULL AND parked IS NULL) AS n`;
  // (the probe counts through the queue index: a scan of the million future runs every 20 ms would be the probe's
  // own load, not the workers')
  async function drain(label, n, fill, left = h.PW_LEFT, verify = true) {
    await h.setWorkers(0);
    await h.applyConfig('default');
    await q('TRUNCATE pipeline_worker.run_steps, pipeline_worker.runs RESTART IDENTITY');
    await fill();
    await q('CHECKPOINT');
    log(`flow ${label}: ${n} runs, ${W} workers`);
    const release = await h.holdSnapshot();  // (--hold-snapshot 1: a snapshot held through the drain)
    const t0 = await val('SELECT clock_timestamp()::text');
    await q(`ALTER SYSTEM SET pipeline_worker.workers = ${W}`);
    await q('SELECT pg_reload_conf()');
    let verified = 'ok';
    try {
      await h.waitZero(left, h.o.timeout ? Number(h.o.timeout) : 900, 20, h.pwDiagnose);
    } catch (e) {
      verified = h.failText(e.message);
    }
    const held = await release();
    const secs = Number(await val(`SELECT extract(epoch FROM max(finished_at) - $1::timestamptz)
                                     FROM pipeline_worker.runs WHERE finished_at IS NOT NULL`, [t0]));
    await h.setWorkers(0);
    const done = Number(await val("SELECT count(*) FROM pipeline_worker.runs WHERE status = 'succeeded'"));
    if (verified === 'ok' && done !== n) verified = h.failText(`${done}_of_${n}_succeeded`);
    if (verified === 'ok' && verify) {
      const v = await h.check('pwbench.verify', n);
      if (v !== 'ok') verified = h.failText(v);
    }
    const rps = n / secs;
    h.results.push({ runner: 'pipeline_worker', config: label, mode: 'flow', workers: W, runs: n, seconds: secs, rps, verified });
    return { rps, secs, verified, held };
  }
  const insertW1 = (extra = '', n = N) => q(`SELECT count(pipeline_worker.create_run($1, jsonb_build_object('value', g)${extra}))
                                              FROM generate_series(1, $2::int) AS g`, [PIPELINE, n]);

  // 1. The reference pair.
  const plain = await drain('w1', N, () => insertW1());
  emit(`flow figure=w1_drain runs=${N} workers=${W} runs_per_s=${fmt(plain.rps)} verified=${plain.verified}${plain.held}`);
  let graphile = null;
  if (h.peers.includes('graphile-noop-batched')) {
    graphile = await h.peerDrain('graphile-noop-batched', N, W);
    emit(`flow figure=graphile_noop_batched runs_per_s=${fmt(graphile.rps)} ratio=${fmt(plain.rps / graphile.rps, 2)}x ` +
      `target=>=2x verified=${graphile.verified}`);
  }

  // 2. Priorities over 10 levels.
  if (want('priorities')) {
  const prio = await drain('priorities', N, () => insertW1(', priority => g % 10'));
  emit(`flow figure=w1_priorities_10_levels runs_per_s=${fmt(prio.rps)} of_plain=${pct(prio.rps, plain.rps)} ` +
    `target=>=80% verified=${prio.verified}${prio.held}`);
  }

  // 3. 100 concurrency keys, one run per key at a time.
  if (want('keys')) {
  await q(`SELECT pipeline_worker.alter_pipeline($1, '{"concurrency_per_key": 1}')`, [PIPELINE]);
  const keys = await drain('keys100', N, () => insertW1(", concurrency_key => 'k' || (g % 100)"));
  await q(`SELECT pipeline_worker.alter_pipeline($1, '{"concurrency_per_key": null}')`, [PIPELINE]);
  emit(`flow figure=w1_100_keys_per_key_1 runs_per_s=${fmt(keys.rps)} of_plain=${pct(keys.rps, plain.rps)} ` +
    `target=>=50% verified=${keys.verified}${keys.held}`);
  }

  // 3b. A pipeline-wide limit with a backlog: --flow-limited runs (default 50,000) at "concurrency": 4. Four runs at
  // a time, each slot freed by a commit: bound by commits, not by CPU -- until 2026-12-03 every claim walked the
  // whole filtered backlog (50,000 runs took 58 s, both cores busy).
  if (want('limit')) {
  const nl = Number(h.o['flow-limited'] ?? 50000);
  await q(`SELECT pipeline_worker.alter_pipeline($1, '{"concurrency": 4}')`, [PIPELINE]);
  const lim = await drain('limit4', nl, () => insertW1('', nl));
  await q(`SELECT pipeline_worker.alter_pipeline($1, '{"concurrency": null}')`, [PIPELINE]);
  emit(`flow figure=w1_pipeline_concurrency_4 runs=${nl} runs_per_s=${fmt(lim.rps)} seconds=${fmt(lim.secs, 1)} ` +
    `verified=${lim.verified}${lim.held}`);
  }

  // 4. 10,000 runs to drain with 1,000,000 future-dated runs in the table.
  if (want('future')) {
  const future = Number(h.o['flow-future'] ?? 1000000);
  const fut = await drain(`future${future}`, N, async () => {
    for (let done = 0; done < future; done += 100000) {
      await q(`SELECT count(*) FROM pipeline_worker.create_runs($1,
                 (SELECT jsonb_agg(jsonb_build_object('value', g)) FROM generate_series(1, $2::int) g),
                 run_at => now() + interval '1 day')`, [PIPELINE, Math.min(100000, future - done)]);
    }
    await q('VACUUM ANALYZE pipeline_worker.runs');
    await insertW1();
  }, LEFT_READY, false);
  emit(`flow figure=w1_with_${future}_future_runs runs_per_s=${fmt(fut.rps)} of_plain=${pct(fut.rps, plain.rps)} ` +
    `target=>=80% verified=${fut.verified}${fut.held}`);
  }

  if (want('run_at')) {
  // 5. run_at lateness: 1,000 runs due at spread times over 5 s, the workers running and idle.
  await h.setWorkers(0);
  await q('TRUNCATE pipeline_worker.run_steps, pipeline_worker.runs RESTART IDENTITY');
  await h.setWorkers(W);
  await q('CHECKPOINT');
  // warm-up (not measured): the workers' first timer rounds plan their statements
  await q(`SELECT count(pipeline_worker.create_run($1, jsonb_build_object('value', g),
             run_at => clock_timestamp() + (g * 7 % 500) * interval '1 ms')) FROM generate_series(1, 200) g`, [PIPELINE]);
  await h.waitZero(h.PW_LEFT, 60, 50);
  await q('DELETE FROM pipeline_worker.run_steps; DELETE FROM pipeline_worker.runs');
  await sleep(500);
  await q(`SELECT count(pipeline_worker.create_run($1, jsonb_build_object('value', g),
             run_at => clock_timestamp() + interval '1 s' + (g * 4999 % 5000) * interval '1 ms'))
             FROM generate_series(1, 1000) g`, [PIPELINE]);
  await h.waitZero(h.PW_LEFT, 60, 50);
  const late = (await q(`SELECT extract(epoch FROM started_at - run_at) * 1000 AS ms FROM pipeline_worker.runs
                          ORDER BY 1`)).map((r) => Number(r.ms));
  const early = late.filter((x) => x < 0).length;
  emit(`flow figure=run_at_lateness runs=1000 p50_ms=${fmt(quantile(late, 0.5), 1)} p99_ms=${fmt(quantile(late, 0.99), 1)} ` +
    `max_ms=${fmt(late[late.length - 1], 1)} started_early=${early} target=p99<=50ms`);
  }

  if (want('create_runs')) {
  // 6. create_runs of 100,000 inputs against create_run called 100,000 times in one statement.
  await h.setWorkers(0);
  const BULK = 100000;
  const timed = async (sql, params) => {
    await q('TRUNCATE pipeline_worker.run_steps, pipeline_worker.runs RESTART IDENTITY');
    await q('CHECKPOINT');
    const t = Date.now();
    await q(sql, params);
    return (Date.now() - t) / 1000;
  };
  const bulkS = await timed(`SELECT count(*) FROM pipeline_worker.create_runs($1,
      (SELECT jsonb_agg(jsonb_build_object('value', g)) FROM generate_series(1, $2::int) g))`, [PIPELINE, BULK]);
  const oneS = await timed(`SELECT count(pipeline_worker.create_run($1, jsonb_build_object('value', g)))
      FROM generate_series(1, $2::int) g`, [PIPELINE, BULK]);
  emit(`flow figure=create_runs_100000 runs_per_s=${fmt(BULK / bulkS)} create_run_runs_per_s=${fmt(BULK / oneS)} ` +
    `ratio=${fmt(oneS / bulkS, 2)}x target=>=50000/s_and_>=5x`);
  }

  // 7. 100 schedules of '1 seconds' for 20 s.
  if (want('schedules')) {
  await q('TRUNCATE pipeline_worker.run_steps, pipeline_worker.runs RESTART IDENTITY');
  await h.setWorkers(W);
  await q(`SELECT pipeline_worker.schedule('flow' || i, $1, '1 seconds') FROM generate_series(1, 100) i`, [PIPELINE]);
  await sleep(20500);
  await q(`SELECT pipeline_worker.unschedule('flow' || i) FROM generate_series(1, 100) i`);
  await h.waitZero(h.PW_LEFT, 60, 50);
  const fire = (await q(`SELECT extract(epoch FROM created_at - (metadata->>'scheduled_for')::timestamptz) * 1000 AS ms
                           FROM pipeline_worker.runs ORDER BY 1`)).map((r) => Number(r.ms));
  const gaps = Number(await val(`SELECT count(*) FROM (SELECT metadata->>'schedule' s,
      (metadata->>'scheduled_for')::timestamptz t,
      lag((metadata->>'scheduled_for')::timestamptz) OVER (PARTITION BY metadata->>'schedule'
                                                          ORDER BY (metadata->>'scheduled_for')::timestamptz) p
      FROM pipeline_worker.runs) x WHERE p IS NOT NULL AND t - p <> interval '1 s'`));
  const dups = Number(await val(`SELECT count(*) - count(DISTINCT (metadata->>'schedule', metadata->>'scheduled_for'))
                                   FROM pipeline_worker.runs`));
  const perSchedule = await val(`SELECT min(n) || '-' || max(n) FROM (SELECT count(*) n FROM pipeline_worker.runs
                                   GROUP BY metadata->>'schedule') x`);
  emit(`flow figure=schedules_100x1s runs=${fire.length} per_schedule=${perSchedule} p50_ms=${fmt(quantile(fire, 0.5), 1)} ` +
    `p99_ms=${fmt(quantile(fire, 0.99), 1)} duplicates=${dups} missed=${gaps} target=p99<=100ms,0,0`);
  }
  await h.setWorkers(0);
}
