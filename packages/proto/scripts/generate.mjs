// Generates TypeScript types for every proto in /proto with proto-loader-gen-types,
// then adds the `.js` extensions that NodeNext ESM resolution needs.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const here = new URL('..', import.meta.url).pathname;
const protoRoot = join(here, '../../proto');
const out = join(here, 'src/generated');
const files = readdirSync(join(protoRoot, 'sluice/v1'))
  .filter((f) => f.endsWith('.proto'))
  .map((f) => `sluice/v1/${f}`);
rmSync(out, { recursive: true, force: true });
execFileSync(
  join(here, '../../node_modules/.bin/proto-loader-gen-types'),
  [
    '--longs=Number',
    '--enums=String',
    '--defaults',
    '--oneofs',
    '--bytes=Buffer',
    '--grpcLib=@grpc/grpc-js',
    `--includeDirs=${protoRoot}`,
    `--outDir=${out}`,
    ...files,
  ],
  { stdio: 'inherit' },
);
const walk = (dir) =>
  readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? walk(join(dir, d.name)) : [join(dir, d.name)],
  );
for (const file of walk(out)) {
  const text = `// @ts-nocheck generated code\n${readFileSync(file, 'utf8')}`.replace(
    /from '(\.{1,2}\/[^']+)'/g,
    "from '$1.js'",
  );
  writeFileSync(file, text);
}
// One barrel of every sluice.v1 type (names are unique within the proto package).
const barrel = readdirSync(join(out, 'sluice/v1'))
  .filter((f) => f.endsWith('.ts'))
  .map((f) => `export type * from './sluice/v1/${f.replace(/\.ts$/, '.js')}';`)
  .join('\n');
writeFileSync(join(out, 'index.ts'), `${barrel}\n`);
