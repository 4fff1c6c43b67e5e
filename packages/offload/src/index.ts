/**
 * @sluice/offload: the cold tier of the managed log (DESIGN §5).
 *
 *   const offloader = openOffloader('s3://bucket/prefix?endpoint=http://127.0.0.1:9000');
 *   const { uuid } = await offloader.offload({ ledgerId, lastEntryId, metadata, readEntries });
 *   // record uuid in the ledger list only after offload() resolved
 *   const reader = await offloader.openReader(ledgerId, uuid);
 *   const entries = await reader.read(0, 99);
 *   await reader.close();
 *
 * An offload exists once its index object exists; objects of attempts whose
 * uuid the caller never recorded show up in `list()` and are removed with
 * `delete()`. Failures are SluiceErrors: UnavailableError (retriable, retry
 * with backoff), NotFoundError, CorruptDataError, InvalidArgumentError,
 * OutOfRangeError, PermissionDeniedError, UnauthenticatedError. The object
 * format is described in docs/offload.md.
 */
export {
  BLOCK_FORMAT_VERSION,
  BLOCK_HEADER_SIZE,
  BlockBuilder,
  DEFAULT_BLOCK_SIZE,
  type DecodedBlock,
  decodeBlock,
  ENTRY_HEADER_SIZE,
} from './block-format.js';
export { FilesystemOffloader, type FilesystemOffloaderOptions } from './filesystem-offloader.js';
export {
  type BlockIndexEntry,
  decodeIndex,
  encodeIndex,
  INDEX_FORMAT_VERSION,
  type LedgerIndex,
} from './index-format.js';
export { type OffloadObjectKeys, offloadObjectKeys } from './object-keys.js';
export {
  DEFAULT_CACHE_BYTES,
  DEFAULT_READ_BATCH_ENTRIES,
  type OffloadEntry,
  type OffloadedLedgerMetadata,
  type OffloadedLedgerReader,
  type Offloader,
  type OffloaderOptions,
  type OffloadListing,
  type OffloadOptions,
  type OffloadResult,
  type OffloadSource,
} from './offloader.js';
export { type OpenOffloaderOptions, openOffloader } from './open-offloader.js';
export { DEFAULT_PART_SIZE, MIN_PART_SIZE } from './s3-object-store.js';
export { S3Offloader, type S3OffloaderOptions } from './s3-offloader.js';
