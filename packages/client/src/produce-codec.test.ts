import { join } from 'node:path';
import { PROTO_DIR } from '@sluice/proto';
import test from 'ava';
import protobuf from 'protobufjs';
import { type BatchEntry, decodeBatch, encodeBatch } from './batch-codec.js';
import type { CompressionType } from './compression.js';
import { encodeSendRequest, produceRequestSerializer } from './produce-codec.js';

const root = new protobuf.Root();
// broker.proto imports "sluice/v1/batch.proto": resolve imports against the proto root.
root.resolvePath = (_origin, target) => join(PROTO_DIR, target);
root.loadSync('sluice/v1/broker.proto');
const ProduceRequestType = root.lookupType('sluice.v1.ProduceRequest');

/** Decode as the broker does (proto-loader options: longs as numbers, enums as names, defaults filled). */
function decode(buf: Buffer) {
  return ProduceRequestType.toObject(ProduceRequestType.decode(buf), {
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  }) as {
    request: string;
    send: {
      batch: {
        header: {
          count: number;
          firstSequenceId: number;
          codec: string;
          uncompressedSize: number;
          key: string;
          deliverAt: number;
        };
        payload: Buffer;
      };
    };
  };
}

const value = (n: number, fill: number) => Buffer.alloc(n, fill);

const mixed: BatchEntry[] = [
  { key: 'k1', value: value(5, 1), properties: { a: '1' }, eventTime: 1_700_000_000_123, sendTime: 5 },
  { key: '', value: Buffer.from([0, 255, 1]), properties: {}, eventTime: 0, sendTime: 6 },
  { key: 'k1', value: Buffer.alloc(0), properties: { 'x-y': 'ü' }, eventTime: 2 ** 53 - 1, sendTime: 0 },
];

for (const compression of ['none', 'lz4', 'zstd'] as CompressionType[]) {
  test(`produce codec - a send request decodes with protobufjs like encodeBatch's batch (${compression})`, async (t) => {
    const buf = await encodeSendRequest(mixed, { firstSequenceId: 42, compression, deliverAt: 0 });
    const req = decode(buf);
    t.is(req.request, 'send');
    const expected = await encodeBatch(mixed, { firstSequenceId: 42, compression });
    const header = req.send.batch.header;
    t.deepEqual(header, {
      count: 3,
      firstSequenceId: 42,
      codec: expected.header!.codec as string,
      uncompressedSize: expected.header!.uncompressedSize as number,
      key: '',
      deliverAt: 0,
    });
    const { messages } = await decodeBatch({ header: header as never, payload: req.send.batch.payload });
    t.deepEqual(messages, mixed);
  });
}

test('produce codec - shared key, deliver-at, sequence id 0 and multi-byte lengths survive the framing', async (t) => {
  // 300 messages of 1 KiB: every enclosing length needs a 3-byte varint.
  const many = Array.from(
    { length: 300 },
    (_, i): BatchEntry => ({
      key: 'same',
      value: value(1024, i % 256),
      properties: {},
      eventTime: 0,
      sendTime: i + 1,
    }),
  );
  const buf = await encodeSendRequest(many, {
    firstSequenceId: 0,
    compression: 'none',
    deliverAt: 1_800_000_000_000,
  });
  const req = decode(buf);
  t.is(req.send.batch.header.count, 300);
  t.is(req.send.batch.header.firstSequenceId, 0);
  t.is(req.send.batch.header.key, 'same');
  t.is(req.send.batch.header.deliverAt, 1_800_000_000_000);
  t.is(req.send.batch.header.codec, 'COMPRESSION_CODEC_UNSPECIFIED');
  // The whole request is exactly what protobufjs decodes: no trailing or missing bytes.
  t.is(ProduceRequestType.encode(ProduceRequestType.decode(buf)).finish().length, buf.length);
  const { messages } = await decodeBatch({
    header: req.send.batch.header as never,
    payload: req.send.batch.payload,
  });
  t.deepEqual(messages, many);
});

test('produce codec - the serializer passes encoded sends through and encodes other requests', (t) => {
  const generated = (r: object) =>
    Buffer.from(ProduceRequestType.encode(ProduceRequestType.fromObject(r)).finish());
  const serialize = produceRequestSerializer(generated);
  const encoded = Buffer.from([0x12, 0x00]);
  t.is(serialize(encoded), encoded);
  const open = serialize({
    open: { topic: 't', producerName: 'p', accessMode: 'PRODUCER_ACCESS_MODE_UNSPECIFIED' },
  });
  t.deepEqual(ProduceRequestType.toObject(ProduceRequestType.decode(open), { oneofs: true }).request, 'open');
});
