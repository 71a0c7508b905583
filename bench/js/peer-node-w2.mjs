// W2 with a plain Node pg pool (bench/README.md, --workflows): W loops claim tasks from pwflow.peer_tasks with
// FOR UPDATE SKIP LOCKED; one transaction per task. split inserts the run's n square tasks and its sum task
// ('waiting'); each square persists its row and completes; the last square of a run makes its sum task pending; sum
// reads the squares' outputs (the dataflow) and finishes the run.
import pg from 'pg';

const W = Number(process.argv[2] ?? 10);
const pool = new pg.Pool({ max: W });
let running = true;

async function claim(c) {
  const r = await c.query(`UPDATE pwflow.peer_tasks t SET status = 'running'
                             FROM (SELECT id FROM pwflow.peer_tasks WHERE status = 'pending'
                                    ORDER BY prio, id LIMIT 1 FOR UPDATE SKIP LOCKED) s
                            WHERE t.id = s.id RETURNING t.*`);
  return r.rows[0];
}

async function work(t, c) {
  if (t.kind === 'split') {
    await c.query(`UPDATE pwflow.peer_runs SET status = 'running', started_at = clock_timestamp() WHERE id = $1`,
      [t.run_id]);
    const n = Number((await c.query('SELECT n FROM pwflow.peer_runs WHERE id = $1', [t.run_id])).rows[0].n);
    const items = Array.from({ length: n }, (_, i) => i + 1);
    await c.query(`INSERT INTO pwflow.peer_tasks (run_id, kind, prio, idx, item)
                   SELECT $1, 'square', 1, i, i FROM unnest($2::int[]) i`, [t.run_id, items]);
    await c.query(`INSERT INTO pwflow.peer_tasks (run_id, kind, prio, status) VALUES ($1, 'sum', 0, 'waiting')`,
      [t.run_id]);
  } else if (t.kind === 'square') {
    const v = Number(t.item) * Number(t.item);
    await c.query('INSERT INTO pwflow.peer_squares VALUES ($1, $2, $3)', [t.run_id, t.idx, v]);
    await c.query(`UPDATE pwflow.peer_tasks SET output = $2 WHERE id = $1`, [t.id, JSON.stringify(v)]);
    // fan-in: the last square of the run releases its sum (row lock on the run serialises the check)
    await c.query('SELECT 1 FROM pwflow.peer_runs WHERE id = $1 FOR UPDATE', [t.run_id]);
    await c.query(`UPDATE pwflow.peer_tasks SET status = 'done' WHERE id = $1`, [t.id]);
    await c.query(`UPDATE pwflow.peer_tasks SET status = 'pending' WHERE run_id = $1 AND kind = 'sum'
                     AND NOT EXISTS (SELECT 1 FROM pwflow.peer_tasks WHERE run_id = $1 AND kind = 'square'
                                       AND status <> 'done')`, [t.run_id]);
    return;
  } else {
    const outs = (await c.query(`SELECT output FROM pwflow.peer_tasks WHERE run_id = $1 AND kind = 'square'
                                  ORDER BY idx`, [t.run_id])).rows.map((r) => Number(r.output));
    const sum = outs.reduce((a, b) => a + b, 0);
    await c.query(`UPDATE pwflow.peer_runs SET status = 'succeeded', result = $2, finished_at = clock_timestamp()
                    WHERE id = $1`, [t.run_id, JSON.stringify({ value: sum })]);
  }
  await c.query(`UPDATE pwflow.peer_tasks SET status = 'done' WHERE id = $1`, [t.id]);
}

async function loop() {
  const c = await pool.connect();
  try {
    while (running) {
      await c.query('BEGIN');
      const t = await claim(c);
      if (!t) {
        await c.query('COMMIT');
        const left = Number((await c.query(`SELECT count(*) FROM pwflow.peer_runs WHERE status <> 'succeeded'`))
          .rows[0].count);
        if (left === 0) { running = false; break; }
        await new Promise((r) => setTimeout(r, 5));
        continue;
      }
      await work(t, c);
      await c.query('COMMIT');
    }
  } catch (e) {
    await c.query('ROLLBACK').catch(() => {});
    throw e;
  } finally {
    c.release();
  }
}

await Promise.all(Array.from({ length: W }, loop));
await pool.end();
