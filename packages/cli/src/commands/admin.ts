import type { Policies, SluiceClient } from '@sluice/client';
import { InvalidArgumentError, parseDuration, parseMessageId, parseSize } from '@sluice/common';
import type { Command } from 'commander';
import {
  type ConnectionFlags,
  positiveInt,
  printJson,
  printLine,
  printRecord,
  withClient,
  withConnection,
} from './output.js';

type Flags = ConnectionFlags & Record<string, unknown>;

/** Define a leaf admin verb: connection flags, one-line errors, JSON or human output. */
function verb(
  parent: Command,
  spec: string,
  description: string,
  configure: (cmd: Command) => Command,
  run: (client: SluiceClient, args: string[], flags: Flags) => Promise<unknown>,
  human: (result: unknown, args: string[]) => void,
): void {
  const cmd = withConnection(configure(parent.command(spec).description(description)));
  cmd.action(async (...all: unknown[]) => {
    const command = all.at(-1) as Command;
    const flags = command.opts<Flags>();
    const args = command.args.slice(0, command.registeredArguments.length);
    await withClient(flags, async (client) => {
      const result = await run(client, args, flags);
      if (flags.json) printJson(result ?? { ok: true });
      else human(result, args);
    });
  });
}

const same = (c: Command) => c;
const list = (result: unknown) => {
  const items = result as unknown[];
  if (items.length === 0) printLine('(none)');
  for (const item of items) printLine(typeof item === 'string' ? item : JSON.stringify(item));
};
const said = (text: (args: string[]) => string) => (_: unknown, args: string[]) => printLine(text(args));

/** `-1`, `infinite` or `unlimited` for "no limit", else a duration/size. */
function limit(parse: (t: string) => number, text: string): number {
  return ['-1', 'infinite', 'unlimited'].includes(text.toLowerCase()) ? -1 : parse(text);
}

export function registerAdminCommands(program: Command): void {
  registerTenants(program.command('tenants').description('manage tenants'));
  registerNamespaces(program.command('namespaces').description('manage namespaces and their policies'));
  registerTopics(program.command('topics').description('manage topics'));
  registerSubscriptions(program.command('subscriptions').description('manage subscriptions'));
}

function registerTenants(tenants: Command): void {
  verb(
    tenants,
    'create <tenant>',
    'create a tenant',
    (c) => c.option('--if-not-exists', 'succeed when it exists already'),
    (client, [t], f) => client.admin.createTenant(t!, { ifNotExists: f.ifNotExists === true }),
    said(([t]) => `created tenant ${t}`),
  );
  verb(tenants, 'list', 'list tenants', same, (client) => client.admin.listTenants(), list);
  verb(
    tenants,
    'delete <tenant>',
    'delete an empty tenant',
    same,
    (client, [t]) => client.admin.deleteTenant(t!),
    said(([t]) => `deleted tenant ${t}`),
  );
}

