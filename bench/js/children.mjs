// Child drivers (peer-*.mjs, submit.mjs, http-load.mjs), forked from the orchestrator: their output goes to its
// stderr, their result comes over the IPC channel, and a child without a result in time is killed.
import { fork } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));

// h: log and the options' TIMEOUT (the default bound of a child: TIMEOUT + 60 s).
export function children({ log, TIMEOUT }) {
  // Fork a child driver. stdout/stderr of the child go to our stderr; results come over IPC.
  function runChild(script, args, timeoutS = TIMEOUT + 60) {
    const child = fork(path.join(HERE, script), args.map(String), { stdio: ['ignore', 2, 2, 'ipc'] });
    let result = null;
    let readyResolve;
    const ready = new Promise((r) => (readyResolve = r));
    child.on('message', (m) => {
      if (m?.type === 'ready') readyResolve(true);
      if (m?.type === 'result') result = m;
    });
    const timer = setTimeout(() => {
      log(`${script}: no result after ${timeoutS} s, killing it`);
      child.kill('SIGKILL');
    }, timeoutS * 1000);
    const done = new Promise((resolve) => child.on('exit', (code, sig) => {
      clearTimeout(timer);
      readyResolve(false);
      resolve({ code, sig, result });
    }));
    return { child, ready, done };
  }

  async function childResult(script, args, timeoutS) {
    const { done } = runChild(script, args, timeoutS);
    const r = await done;
    if (r.code !== 0 || !r.result) throw new Error(`${script} ${args.join(' ')} failed (exit ${r.code ?? r.sig})`);
    return r.result;
  }

  return { runChild, childResult };
}
