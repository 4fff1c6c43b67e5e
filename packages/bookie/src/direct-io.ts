import { constants } from 'node:fs';
import { open, unlink } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Alignment of O_DIRECT writes: memory address, file offset and length. 4 KiB
 * covers devices with 512-byte and with 4 KiB logical sectors.
 */
export const DIRECT_IO_ALIGN = 4096;

/** File open flags for appending to a new file with O_DIRECT. */
export const DIRECT_IO_CREATE_FLAGS =
  constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_DIRECT;

const WASM_PAGE = 64 * 1024;

/** The part of the WebAssembly API used here (Node has it; the TypeScript libs in use do not declare it). */
declare const WebAssembly: {
  Memory: new (descriptor: { initial: number; maximum?: number }) => { buffer: ArrayBuffer };
};

export const alignDown = (n: number): number => n - (n % DIRECT_IO_ALIGN);
export const alignUp = (n: number): number => alignDown(n + DIRECT_IO_ALIGN - 1);

/**
 * A zeroed buffer of at least `bytes` whose memory starts on a page boundary,
 * as O_DIRECT requires. Node gives no way to ask for aligned memory, but a
 * WebAssembly memory is always allocated whole pages at a page boundary.
 */
export function allocAligned(bytes: number): Buffer {
  const pages = Math.max(1, Math.ceil(bytes / WASM_PAGE));
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages });
  return Buffer.from(memory.buffer, 0, pages * WASM_PAGE);
}

/**
 * Whether `dir`'s file system takes O_DIRECT writes from `allocAligned`
 * memory (tmpfs and some others refuse O_DIRECT with EINVAL): one aligned
 * block written to a scratch file, then removed.
 */
export async function directIoWorks(dir: string): Promise<boolean> {
  const path = join(dir, `.direct-io-probe-${process.pid}`);
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    fh = await open(path, DIRECT_IO_CREATE_FLAGS, 0o644);
    const block = allocAligned(DIRECT_IO_ALIGN).subarray(0, DIRECT_IO_ALIGN);
    const { bytesWritten } = await fh.write(block, 0, DIRECT_IO_ALIGN, 0);
    return bytesWritten === DIRECT_IO_ALIGN;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EINVAL' || code === 'EOPNOTSUPP' || code === 'ENOTSUP') return false;
    throw err;
  } finally {
    await fh?.close();
    await unlink(path).catch(() => undefined);
  }
}
