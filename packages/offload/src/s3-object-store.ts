/**
 * Objects in an S3-compatible bucket. Large objects go up as multipart
 * uploads (parts of at least 5 MiB, the S3 minimum, except the last); small
 * ones as a single PUT. A failed upload is aborted so no partial object
 * remains; an abort that cannot reach the endpoint leaves only invisible
 * parts, which a bucket lifecycle rule (AbortIncompleteMultipartUpload)
 * reclaims.
 */
import { createHash } from 'node:crypto';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { CorruptDataError, type Counter, InternalError, type Logger } from '@sluice/common';
import type { ObjectStore, ObjectUpload } from './object-store.js';
import { s3Error } from './s3-errors.js';

export const MIN_PART_SIZE = 5 * 1024 * 1024;
export const DEFAULT_PART_SIZE = 8 * 1024 * 1024;

export interface S3ObjectStoreOptions {
  bucket: string;
  region: string;
  /** e.g. http://127.0.0.1:9000 for MinIO or s3rver; default: AWS for the region. */
  endpoint?: string;
  forcePathStyle: boolean;
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  partSize: number;
  /** Parts uploaded at once per upload; memory is about (concurrency + 1) × partSize. */
  uploadConcurrency: number;
  connectTimeoutMs: number;
  requestTimeoutMs: number;
  /** SDK attempts per request (1 = no SDK retries; callers retry with backoff on UnavailableError). */
  maxAttempts: number;
  logger: Logger;
  uploadParts?: Counter;
}

export class S3ObjectStore implements ObjectStore {
  readonly description: string;
  private readonly client: S3Client;

  constructor(private readonly options: S3ObjectStoreOptions) {
    this.description = `s3://${options.bucket}${options.endpoint ? ` at ${options.endpoint}` : ''}`;
    this.client = new S3Client({
      region: options.region,
      forcePathStyle: options.forcePathStyle,
      maxAttempts: options.maxAttempts,
      // The object format carries its own CRC32C per block and entry; SDK
      // checksums are off unless the operation requires them, which keeps
      // S3-compatible stores that lack the newer checksum headers working.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // Without these the SDK can wait minutes on an endpoint that accepts
      // connections but never answers.
      requestHandler: {
        connectionTimeout: options.connectTimeoutMs,
        requestTimeout: options.requestTimeoutMs,
        throwOnRequestTimeout: true,
      },
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      ...(options.credentials ? { credentials: options.credentials } : {}),
    });
  }

  get bucket(): string {
    return this.options.bucket;
  }

  /** Run one SDK command, mapping its failure to a Sluice error. */
  async send<T>(op: string, key: string, run: (client: S3Client) => Promise<T>): Promise<T> {
    try {
      return await run(this.client);
    } catch (err) {
      throw s3Error(err, op, `s3://${this.options.bucket}/${key}`);
    }
  }

  startUpload(key: string): ObjectUpload {
    return new S3Upload(this, key, this.options);
  }

  async put(key: string, body: Buffer): Promise<void> {
    await this.send('PUT', key, (c) =>
      c.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: body,
          ContentLength: body.length,
          ContentMD5: contentMd5(body),
        }),
      ),
    );
  }

  async size(key: string): Promise<number> {
    const out = await this.send('HEAD', key, (c) =>
      c.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key })),
    );
    if (out.ContentLength === undefined) {
      throw new InternalError(`S3 HEAD of s3://${this.bucket}/${key} returned no Content-Length`);
    }
    return out.ContentLength;
  }

  async get(key: string): Promise<Buffer> {
    return this.send('GET', key, async (c) => {
      const out = await c.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      return bodyBuffer(out.Body);
    });
  }

  async getRange(key: string, offset: number, length: number): Promise<Buffer> {
    const buf = await this.send('ranged GET', key, async (c) => {
      const range = `bytes=${offset}-${offset + length - 1}`;
      const out = await c.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: range }));
      return bodyBuffer(out.Body);
    });
    if (buf.length !== length) {
      throw new CorruptDataError(
        `S3 object s3://${this.bucket}/${key} returned ${buf.length} bytes for ${length} at offset ${offset}; it is truncated`,
      );
    }
    return buf;
  }

  async delete(key: string): Promise<void> {
    // S3 DELETE of an absent key succeeds, which makes this idempotent.
    await this.send('DELETE', key, (c) => c.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key })));
  }

  async list(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.send('LIST', prefix, (c) =>
        c.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: prefix,
            ...(token ? { ContinuationToken: token } : {}),
          }),
        ),
      );
      for (const o of page.Contents ?? []) if (o.Key) keys.push(o.Key);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return keys.sort();
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

