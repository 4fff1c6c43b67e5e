import { FilesystemObjectStore } from './filesystem-object-store.js';
import type { OffloaderOptions } from './offloader.js';
import { StoreOffloader } from './store-offloader.js';

export interface FilesystemOffloaderOptions extends OffloaderOptions {
  /** Absolute directory holding the objects; created on first write. */
  dir: string;
  /** Key prefix (a subdirectory) for every object (default none). */
  prefix?: string;
}

/** Offloads to files in a local directory (standalone mode); same object format as S3. */
export class FilesystemOffloader extends StoreOffloader {
  constructor(options: FilesystemOffloaderOptions) {
    super(new FilesystemObjectStore(options.dir), options.prefix ?? '', options);
  }
}
