// The peers' W1 runs (node-pg, graphile-worker, the PL/pgSQL floor; see PEERS in options.mjs): the reset of their
// tables, their child drivers, a timed drain and a latency run, each verified (w1_peer.verify).
import { fmt, hostBusyPct } from './common.mjs';
import { latencyCols } from './measure.mjs';
import { PEERS } from './options.mjs';

// h: the orchestrator's helpers (main.mjs: options, report, cluster, measures, children).
export function peerRunners(h) {
  const { o, TIMEOUT, log, emit, results, q, check, runSqlFile, setWorkers, waitZero, failText, settle, mark, between,
    latencies, holdSnapshot, runChild, childResult } = h;

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

  return { peerDrain, peerLatency };
}
