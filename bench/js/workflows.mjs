// --workflows: the workflow figures of release 0.2 in one run on one cluster (bench/README.md):
//   1. W1 drain (the reference) and a diamond DAG (a -> b, c -> d) drain of --runs runs;
//   2. W2 fan-out/fan-in: --w2-runs runs with input {"n": --w2-n}, split -> square (map) -> sum, tasks/s, against the
//      peers of --w2-peers (node,dbos,pgflow) on the same cluster: a plain Node pg pool doing the same (one transaction
//      per task, --w2-runs runs, schema pwflow), DBOS Transact (child workflows on a queue) and pgflow (a map step),
//      each of these two in a database of its own at --w2-peer-runs (200) runs; pipeline_worker's tasks/s over each;
//   3. --sleep-runs runs sleeping at once: workers busy and server CPU while asleep; then all of them due in the
//      same second: how fast they finish;
//   4. send_event commit -> waiting step succeeded: p50/p99 over --event-samples events.
import { fork, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { clusterCpu, fmt, now, sleep } from './common.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

// server CPU seconds (user + system) of the postgres processes, from /proc
function serverCpuSeconds(pgdata) {
  const pid = Number(fs.readFileSync(path.join(pgdata, 'postmaster.pid'), 'utf8').split('\n')[0]);
  let s = 0;
  for (const cpu of clusterCpu(pid).values()) s += cpu;
  return s;
}

// Runs `script` (a peer driver) with PGDATABASE = db; resolves with the {type: 'result'} message it sends, if any. Its
// stdout goes to our stderr (DBOS logs there), so that stdout keeps the result lines only.
function runPeer(script, args, db) {
  return new Promise((resolve, reject) => {
    const p = fork(path.join(HERE, script), args, {
      env: { ...process.env, PGDATABASE: db }, stdio: ['ignore', 2, 2, 'ipc'],
    });
    let result = null;
    p.on('message', (m) => { if (m?.type === 'result') result = m; });
    p.on('error', reject);
    p.on('exit', (code, sig) => (code === 0 ? resolve(result) : reject(new Error(`${script}_exited_${code ?? sig}`))));
  });
}

// W2 on a workflow engine (DBOS or pgflow) in a database of its own, created here: the application tables
// (sql/w2-peers.sql) with `runs` pending runs of {"n": n}, the engine's schemas, its untimed setup (the runs enqueued or
// started through the engine), then the timed drain by the driver, then the checks. Returns {secs, verified, desc}.
async function w2EnginePeer(h, peer, runs, n) {
  const { q, o, W, log } = h;
  const db = `pw_${peer}`;
  const pollMs = Number(o['dbos-poll-ms'] ?? 10);
  const loops = Number(o['pgflow-workers'] ?? 2);
  const batch = Math.ceil(W / loops);
  const desc = peer === 'dbos'
    ? `parent_concurrency=${W} square_concurrency=${W} poll_ms=${pollMs}`
    : `worker_loops=${loops} batch=${batch} in_flight<=${loops * batch}`;
  await h.setWorkers(0);
  await q(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  await q(`CREATE DATABASE ${db}`);
  const c = new pg.Client({ database: db, application_name: 'pwbench-w2-peer' });
  await c.connect();
  try {
    await h.runSqlFileOn(c, 'w2-peers.sql');
    await c.query('INSERT INTO w2app.runs (n) SELECT $1 FROM generate_series(1, $2::int)', [n, runs]);
    const common = ['--runs', String(runs), '--n', String(n), '--timeout', String(o.timeout)];
    let args;
    if (peer === 'dbos') {
      args = [...common, '--workers', String(W), '--concurrency', String(W), '--poll-ms', String(pollMs)];
      log(`w2 dbos: setup (migrate, queues, ${runs} workflows enqueued)`);
      await runPeer('peer-dbos-w2.mjs', [...args, '--phase', 'setup'], db);
    } else {
      // pgmq 1.5.1 as plain SQL (no extension), the realtime stand-in, pgflow's migrations as @pgflow/core ships them
      // except their CREATE EXTENSION pgmq (pgmq's schema is already there)
      await h.runSqlFileOn(c, 'pgflow-realtime-stub.sql');
      await h.runSqlFileOn(c, 'vendor/pgmq-1.5.1.sql');
      const dir = path.join(HERE, '..', 'node_modules', '@pgflow', 'core', 'dist', 'supabase', 'migrations');
      const files = fs.readdirSync(dir).filter((f) => f.endsWith('.sql')).sort();
      let dropped = 0;
      for (const f of files) {
        const sql = fs.readFileSync(path.join(dir, f), 'utf8')
          .replace(/^CREATE EXTENSION IF NOT EXISTS "pgmq" WITH SCHEMA "pgmq";$/m, () => { dropped++; return ''; });
        await c.query(sql);
      }
      if (dropped !== 1) throw new Error(`pgflow migrations: ${dropped} CREATE EXTENSION pgmq lines found, expected 1`);
      log(`w2 pgflow: ${files.length} migrations applied; setup (flow, ${runs} flow runs started)`);
      args = [...common, '--loops', String(loops), '--batch', String(batch)];
      await runPeer('peer-pgflow-w2.mjs', [...args, '--phase', 'setup'], db);
    }
    await c.query('VACUUM ANALYZE');
    await q('CHECKPOINT');
    log(`w2 ${peer}: timed drain of ${runs} runs`);
    let r;
    try {
      r = await runPeer(peer === 'dbos' ? 'peer-dbos-w2.mjs' : 'peer-pgflow-w2.mjs', [...args, '--phase', 'run'], db);
      if (!r) throw new Error('no_result');
    } catch (e) {
      return { secs: NaN, verified: h.failText(e.message), desc };
    }
    const problems = [];
    if (r.errors.length) problems.push(`errors:${r.errors.join('|')}`);
    if (r.squares !== runs * n) problems.push(`${r.squares}_square_executions`);
    if (r.runs !== runs) problems.push(`${r.runs}_runs_finished`);
    const v = (await c.query('SELECT w2app.verify($1, $2) AS v', [runs, n])).rows[0].v;
    if (v !== 'ok') problems.push(v);
    if (peer === 'dbos') {
      // N parents and N·n children, each SUCCESS, none recovered (run more than once)
      const e = (await c.query(`SELECT count(*) AS all, count(*) FILTER (WHERE status = 'SUCCESS') AS ok,
                                       count(*) FILTER (WHERE recovery_attempts > 1) AS again
                                  FROM dbos.workflow_status`)).rows[0];
      const want = runs * (n + 1);
      if (Number(e.all) !== want || Number(e.ok) !== want || Number(e.again) !== 0) {
        problems.push(`dbos_workflows_${e.ok}_of_${e.all}_success_${e.again}_recovered_expected_${want}`);
      }
    } else {
      // N·(n+2) tasks completed at their first attempt, N flow runs completed
      const e = (await c.query(`SELECT (SELECT count(*) FROM pgflow.step_tasks) AS all,
                                       (SELECT count(*) FROM pgflow.step_tasks
                                         WHERE status = 'completed' AND attempts_count = 1) AS ok,
                                       (SELECT count(*) FROM pgflow.runs WHERE status = 'completed') AS runs`)).rows[0];
      const want = runs * (n + 2);
      if (Number(e.all) !== want || Number(e.ok) !== want || Number(e.runs) !== runs) {
        problems.push(`pgflow_tasks_${e.ok}_of_${e.all}_first_attempt_${e.runs}_runs_completed_expected_${want}`);
      }
    }
    return { secs: r.seconds, verified: problems.length ? h.failText(problems.join(';')) : 'ok', desc };
  } finally {
    await c.end();
  }
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

  // 2. W2: ours, then the peers (--w2-peers): the Node pool at the same count, DBOS and pgflow at --w2-peer-runs
  if (want('w2')) {
    const runs = Number(o['w2-runs'] ?? 1000), n = Number(o['w2-n'] ?? 100);
    const tasks = runs * n, expect = (n * (n + 1) * (2 * n + 1)) / 6;
    const w2peers = (o['w2-peers'] ?? 'node,dbos,pgflow').split(',').filter((x) => x && x !== 'none');
    for (const p of w2peers) if (!['node', 'dbos', 'pgflow'].includes(p)) throw new Error(`unknown --w2-peers entry ${p}`);
    for (const k of ['w2-peer-runs', 'dbos-poll-ms', 'pgflow-workers']) {
      if (o[k] != null && !(Number.isInteger(Number(o[k])) && Number(o[k]) >= 1)) throw new Error(`--${k} must be a positive integer`);
    }
    await fresh();
    const ours = await drain('w2', await queue('w2', runs, `jsonb_build_object('n', ${n})`), runs);
    const chk = (await q(`SELECT (SELECT count(*) FROM pwflow.squares) AS squares,
                                 (SELECT count(*) FROM pipeline_worker.runs WHERE (result->>'value')::bigint <> $1) AS wrong`,
      [expect]))[0];
    let verified = ours.verified;
    if (verified === 'ok' && (Number(chk.squares) !== tasks || Number(chk.wrong) !== 0))
      verified = h.failText(`squares_${chk.squares}_wrong_${chk.wrong}`);
    const tps = tasks / ours.secs;
    const ratios = [];
    if (w2peers.includes('node')) {
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
      ratios.push({ peer: 'node_pool', ratio: tps / ptps, runs });
      emit(`workflows figure=w2 runs=${runs} n=${n} tasks=${tasks} workers=${W} tasks_per_s=${fmt(tps)} ` +
        `node_pool_tasks_per_s=${fmt(ptps)} ratio=${fmt(tps / ptps, 1)}x target=>=20000_and_>=20x ` +
        `${tps >= 20000 && tps >= 20 * ptps ? 'met' : 'MISSED'} verified=${verified}/${pverified}`);
    } else {
      emit(`workflows figure=w2 runs=${runs} n=${n} tasks=${tasks} workers=${W} tasks_per_s=${fmt(tps)} ` +
        `target=>=20000 ${tps >= 20000 ? 'met' : 'MISSED'} verified=${verified}`);
    }
    // the workflow engines, each in its own database, at --w2-peer-runs runs (they are 100-1000x slower)
    const peerRuns = Number(o['w2-peer-runs'] ?? 200);
    for (const p of w2peers.filter((x) => x !== 'node')) {
      let r;
      try {
        r = await w2EnginePeer(h, p, peerRuns, n);
      } catch (e) {   // setup failed: a FAIL line, and the other figures still run
        log(`w2 ${p}: ${e.stack}`);
        r = { secs: NaN, verified: h.failText(`setup:${e.message}`), desc: '' };
      }
      const ptps = (peerRuns * n) / r.secs;
      ratios.push({ peer: p, ratio: tps / ptps, runs: peerRuns });
      results.push({ runner: `${p}-w2`, config: 'w2', mode: 'workflows', workers: W, runs: peerRuns, rps: peerRuns / r.secs,
        verified: r.verified });
      emit(`workflows figure=w2_${p} runs=${peerRuns} n=${n} tasks=${peerRuns * n} ${r.desc ? `${r.desc} ` : ''}seconds=${fmt(r.secs, 1)} ` +
        `tasks_per_s=${fmt(ptps)} pipeline_worker_tasks_per_s=${fmt(tps)} (at runs=${runs}) ratio=${fmt(tps / ptps, 1)}x ` +
        `verified=${r.verified}`);
    }
    if (ratios.length) {
      emit(`workflows figure=w2_ratios pipeline_worker_tasks_per_s=${fmt(tps)} runs=${runs} ` +
        `${ratios.map((x) => `ratio_${x.peer}=${fmt(x.ratio, 1)}x`).join(' ')} ` +
        `peer_runs=${ratios.map((x) => `${x.peer}:${x.runs}`).join(',')}`);
    }
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
