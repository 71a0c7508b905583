// --soak: pipeline_worker only, N runs drained in batches with the workers running: worker memory (RSS, anonymous),
// table sizes, dead tuples and autovacuums at the start and the end, rate of the first and the last batch.
import { fmt, now, procMem, sleep } from './common.mjs';

// h: the orchestrator's helpers (main.mjs).
export async function soakMode(h) {
  const { o, W, TIMEOUT, pwConfigs, BUILD, log, emit, results, q, check, setWorkers, workerPids, applyConfig,
    configDesc, insertRuns, waitZero, PW_LEFT, pwDiagnose, failText, mark, between } = h;
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