/**
 * Content-MD5 of a body: the endpoint rejects a body that arrives altered
 * (BadDigest) instead of storing it. The SDK's own checksums stay off (see
 * the client options); this header is plain HTTP that S3-compatible stores
 * accept, and hashing a part costs little next to sending it.
 */
function contentMd5(body: Buffer): string {
  return createHash('md5').update(body).digest('base64');
}

async function bodyBuffer(body: unknown): Promise<Buffer> {
  const stream = body as { transformToByteArray?: () => Promise<Uint8Array> } | undefined;
  if (!stream?.transformToByteArray) throw new InternalError('S3 GET returned no body');
  const bytes = await stream.transformToByteArray();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * A multipart upload created lazily: an object smaller than one part is sent
 * as a single PUT at `complete`, skipping three round trips.
 */
class S3Upload implements ObjectUpload {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private size = 0;
  private uploadId: string | undefined;
  private nextPart = 1;
  private readonly parts: { PartNumber: number; ETag: string }[] = [];
  private readonly inflight = new Set<Promise<void>>();
  private failure: unknown;

  constructor(
    private readonly store: S3ObjectStore,
    private readonly key: string,
    private readonly options: S3ObjectStoreOptions,
  ) {}

  async write(chunk: Buffer): Promise<void> {
    this.throwIfFailed();
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    this.size += chunk.length;
    if (this.pendingBytes >= this.options.partSize) await this.sendPart();
  }

  async complete(): Promise<number> {
    this.throwIfFailed();
    const bucket = this.store.bucket;
    if (this.uploadId === undefined) {
      await this.store.put(this.key, this.takePending());
      return this.size;
    }
    if (this.pendingBytes > 0) await this.sendPart();
    await Promise.all(this.inflight);
    this.throwIfFailed();
    const uploadId = this.uploadId;
    const parts = [...this.parts].sort((a, b) => a.PartNumber - b.PartNumber);
    await this.store.send('complete multipart upload', this.key, (c) =>
      c.send(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: this.key,
          UploadId: uploadId,
          MultipartUpload: { Parts: parts },
        }),
      ),
    );
    this.uploadId = undefined;
    return this.size;
  }

  async abort(): Promise<void> {
    this.pending = [];
    this.pendingBytes = 0;
    await Promise.allSettled(this.inflight);
    const uploadId = this.uploadId;
    if (uploadId === undefined) return;
    this.uploadId = undefined;
    try {
      await this.store.send('abort multipart upload', this.key, (c) =>
        c.send(
          new AbortMultipartUploadCommand({ Bucket: this.store.bucket, Key: this.key, UploadId: uploadId }),
        ),
      );
    } catch (err) {
      // Never completed, so nothing is visible under the key; only parts remain.
      this.options.logger.warn(
        { err, key: this.key, uploadId },
        'could not abort multipart upload; a bucket lifecycle rule must reclaim its parts',
      );
    }
  }

  private takePending(): Buffer {
    const body = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    return body;
  }

  private async sendPart(): Promise<void> {
    const body = this.takePending();
    if (this.uploadId === undefined) {
      const created = await this.store.send('create multipart upload', this.key, (c) =>
        c.send(new CreateMultipartUploadCommand({ Bucket: this.store.bucket, Key: this.key })),
      );
      if (!created.UploadId) throw new InternalError(`S3 returned no upload id for ${this.key}`);
      this.uploadId = created.UploadId;
    }
    // Back-pressure: wait for a slot so at most `uploadConcurrency` parts are in memory in flight.
    while (this.inflight.size >= this.options.uploadConcurrency) await Promise.race(this.inflight);
    this.throwIfFailed();
    const partNumber = this.nextPart++;
    const uploadId = this.uploadId;
    const part: Promise<void> = this.store
      .send(`upload part ${partNumber}`, this.key, (c) =>
        c.send(
          new UploadPartCommand({
            Bucket: this.store.bucket,
            Key: this.key,
            UploadId: uploadId,
            PartNumber: partNumber,
            Body: body,
            ContentLength: body.length,
            ContentMD5: contentMd5(body),
          }),
        ),
      )
      .then((out) => {
        if (!out.ETag) throw new InternalError(`S3 returned no ETag for part ${partNumber} of ${this.key}`);
        this.parts.push({ PartNumber: partNumber, ETag: out.ETag });
        this.options.uploadParts?.inc();
      })
      .catch((err: unknown) => {
        this.failure ??= err;
      })
      .finally(() => this.inflight.delete(part));
    this.inflight.add(part);
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure;
  }
}
