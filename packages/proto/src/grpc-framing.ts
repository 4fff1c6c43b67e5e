/**
 * gRPC's length-prefixed message framing on an HTTP/2 stream (one byte
 * "compressed" flag, a 4-byte big-endian length, the message), for the
 * calls Sluice drives over `node:http2` itself instead of grpc-js.
 */

/** Bytes of the prefix before every message. */
export const GRPC_FRAME_PREFIX_BYTES = 5;

/** The prefix of an uncompressed message of `length` bytes. */
export function grpcFramePrefix(length: number): Buffer {
  const prefix = Buffer.allocUnsafe(GRPC_FRAME_PREFIX_BYTES);
  prefix[0] = 0;
  prefix.writeUInt32BE(length, 1);
  return prefix;
}

/**
 * Splits the DATA of a gRPC stream into messages however the chunks fall. A
 * message that arrives in one chunk is a slice of it; one spread over
 * chunks is joined once. Throws on a compressed message (none is ever
 * negotiated) and on one over `maxMessageBytes`, before buffering it.
 */
export class GrpcFrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(private readonly maxMessageBytes: number) {}

  /** Messages completed by `chunk`, in order. */
  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let data = chunk;
    if (this.buffered > 0) {
      // A message spread over chunks is joined once, when its last byte is here.
      this.chunks.push(chunk);
      this.buffered += chunk.length;
      if (this.buffered < GRPC_FRAME_PREFIX_BYTES) return out;
      const head = this.chunks[0]!.length >= GRPC_FRAME_PREFIX_BYTES ? this.chunks[0]! : this.joined();
      const need = GRPC_FRAME_PREFIX_BYTES + this.check(head, 0);
      if (this.buffered < need) return out;
      data = this.joined();
      this.chunks = [];
      this.buffered = 0;
    }
    let o = 0;
    while (data.length - o >= GRPC_FRAME_PREFIX_BYTES) {
      const end = o + GRPC_FRAME_PREFIX_BYTES + this.check(data, o);
      if (end > data.length) break;
      out.push(data.subarray(o + GRPC_FRAME_PREFIX_BYTES, end));
      o = end;
    }
    if (o < data.length) {
      this.chunks = [data.subarray(o)];
      this.buffered = data.length - o;
    }
    return out;
  }

  /** The length in the prefix at `o`, once it is known to be acceptable. */
  private check(data: Buffer, o: number): number {
    const flag = data[o]!;
    const length = data.readUInt32BE(o + 1);
    if (flag !== 0) throw new Error(`gRPC message with compressed flag ${flag}; none was negotiated`);
    if (length > this.maxMessageBytes) {
      throw new Error(`gRPC message of ${length} bytes is over the limit of ${this.maxMessageBytes}`);
    }
    return length;
  }

  private joined(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks, this.buffered)];
    return this.chunks[0]!;
  }

  /** Bytes of a message not yet complete. */
  get pending(): number {
    return this.buffered;
  }
}
