import type { InitialPosition, Message, SubscriptionType } from '@sluice/client';
import { ClosedError, InvalidArgumentError } from '@sluice/common';
import type { Command } from 'commander';
import {
  type ConnectionFlags,
  positiveInt,
  printJson,
  printLine,
  withClient,
  withConnection,
} from './output.js';

interface ConsumeFlags extends ConnectionFlags {
  subscription: string;
  type: SubscriptionType;
  count?: number;
  from: InitialPosition;
  wait?: number;
  consumerName?: string;
}

const TYPES = ['exclusive', 'shared', 'failover', 'key_shared'];
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** `sluice consume TOPIC -s SUB`: print and acknowledge messages. */
export function registerConsumeCommand(program: Command): void {
  withConnection(
    program
      .command('consume <topic>')
      .description('receive messages of a subscription, printing and acknowledging each one')
      .requiredOption('-s, --subscription <name>', 'subscription name')
      .option('-t, --type <type>', 'exclusive, shared, failover or key_shared', 'exclusive')
      .option(
        '-n, --count <count>',
        'exit after this many messages (default: run until interrupted)',
        positiveInt('count'),
      )
      .option('--from <position>', 'where a new subscription starts: earliest or latest', 'latest')
      .option('--wait <seconds>', 'exit after this many seconds without a new message', Number)
      .option('--consumer-name <name>', 'consumer name (failover order, stats)'),
  ).action((topic: string, flags: ConsumeFlags) =>
    withClient(flags, async (client) => {
      if (!TYPES.includes(flags.type)) {
        throw new InvalidArgumentError(
          `subscription type '${flags.type}' is unknown; use exclusive, shared, failover or key_shared`,
        );
      }
      if (flags.from !== 'earliest' && flags.from !== 'latest') {
        throw new InvalidArgumentError(`--from '${flags.from}' is unknown; use earliest or latest`);
      }
      if (flags.wait !== undefined && !(flags.wait > 0)) {
        throw new InvalidArgumentError(`--wait '${flags.wait}' must be a positive number of seconds`);
      }
      const consumer = await client.subscribe({
        topic,
        subscription: flags.subscription,
        type: flags.type,
        initialPosition: flags.from,
        ...(flags.consumerName ? { consumerName: flags.consumerName } : {}),
        ...(flags.count !== undefined ? { receiverQueueSize: Math.min(1000, flags.count) } : {}),
      });
      const stop = () => void consumer.close();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      let received = 0;
      try {
        while (flags.count === undefined || received < flags.count) {
          const msg = await consumer.receive(flags.wait === undefined ? undefined : flags.wait * 1000);
          if (!msg) break;
          print(msg, flags.json === true);
          consumer.ack(msg);
          received++;
        }
      } catch (err) {
        if (!(err instanceof ClosedError)) throw err;
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        await consumer.close();
      }
      if (!flags.json) process.stderr.write(`received ${received} message${received === 1 ? '' : 's'}\n`);
    }),
  );
}

function print(msg: Message, json: boolean): void {
  let text: string | undefined;
  try {
    text = utf8.decode(msg.value);
  } catch {
    text = undefined;
  }
  if (json) {
    printJson({
      id: msg.id,
      key: msg.key,
      value: text ?? msg.value.toString('base64'),
      ...(text === undefined ? { encoding: 'base64' } : {}),
      properties: msg.properties,
      publishTime: msg.publishTime,
      eventTime: msg.eventTime,
      redeliveryCount: msg.redeliveryCount,
    });
    return;
  }
  const props = Object.keys(msg.properties).length > 0 ? ` properties=${JSON.stringify(msg.properties)}` : '';
  const key = msg.key ? ` key=${msg.key}` : '';
  const value = text ?? `base64:${msg.value.toString('base64')}`;
  printLine(`[${msg.id}]${key}${props} ${value}`);
}
