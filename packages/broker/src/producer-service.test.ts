import { EventEmitter } from 'node:events';
import { status } from '@grpc/grpc-js';
import { silentLogger } from '@sluice/common';
import type { ProduceResponse } from '@sluice/proto';
import test from 'ava';
import { createProducerService } from './producer-service.js';
import { MemoryLog, openMemoryTopic } from './test-support/memory-log.js';
import type { TopicManager } from './topic-manager.js';

/** A Produce stream as the service sees it: what it wrote, and the status it ended with. */
class FakeCall extends EventEmitter {
  readonly written: ProduceResponse[] = [];
  ended: { code: number; details: string } | undefined;
  cancelled = false;
  destroyed = false;
  writableEnded = false;

  constructor() {
    super();
    this.on('error', (e: { code: number; details: string }) => {
      this.ended = e;
      this.writableEnded = true;
    });
  }

  write(m: ProduceResponse): boolean {
    this.written.push(m);
    return true;
  }

  end(): void {
    this.writableEnded = true;
  }

  pause(): void {}
  resume(): void {}
}

async function rig() {
  const log = new MemoryLog();
  const topic = await openMemoryTopic('t/ns/produce', log);
  const topics = { acquire: async () => topic } as unknown as TopicManager;
  const service = createProducerService(
    topics,
    { maxInFlight: 100, namePrefix: 'b' },
    silentLogger,
    () => () => undefined,
  );
  const open = (producerName: string): FakeCall => {
    const call = new FakeCall();
    service.Produce(call as never);
    call.emit('data', {
      request: 'open',
      open: { topic: 't/ns/produce', producerName, accessMode: 'PRODUCER_ACCESS_MODE_UNSPECIFIED' },
    });
    return call;
  };
  return { log, topic, open };
}

function send(
  call: FakeCall,
  seq: number,
  b: { count: number; payload: Buffer; codec?: string; uncompressedSize?: number },
): void {
  call.emit('data', {
    request: 'send',
    send: {
      batch: {
        header: {
          count: b.count,
          firstSequenceId: seq,
          codec: b.codec ?? 'COMPRESSION_CODEC_UNSPECIFIED',
          uncompressedSize: b.uncompressedSize ?? b.payload.length,
          key: '',
          deliverAt: 0,
        },
        payload: b.payload,
      },
    },
  });
}

async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('producer service - a batch whose count its messages cannot hold is refused with INVALID_ARGUMENT', async (t) => {
  const { log, open } = await rig();
  const call = open('counts');
  await until(() => call.written.length === 1);
  t.truthy(call.written[0]!.opened);
  send(call, 0, { count: 4294967295, payload: Buffer.from('x') });
  send(call, 1, { count: 5, payload: Buffer.from('abcd') });
  send(call, 2, {
    count: 50,
    codec: 'COMPRESSION_CODEC_ZSTD',
    uncompressedSize: 20,
    payload: Buffer.alloc(10),
  });
  // Fits: as many messages as bytes; a compressed batch is judged by its uncompressed size.
  send(call, 3, { count: 4, payload: Buffer.from('abcd') });
  send(call, 7, {
    count: 50,
    codec: 'COMPRESSION_CODEC_ZSTD',
    uncompressedSize: 100,
    payload: Buffer.alloc(10),
  });
  await until(() => call.written.length === 6);
  const [huge, overPayload, overUncompressed, ok, okCompressed] = call.written.slice(1);
  t.is(huge!.error?.code, status.INVALID_ARGUMENT);
  t.regex(String(huge!.error?.message), /count is 4294967295, over the limit of 1000000 messages per batch/);
  t.is(overPayload!.error?.code, status.INVALID_ARGUMENT);
  t.regex(String(overPayload!.error?.message), /count is 5 but the batch holds 4 bytes of messages/);
  t.is(overUncompressed!.error?.code, status.INVALID_ARGUMENT);
  t.regex(String(overUncompressed!.error?.message), /count is 50 but the batch holds 20 bytes/);
  t.is(Number(ok!.receipt?.sequenceId), 3);
  t.is(Number(okCompressed!.receipt?.sequenceId), 7);
  t.is(log.entries.length, 2, 'only the batches that fit were stored');
  t.is(call.ended, undefined, 'the stream keeps working');
});

test('producer service - a producer name held by a connected producer is refused; the name frees when that stream ends', async (t) => {
  const { log, topic, open } = await rig();
  const first = open('same');
  await until(() => first.written.length === 1);
  const second = open('same');
  await until(() => second.ended !== undefined);
  t.is(second.ended!.code, status.ALREADY_EXISTS);
  t.regex(second.ended!.details, /producer name 'same' is in use .*distinct producerName/);
  t.deepEqual(second.written, []);
  // The first producer was not kicked off and still sends.
  t.is(first.ended, undefined);
  send(first, 0, { count: 1, payload: Buffer.from('x') });
  await until(() => first.written.length === 2);
  t.is(Number(first.written[1]!.receipt?.sequenceId), 0);
  // The client's stream broke: once the broker sees it end, its reconnect gets the name back.
  first.cancelled = true;
  first.emit('cancelled');
  t.false(topic.producers.has('same'));
  const again = open('same');
  await until(() => again.written.length === 1);
  t.is(Number(again.written[0]!.opened?.lastSequenceId), 0);
  t.is(again.ended, undefined);
  // A stream already cancelled whose cleanup has not run yet does not hold the name either.
  again.cancelled = true;
  const third = open('same');
  await until(() => third.written.length === 1);
  t.truthy(third.written[0]!.opened);
  t.is(again.ended?.code, status.UNAVAILABLE, 'the dead stream was let go');
  t.true(topic.producers.has('same'));
  t.is(log.entries.length, 1);
});
