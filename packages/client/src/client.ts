import { type Logger, silentLogger } from '@sluice/common';
import { SluiceAdmin } from './admin.js';
import { ConnectionPool } from './connection-pool.js';
import { Consumer, type ConsumerOptions } from './consumer.js';
import { TopicLookup } from './lookup.js';
import { Producer, type ProducerOptions } from './producer.js';
import { Reader, type ReaderOptions } from './reader.js';
import { DEFAULT_SERVICE_URL, parseServiceUrl } from './service-url.js';

export interface SluiceClientOptions {
  /** Any broker of the cluster: `host:port` or `sluice://host:port` (default localhost:6650). */
  serviceUrl?: string;
  /** Deadline of lookups, admin calls, opening producers/consumers and close flushes (default 30 s). */
  operationTimeoutMs?: number;
  /** Where the client logs reconnects and failures (default: nowhere). */
  logger?: Logger;
}

/**
 * Entry point of the SDK: one connection pool shared by the producers,
 * consumers, readers and admin calls it creates; `close()` closes them all.
 */
export class SluiceClient {
  readonly admin: SluiceAdmin;
  private readonly pool = new ConnectionPool();
  private readonly lookup: TopicLookup;
  private readonly ctx: { logger: Logger; operationTimeoutMs: number };
  private readonly owned = new Set<{ close(): Promise<void> }>();

  constructor(opts: SluiceClientOptions = {}) {
    const address = parseServiceUrl(opts.serviceUrl ?? DEFAULT_SERVICE_URL);
    this.ctx = { logger: opts.logger ?? silentLogger, operationTimeoutMs: opts.operationTimeoutMs ?? 30_000 };
    this.lookup = new TopicLookup(this.pool, address, this.ctx.operationTimeoutMs);
    this.admin = new SluiceAdmin(this.pool, address, this.ctx.operationTimeoutMs);
  }

  async createProducer(opts: ProducerOptions): Promise<Producer> {
    return this.track(await Producer.create(this.pool, this.lookup, opts, this.ctx));
  }

  async subscribe(opts: ConsumerOptions): Promise<Consumer> {
    return this.track(
      await Consumer.create(this.pool, this.lookup, opts, this.ctx, (topic, subscription) =>
        this.admin.createSubscription(topic, subscription, { initialPosition: 'earliest' }),
      ),
    );
  }

  async createReader(opts: ReaderOptions): Promise<Reader> {
    return this.track(await Reader.create(this.pool, this.lookup, opts, this.ctx));
  }

  /** Close every producer (flushing), consumer and reader, then the connections. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.owned].map((o) => o.close()));
    this.owned.clear();
    this.pool.close();
  }

  private track<T extends { close(): Promise<void> }>(resource: T): T {
    this.owned.add(resource);
    const close = resource.close.bind(resource);
    resource.close = async () => {
      this.owned.delete(resource);
      await close();
    };
    return resource;
  }
}
