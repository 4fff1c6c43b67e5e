/**
 * When a failed etcd call may be sent again.
 *
 * A call that failed before its request left this process (no connection to
 * the member, or the deadline passed while waiting for one) had no effect:
 * any call may be retried, and the etcd3 client does so on the next member
 * (`neverReachedEtcd`, the client's global fault policy).
 *
 * Any other transient failure (deadline exceeded after sending, connection
 * lost mid-call, etcd's own "request timed out") is ambiguous: etcd may have
 * applied the request. `retryEtcdCall` then
 * - retries reads and unconditional writes: doing them twice is harmless
 *   (an unconditional delete that already took effect reports nothing
 *   deleted the second time);
 * - retries conditional writes too, but their condition now fails if the
 *   first attempt was applied. That conflict is not reported as such: the
 *   caller's `verify` re-reads the keys and, if they prove the earlier attempt
 *   applied, the write succeeds; if they cannot prove it, the outcome is
 *   unknown and the caller gets an UnavailableError saying so. Never a false
 *   AlreadyExistsError or BadVersionError for a write that was applied.
 */
import { AlreadyExistsError, BadVersionError, UnavailableError } from '@sluice/common';
import { isRecoverableError } from 'etcd3';

// grpc-js wording for calls that never got a connection. A call that did
// reach a transport names its `remote_addr` instead.
const NEVER_SENT = [
  'No connection established',
  'Waiting for LB pick',
  'waiting for name resolution',
  'waiting for metadata filters',
];

function recoverable(err: unknown): err is Error {
  return err instanceof Error && isRecoverableError(err);
}

/** The request certainly never reached etcd: retrying cannot apply it twice. */
export function neverReachedEtcd(err: unknown): boolean {
  return recoverable(err) && NEVER_SENT.some((s) => err.message.includes(s));
}

/** A transient failure after which etcd may nonetheless have applied the request. */
export function mayHaveApplied(err: unknown): boolean {
  return recoverable(err) && !neverReachedEtcd(err);
}

export interface EtcdRetryOptions<T> {
  /** What the call does, for error messages ("txn"). */
  what: string;
  /** Calls in all, the first included. */
  attempts: number;
  /**
   * Conditional writes only (omit for reads and unconditional writes). Called
   * when an attempt fails its condition after an earlier attempt may have
   * been applied; resolves to that attempt's result when the current state
   * proves it was applied, to undefined when it cannot tell.
   */
  verify?: () => Promise<T | undefined>;
}

/**
 * Runs `attempt` until it succeeds, fails for good, or runs out of attempts.
 * `attempt` rejects with AlreadyExistsError or BadVersionError when etcd
 * evaluated the write's condition as false, with the client's error otherwise.
 */
export async function retryEtcdCall<T>(attempt: () => Promise<T>, opts: EtcdRetryOptions<T>): Promise<T> {
  let ambiguous: Error | undefined;
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (err) {
      const conflict = err instanceof AlreadyExistsError || err instanceof BadVersionError;
      if (conflict && ambiguous && opts.verify) {
        const applied = await opts.verify();
        if (applied !== undefined) return applied;
        throw new UnavailableError(
          `${opts.what}: outcome unknown: an attempt failed after reaching etcd (${ambiguous.message}) and may ` +
            `have been applied, and the retry failed its condition (${err.message}). ` +
            'Re-read the keys to learn whether the write took effect',
          { cause: err },
        );
      }
      if (n >= opts.attempts || !mayHaveApplied(err)) throw err;
      ambiguous ??= err as Error;
    }
  }
}
