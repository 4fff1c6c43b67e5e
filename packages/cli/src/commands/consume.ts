import type { ConsumerOptions, InitialPosition, Message, SubscriptionType } from '@sluice/client';
import { ClosedError, InvalidArgumentError, parseDuration } from '@sluice/common';
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
  nack?: boolean;
  nackDelay?: string;
  ackTimeout?: string;
  dlqMaxRedeliver?: number;
  dlqTopic?: string;
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
      .option('--consumer-name <name>', 'consumer name (failover order, stats)')
      .option(
        '--nack',
        'negatively acknowledge every message instead of acknowledging it (the broker redelivers it after the nack delay)',
      )
      .option(
        '--nack-delay <duration>',
        'first redelivery delay after a nack, doubling per redelivery (default 1s)',
      )
      .option('--ack-timeout <duration>', 'redeliver messages left unacknowledged this long (default: never)')
      .option(
        '--dlq-max-redeliver <count>',
        'after this many deliveries a message goes to the dead-letter topic instead',
        positiveInt('dlq max redeliver'),
      )
      .option('--dlq-topic <topic>', 'dead-letter topic (default <topic>-<subscription>-DLQ)'),
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
      if (flags.dlqTopic !== undefined && flags.dlqMaxRedeliver === undefined) {
        throw new InvalidArgumentError('--dlq-topic needs --dlq-max-redeliver COUNT');
      }
      const consumer = await client.subscribe({
        topic,
        subscription: flags.subscription,
        type: flags.type,
        initialPosition: flags.from,
        ...(flags.consumerName ? { consumerName: flags.consumerName } : {}),
        ...(flags.count !== undefined ? { receiverQueueSize: Math.min(1000, flags.count) } : {}),
        ...redeliveryOptions(flags),
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
          if (flags.nack) consumer.nack(msg);
          else consumer.ack(msg);
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

/** Nack delay, ack timeout and dead-letter policy from the flags. */
function redeliveryOptions(
  flags: ConsumeFlags,
): Pick<ConsumerOptions, 'nackRedeliveryBackoff' | 'ackTimeoutMs' | 'deadLetterPolicy'> {
  const nackDelay = flags.nackDelay === undefined ? undefined : parseDuration(flags.nackDelay);
  const ackTimeout = flags.ackTimeout === undefined ? undefined : parseDuration(flags.ackTimeout);
  return {
    ...(nackDelay !== undefined
      ? { nackRedeliveryBackoff: { minDelayMs: nackDelay, maxDelayMs: Math.max(nackDelay, 60_000) } }
      : {}),
    ...(ackTimeout !== undefined ? { ackTimeoutMs: ackTimeout } : {}),
    ...(flags.dlqMaxRedeliver !== undefined
      ? {
          deadLetterPolicy: {
            maxRedeliverCount: flags.dlqMaxRedeliver,
            ...(flags.dlqTopic ? { deadLetterTopic: flags.dlqTopic } : {}),
          },
        }
      : {}),
  };
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
  const redelivered = msg.redeliveryCount > 0 ? ` redelivery=${msg.redeliveryCount}` : '';
  const value = text ?? `base64:${msg.value.toString('base64')}`;
  printLine(`[${msg.id}]${key}${redelivered}${props} ${value}`);
}
