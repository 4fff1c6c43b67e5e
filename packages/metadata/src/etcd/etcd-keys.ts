/** Maps store keys (relative, strings) to etcd keys (bytes under the cluster prefix). */
export class KeySpace {
  private readonly ns: Buffer;

  constructor(prefix: string) {
    this.ns = Buffer.from(prefix.endsWith('/') ? prefix : `${prefix}/`);
  }

  get namespace(): string {
    return this.ns.toString();
  }

  key(key: string): Buffer {
    return Buffer.concat([this.ns, Buffer.from(key)]);
  }

  unkey(raw: Buffer): string {
    return raw.subarray(this.ns.length).toString();
  }

  /** [start, end) covering every key that starts with `prefix`. */
  range(prefix: string): { key: Buffer; range_end: Buffer } {
    const key = this.key(prefix);
    return { key, range_end: prefixEnd(key) };
  }
}

/** The smallest key greater than every key with this prefix (etcd's convention). */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if ((end[i] as number) < 0xff) {
      end[i] = (end[i] as number) + 1;
      return end.subarray(0, i + 1);
    }
  }
  // All 0xff: the range runs to the end of the keyspace.
  return Buffer.from([0]);
}
