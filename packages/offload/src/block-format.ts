/**
 * The data object's unit: a block of consecutive entries with its own header
 * checksum and one checksum per entry (docs/offload.md has the byte layout).
 * A block is the unit of a ranged GET and of the reader cache, so readers
 * never fetch more than one block's worth of bytes they do not need.
 */
import { CorruptDataError, crc32c, type EntryId } from '@sluice/common';

/** 'SLBK' */
export const BLOCK_MAGIC = 0x534c424b;
export const BLOCK_FORMAT_VERSION = 1;
/** magic u32, version u16, flags u16, blockLength u32, firstEntryId u64, entryCount u32, headerCrc u32 */
export const BLOCK_HEADER_SIZE = 28;
/** entryId u64, length u32, crc u32 */
export const ENTRY_HEADER_SIZE = 16;
export const DEFAULT_BLOCK_SIZE = 1024 * 1024;

export interface OffloadEntry {
  entryId: EntryId;
  payload: Buffer;
}

export interface DecodedBlock {
  firstEntryId: EntryId;
  /** Payloads are views into the block buffer (no copy); readers copy small ones out (see StoreLedgerReader). */
  entries: OffloadEntry[];
}

/** CRC32C over the entry's id and length fields, then its payload. */
function entryCrc(header: Buffer, payload: Buffer): number {
  return crc32c(payload, crc32c(header.subarray(0, 12)));
}

/**
 * Accumulates consecutive entries into one block. The caller asks `wouldFit`
 * before adding so blocks stay near the target size; an entry bigger than the
 * target gets a block of its own.
 */
export class BlockBuilder {
  private parts: Buffer[] = [];
  private bytes = BLOCK_HEADER_SIZE;
  private first: EntryId = -1;
  private count = 0;

  constructor(readonly targetSize: number = DEFAULT_BLOCK_SIZE) {}

  get isEmpty(): boolean {
    return this.count === 0;
  }

  get size(): number {
    return this.bytes;
  }

  get entryCount(): number {
    return this.count;
  }

  get firstEntryId(): EntryId {
    return this.first;
  }

  wouldFit(payloadLength: number): boolean {
    return this.count === 0 || this.bytes + ENTRY_HEADER_SIZE + payloadLength <= this.targetSize;
  }

  add(entryId: EntryId, payload: Buffer): void {
    if (this.count === 0) this.first = entryId;
    else if (entryId !== this.first + this.count) {
      throw new CorruptDataError(
        `entry ${entryId} does not follow entry ${this.first + this.count - 1}; a block holds consecutive entries`,
      );
    }
    const header = Buffer.allocUnsafe(ENTRY_HEADER_SIZE);
    header.writeBigUInt64BE(BigInt(entryId), 0);
    header.writeUInt32BE(payload.length, 8);
    header.writeUInt32BE(entryCrc(header, payload), 12);
    this.parts.push(header, payload);
    this.bytes += ENTRY_HEADER_SIZE + payload.length;
    this.count++;
  }

  /** Encode the block and reset the builder for the next one. */
  finish(): Buffer {
    const header = Buffer.allocUnsafe(BLOCK_HEADER_SIZE);
    header.writeUInt32BE(BLOCK_MAGIC, 0);
    header.writeUInt16BE(BLOCK_FORMAT_VERSION, 4);
    header.writeUInt16BE(0, 6);
    header.writeUInt32BE(this.bytes, 8);
    header.writeBigUInt64BE(BigInt(this.first), 12);
    header.writeUInt32BE(this.count, 20);
    header.writeUInt32BE(crc32c(header.subarray(0, 24)), 24);
    const block = Buffer.concat([header, ...this.parts], this.bytes);
    this.parts = [];
    this.bytes = BLOCK_HEADER_SIZE;
    this.first = -1;
    this.count = 0;
    return block;
  }
}

export interface BlockExpectation {
  firstEntryId: EntryId;
  entryCount: number;
}

/**
 * Decode and verify one block. `where` names the object and offset in error
 * messages; `expected` (from the index) catches a block that is internally
 * consistent but not the one the index points at.
 */
export function decodeBlock(block: Buffer, where: string, expected?: BlockExpectation): DecodedBlock {
  const corrupt = (what: string) =>
    new CorruptDataError(
      `offloaded block at ${where} is corrupt: ${what}; re-offload the ledger from bookies`,
    );
  if (block.length < BLOCK_HEADER_SIZE) throw corrupt(`only ${block.length} bytes, shorter than a header`);
  if (block.readUInt32BE(0) !== BLOCK_MAGIC) throw corrupt('bad magic');
  if (block.readUInt32BE(24) !== crc32c(block.subarray(0, 24))) throw corrupt('header checksum mismatch');
  const version = block.readUInt16BE(4);
  if (version !== BLOCK_FORMAT_VERSION) throw corrupt(`unsupported format version ${version}`);
  const blockLength = block.readUInt32BE(8);
  if (blockLength !== block.length) throw corrupt(`header says ${blockLength} bytes, got ${block.length}`);
  const firstEntryId = Number(block.readBigUInt64BE(12));
  const entryCount = block.readUInt32BE(20);
  if (expected && (expected.firstEntryId !== firstEntryId || expected.entryCount !== entryCount)) {
    throw corrupt(
      `holds entries ${firstEntryId}+${entryCount}, index expects ${expected.firstEntryId}+${expected.entryCount}`,
    );
  }
  const entries: OffloadEntry[] = new Array(entryCount);
  let offset = BLOCK_HEADER_SIZE;
  for (let i = 0; i < entryCount; i++) {
    if (offset + ENTRY_HEADER_SIZE > block.length) throw corrupt(`entry ${i} header runs past the block end`);
    const entryId = Number(block.readBigUInt64BE(offset));
    if (entryId !== firstEntryId + i)
      throw corrupt(`entry ${i} has id ${entryId}, expected ${firstEntryId + i}`);
    const length = block.readUInt32BE(offset + 8);
    const start = offset + ENTRY_HEADER_SIZE;
    if (start + length > block.length) throw corrupt(`entry ${entryId} payload runs past the block end`);
    const header = block.subarray(offset, start);
    const payload = block.subarray(start, start + length);
    if (block.readUInt32BE(offset + 12) !== entryCrc(header, payload)) {
      throw corrupt(`entry ${entryId} checksum mismatch`);
    }
    entries[i] = { entryId, payload };
    offset = start + length;
  }
  if (offset !== block.length) throw corrupt(`${block.length - offset} trailing bytes after the last entry`);
  return { firstEntryId, entries };
}
