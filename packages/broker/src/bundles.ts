import { murmur3 } from '@sluice/common';

/**
 * A namespace is split into `count` bundles of equal Murmur3 hash ranges over
 * [0, 2^32); a topic lives in the bundle holding the hash of its full name.
 * Bundle names are the hex range, e.g. `0x00000000_0x40000000`.
 */
const SPACE = 2 ** 32;

export interface BundleRange {
  name: string;
  start: number;
  end: number;
}

const hex = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;

export function bundleRanges(count: number): BundleRange[] {
  const out: BundleRange[] = [];
  for (let i = 0; i < count; i++) {
    const start = Math.floor((SPACE * i) / count);
    const end = Math.floor((SPACE * (i + 1)) / count);
    out.push({ name: `${hex(start)}_${hex(end)}`, start, end });
  }
  return out;
}

export function bundleIndexOf(hash: number, count: number): number {
  return Math.min(count - 1, Math.floor((hash * count) / SPACE));
}

export function bundleOf(fullTopicName: string, count: number): BundleRange {
  const ranges = bundleRanges(count);
  return ranges[bundleIndexOf(murmur3(fullTopicName), count)]!;
}
