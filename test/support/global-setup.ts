/**
 * One PostgreSQL database per test run, dropped afterwards. Suites create their own schema in
 * it. Without TEST_POSTGRES_URL the PostgreSQL cases are skipped locally; in CI
 * (CI=true or KEYSMITH_REQUIRE_POSTGRES=1) a missing or unreachable server fails the run.
 */
import pg from 'pg';
import type { TestProject } from 'vitest/node';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const url = process.env.TEST_POSTGRES_URL;
  const required = process.env.CI === 'true' || process.env.KEYSMITH_REQUIRE_POSTGRES === '1';
  if (!url) {
    if (required) throw new Error('TEST_POSTGRES_URL is not set, and PostgreSQL tests may not skip in CI');
    project.provide('postgresUrl', '');
    return async () => undefined;
  }
  const name = `keysmith_test_${process.pid}_${Date.now().toString(36)}`;
  const admin = new pg.Client({ connectionString: url });
  try {
    await admin.connect();
  } catch (error) {
    throw new Error(`cannot reach PostgreSQL at TEST_POSTGRES_URL: ${(error as Error).message}`);
  }
  await admin.query(`create database ${name}`);
  await admin.end();
  const testUrl = new URL(url);
  testUrl.pathname = `/${name}`;
  project.provide('postgresUrl', testUrl.toString());
  return async () => {
    const cleanup = new pg.Client({ connectionString: url });
    await cleanup.connect();
    await cleanup.query(`drop database if exists ${name} with (force)`);
    await cleanup.end();
  };
}

declare module 'vitest' {
  export interface ProvidedContext {
    postgresUrl: string;
  }
}
