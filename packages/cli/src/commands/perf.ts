import type { Consumer, Message, SluiceClient, SubscriptionType } from '@sluice/client';
import { ClosedError, InvalidArgumentError } from '@sluice/common';
import { type Command, InvalidArgumentError as InvalidOptionError } from 'commander';
import {
  type ConsumeResult,
  consumeSummary,
  formatConsumeProgress,
  formatProduceProgress,
  formatSummary,
  type PerfReceiver,
  type PerfSummary,
  produceSummary,
  runConsume,
  runProduce,
} from '../perf/index.js';
import {
  type ConnectionFlags,
  positiveInt,
  printJson,
  printLine,
  withClient,
  withConnection,
} from './output.js';

interface PerfProduceFlags extends ConnectionFlags {
  rate: number;
  size: number;
  producers: number;
  duration: number;
  warmUp: number;
  batchMaxDelayMs: number;
  batchMaxMessages: number;
  batchMaxBytes: number;
  maxInFlight: number;
  subscription?: string;
}

interface PerfConsumeFlags extends ConnectionFlags {
  subscription: string;
  type: SubscriptionType;
  from: 'earliest' | 'latest';
  duration?: number;
  warmUp: number;
  idleTimeout?: number;
  receiverQueueSize?: number;
}

const TYPES: SubscriptionType[] = ['exclusive', 'shared', 'failover', 'key_shared'];

/** Commander argument parser for numbers ≥ 0. */
export function nonNegative(what: string): (value: string) => number {
  return (value) => {
    const n = value.trim() === '' ? Number.NaN : Number(value);
    // commander's own error type: it prints a one-line usage error and exits 1, as positiveInt.
    if (!Number.isFinite(n) || n < 0) throw new InvalidOptionError(`${what} '${value}' must be a number ≥ 0`);
    return n;
  };
}

/** Commander argument parser for numbers > 0. */
export function positive(what: string): (value: string) => number {
  return (value) => {
    const n = value.trim() === '' ? Number.NaN : Number(value);
    if (!Number.isFinite(n) || n <= 0)
      throw new InvalidOptionError(`${what} '${value}' must be a number > 0`);
    return n;
  };
}

/** Progress goes to stderr under --json so stdout carries only the summary object. */
function progressWriter(json: boolean): (line: string) => void {
  return json ? (line) => process.stderr.write(`${line}\n`) : printLine;
}

function report(summary: PerfSummary, json: boolean): void {
  if (json) printJson(summary);
  else printLine(formatSummary(summary));
}

/** SIGINT / SIGTERM end the run early, still printing the summary of what was measured. */
function interruptible(): { signal: AbortSignal; dispose: () => void } {
  const ctl = new AbortController();
  const stop = () => ctl.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return {
    signal: ctl.signal,
    dispose: () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    },
  };
}

function receiverOf(consumer: Consumer): PerfReceiver<Message> {
  return {
    receive: async (timeoutMs) => {
      try {
        return await consumer.receive(timeoutMs);
      } catch (err) {
        // Closed by an interrupt: end the run like a timeout would, after the loop notices the signal.
        if (err instanceof ClosedError) return undefined;
        throw err;
      }
    },
    receiveBatch: async (max, timeoutMs) => {
      try {
        return await consumer.receiveBatch(max, timeoutMs);
      } catch (err) {
        if (err instanceof ClosedError) return [];
        throw err;
      }
    },
    valueOf: (msg) => msg.value,
    ack: (msg) => consumer.ack(msg),
  };
}

async function subscribe(
  client: SluiceClient,
  topic: string,
  o: {
    subscription: string;
    type: SubscriptionType;
    from: 'earliest' | 'latest';
    receiverQueueSize?: number;
  },
): Promise<Consumer> {
  return client.subscribe({
    topic,
    subscription: o.subscription,
    type: o.type,
    initialPosition: o.from,
    ...(o.receiverQueueSize !== undefined ? { receiverQueueSize: o.receiverQueueSize } : {}),
  });
}

