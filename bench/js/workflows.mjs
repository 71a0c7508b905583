// --workflows: the workflow figures of release 0.2 in one run on one cluster (bench/README.md):
//   1. W1 drain (the reference) and a diamond DAG (a -> b, c -> d) drain of --runs runs;
//   2. W2 fan-out/fan-in: --w2-runs runs with input {"n": --w2-n}, split -> square (map) -> sum, tasks/s, against a
//      plain Node pg pool doing the same (one transaction per task) on the same cluster;
//   3. --sleep-runs runs sleeping at once: workers busy and server CPU while asleep; then all of them due in the
//      same second: how fast they finish;
//   4. send_event commit -> waiting step succeeded: p50/p99 over --event-samples events.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fmt, now, sleep } from './common.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

// server CPU seconds (user + system) of the postgres processes, from /proc
function serverCpuSeconds(pgdata) {
  const pid = Number(fs.readFileSync(path.join(pgdata, 'postmaster.pid'), 'utf8').split('\n')[0]);
  let ticks = 0;
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(d) === pid || Number(f[1]) === pid) ticks += Number(f[11]) + Number(f[12]);
    } catch { /* gone */ }
  }
  return ticks / 100;
}

export async function workflowsMode(h) {
  const { q, val, log, emit, o, W, N, PIPELINE, results } = h;
  const only = (o['workflow-figures'] ?? 'all').split(',');
  const want = (name) => only.includes('all') || only.includes(name);
  const pct = (a, b) => `${fmt((100 * a) / b)}%`;
  await h.runSqlFileOn(h.ctl, 'workflows.sql');
  const fresh = async () => {
    await h.setWorkers(0);
    await q('TRUNCATE pipeline_worker.run_steps, pipeline_worker.runs, pipeline_worker.events, pwflow.squares RESTART IDENTITY');
  };
  // A drain of the runs queued with the workers stopped: seconds from starting them to the last finish.
  async function drain(label, first, n) {
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
                               extract(epoch FROM max(finished_at) - $2::timestamptz) AS secs
                          FROM pipeline_worker.runs WHERE id >= $1`, [first, t0]))[0];
    if (verified === 'ok' && Number(r.ok) !== n) verified = h.failText(`${r.ok}_of_${n}_succeeded`);
    const secs = Number(r.secs);
    results.push({ runner: 'pipeline_worker', config: label, mode: 'workflows', workers: W, runs: n, rps: n / secs,
      verified });
    return { secs, rps: n / secs, verified };
  }
  async function queue(pipeline, n, input) {
    await h.setWorkers(0);
    const first = Number(await val('SELECT coalesce(max(id), 0) + 1 FROM pipeline_worker.runs'));
    await q(`SELECT count(*) FROM pipeline_worker.create_runs($1, (SELECT jsonb_agg(${input}) FROM generate_series(1, $2::int) g))`,
      [pipeline, n]);
    await q('VACUUM ANALYZE pipeline_worker.runs');
    return first;
  }

  // 1. W1 and the diamond
  let w1 = null;
  if (want('diamond') || want('w2')) {
    await fresh();
    w1 = await drain('w1', await queue(PIPELINE, N, "jsonb_build_object('value', g)"), N);
    emit(`workflows figure=w1_drain runs=${N} workers=${W} runs_per_s=${fmt(w1.rps)} verified=${w1.verified}`);
  }
  if (want('diamond')) {
    await fresh();
    const d = await drain('diamond', await queue('diamond', N, "jsonb_build_object('value', g)"), N);
    const bad = Number(await val(`SELECT count(*) FROM pipeline_worker.runs
                                   WHERE (result->>'value')::bigint <> 2 * (input->>'value')::bigint + 4`));
    const verified = d.verified === 'ok' && bad > 0 ? h.failText(`${bad}_wrong_results`) : d.verified;
    emit(`workflows figure=diamond_drain runs=${N} workers=${W} runs_per_s=${fmt(d.rps)} of_w1=${pct(d.rps, w1.rps)} ` +
      `target=>=60% ${d.rps >= 0.6 * w1.rps ? 'met' : 'MISSED'} verified=${verified}`);
  }

  // 2. W2, ours and the Node pool's
  if (want('w2')) {
    const runs = Number(o['w2-runs'] ?? 1000), n = Number(o['w2-n'] ?? 100);
    const tasks = runs * n, expect = (n * (n + 1) * (2 * n + 1)) / 6;
    await fresh();
    const ours = await drain('w2', await queue('w2', runs, `jsonb_build_object('n', ${n})`), runs);
    const chk = (await q(`SELECT (SELECT count(*) FROM pwflow.squares) AS squares,
                                 (SELECT count(*) FROM pipeline_worker.runs WHERE (result->>'value')::bigint <> $1) AS wrong`,
      [expect]))[0];
    let verified = ours.verified;
    if (verified === 'ok' && (Number(chk.squares) !== tasks || Number(chk.wrong) !== 0))
      verified = h.failText(`squares_${chk.squares}_wrong_${chk.wrong}`);
    const tps = tasks / ours.secs;
    // the Node pool
    await h.setWorkers(0);
    await q('TRUNCATE pwflow.peer_runs, pwflow.peer_tasks, pwflow.peer_squares RESTART IDENTITY');
    await q('INSERT INTO pwflow.peer_runs (n) SELECT $1 FROM generate_series(1, $2::int)', [n, runs]);
    await q(`INSERT INTO pwflow.peer_tasks (run_id, kind, prio) SELECT id, 'split', 2 FROM pwflow.peer_runs ORDER BY id`);
    await q('VACUUM ANALYZE pwflow.peer_runs');
    await q('CHECKPOINT');
    const t = now();
    await new Promise((resolve, reject) => {
      const p = spawn(process.execPath, [path.join(HERE, 'peer-node-w2.mjs'), String(W)], { stdio: 'inherit' });
      p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`peer-node-w2 exited ${code}`))));
    });
    const psecs = (now() - t) / 1000;
    const pchk = (await q(`SELECT (SELECT count(*) FROM pwflow.peer_squares) AS squares,
                                  (SELECT count(*) FROM pwflow.peer_runs WHERE status <> 'succeeded'
                                      OR (result->>'value')::bigint <> $1) AS wrong`, [expect]))[0];
    const pverified = Number(pchk.squares) === tasks && Number(pchk.wrong) === 0 ? 'ok' : h.failText('node_w2');
    results.push({ runner: 'node-pool-w2', config: 'w2', mode: 'workflows', workers: W, runs, rps: runs / psecs,
      verified: pverified });
    const ptps = tasks / psecs;
    emit(`workflows figure=w2 runs=${runs} n=${n} tasks=${tasks} workers=${W} tasks_per_s=${fmt(tps)} ` +
      `node_pool_tasks_per_s=${fmt(ptps)} ratio=${fmt(tps / ptps, 1)}x target=>=20000_and_>=20x ` +
      `${tps >= 20000 && tps >= 20 * ptps ? 'met' : 'MISSED'} verified=${verified}/${pverified}`);
  }

  // 3. sleeping runs
  if (want('sleep')) {
    const n = Number(o['sleep-runs'] ?? 100000);
    await fresh();
    const first = await queue('nap', n, "jsonb_build_object('value', g)");
    await q(`ALTER SYSTEM SET pipeline_worker.workers = ${W}`);
    await q('SELECT pg_reload_conf()');
    const t = now();
    await h.waitZero(`SELECT count(*) FROM pipeline_worker.runs WHERE id >= ${first} AND status <> 'waiting'`,
      Number(o.timeout), 50);
    const enter = (now() - t) / 1000;
    // asleep: sample the workers' states and the server's CPU for 5 s
    await sleep(500);
    const cpu0 = serverCpuSeconds(o.pgdata), w0 = now();
    let busy = 0;
    for (let i = 0; i < 25; i++) {
      busy = Math.max(busy, Number(await val(`SELECT count(*) FROM pg_stat_activity
                                               WHERE backend_type = 'pipeline_worker' AND state = 'active'`)));
      await sleep(200);
    }
    const cpuPct = (100 * (serverCpuSeconds(o.pgdata) - cpu0)) / ((now() - w0) / 1000);
    // all due in the same second: the sleeps' start moved back so that each ends 2 s from now (the benchmark's
    // shortcut to have 100,000 sleeps end together; the workers see nothing else)
    await q(`UPDATE pipeline_worker.run_steps SET started_at = now() + interval '2 seconds' - interval '30 seconds'
              WHERE run_id >= $1 AND status = 'waiting'`, [first]);
    await q(`UPDATE pipeline_worker.runs SET not_before = now() + interval '2 seconds' WHERE id >= $1 AND status = 'waiting'`,
      [first]);
    const due = await val(`SELECT (now() + interval '2 seconds')::text`);
    // (the workers' timer still says 30 s: a run submitted with run_at = that moment sets it, as any run_at does)
    await q(`SELECT pipeline_worker.create_run($1, '{"value": 0}', run_at => $2::timestamptz)`, [PIPELINE, due]);
    await h.waitZero(`SELECT count(*) FROM pipeline_worker.runs WHERE id >= ${first} AND pipeline = 'nap'
                         AND status <> 'succeeded'`, Number(o.timeout), 50);
    const secs = Number(await val(`SELECT extract(epoch FROM max(finished_at) - $1::timestamptz) FROM pipeline_worker.runs
                                    WHERE id >= $2 AND pipeline = 'nap'`, [due, first]));
    const rate = n / secs;
    const ref = w1 ? w1.rps : null;
    emit(`workflows figure=sleeping runs=${n} enter_s=${fmt(enter, 1)} busy_workers_asleep=${busy} ` +
      `server_cpu_asleep=${fmt(cpuPct, 1)}% wake_runs_per_s=${fmt(rate)}` +
      (ref ? ` of_w1=${pct(rate, ref)} target=>=50% ${rate >= 0.5 * ref && busy === 0 ? 'met' : 'MISSED'}` : ''));
  }

  // 4. send_event -> succeeded
  if (want('events')) {
    const samples = Number(o['event-samples'] ?? 500);
    await fresh();
    const first = await queue('evt', samples, "jsonb_build_object('value', g)");
    await q(`ALTER SYSTEM SET pipeline_worker.workers = ${W}`);
    await q('SELECT pg_reload_conf()');
    await h.waitZero(`SELECT count(*) FROM pipeline_worker.runs WHERE id >= ${first} AND status <> 'waiting'`,
      Number(o.timeout), 50);
    await sleep(500);
    const ids = (await q(`SELECT id FROM pipeline_worker.runs WHERE id >= $1 AND pipeline = 'evt' ORDER BY id`, [first]))
      .map((r) => r.id);
    for (const id of ids) {
      await q("SELECT pipeline_worker.send_event($1::bigint, 'go', '{}')", [id]);
      await sleep(5);
    }
    await h.waitZero(`SELECT count(*) FROM pipeline_worker.runs WHERE id >= ${first} AND status <> 'succeeded'`,
      Number(o.timeout), 20);
    const lat = (await q(`SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50,
                                 percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99
                            FROM (SELECT extract(epoch FROM pg_xact_commit_timestamp(s.xmin) - e.sent_at) * 1000 AS ms
                                    FROM pipeline_worker.events e
                                    JOIN pipeline_worker.run_steps s ON s.run_id = e.run_id AND s.name = 'go'
                                   WHERE s.status = 'succeeded') x`))[0];
    emit(`workflows figure=send_event_latency samples=${samples} p50_ms=${fmt(Number(lat.p50), 2)} ` +
      `p99_ms=${fmt(Number(lat.p99), 2)} target=p50<=2ms ${Number(lat.p50) <= 2 ? 'met' : 'MISSED'} ` +
      `(from send_event's insert to the commit of the step's success: both commits included)`);
  }
  await h.setWorkers(0);
}
