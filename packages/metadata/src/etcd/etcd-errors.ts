import {
  InternalError,
  InvalidArgumentError,
  OutOfRangeError,
  SessionLostError,
  SluiceError,
  UnavailableError,
} from '@sluice/common';
import { ClientClosedError, EtcdLeaseInvalidError, GRPCGenericError, GRPCInvalidArgumentError } from 'etcd3';

/** Translate whatever the etcd3 client threw into the Sluice error hierarchy. */
export function mapEtcdError(err: unknown, what: string, endpoints: string, timeoutMs: number): SluiceError {
  if (err instanceof SluiceError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  if (err instanceof EtcdLeaseInvalidError || msg.includes('requested lease not found')) {
    return new SessionLostError(
      `${what}: the session's lease no longer exists in etcd; create a new session`,
      {
        cause: err,
      },
    );
  }
  if (msg.includes('request is too large') || msg.includes('larger than max')) {
    return new InvalidArgumentError(
      `${what}: etcd refused the request as too large (${msg}); keep metadata values small`,
      { cause: err },
    );
  }
  if (msg.includes('too many operations in txn')) {
    return new InvalidArgumentError(`${what}: ${msg}; split the transaction`, { cause: err });
  }
  if (msg.includes('duplicate key given in txn')) {
    return new InvalidArgumentError(`${what}: a transaction may write each key only once`, { cause: err });
  }
  if (msg.includes('has been compacted')) {
    return new OutOfRangeError(`${what}: ${msg}`, { cause: err });
  }
  if (err instanceof GRPCInvalidArgumentError) {
    return new InvalidArgumentError(`${what}: etcd rejected the request: ${msg}`, { cause: err });
  }
  if (
    err instanceof GRPCGenericError ||
    err instanceof ClientClosedError ||
    /unavailable|deadline|connect/i.test(msg)
  ) {
    return new UnavailableError(
      `${what}: etcd at ${endpoints} did not answer within ${timeoutMs} ms (${msg}); check that etcd is running and reachable`,
      { cause: err },
    );
  }
  return new InternalError(`${what}: unexpected etcd error: ${msg}`, { cause: err });
}
