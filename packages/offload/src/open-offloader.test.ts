import { InvalidArgumentError } from '@sluice/common';
import test from 'ava';
import { FilesystemOffloader } from './filesystem-offloader.js';
import { openOffloader } from './open-offloader.js';
import { S3Offloader } from './s3-offloader.js';

test('openOffloader - s3 and file URLs', async (t) => {
  const s3 = openOffloader('s3://my-bucket/some/prefix?endpoint=http://127.0.0.1:9000&region=eu-west-1');
  t.true(s3 instanceof S3Offloader);
  t.regex(s3.description, /s3:\/\/my-bucket at http:\/\/127\.0\.0\.1:9000/);
  await s3.close();
  const fs = openOffloader('file:///var/lib/sluice/offload?blockSize=65536');
  t.true(fs instanceof FilesystemOffloader);
  t.is(fs.description, 'file:///var/lib/sluice/offload');
  await fs.close();
});

test('openOffloader - malformed URLs are InvalidArgumentErrors that say what to do', (t) => {
  const bad: [string, RegExp][] = [
    ['not a url', /not a URL/],
    ['http://bucket/x', /unsupported scheme/],
    ['s3://Bad_Bucket/x', /not a valid S3 bucket name/],
    ['s3://key:secret@bucket/x', /must not contain credentials/],
    ['s3://bucket/x?endpoint=ftp://h', /http:\/\/ or https:\/\//],
    ['s3://bucket/x?endpoint=nope', /not a URL/],
    ['s3://bucket/x?partSize=10', /at least/],
    ['s3://bucket/x?blockSize=abc', /not a non-negative integer/],
    ['s3://bucket/x?bogus=1', /unknown/],
    ['s3://bucket:9000/x', /port/],
    ['s3://bucket/x?forcePathStyle=yes', /true or false/],
    ['file://host/dir', /names host/],
    ['file:///', /no directory/],
    ['file:///d?partSize=6000000', /unknown/],
  ];
  for (const [url, message] of bad) {
    t.throws(() => openOffloader(url), { instanceOf: InvalidArgumentError, message }, url);
  }
});
