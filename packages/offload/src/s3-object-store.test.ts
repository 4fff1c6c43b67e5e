import { createHash } from 'node:crypto';
import { NotFoundError, silentLogger } from '@sluice/common';
import test from 'ava';
import { S3ObjectStore } from './s3-object-store.js';

interface Sent {
  command: string;
  input: Record<string, unknown>;
}

/** An S3ObjectStore whose SDK client records commands instead of sending them. */
function recordingStore(objects = new Map<string, number>()): { store: S3ObjectStore; sent: Sent[] } {
  const store = new S3ObjectStore({
    bucket: 'b',
    region: 'us-east-1',
    forcePathStyle: true,
    partSize: 64 * 1024,
    uploadConcurrency: 2,
    connectTimeoutMs: 1000,
    requestTimeoutMs: 1000,
    maxAttempts: 1,
    logger: silentLogger,
  });
  const sent: Sent[] = [];
  const client = {
    async send(cmd: { constructor: { name: string }; input: Record<string, unknown> }) {
      sent.push({ command: cmd.constructor.name, input: cmd.input });
      switch (cmd.constructor.name) {
        case 'CreateMultipartUploadCommand':
          return { UploadId: 'u1' };
        case 'UploadPartCommand':
          return { ETag: `"e${cmd.input.PartNumber}"` };
        case 'HeadObjectCommand': {
          const size = objects.get(cmd.input.Key as string);
          if (size === undefined) {
            throw Object.assign(new Error('not found'), {
              name: 'NotFound',
              $metadata: { httpStatusCode: 404 },
            });
          }
          return { ContentLength: size };
        }
        default:
          return {};
      }
    },
    destroy() {},
  };
  (store as unknown as { client: typeof client }).client = client;
  return { store, sent };
}

const md5 = (b: unknown) =>
  createHash('md5')
    .update(b as Buffer)
    .digest('base64');

test('s3 object store - PUT and every uploaded part carry the Content-MD5 of their body', async (t) => {
  const { store, sent } = recordingStore();
  await store.put('small', Buffer.from('index bytes'));
  const upload = store.startUpload('big');
  for (let i = 0; i < 3; i++) await upload.write(Buffer.alloc(64 * 1024, i));
  await upload.write(Buffer.from('tail'));
  t.is(await upload.complete(), 3 * 64 * 1024 + 4);
  const bodies = sent.filter((s) => s.command === 'PutObjectCommand' || s.command === 'UploadPartCommand');
  t.is(bodies.length, 5, 'one PUT and four parts');
  for (const s of bodies)
    t.is(s.input.ContentMD5, md5(s.input.Body), `${s.command} ${s.input.PartNumber ?? ''}`);
});

test('s3 object store - size is a HEAD; an absent object is NotFoundError', async (t) => {
  const { store, sent } = recordingStore(new Map([['k', 1234]]));
  t.is(await store.size('k'), 1234);
  t.deepEqual(
    sent.map((s) => s.command),
    ['HeadObjectCommand'],
  );
  await t.throwsAsync(store.size('missing'), { instanceOf: NotFoundError });
});
