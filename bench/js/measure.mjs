// What every timed run measures, and the timed drain itself: the same starting point for each run (settle), marks of
// WAL position, server log and CPU counters, and between two marks commits (pg_waldump), WAL volume, machine CPU and
// server log problems; latency percentiles (finished_at - created_at, and commit to commit); --hold-snapshot; the
// timed start of the extension's workers.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { CLK_TCK, connect, cpuJiffies, fmt, hostBusyPct, now } from './common.mjs';
import { PW_LEFT } from './cluster.mjs';

// The lines of the server log (pglog) written between two marks (their logSize) that match re; at most 16 MB read.
export function logLines(pglog, m0, m1, re) {
  if (!pglog || !fs.existsSync(pglog)) return [];
  const fd = fs.openSync(pglog, 'r');
  const buf = Buffer.alloc(Math.min(Math.max(0, m1.logSize - m0.logSize), 16 * 1024 * 1024));
  fs.readSync(fd, buf, 0, buf.length, m0.logSize);
  fs.closeSync(fd);
  return buf.toString('utf8').split('\n').filter((l) => re.test(l));
}

// A latency run's percentiles as result-line columns.
export function latencyCols(p) {
  return `p50_ms=${fmt(p.p50)} p90_ms=${fmt(p.p90)} p99_ms=${fmt(p.p99)} max_ms=${fmt(p.max)}`;
}

// The percentiles of latencies().curve (the latency chart of --sweep).
export const CURVE = [0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999];

// h: the options (o, TIMEOUT), log, and the control connection's helpers (cluster.mjs).
export function measures(h) {
  const { o, TIMEOUT, log, q, val, reload, waitZero, pwDiagnose } = h;

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
    const problems = logLines(o.pglog, m0, m1, /(ERROR|FATAL|PANIC):|terminated by signal|exited with exit code/);
    for (const l of problems.slice(0, 5)) log(`server log: ${l}`);
    const busyJ = m1.cpu[0] - m0.cpu[0];
    return {
      commits_per_run: commits / n,
      wal_kb_per_run: walBytes / 1024 / n,
      cpu_ms_per_run: ((busyJ / CLK_TCK) * 1000) / n,
      log_errors: problems.length,
    };
  }

  async function latencies(table) {
    const r = (await q(`SELECT percentile_cont($1::float8[]) WITHIN GROUP (ORDER BY ms) AS pc, max(ms) AS max
                          FROM (SELECT extract(epoch FROM finished_at - created_at) * 1000 AS ms
                                  FROM ${table} WHERE finished_at IS NOT NULL) s`, [CURVE]))[0];
    const pc = (r.pc ?? []).map(Number);
    return { p50: pc[2], p90: pc[4], p99: pc[6], max: Number(r.max), curve: pc };
  }

  // The measure, "create_run commit -> run finished": from the commit timestamp of the submitter's
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

  return { settle, mark, between, latencies, commitLatencies, holdSnapshot, timedWorkers };
}
