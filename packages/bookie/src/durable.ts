/**
 * Called once a write is durable (err undefined) or can never be (err set).
 * The journal runs the callbacks of one group synchronously in append order,
 * before its synced position moves past them, so a checkpoint that reads
 * `syncedPosition` never claims a record whose callback has not run.
 */
export type DurableCallback = (err: Error | undefined) => void;

/**
 * The same as an object with a method: a caller on the hot path keeps its
 * per-add state in one object instead of that object plus a closure over it.
 */
export interface Durable {
  durable(err: Error | undefined): void;
}

/** Tell `done` the outcome, whichever form it has. */
export function notifyDurable(done: DurableCallback | Durable, err: Error | undefined): void {
  if (typeof done === 'function') done(err);
  else done.durable(err);
}
