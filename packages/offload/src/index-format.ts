/**
 * The index object: the ledger's metadata (JSON) and a table mapping each
 * block's first entry id to the block's offset and length in the data object.
 * It is written last, so its existence is what makes an offload complete.
 */
import { CorruptDataError, crc32c, type EntryId, type LedgerId } from '@sluice/common';

/** 'SLIX' */
export const INDEX_MAGIC = 0x534c4958;
export const INDEX_FORMAT_VERSION = 1;
/** magic u32, version u16, flags u16, metadataLength u32, blockCount u32 */
const INDEX_HEADER_SIZE = 16;
/** firstEntryId u64, entryCount u32, offset u64, length u32 */
const INDEX_ROW_SIZE = 24;
const INDEX_TRAILER_SIZE = 4;

/** What an offload records about its ledger (the index object's JSON part). */
export interface OffloadedLedgerMetadata {
  formatVersion: number;
  ledgerId: LedgerId;
  uuid: string;
  /** -1 for an empty ledger. */
  lastEntryId: EntryId;
  entryCount: number;
  /** Sum of payload bytes. */
  length: number;
  /** Size of the data object in bytes. */
  dataObjectSize: number;
  /** Target block size the data object was written with. */
  blockSize: number;
  /** The ledger's custom properties, as given to `offload`. */
  properties: Record<string, string>;
  /** Epoch ms when the offload completed. */
  offloadedAt: number;
}

export interface BlockIndexEntry {
  firstEntryId: EntryId;
  entryCount: number;
  /** Byte offset of the block in the data object. */
  offset: number;
  length: number;
}

export interface LedgerIndex {
  metadata: OffloadedLedgerMetadata;
  /** Sorted by firstEntryId; blocks are contiguous and cover 0..lastEntryId. */
  blocks: BlockIndexEntry[];
}

export function encodeIndex(index: LedgerIndex): Buffer {
  const json = Buffer.from(JSON.stringify(index.metadata), 'utf8');
  const size = INDEX_HEADER_SIZE + json.length + index.blocks.length * INDEX_ROW_SIZE + INDEX_TRAILER_SIZE;
  const buf = Buffer.alloc(size);
  buf.writeUInt32BE(INDEX_MAGIC, 0);
  buf.writeUInt16BE(INDEX_FORMAT_VERSION, 4);
  buf.writeUInt16BE(0, 6);
  buf.writeUInt32BE(json.length, 8);
  buf.writeUInt32BE(index.blocks.length, 12);
  json.copy(buf, INDEX_HEADER_SIZE);
  let offset = INDEX_HEADER_SIZE + json.length;
  for (const block of index.blocks) {
    buf.writeBigUInt64BE(BigInt(block.firstEntryId), offset);
    buf.writeUInt32BE(block.entryCount, offset + 8);
    buf.writeBigUInt64BE(BigInt(block.offset), offset + 12);
    buf.writeUInt32BE(block.length, offset + 20);
    offset += INDEX_ROW_SIZE;
  }
  buf.writeUInt32BE(crc32c(buf.subarray(0, offset)), offset);
  return buf;
}

export function decodeIndex(buf: Buffer, where: string): LedgerIndex {
  const corrupt = (what: string) =>
    new CorruptDataError(`offload index ${where} is corrupt: ${what}; re-offload the ledger from bookies`);
  if (buf.length < INDEX_HEADER_SIZE + INDEX_TRAILER_SIZE) throw corrupt(`only ${buf.length} bytes`);
  if (buf.readUInt32BE(0) !== INDEX_MAGIC) throw corrupt('bad magic');
  const body = buf.length - INDEX_TRAILER_SIZE;
  if (buf.readUInt32BE(body) !== crc32c(buf.subarray(0, body))) throw corrupt('checksum mismatch');
  const version = buf.readUInt16BE(4);
  if (version !== INDEX_FORMAT_VERSION) throw corrupt(`unsupported format version ${version}`);
  const jsonLength = buf.readUInt32BE(8);
  const blockCount = buf.readUInt32BE(12);
  if (INDEX_HEADER_SIZE + jsonLength + blockCount * INDEX_ROW_SIZE !== body) {
    throw corrupt('section lengths do not add up to the object size');
  }
  let metadata: OffloadedLedgerMetadata;
  try {
    metadata = JSON.parse(buf.toString('utf8', INDEX_HEADER_SIZE, INDEX_HEADER_SIZE + jsonLength));
  } catch (err) {
    throw corrupt(`metadata is not JSON (${(err as Error).message})`);
  }
  const blocks: BlockIndexEntry[] = new Array(blockCount);
  let offset = INDEX_HEADER_SIZE + jsonLength;
  let nextEntry = 0;
  let nextOffset = 0;
  for (let i = 0; i < blockCount; i++) {
    const block: BlockIndexEntry = {
      firstEntryId: Number(buf.readBigUInt64BE(offset)),
      entryCount: buf.readUInt32BE(offset + 8),
      offset: Number(buf.readBigUInt64BE(offset + 12)),
      length: buf.readUInt32BE(offset + 20),
    };
    if (block.firstEntryId !== nextEntry || block.offset !== nextOffset || block.entryCount === 0) {
      throw corrupt(`block ${i} does not follow block ${i - 1}`);
    }
    nextEntry += block.entryCount;
    nextOffset += block.length;
    blocks[i] = block;
    offset += INDEX_ROW_SIZE;
  }
  if (nextEntry !== metadata.lastEntryId + 1 || nextOffset !== metadata.dataObjectSize) {
    throw corrupt(
      `blocks cover entries 0..${nextEntry - 1} in ${nextOffset} bytes, metadata says 0..${metadata.lastEntryId} in ${metadata.dataObjectSize}`,
    );
  }
  return { metadata, blocks };
}

/** Index of the block holding `entryId` (which must be within the ledger). */
export function findBlock(blocks: BlockIndexEntry[], entryId: EntryId): number {
  let lo = 0;
  let hi = blocks.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (blocks[mid]!.firstEntryId <= entryId) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
