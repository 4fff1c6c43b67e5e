/**
 * The storage an offloader writes to, reduced to what the object format
 * needs: whole-object puts, a streaming upload that either completes or
 * leaves nothing visible, ranged reads, deletes and listing by prefix.
 */

/** A write in progress; nothing is visible under its key until `complete`. */
export interface ObjectUpload {
  /** Append bytes; may wait while earlier bytes are being uploaded (back-pressure). */
  write(chunk: Buffer): Promise<void>;
  /** Make the object visible under its key; resolves with its size. */
  complete(): Promise<number>;
  /** Discard everything written; safe to call after a failure. */
  abort(): Promise<void>;
}

export interface ObjectStore {
  /** Where the objects live, for messages (never contains credentials). */
  readonly description: string;
  startUpload(key: string): ObjectUpload;
  put(key: string, body: Buffer): Promise<void>;
  /** The whole object; NotFoundError when absent. */
  get(key: string): Promise<Buffer>;
  /** Exactly `length` bytes from `offset`; CorruptDataError when the object is shorter. */
  getRange(key: string, offset: number, length: number): Promise<Buffer>;
  /** The object's size in bytes without reading it (HEAD, stat); NotFoundError when absent. */
  size(key: string): Promise<number>;
  /** Idempotent: deleting an absent key succeeds. */
  delete(key: string): Promise<void>;
  /** Every key under `prefix` (complete objects only). */
  list(prefix: string): Promise<string[]>;
  close(): Promise<void>;
}
