/** Every CLI command, in help order. */
import type { Command } from '../command.js';
import { initCommand, migrateCommand, serveCommand } from './server.js';
import { auditVerifyCommand } from './audit-verify.js';

export const COMMANDS: readonly Command[] = [initCommand, serveCommand, migrateCommand, auditVerifyCommand];
