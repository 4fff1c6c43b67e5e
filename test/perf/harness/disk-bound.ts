import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { allocAligned, DIRECT_IO_CREATE_FLAGS } from '../../../packages/bookie/src/direct-io.js';

export interface DiskBoundResult {
  groupBytes: number;
  /** Written with O_DIRECT from page-aligned memory (context only: the bound is the plain write's). */
  direct?: boolean;
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
  /** Group sizes (multiples of 4 KiB) to measure again with O_DIRECT. */
  directSizes: number[] = [],
): DiskBoundResult[] {
  const dir = mkdtempSync(join(parentDir, 'sluice-disk-bound-'));
  const runs = [
    ...groupSizes.map((groupBytes) => ({ groupBytes, direct: false })),
    ...directSizes.map((groupBytes) => ({ groupBytes, direct: true })),
  ];
  try {
    return runs.map(({ groupBytes, direct }) => {
      const buf = direct
        ? allocAligned(groupBytes).subarray(0, groupBytes).fill(0x5a)
        : Buffer.alloc(groupBytes, 0x5a);
      const path = join(dir, `journal-${groupBytes}`);
      const flags = direct ? DIRECT_IO_CREATE_FLAGS : 'w';
      let fd = openSync(path, flags);
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
          rmSync(path, { force: true });
          fd = openSync(path, flags);
          inFile = 0;
        }
      }
      const sec = (performance.now() - start) / 1000;
      closeSync(fd);
      rmSync(path, { force: true });
      const bytesPerSec = written / sec;
      return {
        groupBytes,
        ...(direct ? { direct } : {}),
        mbPerSec: bytesPerSec / MIB,
        fsyncsPerSec: syncs / sec,
        msgPerSec: bytesPerSec / messageSize,
      };
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