function registerNamespaces(ns: Command): void {
  verb(
    ns,
    'create <namespace>',
    'create a namespace tenant/namespace',
    (c) =>
      c
        .option('--if-not-exists', 'succeed when it exists already')
        .option('--bundles <count>', 'hash-range bundles (default 4)', positiveInt('bundles')),
    (client, [n], f) =>
      client.admin.createNamespace(n!, {
        ifNotExists: f.ifNotExists === true,
        ...(f.bundles ? { policies: { bundles: f.bundles as number } } : {}),
      }),
    said(([n]) => `created namespace ${n}`),
  );
  verb(
    ns,
    'list <tenant>',
    'list the namespaces of a tenant',
    same,
    (client, [t]) => client.admin.listNamespaces(t!),
    list,
  );
  verb(
    ns,
    'delete <namespace>',
    'delete an empty namespace',
    same,
    (client, [n]) => client.admin.deleteNamespace(n!),
    said(([n]) => `deleted namespace ${n}`),
  );
  verb(
    ns,
    'policies <namespace>',
    'show the effective policies of a namespace',
    same,
    (client, [n]) => client.admin.getNamespacePolicies(n!),
    (r) => printRecord(r),
  );
  const setter = (
    spec: string,
    description: string,
    configure: (c: Command) => Command,
    build: (f: Flags) => Policies,
  ) =>
    verb(
      ns,
      spec,
      description,
      configure,
      (client, [n], f) => client.admin.setNamespacePolicies(n!, build(f)),
      (r) => printRecord(r),
    );
  setter(
    'set-persistence <namespace>',
    'replication of new ledgers: ensemble E >= write quorum Qw >= ack quorum Qa',
    (c) =>
      c
        .requiredOption('-e, --ensemble <E>', 'bookies per ledger segment', positiveInt('ensemble'))
        .requiredOption('-w, --write-quorum <Qw>', 'copies of each entry', positiveInt('write quorum'))
        .requiredOption('-a, --ack-quorum <Qa>', 'fsynced copies before an ack', positiveInt('ack quorum')),
    (f) => {
      const [e, w, a] = [f.ensemble as number, f.writeQuorum as number, f.ackQuorum as number];
      if (!(e >= w && w >= a)) {
        throw new InvalidArgumentError(
          `persistence E=${e} Qw=${w} Qa=${a} is invalid; it needs E >= Qw >= Qa >= 1`,
        );
      }
      return { persistence: { ensembleSize: e, writeQuorum: w, ackQuorum: a } };
    },
  );
  setter(
    'set-retention <namespace>',
    'keep acknowledged data for a time and/or size (-1 = forever/unlimited)',
    (c) =>
      c.option('--time <duration>', 'e.g. 7d, 12h, 0, -1').option('--size <size>', 'e.g. 10G, 500M, 0, -1'),
    (f) => {
      if (f.time === undefined && f.size === undefined) {
        throw new InvalidArgumentError('set-retention needs --time and/or --size');
      }
      return {
        retention: {
          timeMs: f.time === undefined ? 0 : limit(parseDuration, String(f.time)),
          sizeBytes: f.size === undefined ? 0 : limit(parseSize, String(f.size)),
        },
      };
    },
  );
  setter(
    'set-offload-threshold <namespace>',
    'offload closed ledgers once bookie-resident bytes exceed this (-1 = never)',
    (c) => c.requiredOption('--size <size>', 'e.g. 1G, 0 (offload at once), -1 (never)'),
    (f) => ({ offloadThresholdBytes: limit(parseSize, String(f.size)) }),
  );
  setter(
    'set-deduplication <namespace>',
    'producer deduplication by (producer name, sequence id)',
    (c) => c.option('--enable', 'turn deduplication on').option('--disable', 'turn deduplication off'),
    (f) => {
      if (f.enable === f.disable)
        throw new InvalidArgumentError('set-deduplication needs exactly one of --enable, --disable');
      return { deduplicationEnabled: f.enable === true };
    },
  );
  setter(
    'set-message-ttl <namespace>',
    'expire unacknowledged messages older than this (0 = never)',
    (c) => c.requiredOption('--ttl <duration>', 'e.g. 1h, 0'),
    (f) => ({ messageTtlMs: parseDuration(String(f.ttl)) }),
  );
  setter(
    'set-max-delivery-delay <namespace>',
    'longest delay a producer may ask for with deliverAt/deliverAfter (0 = no limit)',
    (c) => c.requiredOption('--delay <duration>', 'e.g. 1d, 0'),
    (f) => ({ maxDeliveryDelayMs: parseDuration(String(f.delay)) }),
  );
  setter(
    'set-max-message-size <namespace>',
    'largest batch a producer may send',
    (c) => c.requiredOption('--size <size>', 'e.g. 5M'),
    (f) => ({ maxMessageSize: parseSize(String(f.size)) }),
  );
}

