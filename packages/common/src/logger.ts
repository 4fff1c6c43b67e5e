import { type Logger, pino } from 'pino';

export type { Logger } from 'pino';

/**
 * Structured JSON logs (pino). Level from SLUICE_LOG_LEVEL (default `info`;
 * `silent` in tests unless set).
 */
export function createLogger(name: string, bindings: Record<string, unknown> = {}): Logger {
  const level = process.env.SLUICE_LOG_LEVEL ?? 'info';
  return pino({ name, level, base: { pid: process.pid, ...bindings } });
}

/** A logger that writes nothing (unit tests, libraries used without a host). */
export const silentLogger: Logger = pino({ level: 'silent' });
