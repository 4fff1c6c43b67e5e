/**
 * One error hierarchy for all of Sluice. Every error has a stable `code`
 * (what a program matches on), the gRPC status it crosses the wire as, and a
 * `retriable` flag that the retry helper and clients honour.
 */

/** gRPC status codes (numerically identical to @grpc/grpc-js `status`). */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type GrpcStatusCode = (typeof GrpcStatus)[keyof typeof GrpcStatus];

export interface SluiceErrorOptions {
  cause?: unknown;
  /** Extra machine-readable facts (e.g. the owner's address for a redirect). */
  details?: Record<string, string>;
}

export abstract class SluiceError extends Error {
  /** Stable identifier; never changes once published. */
  abstract readonly code: string;
  abstract readonly grpcStatus: GrpcStatusCode;
  readonly retriable: boolean = false;
  readonly details: Record<string, string>;

  constructor(message: string, options: SluiceErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.details = options.details ?? {};
  }

  override get name(): string {
    return this.constructor.name;
  }
}

export class InvalidArgumentError extends SluiceError {
  readonly code = 'INVALID_ARGUMENT';
  readonly grpcStatus = GrpcStatus.INVALID_ARGUMENT;
}

export class NotFoundError extends SluiceError {
  readonly code = 'NOT_FOUND';
  readonly grpcStatus = GrpcStatus.NOT_FOUND;
}

export class AlreadyExistsError extends SluiceError {
  readonly code = 'ALREADY_EXISTS';
  readonly grpcStatus = GrpcStatus.ALREADY_EXISTS;
}

/** A compare-and-swap lost: the stored version is not the expected one. */
export class BadVersionError extends SluiceError {
  readonly code = 'BAD_VERSION';
  readonly grpcStatus = GrpcStatus.ABORTED;
  override readonly retriable = true;
}

export class FailedPreconditionError extends SluiceError {
  readonly code = 'FAILED_PRECONDITION';
  readonly grpcStatus = GrpcStatus.FAILED_PRECONDITION;
}

/** This node does not own the resource; `details.owner` names the node that does. */
export class NotOwnerError extends SluiceError {
  readonly code = 'NOT_OWNER';
  readonly grpcStatus = GrpcStatus.FAILED_PRECONDITION;
  override readonly retriable = true;
}

/** A ledger was fenced by a newer writer; this writer may never add again. */
export class FencedError extends SluiceError {
  readonly code = 'FENCED';
  readonly grpcStatus = GrpcStatus.FAILED_PRECONDITION;
}

export class ResourceExhaustedError extends SluiceError {
  readonly code = 'RESOURCE_EXHAUSTED';
  readonly grpcStatus = GrpcStatus.RESOURCE_EXHAUSTED;
}

export class UnavailableError extends SluiceError {
  readonly code = 'UNAVAILABLE';
  readonly grpcStatus = GrpcStatus.UNAVAILABLE;
  override readonly retriable = true;
}

export class TimeoutError extends SluiceError {
  readonly code = 'TIMEOUT';
  readonly grpcStatus = GrpcStatus.DEADLINE_EXCEEDED;
  override readonly retriable = true;
}

/** Stored data failed its checksum. Never served as data. */
export class CorruptDataError extends SluiceError {
  readonly code = 'CORRUPT';
  readonly grpcStatus = GrpcStatus.DATA_LOSS;
}

export class OutOfRangeError extends SluiceError {
  readonly code = 'OUT_OF_RANGE';
  readonly grpcStatus = GrpcStatus.OUT_OF_RANGE;
}

export class UnauthenticatedError extends SluiceError {
  readonly code = 'UNAUTHENTICATED';
  readonly grpcStatus = GrpcStatus.UNAUTHENTICATED;
}

export class PermissionDeniedError extends SluiceError {
  readonly code = 'PERMISSION_DENIED';
  readonly grpcStatus = GrpcStatus.PERMISSION_DENIED;
}

/** The metadata session (lease) expired; ephemeral state is gone. */
export class SessionLostError extends SluiceError {
  readonly code = 'SESSION_LOST';
  readonly grpcStatus = GrpcStatus.UNAVAILABLE;
  override readonly retriable = true;
}

/** The component was closed; the operation cannot proceed. */
export class ClosedError extends SluiceError {
  readonly code = 'CLOSED';
  readonly grpcStatus = GrpcStatus.UNAVAILABLE;
  override readonly retriable = true;
}

export class InternalError extends SluiceError {
  readonly code = 'INTERNAL';
  readonly grpcStatus = GrpcStatus.INTERNAL;
}

type ErrorCtor = new (message: string, options?: SluiceErrorOptions) => SluiceError;

const byCode: Record<string, ErrorCtor> = {
  INVALID_ARGUMENT: InvalidArgumentError,
  NOT_FOUND: NotFoundError,
  ALREADY_EXISTS: AlreadyExistsError,
  BAD_VERSION: BadVersionError,
  FAILED_PRECONDITION: FailedPreconditionError,
  NOT_OWNER: NotOwnerError,
  FENCED: FencedError,
  RESOURCE_EXHAUSTED: ResourceExhaustedError,
  UNAVAILABLE: UnavailableError,
  TIMEOUT: TimeoutError,
  CORRUPT: CorruptDataError,
  OUT_OF_RANGE: OutOfRangeError,
  UNAUTHENTICATED: UnauthenticatedError,
  PERMISSION_DENIED: PermissionDeniedError,
  SESSION_LOST: SessionLostError,
  CLOSED: ClosedError,
  INTERNAL: InternalError,
};

const byStatus: Partial<Record<number, ErrorCtor>> = {
  [GrpcStatus.INVALID_ARGUMENT]: InvalidArgumentError,
  [GrpcStatus.NOT_FOUND]: NotFoundError,
  [GrpcStatus.ALREADY_EXISTS]: AlreadyExistsError,
  [GrpcStatus.ABORTED]: BadVersionError,
  [GrpcStatus.FAILED_PRECONDITION]: FailedPreconditionError,
  [GrpcStatus.RESOURCE_EXHAUSTED]: ResourceExhaustedError,
  [GrpcStatus.UNAVAILABLE]: UnavailableError,
  [GrpcStatus.DEADLINE_EXCEEDED]: TimeoutError,
  [GrpcStatus.CANCELLED]: UnavailableError,
  [GrpcStatus.DATA_LOSS]: CorruptDataError,
  [GrpcStatus.OUT_OF_RANGE]: OutOfRangeError,
  [GrpcStatus.UNAUTHENTICATED]: UnauthenticatedError,
  [GrpcStatus.PERMISSION_DENIED]: PermissionDeniedError,
};

/** Rebuild a typed error from a stable code (e.g. read from gRPC trailing metadata). */
export function errorFromCode(code: string, message: string, options?: SluiceErrorOptions): SluiceError {
  const Ctor = byCode[code] ?? InternalError;
  return new Ctor(message, options);
}

/** Rebuild a typed error from a bare gRPC status when no Sluice code was attached. */
export function errorFromStatus(status: number, message: string, options?: SluiceErrorOptions): SluiceError {
  const Ctor = byStatus[status] ?? (status === GrpcStatus.UNKNOWN ? UnavailableError : InternalError);
  return new Ctor(message, options);
}

/** Wrap anything thrown into a SluiceError, keeping SluiceErrors as they are. */
export function asSluiceError(err: unknown): SluiceError {
  if (err instanceof SluiceError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new InternalError(message, { cause: err });
}

export function isRetriable(err: unknown): boolean {
  return err instanceof SluiceError && err.retriable;
}