/** `sluice perf produce|consume`: load generator and latency meter. */
export function registerPerfCommand(program: Command): void {
  const perf = program
    .command('perf')
    .description('measure throughput and latency (HDR-histogram percentiles) of producing and consuming');

  withConnection(
    perf
      .command('produce <topic>')
      .description(
        'publish fixed-size messages at a rate (0 = as fast as possible); latency runs from the intended send time',
      )
      .option(
        '-r, --rate <msgPerSec>',
        'messages per second over all producers; 0 = as fast as possible',
        nonNegative('rate'),
        0,
      )
      .option(
        '--size <bytes>',
        'message size in bytes (≥ 8: the send timestamp goes in front)',
        positiveInt('size'),
        1024,
      )
      .option(
        '--producers <n>',
        'producers, each on its own schedule and window',
        positiveInt('producers'),
        1,
      )
      .option(
        '-d, --duration <seconds>',
        'how long to send and measure, after the warm-up',
        positive('duration'),
        60,
      )
      .option(
        '--warm-up <seconds>',
        'send this long first, left out of the results (JIT, heap growth, cold caches)',
        nonNegative('warm-up'),
        0,
      )
      .option(
        '--batch-max-delay-ms <ms>',
        'longest a message waits for its batch',
        nonNegative('batch max delay'),
        1,
      )
      .option('--batch-max-messages <n>', 'messages per batch', positiveInt('batch max messages'), 1000)
      .option('--batch-max-bytes <bytes>', 'bytes per batch', positiveInt('batch max bytes'), 128 * 1024)
      .option(
        '--max-in-flight <n>',
        'sends awaiting their receipt, per producer',
        positiveInt('max in-flight'),
        5000,
      )
      .option(
        '-s, --subscription <name>',
        'also consume on this subscription in this process, for end-to-end latency',
      ),
  ).action((topic: string, flags: PerfProduceFlags) =>
    withClient(flags, async (client) => {
      const json = flags.json === true;
      const write = progressWriter(json);
      const consumer = flags.subscription
        ? await subscribe(client, topic, {
            subscription: flags.subscription,
            type: 'exclusive',
            from: 'latest',
          })
        : undefined;
      const producers = await Promise.all(
        Array.from({ length: flags.producers }, () =>
          client.createProducer({
            topic,
            batching: {
              maxDelayMs: flags.batchMaxDelayMs,
              maxMessages: flags.batchMaxMessages,
              maxBytes: flags.batchMaxBytes,
            },
            maxPendingMessages: flags.maxInFlight,
          }),
        ),
      );
      const { signal, dispose } = interruptible();
      try {
        const consumed: Promise<ConsumeResult> | undefined = consumer
          ? runConsume(receiverOf(consumer), {
              idleTimeoutSec: 5,
              durationSec: flags.warmUp + flags.duration + 35,
              warmUpSec: flags.warmUp,
              signal,
            })
          : undefined;
        const result = await runProduce(producers, {
          rate: flags.rate,
          messageSize: flags.size,
          durationSec: flags.duration,
          warmUpSec: flags.warmUp,
          maxInFlight: flags.maxInFlight,
          signal,
          onProgress: (p) => write(formatProduceProgress(p)),
        });
        const summary = produceSummary(
          topic,
          { messageSize: flags.size, producers: flags.producers, rate: flags.rate, warmUpSec: flags.warmUp },
          result,
          consumed ? await consumed : undefined,
        );
        await Promise.all(producers.map((p) => p.close()));
        await consumer?.close();
        report(summary, json);
        if (result.published === 0 && result.errors > 0) process.exitCode = 1;
      } finally {
        dispose();
      }
    }),
  );

  withConnection(
    perf
      .command('consume <topic>')
      .description(
        'receive and acknowledge, measuring throughput and end-to-end latency of `perf produce` messages',
      )
      .requiredOption('-s, --subscription <name>', 'subscription name')
      .option('-t, --type <type>', 'exclusive, shared, failover or key_shared', 'exclusive')
      .option('--from <position>', 'where a new subscription starts: earliest or latest', 'latest')
      .option(
        '-d, --duration <seconds>',
        'stop after this long (default: until interrupted or idle)',
        positive('duration'),
      )
      .option(
        '--warm-up <seconds>',
        'leave out the messages sent this long after the first one received (match perf produce --warm-up)',
        nonNegative('warm-up'),
        0,
      )
      .option(
        '--idle-timeout <seconds>',
        'stop once this long passes without a message, after the first',
        positive('idle timeout'),
      )
      .option(
        '--receiver-queue-size <n>',
        'messages buffered ahead of the application (default 1000, growing for small messages on exclusive and failover subscriptions)',
        positiveInt('receiver queue size'),
      ),
  ).action((topic: string, flags: PerfConsumeFlags) =>
    withClient(flags, async (client) => {
      if (!TYPES.includes(flags.type)) {
        throw new InvalidArgumentError(
          `subscription type '${flags.type}' is unknown; use ${TYPES.join(', ')}`,
        );
      }
      if (flags.from !== 'earliest' && flags.from !== 'latest') {
        throw new InvalidArgumentError(`--from '${flags.from}' is unknown; use earliest or latest`);
      }
      const json = flags.json === true;
      const write = progressWriter(json);
      const consumer = await subscribe(client, topic, flags);
      const { signal, dispose } = interruptible();
      try {
        // Readiness marker for scripts that must not start producing before the subscription exists.
        process.stderr.write(`subscribed ${flags.subscription} on ${topic}\n`);
        const result = await runConsume(receiverOf(consumer), {
          ...(flags.duration !== undefined ? { durationSec: flags.duration } : {}),
          ...(flags.idleTimeout !== undefined ? { idleTimeoutSec: flags.idleTimeout } : {}),
          warmUpSec: flags.warmUp,
          signal,
          onProgress: (p) => write(formatConsumeProgress(p)),
        });
        await consumer.close();
        report(consumeSummary(topic, result, flags.warmUp), json);
      } finally {
        dispose();
      }
    }),
  );
}
