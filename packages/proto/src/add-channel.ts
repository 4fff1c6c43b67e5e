/**
 * The bookie's add channel: the AddEntries stream of bookie.proto carried on
 * a plain TCP connection of its own (the bookie's `--add-port`) instead of
 * HTTP/2. Same messages, a simpler frame, so that the bookie can read every
 * byte into memory it owns and reuses (see the bookie's `AddChannelServer`):
 * over HTTP/2, each socket read and each gRPC message arrives in a fresh
 * ArrayBuffer, and at hundreds of MB/s those allocations alone make V8
 * collect garbage many times a second.
 *
 * A connection carries one stream:
 * - the client opens with the 8-byte preface `ADD_CHANNEL_PREFACE`;
 * - then frames both ways: a 1-byte kind, a 4-byte big-endian body length,
 *   the body;
 * - client → bookie: REQUEST (an AddEntriesRequest) and PING (empty);
 * - bookie → client: RESPONSE (an AddEntriesResponse), PONG (empty) and,
 *   last, STATUS (a 4-byte big-endian gRPC status code, then a UTF-8
 *   message) — the call's outcome, as gRPC's trailers give it;
 * - the client half-closes its side to end the stream; the bookie answers
 *   every add it took, sends STATUS OK and closes.
 */

/** First bytes a client sends: "SLCADD" and a version. */
export const ADD_CHANNEL_PREFACE = Buffer.from('SLCADD\x00\x01', 'latin1');

export const AddChannelFrame = {
  REQUEST: 0,
  RESPONSE: 0,
  PING: 1,
  PONG: 1,
  STATUS: 2,
} as const;

/** Bytes before every frame's body: kind and length. */
export const ADD_CHANNEL_HEADER_BYTES = 5;

/** The header of a frame of `kind` with a body of `length` bytes. */
export function addChannelHeader(kind: number, length: number): Buffer {
  const h = Buffer.allocUnsafe(ADD_CHANNEL_HEADER_BYTES);
  h[0] = kind;
  h.writeUInt32BE(length, 1);
  return h;
}

/** A whole STATUS frame. */
export function addChannelStatusFrame(code: number, message: string): Buffer {
  const text = Buffer.from(message, 'utf8');
  const f = Buffer.allocUnsafe(ADD_CHANNEL_HEADER_BYTES + 4 + text.length);
  f[0] = AddChannelFrame.STATUS;
  f.writeUInt32BE(4 + text.length, 1);
  f.writeUInt32BE(code, ADD_CHANNEL_HEADER_BYTES);
  text.copy(f, ADD_CHANNEL_HEADER_BYTES + 4);
  return f;
}

export function decodeAddChannelStatus(body: Buffer): { code: number; message: string } {
  if (body.length < 4) throw new Error(`status frame of ${body.length} bytes is too short`);
  return { code: body.readUInt32BE(0), message: body.toString('utf8', 4) };
}

/**
 * Splits received bytes into frames however the chunks fall (the client
 * side: responses are small, so a frame spread over chunks is joined).
 * Throws on a frame over `maxBodyBytes`, before buffering it.
 */
export class AddChannelFrameReader {
  private pending: Buffer | undefined;

  constructor(private readonly maxBodyBytes: number) {}

  push(chunk: Buffer): { kind: number; body: Buffer }[] {
    const data = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = undefined;
    const out: { kind: number; body: Buffer }[] = [];
    let o = 0;
    while (data.length - o >= ADD_CHANNEL_HEADER_BYTES) {
      const length = data.readUInt32BE(o + 1);
      if (length > this.maxBodyBytes) {
        throw new Error(`frame of ${length} bytes is over the limit of ${this.maxBodyBytes}`);
      }
      const end = o + ADD_CHANNEL_HEADER_BYTES + length;
      if (end > data.length) break;
      out.push({ kind: data[o]!, body: data.subarray(o + ADD_CHANNEL_HEADER_BYTES, end) });
      o = end;
    }
    if (o < data.length) this.pending = data.subarray(o);
    return out;
  }
}
