// Peer "plpgsql-floor": W sessions each CALL w1_peer.drain(), the whole W1 worker loop as one
// PL/pgSQL procedure with a COMMIT after each of the five statements: W1 with no client round
// trips, W server backends. The closest SQL-only analogue of W in-server background workers.
import pg from 'pg';
import { now, parseArgs, send, watchdog, assertLocal } from './common.mjs';

const o = parseArgs(process.argv.slice(2), { workers: '10', timeout: '900' });
watchdog(Number(o.timeout), 'plpgsql-floor');
assertLocal();
const errors = [];
const t0 = now();
await Promise.all(Array.from({ length: Number(o.workers) }, async () => {
  const c = new pg.Client({ application_name: 'pwbench-plpgsql-floor' });
  try {
    await c.connect();
    await c.query('CALL w1_peer.drain()');
  } catch (e) {
    errors.push(e.message);
  } finally {
    await c.end().catch(() => {});
  }
}));
const seconds = (now() - t0) / 1000;
send({ type: 'result', seconds, errors: errors.slice(0, 3), nerrors: errors.length, client_cpu_s: 0 });
process.exit(0);
