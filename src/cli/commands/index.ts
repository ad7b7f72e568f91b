/** Every CLI command, in help order. */
import type { Command } from '../command.js';
import { initCommand, migrateCommand, serveCommand } from './server.js';
import { keysCommands } from './keys.js';
import { tokenCommands } from './tokens.js';
import { secretsCommands } from './secrets.js';
import { kekCommands } from './kek.js';
import { rotationCommands } from './rotation.js';
import { rotateCommands, rotationRunCommands } from './rotation-runs.js';
import { incidentCommands } from './incidents.js';
import { runCommand } from './run.js';
import { auditListCommand } from './audit-list.js';
import { auditVerifyCommand } from './audit-verify.js';
import { auditCheckpointCommand, auditKeyCommand } from './audit-checkpoint.js';
import { eventsCommand } from './events.js';
import { configCheckCommand } from './config.js';

export const COMMANDS: readonly Command[] = [
  initCommand,
  serveCommand,
  migrateCommand,
  configCheckCommand,
  ...keysCommands,
  ...tokenCommands,
  ...secretsCommands,
  runCommand,
  ...kekCommands,
  ...rotationCommands,
  ...rotationRunCommands,
  ...rotateCommands,
  ...incidentCommands,
  auditListCommand,
  auditVerifyCommand,
  auditKeyCommand,
  auditCheckpointCommand,
  eventsCommand,
];
