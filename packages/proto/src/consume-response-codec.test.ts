import test from 'ava';
import fc from 'fast-check';
import { type ConsumeResponse, type DeliveryFields, encodeDeliveriesResponse, loadProto } from './index.js';

interface ConsumeMethod {
  responseSerialize(res: ConsumeResponse): Buffer;
  responseDeserialize(buf: Buffer): unknown;
}

/** The protobufjs codec grpc-js used before (proto-loader with LOADER_OPTIONS). */
const method = (
  loadProto('broker.proto') as unknown as {
    sluice: { v1: { ConsumerService: { service: { Consume: ConsumeMethod } } } };
  }
).sluice.v1.ConsumerService.service.Consume;

const int64 = fc.oneof(
  fc.constant(0),
  fc.integer({ min: 0, max: 300 }),
  fc.maxSafeInteger().map((n) => Math.abs(n)),
  fc.integer({ min: -(2 ** 31), max: -1 }),
);
const int32 = fc.oneof(fc.constant(0), fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }));
const uint32 = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 2 ** 32 - 1 }));

const delivery: fc.Arbitrary<DeliveryFields> = fc.record(
  {
    messageId: fc.record({ ledgerId: int64, entryId: int64, batchIndex: int32, partition: int32 }),
    batch: fc.record(
      {
        header: fc.record({
          count: uint32,
          firstSequenceId: int64,
          codec: fc.constantFrom(
            'COMPRESSION_CODEC_UNSPECIFIED',
            'COMPRESSION_CODEC_LZ4',
            'COMPRESSION_CODEC_ZSTD',
            'COMPRESSION_CODEC_GZIP',
            0,
            2,
          ),
          uncompressedSize: uint32,
          key: fc.string({ unit: 'binary', maxLength: 12 }),
          deliverAt: int64,
        }),
        payload: fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a)),
      },
      { requiredKeys: ['payload'] },
    ),
    publishTime: int64,
    redeliveryCount: int32,
    ackedIndexes: fc.array(int32, { maxLength: 5 }),
    producerName: fc.string({ unit: 'grapheme', maxLength: 10 }),
  },
  { requiredKeys: [] },
);

// protobufjs also writes scalar fields that are set to zero; proto3 reads an
// absent scalar as zero, so the decoded messages are what must match.
test('consume-response codec - decodes with protobufjs to what protobufjs encoded', (t) => {
  fc.assert(
    fc.property(fc.array(delivery, { maxLength: 6 }), (deliveries) => {
      const response = { deliveries: { deliveries } } as ConsumeResponse;
      const ours = Buffer.from(encodeDeliveriesResponse(deliveries));
      const theirs = method.responseSerialize(response);
      t.deepEqual(method.responseDeserialize(ours), method.responseDeserialize(theirs));
    }),
    { numRuns: 300 },
  );
});

test('consume-response codec - a response after a larger one is not left with its bytes', (t) => {
  const big: DeliveryFields = {
    messageId: { ledgerId: 7, entryId: 9 },
    batch: { header: { count: 1 }, payload: Buffer.alloc(200_000, 0xab) },
  };
  const small: DeliveryFields = {
    messageId: { ledgerId: 1, entryId: 2 },
    batch: { header: { count: 3 }, payload: Buffer.from('hello') },
  };
  encodeDeliveriesResponse([big]);
  const out = Buffer.from(encodeDeliveriesResponse([small]));
  t.deepEqual(
    method.responseDeserialize(out),
    method.responseDeserialize(
      method.responseSerialize({ deliveries: { deliveries: [small] } } as ConsumeResponse),
    ),
  );
  t.is(out.length, 23);
});

test('consume-response codec - an unknown codec name is a RangeError', (t) => {
  t.throws(() => encodeDeliveriesResponse([{ batch: { header: { codec: 'COMPRESSION_CODEC_BROTLI' } } }]), {
    instanceOf: RangeError,
    message: /unknown compression codec 'COMPRESSION_CODEC_BROTLI'/,
  });
});
