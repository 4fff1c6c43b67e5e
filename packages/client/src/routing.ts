import { murmur3 } from '@sluice/common';

/**
 * Picks the partition of a message: murmur3(key) % partitions for a keyed
 * message (the same rule generated clients follow, see batch.proto), round
 * robin otherwise.
 */
export class PartitionRouter {
  private next = 0;

  constructor(private readonly partitions: number) {}

  choose(key: string | undefined): number {
    if (this.partitions <= 1) return 0;
    if (key !== undefined && key !== '') return murmur3(key) % this.partitions;
    const p = this.next;
    this.next = (this.next + 1) % this.partitions;
    return p;
  }
}
