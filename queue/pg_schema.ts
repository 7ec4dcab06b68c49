/**
 * The tables of the PostgreSQL queue store, created and upgraded by tern
 * itself: each version is a list of statements applied once, in order, under
 * an advisory lock, so nodes starting together do not race; the version
 * reached is kept in `schema_version`.
 *
 * The layout, one table per concept:
 *
 * - `messages`: one row per committed message, with its envelope and
 *   recipients (jsonb), its schedule and its lease. `due` is what claims
 *   look at: the next attempt, or the lease's end while leased (so a dead
 *   node's messages come due by themselves), or `NULL` while held.
 * - `uploads`: messages being received that have stored content already.
 * - `chunks`: content, in order of `seq`; the commit header is chunk -1.
 *   A message that fits in one chunk has none: its content is in its
 *   `messages` row (`content`, from version 2).
 * - `state`: the MTA's own small shared values (`Queue.getState`).
 *
 * @module
 */

import type { Sql } from "./pg_sql.ts";

/**
 * Each version's statements. Append a new version; never edit a released
 * one (nodes that applied it would not see the change).
 */
const VERSIONS: readonly (readonly string[])[] = [
  [
    `CREATE TABLE messages (
      queue_id text PRIMARY KEY,
      envelope jsonb NOT NULL,
      recipients jsonb NOT NULL,
      client_address text NOT NULL,
      arrival bigint NOT NULL,
      size bigint NOT NULL,
      next_attempt bigint NOT NULL,
      held boolean NOT NULL DEFAULT false,
      due bigint,
      version bigint NOT NULL DEFAULT 0,
      lease_token text,
      lease_expires bigint,
      lease_owner text,
      lease_claimed bigint
    )`,
    `CREATE INDEX messages_due ON messages (due, queue_id) WHERE due IS NOT NULL`,
    `CREATE TABLE uploads (
      queue_id text PRIMARY KEY,
      owner text NOT NULL,
      started bigint NOT NULL,
      touched bigint NOT NULL
    )`,
    `CREATE TABLE chunks (
      queue_id text NOT NULL,
      seq integer NOT NULL,
      data bytea NOT NULL,
      PRIMARY KEY (queue_id, seq)
    )`,
    `CREATE TABLE state (
      name text PRIMARY KEY,
      value text NOT NULL,
      updated bigint NOT NULL
    )`,
  ],
  [
    // The whole content (commit header included) of a message that fits in
    // one chunk, in its own row: its commit writes one row instead of three,
    // its delivery reads nothing more, and its removal touches one table.
    // NULL: the content is in `chunks`.
    `ALTER TABLE messages ADD COLUMN content bytea`,
  ],
];

/** The schema version this code reads and writes. */
export const SCHEMA_VERSION: number = VERSIONS.length;

/** Any advisory lock key, the same on every node: "tern" in ASCII. */
const MIGRATION_LOCK = 0x7465726e;

/** Whether `name` may be used unquoted as a schema name (and in a NOTIFY channel). */
export function isSchemaName(name: string): boolean {
  return /^[a-z_][a-z0-9_]{0,47}$/.test(name);
}

/**
 * Creates the schema and its tables, or upgrades them to
 * {@linkcode SCHEMA_VERSION}.
 *
 * @param sql A pool whose `search_path` is `schema`.
 * @param schema The schema's name (checked by {@linkcode isSchemaName}).
 * @returns The version found before (0 for a new store).
 * @throws {Error} When the store was made by a newer tern (a higher version).
 */
export async function migrate(sql: Sql, schema: string): Promise<number> {
  if (!isSchemaName(schema)) throw new RangeError(`Not a schema name: ${schema}`);
  return await sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK}::bigint)`;
    await tx.unsafe(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    await tx.unsafe(
      `CREATE TABLE IF NOT EXISTS ${schema}.schema_version (version integer NOT NULL)`,
    );
    const rows = await tx.unsafe<{ version: number }[]>(
      `SELECT version FROM ${schema}.schema_version`,
    );
    const found = rows[0]?.version ?? 0;
    if (found > SCHEMA_VERSION) {
      throw new Error(
        `the queue store's schema ${schema} is version ${found}, newer than this tern (${SCHEMA_VERSION}): upgrade tern`,
      );
    }
    for (let v = found; v < SCHEMA_VERSION; v++) {
      for (const statement of VERSIONS[v] ?? []) {
        await tx.unsafe(`SET LOCAL search_path TO ${schema}`);
        await tx.unsafe(statement);
      }
    }
    if (rows.length === 0) {
      await tx.unsafe(`INSERT INTO ${schema}.schema_version VALUES (${SCHEMA_VERSION})`);
    } else if (found < SCHEMA_VERSION) {
      await tx.unsafe(`UPDATE ${schema}.schema_version SET version = ${SCHEMA_VERSION}`);
    }
    return found;
  });
}
