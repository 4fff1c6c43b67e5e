/**
 * The NATS JetStream side of the benchmark: the same produce and consume
 * drivers as `sluice perf` (same schedule, window, payload and HDR
 * histograms), with a JetStream publisher and a durable pull consumer.
 * Prints one PerfSummary JSON object on stdout, like `sluice perf --json`.
 *
 *   node --import=tsx --conditions=sluice-src test/perf/nats-perf.ts produce|consume \
 *     --servers h:p[,h:p] --stream S --subject X [--rate N --size B --duration S --warm-up S --max-in-flight N]
 *     [--durable NAME --idle-timeout S]
 */
import { parseArgs } from 'node:util';
import { AckPolicy, connect, DeliverPolicy, type JsMsg } from 'nats';
import {
  consumeSummary,
  formatConsumeProgress,
  formatProduceProgress,
  type PerfReceiver,
  type PerfSender,
  produceSummary,
  runConsume,
  runProduce,
} from '../../packages/cli/src/perf/index.js';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    servers: { type: 'string' },
    stream: { type: 'string' },
    subject: { type: 'string' },
    rate: { type: 'string', default: '0' },
    size: { type: 'string', default: '1024' },
    producers: { type: 'string', default: '1' },
    duration: { type: 'string', default: '30' },
    'warm-up': { type: 'string', default: '0' },
    'max-in-flight': { type: 'string', default: '5000' },
    durable: { type: 'string' },
    'idle-timeout': { type: 'string', default: '5' },
    'max-duration': { type: 'string', default: '600' },
  },
});
const role = positionals[0];
if ((role !== 'produce' && role !== 'consume') || !values.servers || !values.stream || !values.subject) {
  process.stderr.write('usage: nats-perf.ts produce|consume --servers h:p --stream S --subject X [...]\n');
  process.exit(2);
}
const progress = (line: string) => process.stderr.write(`${line}\n`);
const nc = await connect({ servers: values.servers.split(','), noEcho: true });
const js = nc.jetstream();
const stop = new AbortController();
process.once('SIGTERM', () => stop.abort());
process.once('SIGINT', () => stop.abort());

try {
  if (role === 'produce') {
    const subject = values.subject;
    const sender: PerfSender = { send: (payload) => js.publish(subject, payload) };
    const opts = {
      rate: Number(values.rate),
      messageSize: Number(values.size),
      producers: Number(values.producers),
      warmUpSec: Number(values['warm-up']),
    };
    const result = await runProduce(
      Array.from({ length: opts.producers }, () => sender),
      {
        rate: opts.rate,
        messageSize: opts.messageSize,
        durationSec: Number(values.duration),
        warmUpSec: opts.warmUpSec,
        maxInFlight: Number(values['max-in-flight']),
        signal: stop.signal,
        onProgress: (p) => progress(formatProduceProgress(p)),
      },
    );
    process.stdout.write(`${JSON.stringify(produceSummary(subject, opts, result))}\n`);
  } else {
    const durable = values.durable ?? 'bench';
    const jsm = await nc.jetstreamManager();
    await jsm.consumers.add(values.stream, {
      durable_name: durable,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.New,
      max_ack_pending: 20_000,
    });
    const consumer = await js.consumers.get(values.stream, durable);
    const messages = await consumer.consume({ max_messages: 1000 });
    const iterator = messages[Symbol.asyncIterator]();
    // One next() outstanding at a time, kept across receive calls that time out.
    let pending: Promise<IteratorResult<JsMsg>> | undefined;
    const receiver: PerfReceiver<JsMsg> = {
      receive: async (timeoutMs) => {
        pending ??= iterator.next();
        let timer: NodeJS.Timeout | undefined;
        const timedOut = new Promise<undefined>((resolve) => {
          timer = setTimeout(() => resolve(undefined), timeoutMs);
        });
        const r = await Promise.race([pending, timedOut]);
        clearTimeout(timer);
        if (r === undefined) return undefined;
        pending = undefined;
        return r.done ? undefined : r.value;
      },
      valueOf: (m) => Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength),
      ack: (m) => m.ack(),
    };
    process.stderr.write(`subscribed ${durable} on ${values.stream}\n`);
    const result = await runConsume(receiver, {
      idleTimeoutSec: Number(values['idle-timeout']),
      durationSec: Number(values['max-duration']),
      warmUpSec: Number(values['warm-up']),
      signal: stop.signal,
      onProgress: (p) => progress(formatConsumeProgress(p)),
    });
    messages.stop();
    process.stdout.write(
      `${JSON.stringify(consumeSummary(values.subject, result, Number(values['warm-up'])))}\n`,
    );
  }
} finally {
  await nc.drain();
}
