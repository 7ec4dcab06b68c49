import { deepStrictEqual, equal } from "node:assert/strict";
import { maildirUniqueName, pendingName } from "./maildir.ts";
import { recoverMaildirs } from "./maildir_recovery.ts";

const HOST = "mx.example.test";

async function withMailRoot(fn: (root: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "tern_recovery_test_" });
  try {
    await fn(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(dir)) out.push(entry.name);
  return out.sort();
}

async function makeMaildir(dir: string): Promise<void> {
  for (const sub of ["tmp", "new", "cur"]) await Deno.mkdir(`${dir}/${sub}`, { recursive: true });
}

Deno.test("a synced file left in tmp/ under its pending name is moved into new/", async () => {
  await withMailRoot(async (root) => {
    const box = `${root}/example.test/alice`;
    await makeMaildir(box);
    const unique = maildirUniqueName(1700000000123, "4F2A9C", 0, HOST);
    const text = "Return-Path: <>\r\nDelivered-To: alice@example.test\r\n\r\nhi\r\n";
    await Deno.writeTextFile(`${box}/tmp/${pendingName(unique, text.length)}`, text);
    const result = await recoverMaildirs(root, HOST);
    deepStrictEqual(result.files, [{
      from: `${box}/tmp/${pendingName(unique, text.length)}`,
      action: "delivered",
      to: `${box}/new/${unique}`,
    }]);
    deepStrictEqual(result.problems, []);
    equal(result.maildirs, 1);
    equal(await Deno.readTextFile(`${box}/new/${unique}`), text);
    deepStrictEqual(await names(`${box}/tmp`), []);
  });
});

Deno.test("a file shorter than its pending name says was cut short: it is removed", async () => {
  await withMailRoot(async (root) => {
    const box = `${root}/example.test/bob`;
    await makeMaildir(box);
    const unique = maildirUniqueName(1700000000123, "4F2A9C", 1, HOST);
    await Deno.writeTextFile(`${box}/tmp/${pendingName(unique, 4479)}`, "Return-Path: <>\r\n");
    const result = await recoverMaildirs(root, HOST);
    deepStrictEqual(result.files.map((f) => [f.action, f.reason]), [
      ["removed", "incomplete: 17 of 4479 octets"],
    ]);
    deepStrictEqual(await names(`${box}/tmp`), []);
    deepStrictEqual(await names(`${box}/new`), []);
  });
});

Deno.test("recovery leaves alone what is not this host's pending delivery", async () => {
  await withMailRoot(async (root) => {
    const box = `${root}/example.test/carol`;
    await makeMaildir(box);
    const others = [
      // Another host sharing the mail root finishes its own.
      pendingName(maildirUniqueName(1700000000123, "AAAA", 0, "mx2.example.test"), 3),
      // A queue delivery's file (no size): a retry replaces it.
      maildirUniqueName(1700000000123, "BBBB", 0, HOST),
      // Another writer's (Dovecot's LDA, say) file being written.
      "1700000000.M123P456.mx.example.test,S=3",
    ];
    for (const name of others) await Deno.writeTextFile(`${box}/tmp/${name}`, "abc");
    const result = await recoverMaildirs(root, HOST);
    deepStrictEqual(result.files, []);
    deepStrictEqual(await names(`${box}/tmp`), others.sort());
  });
});

Deno.test("recovery walks every domain and mailbox, and completes a Maildir with no new/", async () => {
  await withMailRoot(async (root) => {
    const unique = (n: number) => maildirUniqueName(1700000000123, `ID${n}`, 0, HOST);
    for (const [i, box] of ["a.test/x", "a.test/y", "b.test/z"].entries()) {
      await makeMaildir(`${root}/${box}`);
      await Deno.writeTextFile(`${root}/${box}/tmp/${pendingName(unique(i), 2)}`, "ok");
    }
    // tmp/ without new/ and cur/: they are made, then the file moved.
    await Deno.mkdir(`${root}/b.test/half/tmp`, { recursive: true });
    await Deno.writeTextFile(`${root}/b.test/half/tmp/${pendingName(unique(9), 2)}`, "ok");
    // Not Maildirs: a stray file at each level, a mailbox without tmp/.
    await Deno.writeTextFile(`${root}/stray`, "");
    await Deno.writeTextFile(`${root}/a.test/stray`, "");
    await Deno.mkdir(`${root}/b.test/empty`);
    const result = await recoverMaildirs(root, HOST);
    deepStrictEqual(result.files.map((f) => f.to).sort(), [
      `${root}/a.test/x/new/${unique(0)}`,
      `${root}/a.test/y/new/${unique(1)}`,
      `${root}/b.test/half/new/${unique(9)}`,
      `${root}/b.test/z/new/${unique(2)}`,
    ]);
    deepStrictEqual(result.problems, []);
    deepStrictEqual(await names(`${root}/b.test/half`), ["cur", "new", "tmp"]);
    equal((await Deno.stat(`${root}/b.test/half/new`)).mode! & 0o777, 0o700);
    equal(result.maildirs, 5);
  });
});

Deno.test("a file recovery cannot move is reported and left where it is", async () => {
  await withMailRoot(async (root) => {
    const box = `${root}/example.test/dave`;
    await Deno.mkdir(`${box}/tmp`, { recursive: true });
    await Deno.writeTextFile(`${box}/new`, "not a directory");
    const name = pendingName(maildirUniqueName(1700000000123, "CCCC", 0, HOST), 2);
    await Deno.writeTextFile(`${box}/tmp/${name}`, "ok");
    const result = await recoverMaildirs(root, HOST);
    deepStrictEqual(result.files, []);
    deepStrictEqual(result.problems.map((p) => p.path), [`${box}/tmp/${name}`]);
    deepStrictEqual(await names(`${box}/tmp`), [name]);
  });
});

Deno.test("recovery of a mail root that does not exist yet finds nothing", async () => {
  await withMailRoot(async (root) => {
    deepStrictEqual(await recoverMaildirs(`${root}/mail/`, HOST), {
      files: [],
      problems: [],
      maildirs: 0,
    });
  });
});
