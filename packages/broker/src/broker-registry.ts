import type { MetadataStore, Session } from '@sluice/metadata';
import { BROKERS_PREFIX, brokerKey } from './metadata-keys.js';

export interface BrokerLoad {
  bundles: number;
  topics: number;
  producers: number;
  consumers: number;
  msgRateIn: number;
}

/** What a broker publishes under `brokers/<id>` on its session. */
export interface BrokerRecord {
  brokerId: string;
  /** gRPC "host:port" clients dial. */
  address: string;
  /** HTTP "host:port". */
  httpAddress: string;
  load: BrokerLoad;
  startedAt: number;
  updatedAt: number;
}

export const EMPTY_LOAD: BrokerLoad = { bundles: 0, topics: 0, producers: 0, consumers: 0, msgRateIn: 0 };

/** Broker registration and the view of live brokers used for assignment. */
export class BrokerRegistry {
  constructor(private readonly store: MetadataStore) {}

  async publish(session: Session, record: BrokerRecord): Promise<void> {
    await this.store.put(brokerKey(record.brokerId), Buffer.from(JSON.stringify(record)), { session });
  }

  /** Leave the registry ahead of the session's end, so no broker names this one to clients any more. */
  async unpublish(brokerId: string): Promise<void> {
    await this.store.delete(brokerKey(brokerId));
  }

  async live(): Promise<BrokerRecord[]> {
    const items = await this.store.listAll(BROKERS_PREFIX);
    const out: BrokerRecord[] = [];
    for (const i of items) {
      try {
        out.push(JSON.parse(i.value.toString('utf8')) as BrokerRecord);
      } catch {
        // A record another version wrote in a shape we cannot read is not a candidate.
      }
    }
    return out;
  }

  /** Least loaded first: owned bundles, then topics, then id (a stable tie-break). */
  static leastLoaded(brokers: BrokerRecord[]): BrokerRecord | undefined {
    return [...brokers].sort(
      (a, b) =>
        a.load.bundles - b.load.bundles ||
        a.load.topics - b.load.topics ||
        (a.brokerId < b.brokerId ? -1 : a.brokerId > b.brokerId ? 1 : 0),
    )[0];
  }
}
