import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { COMPRESSION_TYPES, type CompressionType, type Producer, type SendOptions } from '@sluice/client';
import { InvalidArgumentError, parseDuration } from '@sluice/common';
import type { Command } from 'commander';
import {
  type ConnectionFlags,
  collect,
  parseProperties,
  positiveInt,
  printJson,
  printLine,
  withClient,
  withConnection,
} from './output.js';

interface ProduceFlags extends ConnectionFlags {
  message?: string[];
  count: number;
  key?: string;
  file?: string;
  property?: string[];
  compression?: CompressionType;
  batchMaxDelayMs?: number;
  deliverAfter?: string;
  deliverAt?: string;
  eventTime?: string;
}

/** Sends still awaiting their receipt; past this the reader of the input waits. */
const WINDOW = 1000;

/** `sluice produce TOPIC`: publish -m messages (repeated -n times) or the lines of a file. */
export function registerProduceCommand(program: Command): void {
  withConnection(
    program
      .command('produce <topic>')
      .description('publish messages; prints each message id with --json')
      .option('-m, --message <text>', 'message to send (repeatable)', collect)
      .option('-n, --count <count>', 'send the -m messages this many times', positiveInt('count'), 1)
      .option('-k, --key <key>', 'key of every message')
      .option('-f, --file <path>', "send each line of a file as one message ('-' reads stdin)")
      .option('-p, --property <key=value>', 'property of every message (repeatable)', collect)
      .option('--compression <codec>', COMPRESSION_TYPES.join(', '), 'none')
      .option(
        '--deliver-after <duration>',
        'deliver no earlier than this from now, e.g. 30s (shared/key_shared)',
      )
      .option('--deliver-at <iso-8601>', 'deliver no earlier than this time (shared/key_shared)')
      .option('--event-time <iso-8601>', 'application event time of every message')
      .option('--batch-max-delay-ms <ms>', 'longest a message waits for its batch', Number, 5),
  ).action((topic: string, flags: ProduceFlags) =>
    withClient(flags, async (client) => {
      if (!flags.message?.length && !flags.file) {
        throw new InvalidArgumentError('nothing to send; give -m TEXT (repeatable) or --file PATH');
      }
      const properties = parseProperties(flags.property);
      const timing = sendTiming(flags);
      const producer = await client.createProducer({
        topic,
        compression: flags.compression ?? 'none',
        batching: { maxDelayMs: flags.batchMaxDelayMs ?? 5 },
      });
      const sent = await sendAll(
        producer,
        inputs(flags),
        { ...(flags.key !== undefined ? { key: flags.key } : {}), properties, ...timing },
        flags.json === true,
      );
      await producer.close();
      if (!flags.json) printLine(`produced ${sent} message${sent === 1 ? '' : 's'} to ${producer.topic}`);
    }),
  );
}

function isoTime(flag: string, text: string): number {
  const t = Date.parse(text);
  if (Number.isNaN(t)) {
    throw new InvalidArgumentError(`${flag} '${text}' is not an ISO-8601 time, e.g. 2024-05-01T12:00:00Z`);
  }
  return t;
}

/** --deliver-after / --deliver-at / --event-time as send options. */
function sendTiming(flags: ProduceFlags): Pick<SendOptions, 'deliverAfter' | 'deliverAt' | 'eventTime'> {
  if (flags.deliverAfter !== undefined && flags.deliverAt !== undefined) {
    throw new InvalidArgumentError('give --deliver-after or --deliver-at, not both');
  }
  return {
    ...(flags.deliverAfter !== undefined ? { deliverAfter: parseDuration(flags.deliverAfter) } : {}),
    ...(flags.deliverAt !== undefined ? { deliverAt: isoTime('--deliver-at', flags.deliverAt) } : {}),
    ...(flags.eventTime !== undefined ? { eventTime: isoTime('--event-time', flags.eventTime) } : {}),
  };
}

async function* inputs(flags: ProduceFlags): AsyncGenerator<string> {
  if (flags.message?.length) {
    for (let i = 0; i < flags.count; i++) yield* flags.message;
  }
  if (flags.file) {
    const stream = flags.file === '-' ? process.stdin : createReadStream(flags.file);
    const lines = createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY });
    try {
      for await (const line of lines) yield line;
    } finally {
      lines.close();
    }
  }
}

/** Publish in input order with a bounded window; print ids in input order. */
async function sendAll(
  producer: Producer,
  values: AsyncIterable<string>,
  opts: SendOptions,
  json: boolean,
): Promise<number> {
  const window: Promise<string>[] = [];
  let printed = 0;
  const settleOldest = async () => {
    const id = await window.shift()!;
    if (json) printJson({ index: printed, id });
    printed++;
  };
  for await (const value of values) {
    // deliverAfter counts from each send, as the user expects of a stream of lines.
    const send = producer.send(value, opts);
    // Keep failures from surfacing as unhandled while they wait their turn in the window.
    send.catch(() => undefined);
    window.push(send);
    if (window.length >= WINDOW) await settleOldest();
  }
  while (window.length > 0) await settleOldest();
  return printed;
}
