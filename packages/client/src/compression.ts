import { deflateRawSync, gunzipSync, gzipSync, inflateRawSync } from 'node:zlib';
import { CorruptDataError, InvalidArgumentError } from '@sluice/common';
import type { CompressionCodec__Output } from '@sluice/proto';

/** Compression of a batch payload, chosen per producer. */
export type CompressionType = 'none' | 'gzip' | 'deflate';

/** Wire names of the codecs (proto enum `CompressionCodec`). */
type WireCodec = CompressionCodec__Output;

interface Codec {
  wire: WireCodec;
  compress(data: Buffer): Buffer;
  decompress(data: Buffer, uncompressedSize: number): Buffer;
}

// Level 6 would cost the producer several times more CPU for a few percent on
// typical message batches; level 1 keeps the client off the hot path's CPU budget.
const zlibOptions = { level: 1 };

const codecs: Record<CompressionType, Codec> = {
  none: { wire: 'COMPRESSION_CODEC_UNSPECIFIED', compress: (d) => d, decompress: (d) => d },
  gzip: {
    wire: 'COMPRESSION_CODEC_GZIP',
    compress: (d) => gzipSync(d, zlibOptions),
    decompress: (d, size) => gunzipSync(d, { maxOutputLength: Math.max(size, 1) }),
  },
  deflate: {
    wire: 'COMPRESSION_CODEC_DEFLATE',
    compress: (d) => deflateRawSync(d, zlibOptions),
    decompress: (d, size) => inflateRawSync(d, { maxOutputLength: Math.max(size, 1) }),
  },
};

const byWire = new Map<string, Codec>(Object.values(codecs).map((c) => [c.wire, c]));

export function compressionCodec(type: CompressionType | undefined): WireCodec {
  const codec = codecs[type ?? 'none'];
  if (!codec) {
    throw new InvalidArgumentError(`compression '${type}' is not supported; use none, gzip or deflate`);
  }
  return codec.wire;
}

export function compress(type: CompressionType, data: Buffer): Buffer {
  return codecs[type].compress(data);
}

/** Undo the codec named in a batch header; checks the declared uncompressed size. */
export function decompress(wire: string | number, data: Buffer, uncompressedSize: number): Buffer {
  const codec = byWire.get(String(wire));
  if (!codec) {
    throw new InvalidArgumentError(
      `batch codec ${String(wire)} is not supported by this client; upgrade the client or produce with gzip/deflate/none`,
    );
  }
  let out: Buffer;
  try {
    out = codec.decompress(data, uncompressedSize);
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) {
      throw new CorruptDataError(`batch inflates beyond its declared size ${uncompressedSize}`, {
        cause: err,
      });
    }
    throw new CorruptDataError(`batch payload does not decompress with ${codec.wire}: ${String(err)}`, {
      cause: err,
    });
  }
  if (codec.wire !== 'COMPRESSION_CODEC_UNSPECIFIED' && out.length !== uncompressedSize) {
    throw new CorruptDataError(
      `batch payload inflated to ${out.length} bytes but its header says ${uncompressedSize}`,
    );
  }
  return out;
}
