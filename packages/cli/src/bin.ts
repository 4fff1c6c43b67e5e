#!/usr/bin/env node
import { Command } from 'commander';
import { registerAdminCommands } from './commands/admin.js';
import { registerBookieCommand } from './commands/bookie.js';
import { registerBrokerCommand } from './commands/broker.js';
import { registerConsumeCommand } from './commands/consume.js';
import { registerPerfCommand } from './commands/perf.js';
import { registerProduceCommand } from './commands/produce.js';
import { registerStandaloneCommand } from './commands/standalone.js';
import { stopPretenuring, tuneGarbageCollector } from './gc-tuning.js';

try {
  tuneGarbageCollector();
  stopPretenuring();
} catch (err) {
  process.stderr.write(`sluice: ${(err as Error).message}\n`);
  process.exit(2);
}

const program = new Command('sluice')
  .description('Sluice: a replicated, tiered message queue')
  .showHelpAfterError();

registerBookieCommand(program);
registerBrokerCommand(program);
registerStandaloneCommand(program);

registerProduceCommand(program);
registerConsumeCommand(program);
registerPerfCommand(program);
registerAdminCommands(program);

await program.parseAsync(process.argv);