function registerTopics(topics: Command): void {
  verb(
    topics,
    'create <topic>',
    'create a topic (partitioned with -p)',
    (c) =>
      c
        .option('-p, --partitions <count>', 'number of partitions', positiveInt('partitions'))
        .option('--if-not-exists', 'succeed when it exists already'),
    (client, [t], f) =>
      client.admin.createTopic(t!, {
        partitions: (f.partitions as number) ?? 0,
        ifNotExists: f.ifNotExists === true,
      }),
    said(([t]) => `created topic ${t}`),
  );
  verb(
    topics,
    'list <namespace>',
    'list the topics of a namespace',
    same,
    (client, [n]) => client.admin.listTopics(n!),
    (r) => {
      const items = r as { topic: string; partitions: number }[];
      if (items.length === 0) printLine('(none)');
      for (const t of items)
        printLine(t.partitions > 0 ? `${t.topic} (${t.partitions} partitions)` : t.topic);
    },
  );
  verb(
    topics,
    'delete <topic>',
    'delete a topic, its subscriptions and its data',
    (c) => c.option('--force', 'even with connected producers or consumers'),
    (client, [t], f) => client.admin.deleteTopic(t!, { force: f.force === true }),
    said(([t]) => `deleted topic ${t}`),
  );
  verb(
    topics,
    'update-partitions <topic>',
    'raise the partition count of a partitioned topic',
    (c) => c.requiredOption('-p, --partitions <count>', 'new partition count', positiveInt('partitions')),
    (client, [t], f) => client.admin.updatePartitions(t!, f.partitions as number),
    said(([t]) => `updated partitions of ${t}`),
  );
  verb(
    topics,
    'stats <topic>',
    'rates, backlog, storage and subscriptions',
    same,
    (client, [t]) => client.admin.topicStats(t!),
    (r) => printRecord(r),
  );
  verb(
    topics,
    'internal-stats <topic>',
    'ledgers (id, entries, size, offloaded) and cursors (mark-delete position, ack ranges)',
    same,
    (client, [t]) => client.admin.topicInternalStats(t!),
    (r) => printRecord(r),
  );
  verb(
    topics,
    'unload <topic>',
    'close the topic on its owner; the next use reopens it on a new ledger',
    same,
    (client, [t]) => client.admin.unloadTopic(t!),
    said(([t]) => `unloaded ${t}`),
  );
  verb(
    topics,
    'offload <topic>',
    'offload every closed ledger now',
    same,
    async (client, [t]) => ({ ledgersOffloaded: await client.admin.offloadTopic(t!) }),
    (r, [t]) =>
      printLine(`offloaded ${(r as { ledgersOffloaded: number }).ledgersOffloaded} ledger(s) of ${t}`),
  );
  verb(
    topics,
    'policies <topic>',
    "show a topic's own policies",
    same,
    (client, [t]) => client.admin.getTopicPolicies(t!),
    (r) => printRecord(r),
  );
}

function registerSubscriptions(subs: Command): void {
  verb(
    subs,
    'create <topic>',
    'create a durable subscription',
    (c) =>
      c
        .requiredOption('-s, --subscription <name>', 'subscription name')
        .option('--from <position>', 'earliest or latest', 'latest'),
    (client, [t], f) => {
      if (f.from !== 'earliest' && f.from !== 'latest') {
        throw new InvalidArgumentError(`--from '${String(f.from)}' is unknown; use earliest or latest`);
      }
      return client.admin.createSubscription(t!, String(f.subscription), { initialPosition: f.from });
    },
    (_, [t]) => printLine(`created subscription on ${t}`),
  );
  verb(
    subs,
    'list <topic>',
    "list a topic's subscriptions",
    same,
    (client, [t]) => client.admin.listSubscriptions(t!),
    list,
  );
  verb(
    subs,
    'delete <topic>',
    'delete a subscription',
    (c) =>
      c
        .requiredOption('-s, --subscription <name>', 'subscription name')
        .option('--force', 'disconnect attached consumers'),
    (client, [t], f) =>
      client.admin.deleteSubscription(t!, String(f.subscription), { force: f.force === true }),
    (_, [t]) => printLine(`deleted subscription on ${t}`),
  );
  verb(
    subs,
    'reset <topic>',
    'move a subscription to a publish time or a message id',
    (c) =>
      c
        .requiredOption('-s, --subscription <name>', 'subscription name')
        .option('--time <iso-8601>', 'first message published at or after this time')
        .option('--id <message-id>', 'ledgerId:entryId:batchIndex[:partition]'),
    (client, [t], f) => {
      if ((f.time === undefined) === (f.id === undefined)) {
        throw new InvalidArgumentError('reset needs exactly one of --time ISO-8601 or --id MESSAGE_ID');
      }
      if (f.id !== undefined) {
        return client.admin.resetSubscription(t!, String(f.subscription), {
          messageId: parseMessageId(String(f.id)),
        });
      }
      const publishTime = Date.parse(String(f.time));
      if (Number.isNaN(publishTime)) {
        throw new InvalidArgumentError(
          `--time '${String(f.time)}' is not an ISO-8601 time, e.g. 2024-05-01T12:00:00Z`,
        );
      }
      return client.admin.resetSubscription(t!, String(f.subscription), { publishTime });
    },
    (_, [t]) => printLine(`reset subscription on ${t}`),
  );
}
