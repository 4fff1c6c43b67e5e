import { InvalidArgumentError } from '@sluice/common';

/** Ledger `custom` properties that tie a ledger to the log that owns it (the orphan sweeper reads them). */
export const CUSTOM_LOG = 'sluice.log';
export const CUSTOM_ROLE = 'sluice.role';
export const CUSTOM_CURSOR = 'sluice.cursor';
export type LedgerRole = 'data' | 'cursor';

const SEGMENT = /^[A-Za-z0-9._=-][A-Za-z0-9._=:-]*$/;

/** Validate `tenant/namespace/topic` and return it unchanged. */
export function checkLogName(name: string): string {
  const parts = typeof name === 'string' ? name.split('/') : [];
  if (parts.length !== 3 || parts.some((p) => !SEGMENT.test(p))) {
    throw new InvalidArgumentError(
      `managed log name '${name}' is invalid; use tenant/namespace/topic with letters, digits, '.', '_', '-', '=' or ':'`,
    );
  }
  return name;
}

export function checkCursorName(name: string): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > 256 || name.includes('/')) {
    throw new InvalidArgumentError(`cursor name '${name}' is invalid; use 1-256 characters without '/'`);
  }
  return name;
}

export const logKey = (name: string): string => `logs/${name}`;
export const cursorPrefix = (name: string): string => `cursors/${name}/`;
export const cursorKey = (name: string, cursor: string): string => `cursors/${name}/${cursor}`;

export function ledgerCustom(log: string, role: LedgerRole, cursor?: string): Record<string, string> {
  const custom: Record<string, string> = { [CUSTOM_LOG]: log, [CUSTOM_ROLE]: role };
  if (cursor !== undefined) custom[CUSTOM_CURSOR] = cursor;
  return custom;
}
