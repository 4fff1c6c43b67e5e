import { fileURLToPath } from 'node:url';
import { type GrpcObject, loadPackageDefinition } from '@grpc/grpc-js';
import { loadSync, type Options } from '@grpc/proto-loader';
import type { EntryStatus__Output } from './generated/index.js';

export * from './add-channel.js';
export * from './add-entries-codec.js';
export { int64Size, writeInt64 } from './bookie-wire.js';
export * from './consume-response-codec.js';
export type * from './generated/index.js';
export * from './grpc-framing.js';
export * from './read-entries-codec.js';

/** A sluice.v1.EntryStatus as bookie and client code handle it: without the prefix; UNSPECIFIED is never sent. */
export type EntryStatusName =
  Exclude<EntryStatus__Output, 'ENTRY_STATUS_UNSPECIFIED'> extends infer S
    ? S extends `ENTRY_STATUS_${infer N}`
      ? N
      : never
    : never;

/** Directory holding `sluice/v1/*.proto` (the public contract). */
export const PROTO_DIR = fileURLToPath(new URL('../../../proto', import.meta.url));

/** How every Sluice process decodes protos: 64-bit ids as numbers, enums as names, bytes as Buffers. */
export const LOADER_OPTIONS: Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};

/**
 * Max gRPC message size for every Sluice channel and server: a full 5 MiB
 * message batch plus framing fits. Generated clients must raise their own
 * receive limit (grpc default 4 MiB) to at least this.
 */
export const MAX_GRPC_MESSAGE_BYTES = 16 * 1024 * 1024;

const cache = new Map<string, GrpcObject>();

/** Load a proto file of sluice/v1 (e.g. `bookie.proto`) as a grpc-js package object. */
export function loadProto(file: string): GrpcObject {
  let pkg = cache.get(file);
  if (!pkg) {
    pkg = loadPackageDefinition(loadSync(`sluice/v1/${file}`, LOADER_OPTIONS));
    cache.set(file, pkg);
  }
  return pkg;
}
