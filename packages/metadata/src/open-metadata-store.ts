import { isAbsolute } from 'node:path';
import { InvalidArgumentError, type Logger } from '@sluice/common';
import { EmbeddedMetadataStore } from './embedded/embedded-metadata-store.js';
import { DEFAULT_CLUSTER_PREFIX, EtcdMetadataStore } from './etcd/etcd-metadata-store.js';
import type { MetadataStore } from './metadata-store.js';

export interface OpenMetadataStoreOptions {
  logger?: Logger;
  /** etcd only: deadline of each call (default 5000 ms). */
  callTimeoutMs?: number;
}

export type MetadataStoreUrl =
  | { kind: 'etcd'; endpoints: string[]; prefix: string }
  | { kind: 'embedded'; dataDir: string };

const EXAMPLES = 'use etcd://host1:2379,host2:2379/sluice/<cluster> or embedded:///absolute/data/dir';

/** Parse a metadata store URL without connecting. */
export function parseMetadataStoreUrl(url: string): MetadataStoreUrl {
  if (typeof url !== 'string' || url.trim() === '') {
    throw new InvalidArgumentError(`metadata store URL is empty; ${EXAMPLES}`);
  }
  const m = /^([a-z][a-z0-9+.-]*):\/\/([^/]*)(\/.*)?$/i.exec(url.trim());
  if (!m) throw new InvalidArgumentError(`metadata store URL "${url}" is not a URL; ${EXAMPLES}`);
  const scheme = (m[1] as string).toLowerCase();
  const authority = m[2] as string;
  const path = m[3] ?? '';
  if (scheme === 'embedded') {
    if (authority !== '') {
      throw new InvalidArgumentError(
        `metadata store URL "${url}" has a host ("${authority}"); embedded URLs have three slashes: embedded:///abs/dir`,
      );
    }
    const dataDir = decodeURIComponent(path);
    if (!dataDir || !isAbsolute(dataDir) || dataDir === '/') {
      throw new InvalidArgumentError(
        `metadata store URL "${url}" needs an absolute data dir, e.g. embedded:///var/lib/sluice/metadata`,
      );
    }
    return { kind: 'embedded', dataDir };
  }
  if (scheme === 'etcd') {
    if (authority === '')
      throw new InvalidArgumentError(`metadata store URL "${url}" names no etcd host; ${EXAMPLES}`);
    const endpoints = authority.split(',').map((hp) => {
      const hm = /^(\[[0-9a-f:.]+\]|[a-z0-9.-]+):(\d{1,5})$/i.exec(hp);
      const port = hm ? Number(hm[2]) : 0;
      if (!hm || port < 1 || port > 65535) {
        throw new InvalidArgumentError(
          `metadata store URL "${url}": "${hp}" is not host:port (e.g. etcd-0:2379)`,
        );
      }
      return hp;
    });
    let prefix = path === '' || path === '/' ? DEFAULT_CLUSTER_PREFIX : decodeURIComponent(path);
    if (prefix.length > 1 && prefix.endsWith('/')) prefix = prefix.slice(0, -1);
    if (prefix.includes('//')) {
      throw new InvalidArgumentError(`metadata store URL "${url}": prefix "${prefix}" has an empty segment`);
    }
    return { kind: 'etcd', endpoints, prefix };
  }
  throw new InvalidArgumentError(`metadata store URL "${url}" has unknown scheme "${scheme}:"; ${EXAMPLES}`);
}

/** Open the store a URL names: `etcd://h1:2379,h2:2379/prefix` or `embedded:///abs/dir`. */
export async function openMetadataStore(
  url: string,
  opts: OpenMetadataStoreOptions = {},
): Promise<MetadataStore> {
  const parsed = parseMetadataStoreUrl(url);
  if (parsed.kind === 'embedded') {
    return EmbeddedMetadataStore.open({
      dataDir: parsed.dataDir,
      ...(opts.logger ? { logger: opts.logger } : {}),
    });
  }
  return new EtcdMetadataStore({
    endpoints: parsed.endpoints,
    prefix: parsed.prefix,
    ...(opts.logger ? { logger: opts.logger } : {}),
    ...(opts.callTimeoutMs !== undefined ? { callTimeoutMs: opts.callTimeoutMs } : {}),
  });
}
