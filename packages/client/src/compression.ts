import { promisify } from 'node:util';
import { deflateRaw, gunzip, gzip, inflateRaw } from 'node:zlib';
import { compress as zstdCompress, decompress as zstdDecompress } from '@mongodb-js/zstd';
import { CorruptDataError, InvalidArgumentError } from '@sluice/common';
import type { CompressionCodec__Output } from '@sluice/proto';
import { Decompress as ZstdStream } from 'fzstd';
import { compressFrame, decompressFrame } from 'lz4-napi';
import { lz4DecodedSize } from './lz4-frame.js';
import { zstdDecodedSizeBound } from './zstd-frame.js';

/** Compression of a batch payload, chosen per producer. */
export type CompressionType = 'none' | 'lz4' | 'zstd' | 'gzip' | 'deflate';

export const COMPRESSION_TYPES: readonly CompressionType[] = ['none', 'lz4', 'zstd', 'gzip', 'deflate'];

/** Wire names of the codecs (proto enum `CompressionCodec`). */
type WireCodec = CompressionCodec__Output;

interface Codec {
  wire: WireCodec;
  compress(data: Buffer): Promise<Buffer>;
  decompress(data: Buffer, uncompressedSize: number): Promise<Buffer>;
}

// Level 6 would cost the producer several times more CPU for a few percent on
// typical message batches; level 1 keeps the client off the hot path's CPU budget.
const zlibOptions = { level: 1 };
// zstd's own default: most of its ratio at a fraction of the CPU of higher levels.
const ZSTD_LEVEL = 3;

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);
const deflateRawAsync = promisify(deflateRaw);
const inflateRawAsync = promisify(inflateRaw);

// The zlib and native codecs all run on libuv's thread pool, off the event loop
// that carries the producer's and consumer's streams.
const codecs: Record<CompressionType, Codec> = {
  none: {
    wire: 'COMPRESSION_CODEC_UNSPECIFIED',
    compress: (d) => Promise.resolve(d),
    decompress: (d) => Promise.resolve(d),
  },
  lz4: {
    wire: 'COMPRESSION_CODEC_LZ4',
    compress: (d) => compressFrame(d),
    // The native decoder takes no output bound: the frame's decoded size is checked against the header first.
    decompress: (d, size) => {
      lz4DecodedSize(d, size);
      return decompressFrame(d);
    },
  },
  zstd: {
    wire: 'COMPRESSION_CODEC_ZSTD',
    compress: (d) => zstdCompress(d, ZSTD_LEVEL),
    // The native decoder takes no output bound. Frames whose block headers prove they stay within the
    // declared size take it; anything else (e.g. a streaming compressor's many small blocks) goes
    // through a JS stream decoder that stops the moment output passes the declared size.
    decompress: (d, size) => {
      let bounded = true;
      try {
        zstdDecodedSizeBound(d, size);
      } catch (err) {
        if (!(err instanceof CorruptDataError) || !/inflate beyond/.test(err.message)) throw err;
        bounded = false;
      }
      return bounded ? zstdDecompress(d) : Promise.resolve(zstdStreamDecompress(d, size));
    },
  },
  gzip: {
    wire: 'COMPRESSION_CODEC_GZIP',
    compress: (d) => gzipAsync(d, zlibOptions),
    // zlib stops at the declared size, so a crafted batch cannot inflate without bound.
    decompress: (d, size) => gunzipAsync(d, { maxOutputLength: Math.max(size, 1) }),
  },
  deflate: {
    wire: 'COMPRESSION_CODEC_DEFLATE',
    compress: (d) => deflateRawAsync(d, zlibOptions),
    decompress: (d, size) => inflateRawAsync(d, { maxOutputLength: Math.max(size, 1) }),
  },
};

function zstdStreamDecompress(data: Buffer, limit: number): Buffer {
  const parts: Uint8Array[] = [];
  let total = 0;
  const stream = new ZstdStream((chunk) => {
    total += chunk.length;
    if (total > limit)
      throw new CorruptDataError(`zstd batch payload inflates beyond its declared size ${limit}`);
    parts.push(chunk);
  });
  try {
    stream.push(data, true);
  } catch (err) {
    if (err instanceof CorruptDataError) throw err;
    throw new CorruptDataError(`zstd batch payload is malformed (${(err as Error).message})`);
  }
  return Buffer.concat(parts, total);
}

const byWire = new Map<string, Codec>(Object.values(codecs).map((c) => [c.wire, c]));

/** Validate a producer's choice and name its wire codec. */
export function compressionCodec(type: CompressionType | undefined): WireCodec {
  const codec = Object.hasOwn(codecs, type ?? 'none') ? codecs[type ?? 'none'] : undefined;
  if (!codec) {
    throw new InvalidArgumentError(
      `compression '${type}' is not supported; use ${COMPRESSION_TYPES.join(', ')}`,
    );
  }
  return codec.wire;
}

export function compress(type: CompressionType, data: Buffer): Promise<Buffer> {
  return codecs[type].compress(data);
}

/** Undo the codec named in a batch header; checks the declared uncompressed size. */
export async function decompress(
  wire: string | number,
  data: Buffer,
  uncompressedSize: number,
): Promise<Buffer> {
  const codec = byWire.get(String(wire));
  if (!codec) {
    throw new InvalidArgumentError(
      `batch codec ${String(wire)} is not supported by this client; upgrade the client or have the producer use ${COMPRESSION_TYPES.join(', ')}`,
    );
  }
  let out: Buffer;
  try {
    out = await codec.decompress(data, uncompressedSize);
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
