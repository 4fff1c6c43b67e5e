import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { CompressionType, Producer } from '@sluice/client';
import { InvalidArgumentError } from '@sluice/common';
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
      .option('--compression <codec>', 'none, gzip or deflate', 'none')
      .option('--batch-max-delay-ms <ms>', 'longest a message waits for its batch', Number, 5),
  ).action((topic: string, flags: ProduceFlags) =>
    withClient(flags, async (client) => {
      if (!flags.message?.length && !flags.file) {
        throw new InvalidArgumentError('nothing to send; give -m TEXT (repeatable) or --file PATH');
      }
      const properties = parseProperties(flags.property);
      const producer = await client.createProducer({
        topic,
        compression: flags.compression ?? 'none',
        batching: { maxDelayMs: flags.batchMaxDelayMs ?? 5 },
      });
      const sent = await sendAll(
        producer,
        inputs(flags),
        { key: flags.key, properties },
        flags.json === true,
      );
      await producer.close();
      if (!flags.json) printLine(`produced ${sent} message${sent === 1 ? '' : 's'} to ${producer.topic}`);
    }),
  );
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
  opts: { key: string | undefined; properties: Record<string, string> },
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
    const send = producer.send(value, {
      ...(opts.key !== undefined ? { key: opts.key } : {}),
      properties: opts.properties,
    });
    // Keep failures from surfacing as unhandled while they wait their turn in the window.
    send.catch(() => undefined);
    window.push(send);
    if (window.length >= WINDOW) await settleOldest();
  }
  while (window.length > 0) await settleOldest();
  return printed;
}
