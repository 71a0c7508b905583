// The machine's floor for a run's latency: the commit latency of a bare one-row INSERT, measured with pgbench at the
// same rate and for the same time as the latency run, while it runs (same load). A run finishes with one commit of
// its own, so "commit -> run finished" minus this floor is what the extension adds (claim, steps, bookkeeping).
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

// Starts pgbench (-R rate, -T seconds, one client, per-transaction log); resolves to latency percentiles in ms,
// or null (with the reason logged) when pgbench failed.
export function startFloor({ pgbin, rate, seconds, q, log }) {
  return (async () => {
    await q('CREATE UNLOGGED TABLE IF NOT EXISTS pwbench.floor_insert (v int)');
    await q('ALTER TABLE pwbench.floor_insert SET LOGGED');
    await q('TRUNCATE pwbench.floor_insert');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwbench-floor-'));
    const script = path.join(dir, 'insert.sql');
    fs.writeFileSync(script, 'INSERT INTO pwbench.floor_insert VALUES (1);\n');
    const args = ['-n', '-c', '1', '-R', String(rate), '-T', String(seconds), '-f', script, '--log',
      `--log-prefix=${path.join(dir, 'floor')}`];
    const ok = await new Promise((resolve) => {
      execFile(path.join(pgbin, 'pgbench'), args, { cwd: dir, timeout: (seconds + 60) * 1000 }, (err, _out, stderr) => {
        if (err) log(`floor (pgbench) failed: ${err.message} ${String(stderr).slice(0, 200)}`);
        resolve(!err);
      });
    });
    if (!ok) return null;
    // log lines: client_id transaction_no time(us) script_no time_epoch time_us [schedule_lag(us)]
    const ms = [];
    for (const f of fs.readdirSync(dir).filter((x) => x.startsWith('floor'))) {
      for (const line of fs.readFileSync(path.join(dir, f), 'utf8').split('\n')) {
        const cols = line.trim().split(/\s+/);
        // with -R the logged time counts from the scheduled start: take the schedule lag off (the commit's own
        // latency is what the floor is)
        const lag = cols.length >= 7 && /^\d+$/.test(cols[6]) ? Number(cols[6]) : 0;
        if (cols.length >= 3 && /^\d+$/.test(cols[2])) ms.push((Number(cols[2]) - lag) / 1000);
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
    if (!ms.length) return null;
    ms.sort((a, b) => a - b);
    const at = (p) => ms[Math.min(ms.length - 1, Math.floor(p * (ms.length - 1)))];
    return { n: ms.length, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: ms.at(-1) };
  })();
}

// Overhead over the floor and the target: p50 <= 0.5 ms, p99 <= the floor's p99 + 1 ms.
export function floorCols(ours, floor, fmt) {
  if (!ours || !floor) return 'floor=not_measured';
  const p50 = ours.p50 - floor.p50;
  const met = p50 <= 0.5 && ours.p99 <= floor.p99 + 1;
  return `floor_insert_commit: p50_ms=${fmt(floor.p50, 2)} p99_ms=${fmt(floor.p99, 2)} n=${floor.n} ` +
    `overhead_p50_ms=${fmt(p50, 2)} overhead_p99_ms=${fmt(ours.p99 - floor.p99, 2)} ` +
    `target(overhead_p50<=0.5ms,p99<=floor_p99+1ms)=${met ? 'met' : 'MISSED'}`;
}
