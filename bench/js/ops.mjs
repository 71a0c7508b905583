// --ops: the operations figures of release 0.2 in one run on one cluster (bench/README.md):
//   1. three databases with equal backlogs and 6 workers (pipeline_worker.databases): each database's rate;
//   2. a W1 drain while retention deletes runs as they expire, against the same drain with retention off;
//   3. pipeline_stats and metrics() with 1,000,000 runs (finished over an hour ago; finished within the hour;
//      pending);
//   4. purge_runs of 1,000,000 finished runs while the workers drain W1.
import pg from 'pg';
import { fmt, now, sleep } from './common.mjs';

// h: the orchestrator's helpers (main.mjs).
export async function opsMode(h) {
  const { q, val, log, emit, o, W, N, PIPELINE, results } = h;
  const only = (o['ops-figures'] ?? 'all').split(',');
  const want = (name) => only.includes('all') || only.includes(name);
  const BIG = Number(o['ops-history'] ?? 1000000);
  const pct = (a, b) => `${fmt((100 * a) / b)}%`;
  const setConf = async (name, value) => {
    await q(value == null ? `ALTER SYSTEM RESET ${name}` : `ALTER SYSTEM SET ${name} = '${value}'`);
    await q('SELECT pg_reload_conf()');
    await sleep(300);
  };
  const fresh = async () => {
    await h.setWorkers(0);
    await q('TRUNCATE pipeline_worker.run_steps, pipeline_worker.runs RESTART IDENTITY');
  };
  // n finished W1 runs (with their 3 step rows), finished `age` ago: a history, written directly.
  async function history(n, age) {
    const t = now();
    await q(`INSERT INTO pipeline_worker.runs (pipeline, pipeline_id, pipeline_owner, submitted_by, status, input,
               result, created_at, started_at, finished_at, claims)
             SELECT p.name, p.id, p.owner, p.owner, 'succeeded', jsonb_build_object('value', g),
                    jsonb_build_object('value', g + 6), now() - $3::interval - interval '2 s',
                    now() - $3::interval - interval '1 s' - (g % 97) * interval '1 ms', now() - $3::interval, 1
               FROM pipeline_worker.pipelines p, generate_series(1, $2::int) g WHERE p.name = $1`, [PIPELINE, n, age]);
    await q(`INSERT INTO pipeline_worker.run_steps (run_id, position, attempt, name, status, output, started_at, finished_at)
             SELECT r.id, k, 1, 's' || k, 'succeeded', jsonb_build_object('value', 1), r.started_at, r.finished_at
               FROM pipeline_worker.runs r, generate_series(1, 3) k WHERE r.status = 'succeeded'`);
    await q('VACUUM ANALYZE pipeline_worker.runs');
    await q('VACUUM ANALYZE pipeline_worker.run_steps');
    log(`ops: ${n} finished runs (${age} ago) written in ${fmt((now() - t) / 1000)} s`);
  }
  // A W1 drain of n new runs (the workers stopped while they are queued); runs/s from the server's timestamps.
  async function drain(label, n) {
    const retentionOn = (await val('SHOW pipeline_worker.retention')) !== '-1';
    await h.setWorkers(0);
    const first = Number(await val("SELECT coalesce(max(id), 0) + 1 FROM pipeline_worker.runs"));
    await q(`SELECT count(pipeline_worker.create_run($1, jsonb_build_object('value', g)))
               FROM generate_series(1, $2::int) AS g`, [PIPELINE, n]);
    await q('CHECKPOINT');
    const t0 = await val('SELECT clock_timestamp()::text');
    await q(`ALTER SYSTEM SET pipeline_worker.workers = ${W}`);
    await q('SELECT pg_reload_conf()');
    let verified = 'ok';
    try {
      await h.waitZero(h.PW_LEFT, Number(o.timeout), 20, h.pwDiagnose);
    } catch (e) {
      verified = h.failText(e.message);
    }
    const r = (await q(`SELECT count(*) FILTER (WHERE status = 'succeeded') AS ok,
                               count(*) FILTER (WHERE status <> 'succeeded') AS bad,
                               extract(epoch FROM max(finished_at) - $2::timestamptz) AS secs
                          FROM pipeline_worker.runs WHERE id >= $1`, [first, t0]))[0];
    // (with retention on, runs that finished first may be deleted already: none may be unfinished or failed)
    const deleted = retentionOn ? n - Number(r.ok) - Number(r.bad) : 0;
    if (verified === 'ok' && Number(r.ok) + deleted !== n) verified = h.failText(`${r.ok}_of_${n}_succeeded`);
    const rps = n / Number(r.secs);
    results.push({ runner: 'pipeline_worker', config: label, mode: 'ops', workers: W, runs: n, rps, verified });
    return { rps, verified };
  }
  // median of 5 timings (ms) of one statement, after one warm-up
  async function timed(sql) {
    await q(sql);
    const ms = [];
    for (let i = 0; i < 5; i++) {
      const t = now();
      await q(sql);
      ms.push(now() - t);
    }
    return ms.sort((a, b) => a - b)[2];
  }
  async function statsFigures(shape) {
    const stats = await timed('SELECT * FROM pipeline_worker.pipeline_stats');
    const metrics = await timed('SELECT pipeline_worker.metrics()');
    const runs = await val('SELECT count(*) FROM pipeline_worker.runs');
    emit(`ops figure=pipeline_stats_ms shape=${shape} runs=${runs} ms=${fmt(stats, 2)} target=<=100 ` +
      `${stats <= 100 ? 'met' : 'MISSED'}`);
    emit(`ops figure=metrics_ms shape=${shape} runs=${runs} ms=${fmt(metrics, 2)} target=<=5 ${metrics <= 5 ? 'met' : 'MISSED'}`);
  }

  // 1. Three databases, equal backlogs, 6 workers.
  if (want('databases')) {
    const dbs = ['pwb_a', 'pwb_b', 'pwb_c'];
    const per = Number(o['ops-db-runs'] ?? 20000);
    await h.setWorkers(0);
    for (const d of dbs) {
      await q(`DROP DATABASE IF EXISTS ${d}`);
      await q(`CREATE DATABASE ${d}`);
      const c = new pg.Client({ database: d, application_name: 'pwbench-ops' });
      await c.connect();
      await h.runSqlFileOn(c, 'pw.sql');
      await c.query(`SELECT count(pipeline_worker.create_run($1, jsonb_build_object('value', g)))
                       FROM generate_series(1, $2::int) AS g`, [PIPELINE, per]);
      await c.end();
    }
    await setConf('pipeline_worker.databases', dbs.join(','));
    const t0 = await val('SELECT clock_timestamp()::text');
    await q("ALTER SYSTEM SET pipeline_worker.workers = 6");
    await q('SELECT pg_reload_conf()');
    const rates = [];
    for (const d of dbs) {
      const c = new pg.Client({ database: d, application_name: 'pwbench-ops' });
      await c.connect();
      const left = `SELECT count(*) AS n FROM pipeline_worker.runs WHERE status IN ('pending', 'running')`;
      for (const t = now(); Number((await c.query(left)).rows[0].n) > 0;) {
        if (now() - t > 900000) throw new Error(`${d}: not drained in 900 s`);
        await sleep(100);
      }
      const r = (await c.query(`SELECT count(*) FILTER (WHERE status = 'succeeded') AS ok,
          extract(epoch FROM max(finished_at) - $1::timestamptz) AS secs FROM pipeline_worker.runs`, [t0])).rows[0];
      rates.push(per / Number(r.secs));
      results.push({ runner: 'pipeline_worker', config: `db_${d}`, mode: 'ops', workers: 6, runs: per,
        rps: per / Number(r.secs), verified: Number(r.ok) === per ? 'ok' : h.failText(`${r.ok}_of_${per}`) });
      await c.end();
    }
    await h.setWorkers(0);
    await setConf('pipeline_worker.databases', null);
    const mean = rates.reduce((a, b) => a + b, 0) / rates.length;
    const dev = Math.max(...rates.map((r) => Math.abs(r - mean) / mean));
    emit(`ops figure=three_databases runs_each=${per} workers=6 runs_per_s=${rates.map((r) => fmt(r)).join('/')} ` +
      `max_deviation=${pct(dev, 1)} target=<=30% ${dev <= 0.3 ? 'met' : 'MISSED'}`);
    for (const d of dbs) await q(`DROP DATABASE ${d}`);
  }

  // 2. A W1 drain while retention deletes runs as they expire, against the same drain with retention off. In steady
  // state retention deletes at the rate runs finish (a minute later): '1 second' compresses that into a drain of a few
  // seconds (with '1 minute', nothing would expire before the drain ends). --ops-retention-history N (0) adds N runs
  // expired before the drain starts (a burst to clean up, e.g. right after retention is lowered).
  if (want('retention')) {
    const n = Math.max(N, 200000);
    const hist = Number(o['ops-retention-history'] ?? 0);
    await fresh();
    await setConf('pipeline_worker.retention', '-1');
    if (hist > 0) await history(hist, '2 minutes');
    const off = await drain('retention_off', n);
    await fresh();
    if (hist > 0) await history(hist, '2 minutes');
    await setConf('pipeline_worker.retention', '1 second');
    const on = await drain('retention_1s', n);
    const left = Number(await val('SELECT count(*) FROM pipeline_worker.runs'));
    await setConf('pipeline_worker.retention', null);
    emit(`ops figure=w1_drain_with_retention runs=${n} retention=1s expired_history=${hist} runs_per_s=${fmt(on.rps)} ` +
      `without=${fmt(off.rps)} of_without=${pct(on.rps, off.rps)} deleted_by_the_end=${n + hist - left} ` +
      `target=>=80% ${on.rps >= 0.8 * off.rps ? 'met' : 'MISSED'} verified=${on.verified === 'ok' ? off.verified : on.verified}`);
  }

  // 3. pipeline_stats and metrics() with BIG runs; 4. purge_runs of them while the workers drain.
  if (want('stats') || want('purge')) {
    await fresh();
    await setConf('pipeline_worker.retention', '-1');
    await history(BIG, '2 hours');
    if (want('stats')) {
      await h.setWorkers(W);  // the lead worker counts the gauges now and then, as in production
      await sleep(1000);
      await statsFigures('finished_over_1h_ago');
      await h.setWorkers(0);
      await q("UPDATE pipeline_worker.runs SET finished_at = now() - interval '30 minutes' - (id % 1000) * interval '1 ms'");
      await q('VACUUM ANALYZE pipeline_worker.runs');
      // (the finish times were moved by hand: the roll-ups start over, as after a restore, and the lead worker
      // seals the hour's minutes again, as it does in production)
      await q("UPDATE pipeline_worker.finished_sealed SET upto = '-infinity'");
      await q('DELETE FROM pipeline_worker.finished_minutes');
      await h.setWorkers(W);
      for (const t = now(); (await val("SELECT upto >= date_trunc('minute', now()) FROM pipeline_worker.finished_sealed")) !== true;) {
        if (now() - t > 60000) throw new Error('the roll-ups were not sealed within 60 s');
        await sleep(200);
      }
      await statsFigures('finished_within_1h');
      await h.setWorkers(0);
      await q("UPDATE pipeline_worker.runs SET finished_at = now() - interval '2 hours'");
      await q('VACUUM ANALYZE pipeline_worker.runs');
    }
    if (want('purge')) {
      const purger = new pg.Client({ application_name: 'pwbench-purge' });
      await purger.connect();
      const t = now();
      const purge = purger.query("SELECT pipeline_worker.purge_runs('1 hour') AS n");
      const during = await drain('during_purge', N);
      const purged = Number((await purge).rows[0].n);
      const secs = (now() - t) / 1000;
      await purger.end();
      emit(`ops figure=purge_runs runs=${purged} seconds=${fmt(secs, 2)} runs_per_s=${fmt(purged / secs)} ` +
        `target=>=50000 ${purged / secs >= 50000 ? 'met' : 'MISSED'} w1_drain_meanwhile_runs_per_s=${fmt(during.rps)} ` +
        `verified=${purged === BIG ? during.verified : h.failText(`purged_${purged}_of_${BIG}`)}`);
    }
    if (want('stats')) {
      await fresh();
      await q(`SELECT count(*) FROM pipeline_worker.create_runs($1, (SELECT jsonb_agg(jsonb_build_object('value', g))
                 FROM generate_series(1, $2::int) g))`, [PIPELINE, BIG]);
      await q('VACUUM ANALYZE pipeline_worker.runs');
      await statsFigures('pending');
      await fresh();
    }
    await setConf('pipeline_worker.retention', null);
  }
}
