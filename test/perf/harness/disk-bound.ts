import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export interface DiskBoundResult {
  groupBytes: number;
  mbPerSec: number;
  fsyncsPerSec: number;
  /** Messages of `messageSize` per second this rate of durable bytes allows. */
  msgPerSec: number;
}

const MIB = 1024 * 1024;
/** Files are reused round-robin past this size so a long measurement does not fill the disk. */
const FILE_LIMIT = 256 * MIB;

/**
 * The disk's bound for a journal: append `groupBytes` with one write, then
 * fdatasync, as a group-committing journal does, for `seconds` per group
 * size, in a temp dir under `parentDir` (the disk the servers use).
 */
export function measureDiskBound(
  parentDir: string,
  groupSizes: number[],
  seconds: number,
  messageSize: number,
): DiskBoundResult[] {
  const dir = mkdtempSync(join(parentDir, 'sluice-disk-bound-'));
  try {
    return groupSizes.map((groupBytes) => {
      const buf = Buffer.alloc(groupBytes, 0x5a);
      const path = join(dir, `journal-${groupBytes}`);
      let fd = openSync(path, 'w');
      let written = 0;
      let inFile = 0;
      let syncs = 0;
      const start = performance.now();
      const end = start + seconds * 1000;
      while (performance.now() < end) {
        writeSync(fd, buf, 0, groupBytes);
        fdatasyncSync(fd);
        written += groupBytes;
        inFile += groupBytes;
        syncs++;
        if (inFile >= FILE_LIMIT) {
          closeSync(fd);
          fd = openSync(path, 'w');
          inFile = 0;
        }
      }
      const sec = (performance.now() - start) / 1000;
      closeSync(fd);
      rmSync(path, { force: true });
      const bytesPerSec = written / sec;
      return {
        groupBytes,
        mbPerSec: bytesPerSec / MIB,
        fsyncsPerSec: syncs / sec,
        msgPerSec: bytesPerSec / messageSize,
      };
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
