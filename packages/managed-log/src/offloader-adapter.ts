import type { Offloader } from '@sluice/offload';
import type { LogOffloader } from './api.js';

/** The managed log's view of an @sluice/offload Offloader. */
export function logOffloader(offloader: Offloader): LogOffloader {
  return {
    async offload(source, uuid, extra) {
      await offloader.offload(
        {
          ledgerId: source.ledgerId,
          lastEntryId: source.lastEntryId,
          metadata: { ...source.metadata.custom, ...extra },
          readEntries: async (first, last) =>
            (await source.read(first, last)).map((e) => ({ entryId: e.entryId, payload: e.payload })),
        },
        { uuid },
      );
    },
    async openReader(ledgerId, uuid) {
      const r = await offloader.openReader(ledgerId, uuid);
      return {
        read: async (first, last) =>
          (await r.read(first, last)).map((e) => ({ ledgerId, entryId: e.entryId, payload: e.payload })),
        close: () => r.close(),
      };
    },
    async verify(ledgerId, uuid) {
      return { entries: (await offloader.verify(ledgerId, uuid)).entryCount };
    },
    delete: (ledgerId, uuid) => offloader.delete(ledgerId, uuid),
  };
}
