import test from 'ava';
import { GRPC_FRAME_PREFIX_BYTES, GrpcFrameReader, grpcFramePrefix } from './grpc-framing.js';

const framed = (...messages: Buffer[]) =>
  Buffer.concat(messages.flatMap((m) => [grpcFramePrefix(m.length), m]));

const messages = [Buffer.from('first'), Buffer.alloc(0), Buffer.alloc(70_000, 7), Buffer.from('last')];

test('grpc framing - every way of cutting a stream into chunks yields the same messages', (t) => {
  const wire = framed(...messages.slice(0, 2), messages[3]!);
  // Every single cut point and every chunk size from 1 byte up.
  for (let cut = 0; cut <= wire.length; cut++) {
    const reader = new GrpcFrameReader(1024);
    const out = [...reader.push(wire.subarray(0, cut)), ...reader.push(wire.subarray(cut))];
    t.deepEqual(out.map(String), ['first', '', 'last'], `cut at ${cut}`);
    t.is(reader.pending, 0);
  }
  for (let size = 1; size <= 8; size++) {
    const reader = new GrpcFrameReader(1024);
    const out: Buffer[] = [];
    for (let o = 0; o < wire.length; o += size) out.push(...reader.push(wire.subarray(o, o + size)));
    t.deepEqual(out.map(String), ['first', '', 'last'], `chunks of ${size}`);
  }
});

test('grpc framing - a large message spread over many chunks is joined whole, once complete', (t) => {
  const wire = framed(...messages);
  const reader = new GrpcFrameReader(1024 * 1024);
  const out: Buffer[] = [];
  let completedAt = -1;
  for (let o = 0; o < wire.length; o += 16_384) {
    const got = reader.push(wire.subarray(o, o + 16_384));
    if (got.some((m) => m.length === 70_000)) completedAt = o;
    out.push(...got);
  }
  t.is(out.length, 4);
  t.true(out[2]!.equals(messages[2]!));
  t.true(out[3]!.equals(messages[3]!));
  // The 70,000-byte message ends in the fifth 16 KiB chunk.
  t.is(completedAt, 4 * 16_384);
});

test('grpc framing - a message in one chunk is a slice of it, not a copy', (t) => {
  const wire = framed(Buffer.from('abc'));
  const [m] = new GrpcFrameReader(16).push(wire);
  t.is(m!.buffer, wire.buffer);
  t.is(m!.byteOffset, wire.byteOffset + GRPC_FRAME_PREFIX_BYTES);
});

test('grpc framing - compressed and oversized messages are refused before they are buffered', (t) => {
  const compressed = framed(Buffer.from('zz'));
  compressed[0] = 1;
  t.throws(() => new GrpcFrameReader(16).push(compressed), { message: /compressed flag 1/ });
  const reader = new GrpcFrameReader(16);
  // Only the prefix has arrived: the length alone is enough to refuse it.
  t.throws(() => reader.push(grpcFramePrefix(17)), { message: /17 bytes is over the limit of 16/ });
  const split = new GrpcFrameReader(16);
  t.deepEqual(split.push(grpcFramePrefix(1000).subarray(0, 2)), []);
  t.throws(() => split.push(grpcFramePrefix(1000).subarray(2)), { message: /1000 bytes/ });
});
