export { AddChannelServer, SlabPool } from './add-channel-server.js';
export { Bookie, type BookieOptions } from './bookie.js';
export {
  type AddRequest,
  BookieStore,
  type BookieStoreOptions,
  type EntryStatusName,
  type Outcome,
} from './bookie-store.js';
export {
  type BookieConfig,
  type BookieConfigInput,
  bookieConfigSchema,
  resolveBookieConfig,
} from './config.js';
export { type DiskUsage, diskUsage } from './disk-watchdog.js';
export type { GcResult } from './garbage-collector.js';
export { type BookieMetrics, createBookieMetrics } from './metrics.js';
export { BOOKIE_NODE_OPTIONS, bookieNodeOptions, semiSpaceChosen } from './node-options.js';
export {
  BOOKIES_AVAILABLE_PREFIX,
  BOOKIES_COOKIES_PREFIX,
  BOOKIES_READONLY_PREFIX,
  type BookieIdentity,
  type RegistrationValue,
} from './registration.js';
