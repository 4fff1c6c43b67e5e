import { InvalidArgumentError, silentLogger } from '@sluice/common';
import { offloadMetrics } from './offload-metrics.js';
import type { OffloaderOptions } from './offloader.js';
import { DEFAULT_PART_SIZE, MIN_PART_SIZE, S3ObjectStore } from './s3-object-store.js';
import { StoreOffloader } from './store-offloader.js';

export interface S3OffloaderOptions extends OffloaderOptions {
  bucket: string;
  /** Key prefix for every object (default none). */
  prefix?: string;
  /** Any S3-compatible endpoint, e.g. http://127.0.0.1:9000; default AWS. */
  endpoint?: string;
  /** Default AWS_REGION, then us-east-1. */
  region?: string;
  /** Path-style URLs (bucket in the path); default true when `endpoint` is set, as most S3-compatible stores need. */
  forcePathStyle?: boolean;
  /** Default: the AWS SDK chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws/*). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Multipart part size (default 8 MiB, at least 5 MiB, the S3 minimum). */
  partSize?: number;
  /** Parts in flight per upload (default 2); memory per offload ≈ (this + 1) × partSize. */
  uploadConcurrency?: number;
  /** TCP connect timeout (default 2000 ms). */
  connectTimeoutMs?: number;
  /** Per-request timeout (default 30000 ms; must cover one part upload on a slow link). */
  requestTimeoutMs?: number;
  /** SDK attempts per request (default 2); the caller's backoff handles longer outages. */
  maxAttempts?: number;
}

/** Offloads to an S3-compatible bucket. */
export class S3Offloader extends StoreOffloader {
  constructor(options: S3OffloaderOptions) {
    if (!options.bucket) throw new InvalidArgumentError('S3 offloader needs a bucket name');
    const partSize = options.partSize ?? DEFAULT_PART_SIZE;
    if (!Number.isSafeInteger(partSize) || partSize < MIN_PART_SIZE) {
      throw new InvalidArgumentError(
        `S3 partSize ${partSize} is invalid; S3 needs at least ${MIN_PART_SIZE} bytes`,
      );
    }
    const uploadConcurrency = options.uploadConcurrency ?? 2;
    const maxAttempts = options.maxAttempts ?? 2;
    const connectTimeoutMs = options.connectTimeoutMs ?? 2000;
    const requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
    for (const [name, value] of Object.entries({
      uploadConcurrency,
      maxAttempts,
      connectTimeoutMs,
      requestTimeoutMs,
    })) {
      if (!Number.isSafeInteger(value) || value < 1) {
        throw new InvalidArgumentError(
          `S3 offloader option ${name}=${value} is invalid; use a positive integer`,
        );
      }
    }
    const store = new S3ObjectStore({
      bucket: options.bucket,
      region: options.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
      forcePathStyle: options.forcePathStyle ?? options.endpoint !== undefined,
      partSize,
      uploadConcurrency,
      connectTimeoutMs,
      requestTimeoutMs,
      maxAttempts,
      logger: options.logger ?? silentLogger,
      uploadParts: offloadMetrics(options.registry).uploadParts,
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      ...(options.credentials ? { credentials: options.credentials } : {}),
    });
    super(store, options.prefix ?? '', options);
  }
}
