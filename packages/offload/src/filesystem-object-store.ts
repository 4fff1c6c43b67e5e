/**
 * Objects as files under a root directory (standalone mode). Every object is
 * written to a temporary name, fsynced, renamed into place and its directory
 * fsynced, so after a crash a key holds either nothing or the whole object.
 */
import { randomUUID } from 'node:crypto';
import { type FileHandle, mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, sep } from 'node:path';
import {
  CorruptDataError,
  fsyncDir,
  InternalError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  type SluiceError,
  UnavailableError,
} from '@sluice/common';
import type { ObjectStore, ObjectUpload } from './object-store.js';

/** Marks files that are not (yet) objects; `list` skips them. */
const TEMP_MARKER = '.tmp-';

export class FilesystemObjectStore implements ObjectStore {
  readonly description: string;

  constructor(private readonly root: string) {
    if (!isAbsolute(root)) {
      throw new InvalidArgumentError(`offload directory '${root}' is not absolute; use an absolute path`);
    }
    this.description = `file://${root}`;
  }

  private path(key: string): string {
    const path = join(this.root, ...key.split('/'));
    if (relative(this.root, path).startsWith('..')) {
      throw new InvalidArgumentError(`object key '${key}' escapes the offload directory`);
    }
    return path;
  }

  startUpload(key: string): ObjectUpload {
    return new FileUpload(this.path(key), key);
  }

  async put(key: string, body: Buffer): Promise<void> {
    const upload = this.startUpload(key);
    try {
      await upload.write(body);
      await upload.complete();
    } catch (err) {
      await upload.abort();
      throw err;
    }
  }

  async get(key: string): Promise<Buffer> {
    try {
      return await readFile(this.path(key));
    } catch (err) {
      throw fsError(err, 'read', key);
    }
  }

  async getRange(key: string, offset: number, length: number): Promise<Buffer> {
    let fh: FileHandle | undefined;
    try {
      fh = await open(this.path(key), 'r');
      const buf = Buffer.allocUnsafe(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(buf, done, length - done, offset + done);
        if (bytesRead === 0) {
          throw new CorruptDataError(
            `object ${key} ends at byte ${offset + done}, before ${offset + length}; it was truncated`,
          );
        }
        done += bytesRead;
      }
      return buf;
    } catch (err) {
      throw fsError(err, 'read', key);
    } finally {
      await fh?.close();
    }
  }

  async size(key: string): Promise<number> {
    try {
      return (await stat(this.path(key))).size;
    } catch (err) {
      throw fsError(err, 'stat', key);
    }
  }

  async delete(key: string): Promise<void> {
    const path = this.path(key);
    try {
      await unlink(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw fsError(err, 'delete', key);
    }
    await fsyncDir(dirname(path));
  }

  async list(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      let names: import('node:fs').Dirent[];
      try {
        names = await readdir(dir, { withFileTypes: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw fsError(err, 'list', dir);
      }
      for (const d of names) {
        const path = join(dir, d.name);
        if (d.isDirectory()) await walk(path);
        else if (d.isFile() && !d.name.includes(TEMP_MARKER)) {
          const key = relative(this.root, path).split(sep).join('/');
          if (key.startsWith(prefix)) keys.push(key);
        }
      }
    };
    // Walk from the deepest directory the prefix names, then filter by the full prefix.
    const slash = prefix.lastIndexOf('/');
    await walk(slash < 0 ? this.root : this.path(prefix.slice(0, slash)));
    return keys.sort();
  }

  async close(): Promise<void> {}
}

class FileUpload implements ObjectUpload {
  private readonly tempPath: string;
  private fh: FileHandle | undefined;
  private opening: Promise<FileHandle> | undefined;
  private size = 0;

  constructor(
    private readonly path: string,
    private readonly key: string,
  ) {
    this.tempPath = `${path}${TEMP_MARKER}${randomUUID()}`;
  }

  private handle(): Promise<FileHandle> {
    this.opening ??= (async () => {
      await mkdirDurable(dirname(this.path));
      this.fh = await open(this.tempPath, 'wx');
      return this.fh;
    })();
    return this.opening;
  }

  async write(chunk: Buffer): Promise<void> {
    try {
      const fh = await this.handle();
      let done = 0;
      while (done < chunk.length) {
        const { bytesWritten } = await fh.write(chunk, done, chunk.length - done);
        done += bytesWritten;
      }
      this.size += chunk.length;
    } catch (err) {
      throw fsError(err, 'write', this.key);
    }
  }

  async complete(): Promise<number> {
    try {
      const fh = await this.handle();
      await fh.sync();
      await fh.close();
      this.fh = undefined;
      await rename(this.tempPath, this.path);
      await fsyncDir(dirname(this.path));
      return this.size;
    } catch (err) {
      throw fsError(err, 'write', this.key);
    }
  }

  async abort(): Promise<void> {
    await this.fh?.close().catch(() => {});
    this.fh = undefined;
    if (!this.opening) return;
    await unlink(this.tempPath).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw fsError(err, 'delete', this.key);
    });
  }
}

/** mkdir -p, fsyncing each parent whose entry changed so new directories survive a crash. */
async function mkdirDurable(dir: string): Promise<void> {
  const first = await mkdir(dir, { recursive: true });
  if (first === undefined) return;
  for (let d = dir; ; d = dirname(d)) {
    await fsyncDir(dirname(d));
    if (d === first || dirname(d) === d) break;
  }
}

function fsError(err: unknown, op: string, key: string): SluiceError {
  if (err instanceof CorruptDataError || err instanceof InvalidArgumentError) return err;
  const e = err as NodeJS.ErrnoException;
  const message = `cannot ${op} offload object ${key}: ${e.message}`;
  switch (e.code) {
    case 'ENOENT':
      return new NotFoundError(`offload object ${key} does not exist`, { cause: err });
    case 'ENOSPC':
    case 'EDQUOT':
      return new ResourceExhaustedError(`${message}; free disk space`, { cause: err });
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new PermissionDeniedError(`${message}; check the offload directory's permissions`, {
        cause: err,
      });
    case 'EIO':
    case 'EMFILE':
    case 'ENFILE':
    case 'EAGAIN':
      return new UnavailableError(`${message}; retry later`, { cause: err });
    default:
      return new InternalError(message, { cause: err });
  }
}
