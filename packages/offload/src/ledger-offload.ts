/**
 * One offload attempt: stream a ledger's entries into blocks, the blocks into
 * a data object upload, then write the index object. Memory stays bounded by
 * one read batch, one block and the upload's part buffers. Any failure aborts
 * the data upload (and deletes the data object if it had completed), so an
 * attempt either leaves a complete offload or no index object at all.
 */
import { ClosedError, CorruptDataError, type Logger } from '@sluice/common';
import { BlockBuilder } from './block-format.js';
import { type BlockIndexEntry, encodeIndex, INDEX_FORMAT_VERSION } from './index-format.js';
import type { OffloadObjectKeys } from './object-keys.js';
import type { ObjectStore, ObjectUpload } from './object-store.js';
import type { OffloadResult, OffloadSource } from './offloader.js';

export interface LedgerOffloadSettings {
  blockSize: number;
  readBatchEntries: number;
  signal?: AbortSignal;
  logger: Logger;
}

export async function offloadLedger(
  store: ObjectStore,
  keys: OffloadObjectKeys,
  uuid: string,
  source: OffloadSource,
  settings: LedgerOffloadSettings,
): Promise<OffloadResult> {
  const { ledgerId, lastEntryId } = source;
  const upload = store.startUpload(keys.data);
  const blocks: BlockIndexEntry[] = [];
  let dataCompleted = false;
  try {
    const builder = new BlockBuilder(settings.blockSize);
    let dataBytes = 0;
    let payloadBytes = 0;
    const flushBlock = async () => {
      const entryCount = builder.entryCount;
      const firstEntryId = builder.firstEntryId;
      const block = builder.finish();
      blocks.push({ firstEntryId, entryCount, offset: dataBytes, length: block.length });
      dataBytes += block.length;
      await upload.write(block);
    };
    for (let first = 0; first <= lastEntryId; first += settings.readBatchEntries) {
      throwIfAborted(settings.signal, ledgerId);
      const last = Math.min(lastEntryId, first + settings.readBatchEntries - 1);
      const entries = await source.readEntries(first, last);
      if (entries.length !== last - first + 1) {
        throw new CorruptDataError(
          `ledger ${ledgerId} returned ${entries.length} entries for ${first}..${last}; cannot offload a ledger with gaps`,
        );
      }
      for (let i = 0; i < entries.length; i++) {
        const entry = entries[i]!;
        if (entry.entryId !== first + i) {
          throw new CorruptDataError(
            `ledger ${ledgerId} returned entry ${entry.entryId} where ${first + i} was expected`,
          );
        }
        if (!builder.wouldFit(entry.payload.length)) await flushBlock();
        builder.add(entry.entryId, entry.payload);
        payloadBytes += entry.payload.length;
      }
    }
    if (!builder.isEmpty) await flushBlock();
    throwIfAborted(settings.signal, ledgerId);
    const dataObjectSize = await upload.complete();
    dataCompleted = true;
    const index = encodeIndex({
      metadata: {
        formatVersion: INDEX_FORMAT_VERSION,
        ledgerId,
        uuid,
        lastEntryId,
        entryCount: lastEntryId + 1,
        length: payloadBytes,
        dataObjectSize,
        blockSize: settings.blockSize,
        properties: { ...source.metadata },
        offloadedAt: Date.now(),
      },
      blocks,
    });
    await store.put(keys.index, index);
    return {
      ledgerId,
      uuid,
      dataKey: keys.data,
      indexKey: keys.index,
      dataBytes: dataObjectSize,
      indexBytes: index.length,
      entryCount: lastEntryId + 1,
      blockCount: blocks.length,
    };
  } catch (err) {
    await discard(store, upload, keys, dataCompleted, settings.logger);
    throw err;
  }
}

function throwIfAborted(signal: AbortSignal | undefined, ledgerId: number): void {
  if (signal?.aborted) throw new ClosedError(`offload of ledger ${ledgerId} was aborted; retry it later`);
}

async function discard(
  store: ObjectStore,
  upload: ObjectUpload,
  keys: OffloadObjectKeys,
  dataCompleted: boolean,
  logger: Logger,
): Promise<void> {
  // Cleanup is best effort: without an index object the attempt is invisible
  // to readers either way, and `list` reports leftovers as incomplete.
  try {
    if (dataCompleted) {
      // The index put may have landed even though it reported failure.
      await store.delete(keys.index);
      await store.delete(keys.data);
    } else {
      await upload.abort();
    }
  } catch (cleanupErr) {
    logger.warn({ err: cleanupErr, key: keys.data }, 'could not clean up a failed offload attempt');
  }
}
