#!/usr/bin/env node
import { Command } from 'commander';

const program = new Command('sluice')
  .description('Sluice: a replicated, tiered message queue')
  .showHelpAfterError();

await program.parseAsync(process.argv);
