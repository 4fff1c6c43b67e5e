/**
 * Offload targets as URLs, the form configuration files and the CLI use:
 *   s3://bucket/prefix?endpoint=http://host:port&region=us-east-1
 *   file:///abs/dir
 * Credentials never go in the URL; S3 takes them from the AWS SDK chain.
 */
import { InvalidArgumentError } from '@sluice/common';
import { FilesystemOffloader } from './filesystem-offloader.js';
import type { Offloader, OffloaderOptions } from './offloader.js';
import { S3Offloader, type S3OffloaderOptions } from './s3-offloader.js';

const COMMON_INT_PARAMS = ['blockSize', 'readBatchEntries', 'cacheBytes'] as const;
const S3_INT_PARAMS = [
  'partSize',
  'uploadConcurrency',
  'connectTimeoutMs',
  'requestTimeoutMs',
  'maxAttempts',
] as const;

export interface OpenOffloaderOptions extends OffloaderOptions {
  /** S3 only: explicit credentials instead of the AWS SDK chain. */
  credentials?: S3OffloaderOptions['credentials'];
}

export function openOffloader(url: string, options: OpenOffloaderOptions = {}): Offloader {
  const usage = 'use s3://bucket/prefix?endpoint=http://host:port&region=us-east-1 or file:///abs/dir';
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new InvalidArgumentError(`offload URL '${url}' is not a URL; ${usage}`);
  }
  if (parsed.username || parsed.password) {
    throw new InvalidArgumentError(
      'offload URL must not contain credentials; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or ~/.aws/credentials',
    );
  }
  const params = parsed.searchParams;
  const ints = (names: readonly string[]): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const name of names) {
      const text = params.get(name);
      if (text === null) continue;
      if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) {
        throw new InvalidArgumentError(
          `offload URL parameter ${name}='${text}' is not a non-negative integer`,
        );
      }
      out[name] = Number(text);
    }
    return out;
  };
  const rejectUnknown = (allowed: readonly string[]) => {
    for (const name of params.keys()) {
      if (!allowed.includes(name)) {
        throw new InvalidArgumentError(
          `offload URL parameter '${name}' is unknown; known for ${parsed.protocol}// are ${allowed.join(', ')}`,
        );
      }
    }
  };

  switch (parsed.protocol) {
    case 's3:': {
      rejectUnknown(['endpoint', 'region', 'forcePathStyle', ...COMMON_INT_PARAMS, ...S3_INT_PARAMS]);
      const bucket = parsed.hostname;
      if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
        throw new InvalidArgumentError(
          `offload URL '${url}' has bucket '${bucket}', which is not a valid S3 bucket name; ${usage}`,
        );
      }
      if (parsed.port)
        throw new InvalidArgumentError(`offload URL '${url}' has a port; put it in ?endpoint=`);
      const endpoint = params.get('endpoint') ?? undefined;
      if (endpoint !== undefined) {
        let ep: URL;
        try {
          ep = new URL(endpoint);
        } catch {
          throw new InvalidArgumentError(
            `offload URL endpoint '${endpoint}' is not a URL; use http://host:port`,
          );
        }
        if (ep.protocol !== 'http:' && ep.protocol !== 'https:') {
          throw new InvalidArgumentError(`offload URL endpoint '${endpoint}' must be http:// or https://`);
        }
      }
      const pathStyle = params.get('forcePathStyle');
      if (pathStyle !== null && pathStyle !== 'true' && pathStyle !== 'false') {
        throw new InvalidArgumentError(
          `offload URL parameter forcePathStyle='${pathStyle}' must be true or false`,
        );
      }
      const region = params.get('region');
      return new S3Offloader({
        ...options,
        ...ints([...COMMON_INT_PARAMS, ...S3_INT_PARAMS]),
        bucket,
        prefix: decodeURIComponent(parsed.pathname),
        ...(endpoint !== undefined ? { endpoint } : {}),
        ...(region ? { region } : {}),
        ...(pathStyle !== null ? { forcePathStyle: pathStyle === 'true' } : {}),
      });
    }
    case 'file:': {
      rejectUnknown(COMMON_INT_PARAMS);
      if (parsed.host !== '') {
        throw new InvalidArgumentError(
          `offload URL '${url}' names host '${parsed.host}'; use file:///abs/dir`,
        );
      }
      const dir = decodeURIComponent(parsed.pathname).replace(/(.)\/+$/, '$1');
      if (dir === '' || dir === '/') {
        throw new InvalidArgumentError(`offload URL '${url}' has no directory; use file:///abs/dir`);
      }
      return new FilesystemOffloader({ ...options, ...ints(COMMON_INT_PARAMS), dir });
    }
    default:
      throw new InvalidArgumentError(
        `offload URL '${url}' has unsupported scheme '${parsed.protocol}'; ${usage}`,
      );
  }
}
