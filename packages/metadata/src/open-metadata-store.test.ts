import { InvalidArgumentError } from '@sluice/common';
import test from 'ava';
import { parseMetadataStoreUrl } from './index.js';

test('metadata url - etcd URLs name endpoints and a prefix (default /sluice/default)', (t) => {
  t.deepEqual(parseMetadataStoreUrl('etcd://h1:2379,h2:2379/sluice/prod'), {
    kind: 'etcd',
    endpoints: ['h1:2379', 'h2:2379'],
    prefix: '/sluice/prod',
  });
  t.deepEqual(parseMetadataStoreUrl('etcd://127.0.0.1:2379'), {
    kind: 'etcd',
    endpoints: ['127.0.0.1:2379'],
    prefix: '/sluice/default',
  });
  t.deepEqual(parseMetadataStoreUrl('embedded:///var/lib/sluice/meta'), {
    kind: 'embedded',
    dataDir: '/var/lib/sluice/meta',
  });
});

test('metadata url - malformed URLs are InvalidArgumentErrors', (t) => {
  for (const url of [
    '',
    'nonsense',
    'etcd://',
    'etcd://host/p',
    'embedded://x',
    'embedded:///',
    'http://h:1/p',
  ]) {
    t.throws(() => parseMetadataStoreUrl(url), { instanceOf: InvalidArgumentError }, url);
  }
});
