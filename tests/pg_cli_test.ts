// The `tern` commands on a shared PostgreSQL store: a message sent with
// `tern send` on one node is listed, held, released, shown, flushed and
// deleted with `tern queue` on another; `queue.store` and `queue.lease` are
// checked; a database that cannot be reached is a one-line error, for the
// commands and for `tern serve`. Needs the Debian package postgresql-15.

import assert from "node:assert/strict";
import { join } from "node:path";
import { validateConfig } from "../config/schema.ts";
import { ConfigError } from "../config/errors.ts";
import { tern } from "./_helpers.ts";
import { startPostgres } from "./_postgres.ts";

/** A node's configuration: its own data_dir, the shared store. */
async function nodeConfig(dir: string, name: string, store: string): Promise<string> {
  const file = join(dir, `${name}.yaml`);
  await Deno.writeTextFile(
    file,
    `hostname: ${name}.example.test\ndata_dir: ./${name}\nlocal_domains: [example.test]\n` +
      `listeners: [{ address: 127.0.0.1, port: 0, mode: mx }]\nqueue: { store: "${store}" }\n`,
  );
  return file;
}

function problemsOf(raw: Record<string, unknown>): string {
  try {
    validateConfig(raw, { file: "tern.yaml", baseDir: "/srv/tern" });
    return "";
  } catch (error: unknown) {
    if (error instanceof ConfigError) return error.message;
    throw error;
  }
}

Deno.test("queue.store must be a postgres:// URL with a host and a database; queue.lease at least 1s", () => {
  const ok = validateConfig({
    queue: { store: "postgresql://tern@db.example.net/tern", lease: "30s" },
  }, {
    file: "tern.yaml",
    baseDir: "/srv/tern",
  });
  assert.equal(ok.queue.store, "postgresql://tern@db.example.net/tern");
  assert.equal(ok.queue.lease, 30_000);
  assert.equal(validateConfig({}, { file: null, baseDir: "/srv/tern" }).queue.store, undefined);
  assert.match(
    problemsOf({ queue: { store: "mysql://db.example.net/tern" } }),
    /queue\.store: expected a postgres:\/\/ or postgresql:\/\/ URL, found a mysql:\/\/ one/,
  );
  assert.match(problemsOf({ queue: { store: "not a url" } }), /queue\.store: not a URL/);
  assert.match(problemsOf({ queue: { store: "postgres://db.example.net" } }), /names no database/);
  assert.match(problemsOf({ queue: { store: 5432 } }), /queue\.store: expected a PostgreSQL URL/);
  assert.match(problemsOf({ queue: { lease: "10ms" } }), /queue\.lease: expected at least 1s/);
  // The password is not repeated in the message.
  assert.doesNotMatch(problemsOf({ queue: { store: "mysql://u:secret@db/x" } }), /secret/);
});

Deno.test("tern send on one node, tern queue on another: one queue", async () => {
  await using pg = await startPostgres();
  const dir = await Deno.makeTempDir({ prefix: "tern-pg-cli-" });
  try {
    const a = await nodeConfig(dir, "node1", pg.url);
    const b = await nodeConfig(dir, "node2", pg.url);
    const sent = await tern(["send", "--config", a, "-v", "bob"], "Subject: shared\n\nbody\n");
    assert.equal(sent.code, 0, sent.stderr);
    const id = /queued as ([0-9A-Z]+)/.exec(sent.stderr)?.[1];
    assert.ok(id, sent.stderr);

    assert.match((await tern(["queue", "list", "--config", b])).stdout, new RegExp(id));
    assert.equal((await tern(["queue", "hold", "--config", b, id])).code, 0);
    assert.match(
      (await tern(["queue", "list", "--config", a])).stdout,
      new RegExp(`${id} \\(held\\)`),
    );
    assert.equal((await tern(["queue", "release", "--config", a, id])).code, 0);
    const shown = await tern(["queue", "show", "--config", b, id]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /Subject: shared\r\n/);
    assert.equal((await tern(["queue", "flush", "--config", b, id])).code, 0);
    assert.equal((await tern(["queue", "delete", "--config", a, id])).code, 0);
    const gone = await tern(["queue", "show", "--config", b, id]);
    assert.equal(gone.code, 1);
    assert.equal(gone.stderr.trim(), `tern queue show: no message with queue ID "${id}"`);

    // The database stopped: one line, exit 1, no stack trace.
    await pg.stop();
    const down = await tern(["queue", "list", "--config", b]);
    assert.equal(down.code, 1);
    assert.match(
      down.stderr.trim(),
      /^tern queue list: Cannot open the queue: the queue store is unavailable \(.+\)$/,
    );
    const serve = await tern(["serve", "--config", b]);
    assert.equal(serve.code, 1);
    assert.match(
      serve.stderr.trim(),
      /^tern serve: cannot start: Cannot open the queue: the queue store is unavailable/m,
    );
    assert.doesNotMatch(serve.stderr, /\n\s+at /);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
