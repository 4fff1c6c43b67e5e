/**
 * A separate process holding a metadata session, for tests that SIGKILL the
 * owner. It imports @sluice/metadata from dist/ (compiled JS), like any
 * production process would. Usage:
 *   metadata-child.ts ephemeral <storeUrl> <key> <ttlMs>   put <key> (ephemeral) and <key>.persistent
 *   metadata-child.ts leader <storeUrl> <electionPrefix> <ttlMs> <value>   campaign, report when leader
 * Prints one JSON line per milestone: {"event":"ready"} / {"event":"leader"}.
 */
import { openMetadataStore, SessionLeaderElection } from '@sluice/metadata';

const [mode, url, name, ttlArg, value] = process.argv.slice(2);
if (!mode || !url || !name || !ttlArg) {
  console.error('usage: metadata-child.ts ephemeral|leader URL KEY|PREFIX TTL_MS [VALUE]');
  process.exit(2);
}
const say = (event: string, extra: Record<string, unknown> = {}) =>
  process.stdout.write(`${JSON.stringify({ event, ...extra })}\n`);

const store = await openMetadataStore(url);
const session = await store.createSession(Number(ttlArg));
session.onLost((err) => {
  say('lost', { message: err.message });
});
if (mode === 'ephemeral') {
  await store.put(`${name}.persistent`, Buffer.from('persistent'));
  const version = await store.put(name, Buffer.from(`owned by ${process.pid}`), { session });
  say('ready', { version, session: session.id });
} else if (mode === 'leader') {
  const election = new SessionLeaderElection(store, session, name);
  say('ready', { session: session.id });
  await election.campaign(Buffer.from(value ?? String(process.pid)));
  say('leader', { session: session.id });
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
// Hold the session until killed.
setInterval(() => undefined, 60_000);
