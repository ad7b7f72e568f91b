#!/usr/bin/env node
/** The keysmith binary: the one place the process exits. */
import { runCli } from './run.js';

const stopSignal = new Promise<string>((resolve) => {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => resolve(signal));
});

const code = await runCli(process.argv.slice(2), {
  env: process.env,
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  stopSignal,
  onSignal(listener) {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, listener);
    return () => {
      for (const signal of ['SIGINT', 'SIGTERM'] as const) process.off(signal, listener);
    };
  },
});
process.exitCode = code;
// Let stdout drain, then leave even if a handle (a pool, a timer) lingers.
process.stdout.write('', () => process.exit(code));
