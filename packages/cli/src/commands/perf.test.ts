import test from 'ava';
import { Command, CommanderError } from 'commander';
import { nonNegative, positive, registerPerfCommand } from './perf.js';

/** Parse `sluice <args>` with the perf commands; what commander would print to stderr and its exit code. */
async function parse(
  args: string[],
): Promise<{ stderr: string; exitCode: number | undefined; thrown: unknown }> {
  let stderr = '';
  const program = new Command('sluice')
    .exitOverride()
    .configureOutput({ writeErr: (s) => (stderr += s), writeOut: () => undefined });
  registerPerfCommand(program);
  try {
    await program.parseAsync(args, { from: 'user' });
    return { stderr, exitCode: undefined, thrown: undefined };
  } catch (err) {
    return { stderr, exitCode: err instanceof CommanderError ? err.exitCode : undefined, thrown: err };
  }
}

for (const [flag, value] of [
  ['--rate', 'abc'],
  ['--rate', '-5'],
  ['--duration', '0'],
  ['--warm-up', 'soon'],
  ['--batch-max-delay-ms', '-1'],
] as const) {
  test(`perf - produce ${flag} ${value} is a one-line usage error with exit code 1`, async (t) => {
    const r = await parse(['perf', 'produce', 'topic', flag, value]);
    t.true(r.thrown instanceof CommanderError, `threw ${String(r.thrown)}`);
    t.is(r.exitCode, 1);
    t.is(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
    t.regex(
      r.stderr,
      new RegExp(`^error: option '.*${flag}.*' argument '${value}' is invalid\\. .*must be a number`),
    );
  });
}

test('perf - consume --duration and --idle-timeout refuse bad values the same way', async (t) => {
  for (const args of [
    ['--duration', 'x'],
    ['--idle-timeout', '0'],
    ['--warm-up', '-2'],
  ]) {
    const r = await parse(['perf', 'consume', 'topic', '-s', 'sub', ...args]);
    t.is(r.exitCode, 1, args.join(' '));
    t.is(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
  }
});

test('perf - the number parsers take what they promise', (t) => {
  t.is(nonNegative('rate')('0'), 0);
  t.is(nonNegative('rate')('2.5'), 2.5);
  t.is(positive('duration')('10'), 10);
  t.throws(() => positive('duration')(''), { instanceOf: CommanderError });
  t.throws(() => nonNegative('rate')('Infinity'), { instanceOf: CommanderError });
});
