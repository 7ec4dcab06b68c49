import { deepStrictEqual, equal, ok, rejects, throws } from "node:assert/strict";
import { normalize } from "node:path";
import {
  deliverToMaildir,
  isMaildirName,
  isUniqueNameOf,
  MaildirNameTakenError,
  maildirPath,
  maildirUniqueName,
  MAX_MAILDIR_OCTETS,
  MAX_NAME_OCTETS,
  parsePendingName,
  pendingName,
} from "./maildir.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function streamOf(...chunks: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  return ReadableStream.from(chunks.map((c) => (typeof c === "string" ? encoder.encode(c) : c)));
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tern_maildir_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(dir)) out.push(entry.name);
  return out.sort();
}

// ---------------------------------------------------------------------------
// maildirPath

const pathCases = [
  { mailbox: "alice@example.test", path: "/mail/example.test/alice/" },
  { mailbox: "alice@EXAMPLE.Test", path: "/mail/example.test/alice/" },
  { mailbox: "Alice.Smith@example.test", path: "/mail/example.test/Alice.Smith/" },
  { mailbox: "../../etc@example.test", path: "/mail/example.test/%2E.%2F..%2Fetc/" },
  { mailbox: "a/b@example.test", path: "/mail/example.test/a%2Fb/" },
  { mailbox: ".hidden@example.test", path: "/mail/example.test/%2Ehidden/" },
  { mailbox: "..@example.test", path: "/mail/example.test/%2E./" },
  { mailbox: "100%@example.test", path: "/mail/example.test/100%25/" },
  { mailbox: "nul\0byte@example.test", path: "/mail/example.test/nul%00byte/" },
  { mailbox: "x@..", path: "/mail/%2E./x/" },
  { mailbox: "x@../../etc", path: "/mail/%2E.%2F..%2Fetc/x/" },
  { mailbox: '"a@b"@example.test', path: '/mail/example.test/"a@b"/' },
  { mailbox: "jörg@bücher.example", path: "/mail/bücher.example/jörg/" },
];
for (const c of pathCases) {
  Deno.test(`maildirPath() puts ${JSON.stringify(c.mailbox)} at ${c.path}`, () => {
    equal(maildirPath("/mail", c.mailbox), c.path);
  });
}

Deno.test("maildirPath() never leaves the mail root, whatever the address", () => {
  const attempts = [
    "../x@example.test",
    "x@..",
    "..@..",
    "./..@./..",
    "x/../../..@example.test",
    "x@example.test/../../..",
    "%2e%2e@example.test",
    "\0@\0",
  ];
  for (const mailbox of attempts) {
    const path = maildirPath("/srv/mail/", mailbox);
    ok(path.startsWith("/srv/mail/"), path);
    equal(normalize(path), path, `${mailbox} → ${path} is not normal`);
    // Exactly two segments below the root: domain and local part.
    equal(path.slice("/srv/mail/".length).split("/").filter((s) => s !== "").length, 2, path);
  }
});

Deno.test("maildirPath() keeps two addresses that differ only by an escape apart", () => {
  const a = maildirPath("/mail", "a/b@example.test");
  const b = maildirPath("/mail", "a%2Fb@example.test");
  ok(a !== b, `${a} and ${b}`);
});

Deno.test("maildirPath() refuses a mailbox with no @, no local part or no domain", () => {
  throws(() => maildirPath("/mail", "alice"), TypeError);
  throws(() => maildirPath("/mail", "@example.test"), TypeError);
  throws(() => maildirPath("/mail", "alice@"), TypeError);
});

Deno.test("maildirPath() takes an escaped local part of 255 octets and refuses 256", () => {
  // 85 slashes escape to 255 octets ("%2F" each).
  const fits = `${"/".repeat(85)}@example.test`;
  equal(maildirPath("/mail", fits), `/mail/example.test/${"%2F".repeat(85)}/`);
  ok(isMaildirName("/mail", fits));
  const over = `${"/".repeat(85)}a@example.test`;
  throws(() => maildirPath("/mail", over), TypeError);
  equal(isMaildirName("/mail", over), false);
  // Octets, not characters: 128 two-octet letters are 256 octets.
  equal(isMaildirName("/mail", `${"é".repeat(127)}@example.test`), true);
  equal(isMaildirName("/mail", `${"é".repeat(128)}@example.test`), false);
});

Deno.test("maildirPath() refuses a 200-slash local part, naming the mailbox but not the root", () => {
  const mailbox = `${"/".repeat(200)}@localhost`;
  throws(() => maildirPath("/srv/secret/mail", mailbox), (error: unknown) => {
    ok(error instanceof TypeError);
    ok(!error.message.includes("/srv/secret"), error.message);
    ok(error.message.includes("local part is too long"), error.message);
    return true;
  });
});

Deno.test("maildirPath() refuses a domain over 255 octets once escaped", () => {
  equal(isMaildirName("/mail", `alice@${"%".repeat(86)}`), false);
});

Deno.test("maildirPath() refuses a Maildir path over what PATH_MAX leaves room for", () => {
  const local = "a".repeat(200);
  const rootFor = (total: number) => {
    // "<root>/example.test/<local>/" is `total` octets.
    const rest = `/example.test/${local}/`.length;
    return "/" + "r".repeat(total - rest - 1);
  };
  equal(
    maildirPath(rootFor(MAX_MAILDIR_OCTETS), `${local}@example.test`).length,
    MAX_MAILDIR_OCTETS,
  );
  equal(isMaildirName(rootFor(MAX_MAILDIR_OCTETS + 1), `${local}@example.test`), false);
  ok(MAX_MAILDIR_OCTETS + "cur/".length + MAX_NAME_OCTETS < 4096);
});

// ---------------------------------------------------------------------------
// maildirUniqueName

Deno.test("maildirUniqueName() stays within 200 octets however long the host name", () => {
  const host = `${"h".repeat(63)}.${"é".repeat(60)}.${"x".repeat(63)}.${"y".repeat(63)}`;
  const name = maildirUniqueName(1700000000123, "4F2A9CQ0000000", 99999, host);
  ok(encoder.encode(name).length <= 200, String(encoder.encode(name).length));
  ok(name.startsWith("1700000000.M123000Q4F2A9CQ0000000R99999.hhh"), name);
  equal(maildirUniqueName(1700000000123, "4F2A9CQ0000000", 99999, host), name);
  // The cut falls between characters: the name is valid UTF-8.
  equal(decoder.decode(encoder.encode(name)), name);
});

Deno.test("maildirUniqueName() has the three dot-separated parts of the Maildir spec", () => {
  const name = maildirUniqueName(1700000000123, "4F2A9C", 3, "mx.example.test");
  equal(name, "1700000000.M123000Q4F2A9CR3.mx.example.test");
  const [time, id, ...host] = name.split(".");
  equal(time, "1700000000");
  equal(id, "M123000Q4F2A9CR3");
  equal(host.join("."), "mx.example.test");
});

Deno.test("maildirUniqueName() writes / as \\057 and : as \\072 in the host name", () => {
  const name = maildirUniqueName(0, "Q1", 0, "odd/host:name");
  equal(name, "0.M0QQ1R0.odd\\057host\\072name");
  ok(!name.includes("/") && !name.includes(":"));
});

Deno.test("maildirUniqueName() keeps a dot, slash or colon in the queue id out of the id part", () => {
  const name = maildirUniqueName(0, "a.b/c:d", 0, "h");
  equal(name.split(".").length, 3, name);
  ok(!name.includes("/") && !name.includes(":"), name);
});

Deno.test("maildirUniqueName() differs per recipient index and is the same on every call", () => {
  const names = [0, 1, 2, 10].map((i) => maildirUniqueName(1700000000000, "4F2A9C", i, "mx"));
  equal(new Set(names).size, names.length);
  equal(maildirUniqueName(1700000000000, "4F2A9C", 1, "mx"), names[1]);
  ok(maildirUniqueName(1700000000000, "4F2A9D", 1, "mx") !== names[1]);
});

// ---------------------------------------------------------------------------
// deliverToMaildir

const options = {
  returnPath: "bob@example.net",
  deliveredTo: "alice@example.test",
  uniqueName: "1700000000.M0Q4F2A9CR0.mx.example.test",
};

Deno.test("deliverToMaildir() creates tmp/, new/ and cur/ with mode 0700 and writes into new/", async () => {
  await withTempDir(async (root) => {
    const dir = `${root}/example.test/alice/`;
    const result = await deliverToMaildir(dir, streamOf("Subject: hi\r\n\r\nHello\r\n"), options);
    equal(result.duplicate, false);
    equal(result.path, `${root}/example.test/alice/new/${options.uniqueName}`);
    deepStrictEqual(await names(dir), ["cur", "new", "tmp"]);
    for (const sub of ["tmp", "new", "cur"]) {
      const info = await Deno.stat(`${dir}${sub}`);
      equal((info.mode ?? 0) & 0o777, 0o700, sub);
    }
    deepStrictEqual(await names(`${dir}tmp`), []);
    equal(
      await Deno.readTextFile(result.path),
      "Return-Path: <bob@example.net>\r\nDelivered-To: alice@example.test\r\n" +
        "Subject: hi\r\n\r\nHello\r\n",
    );
    equal(((await Deno.stat(result.path)).mode ?? 0) & 0o777, 0o600);
  });
});

Deno.test("deliverToMaildir() writes Return-Path: <> for the null sender", async () => {
  await withTempDir(async (root) => {
    const result = await deliverToMaildir(root, streamOf("\r\n"), { ...options, returnPath: "" });
    ok((await Deno.readTextFile(result.path)).startsWith("Return-Path: <>\r\nDelivered-To: "));
  });
});

Deno.test("deliverToMaildir() keeps lines starting with a dot and 8-bit UTF-8 byte for byte", async () => {
  await withTempDir(async (root) => {
    const body = concat(
      encoder.encode("Subject: =?utf-8?q?caf=C3=A9?=\r\n\r\n"),
      encoder.encode(".\r\n..\r\n.leading dot\r\nGrüße, 日本語, café ☕\r\n"),
      new Uint8Array([0xff, 0xfe, 0x80, 0x0d, 0x0a]), // not even UTF-8: still kept
      encoder.encode("no final CRLF"),
    );
    // Split inside a multi-byte character on purpose.
    const result = await deliverToMaildir(
      root,
      streamOf(body.subarray(0, 41), body.subarray(41, 42), body.subarray(42)),
      options,
    );
    const header = encoder.encode(
      "Return-Path: <bob@example.net>\r\nDelivered-To: alice@example.test\r\n",
    );
    deepStrictEqual(await Deno.readFile(result.path), concat(header, body));
  });
});

Deno.test("deliverToMaildir() streams a 3 MiB message byte-exact", async () => {
  await withTempDir(async (root) => {
    const size = 3 * 1024 * 1024;
    const body = new Uint8Array(size);
    let seed = 12345;
    for (let i = 0; i < size; i++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      body[i] = seed >>> 24;
    }
    // Chunks of uneven sizes, some larger than the write buffer.
    const sizes = [1, 7000, 65536, 65535, 200000, 13];
    async function* chunks(): AsyncGenerator<Uint8Array> {
      let offset = 0;
      for (let i = 0; offset < size; i++) {
        const n = sizes[i % sizes.length] as number;
        yield body.slice(offset, offset + n);
        offset += n;
      }
    }
    const result = await deliverToMaildir(root, chunks(), options);
    const written = await Deno.readFile(result.path);
    const headerLength = written.length - size;
    equal(
      decoder.decode(written.subarray(0, headerLength)),
      "Return-Path: <bob@example.net>\r\nDelivered-To: alice@example.test\r\n",
    );
    ok(written.subarray(headerLength).every((b, i) => b === body[i]), "body differs");
  });
});

Deno.test("deliverToMaildir() writes content in pieces byte-exact, small and large", async () => {
  await withTempDir(async (root) => {
    const header = "Return-Path: <bob@example.net>\r\nDelivered-To: alice@example.test\r\n";
    // Small: under one write buffer, joined with the header into one write.
    const small = [encoder.encode("Subject: a\r\n"), encoder.encode("\r\n.body\r\n")];
    const one = await deliverToMaildir(root, small, { ...options, uniqueName: "pieces.small" });
    equal(await Deno.readTextFile(one.path), `${header}Subject: a\r\n\r\n.body\r\n`);
    // Large: uneven pieces, some bigger than the write buffer, some tiny.
    const pieces = [1, 7000, 65536, 65535, 200000, 13, 3].map((n, i) =>
      new Uint8Array(n).fill(0x41 + i)
    );
    const two = await deliverToMaildir(root, pieces, { ...options, uniqueName: "pieces.large" });
    const written = await Deno.readFile(two.path);
    equal(decoder.decode(written.subarray(0, header.length)), header);
    deepStrictEqual(written.subarray(header.length), concat(...pieces));
  });
});

Deno.test("deliverToMaildir() writes while it reads instead of holding the message in memory", async () => {
  await withTempDir(async (root) => {
    const chunk = new Uint8Array(16 * 1024).fill(0x41);
    let sizeMidway = -1;
    async function* chunks(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < 200; i++) {
        if (i === 100) sizeMidway = (await Deno.stat(`${root}/tmp/${options.uniqueName}`)).size;
        yield chunk;
      }
    }
    await deliverToMaildir(root, chunks(), options);
    ok(sizeMidway >= 1024 * 1024, `only ${sizeMidway} bytes on disk after 1.6 MB read`);
  });
});

Deno.test("deliverToMaildir() reports a copy already in new/ as a duplicate and writes nothing", async () => {
  await withTempDir(async (root) => {
    await deliverToMaildir(root, streamOf("first\r\n"), options);
    let cancelled = false;
    const second = new ReadableStream<Uint8Array>({
      pull(controller) {
        controller.enqueue(encoder.encode("second\r\n"));
      },
      cancel() {
        cancelled = true;
      },
    });
    const result = await deliverToMaildir(root, second, options);
    equal(result.duplicate, true);
    equal(result.path, `${root}/new/${options.uniqueName}`);
    ok((await Deno.readTextFile(result.path)).endsWith("first\r\n"));
    ok(cancelled, "the content stream was not released");
    deepStrictEqual(await names(`${root}/tmp`), []);
  });
});

Deno.test("deliverToMaildir() with checkCur finds a copy a reader moved to cur/ with :2,S", async () => {
  await withTempDir(async (root) => {
    const first = await deliverToMaildir(root, streamOf("first\r\n"), options);
    const seen = `${root}/cur/${options.uniqueName}:2,S`;
    await Deno.rename(first.path, seen);
    const result = await deliverToMaildir(root, streamOf("second\r\n"), {
      ...options,
      checkCur: true,
    });
    deepStrictEqual(result, { path: seen, duplicate: true });
    deepStrictEqual(await names(`${root}/new`), []);
  });
});

Deno.test("deliverToMaildir() with checkCur finds a copy in cur/ with no info suffix", async () => {
  await withTempDir(async (root) => {
    const first = await deliverToMaildir(root, streamOf("first\r\n"), options);
    await Deno.rename(first.path, `${root}/cur/${options.uniqueName}`);
    const result = await deliverToMaildir(root, streamOf("x"), { ...options, checkCur: true });
    equal(result.duplicate, true);
  });
});

Deno.test("deliverToMaildir() does not take a longer name in cur/ for its own", async () => {
  await withTempDir(async (root) => {
    await Deno.mkdir(`${root}/cur`, { recursive: true });
    await Deno.writeTextFile(`${root}/cur/${options.uniqueName}extra:2,S`, "other");
    const result = await deliverToMaildir(root, streamOf("x"), { ...options, checkCur: true });
    equal(result.duplicate, false);
  });
});

Deno.test("deliverToMaildir() without checkCur does not look in cur/", async () => {
  await withTempDir(async (root) => {
    const first = await deliverToMaildir(root, streamOf("first\r\n"), options);
    await Deno.rename(first.path, `${root}/cur/${options.uniqueName}:2,S`);
    const result = await deliverToMaildir(root, streamOf("second\r\n"), options);
    equal(result.duplicate, false);
  });
});

Deno.test("deliverToMaildir() replaces a stale file in tmp/ left by a crash", async () => {
  await withTempDir(async (root) => {
    for (const sub of ["tmp", "new", "cur"]) await Deno.mkdir(`${root}/${sub}`);
    await Deno.writeTextFile(`${root}/tmp/${options.uniqueName}`, "half a messa");
    const result = await deliverToMaildir(root, streamOf("whole\r\n"), options);
    ok(
      (await Deno.readTextFile(result.path)).endsWith(
        "Delivered-To: alice@example.test\r\nwhole\r\n",
      ),
    );
    deepStrictEqual(await names(`${root}/tmp`), []);
  });
});

Deno.test("deliverToMaildir() removes its tmp/ file and rethrows when the content fails", async () => {
  await withTempDir(async (root) => {
    const failure = new Error("store went away");
    async function* chunks(): AsyncGenerator<Uint8Array> {
      yield new Uint8Array(100_000);
      throw failure;
    }
    await rejects(deliverToMaildir(root, chunks(), options), (e) => e === failure);
    deepStrictEqual(await names(`${root}/tmp`), []);
    deepStrictEqual(await names(`${root}/new`), []);
  });
});

Deno.test("deliverToMaildir() refuses addresses that would inject header lines", async () => {
  await withTempDir(async (root) => {
    await rejects(
      deliverToMaildir(root, streamOf("x"), { ...options, returnPath: "a@b\r\nBcc: x@y" }),
      TypeError,
    );
    await rejects(
      deliverToMaildir(root, streamOf("x"), { ...options, deliveredTo: "a@b\nX: y" }),
      TypeError,
    );
    deepStrictEqual(await names(root), []);
  });
});

Deno.test("deliverToMaildir() refuses a unique name that is a path", async () => {
  await withTempDir(async (root) => {
    await rejects(
      deliverToMaildir(root, streamOf("x"), { ...options, uniqueName: "../escape" }),
      TypeError,
    );
  });
});

Deno.test("deliverToMaildir() fails with NotADirectory when the Maildir's parent is a file", async () => {
  await withTempDir(async (root) => {
    await Deno.writeTextFile(`${root}/example.test`, "not a directory");
    await rejects(
      deliverToMaildir(`${root}/example.test/alice/`, streamOf("x"), options),
      Deno.errors.NotADirectory,
    );
  });
});

Deno.test("firstAttempt skips the search for an earlier copy; the rename still leaves one file", async () => {
  await withTempDir(async (dir) => {
    const maildir = `${dir}/m/`;
    const options = { returnPath: "a@x.test", deliveredTo: "b@y.test", uniqueName: "1.M1Q1R0.h" };
    await deliverToMaildir(maildir, streamOf("Subject: one\r\n\r\n1\r\n"), options);
    // Without firstAttempt the copy is found and nothing is written.
    const again = await deliverToMaildir(maildir, streamOf("Subject: two\r\n\r\n2\r\n"), options);
    equal(again.duplicate, true);
    // With it, nothing is looked up: the file is written and replaces the old one.
    const first = await deliverToMaildir(maildir, streamOf("Subject: three\r\n\r\n3\r\n"), {
      ...options,
      firstAttempt: true,
    });
    equal(first.duplicate, false);
    const names = [...Deno.readDirSync(`${maildir}new`)].map((e) => e.name);
    deepStrictEqual(names, ["1.M1Q1R0.h"]);
    ok(Deno.readTextFileSync(`${maildir}new/1.M1Q1R0.h`).includes("Subject: three"));
    deepStrictEqual([...Deno.readDirSync(`${maildir}tmp`)], []);
  });
});

Deno.test("exclusive refuses a name another message's file has, in new/ or in tmp/, and leaves that file", async () => {
  await withTempDir(async (dir) => {
    const maildir = `${dir}/m`;
    const options = {
      returnPath: "a@x.test",
      deliveredTo: "b@y.test",
      uniqueName: "1.M1Q1R0.h",
      firstAttempt: true,
      exclusive: true,
    };
    const first = await deliverToMaildir(maildir, streamOf("Subject: one\r\n\r\n1\r\n"), options);
    equal(first.duplicate, false);
    deepStrictEqual(await names(`${maildir}/tmp`), [], "linked into new/, then unlinked from tmp/");
    const second = deliverToMaildir(maildir, streamOf("Subject: two\r\n\r\n2\r\n"), options);
    await rejects(second, MaildirNameTakenError);
    ok(Deno.readTextFileSync(`${maildir}/new/1.M1Q1R0.h`).includes("Subject: one"));
    deepStrictEqual(await names(`${maildir}/new`), ["1.M1Q1R0.h"]);
    deepStrictEqual(await names(`${maildir}/tmp`), [], "the refused copy is not left in tmp/");
    // Another process writing that name at this moment: its file in tmp/ stays.
    const other = { ...options, uniqueName: "2.M1Q1R0.h" };
    await Deno.writeTextFile(`${maildir}/tmp/2.M1Q1R0.h`, "being written");
    await rejects(
      deliverToMaildir(maildir, streamOf("Subject: three\r\n\r\n3\r\n"), other),
      MaildirNameTakenError,
    );
    equal(Deno.readTextFileSync(`${maildir}/tmp/2.M1Q1R0.h`), "being written");
    deepStrictEqual(await names(`${maildir}/new`), ["1.M1Q1R0.h"]);
  });
});

Deno.test("syncName later writes tmp/ under the pending name that carries the file's size", async () => {
  await withTempDir(async (root) => {
    const dir = `${root}/alice`;
    const uniqueName = maildirUniqueName(1700000000123, "4F2A9C", 0, "mx.example.test");
    const content = [encoder.encode("Subject: hi\r\n\r\n"), encoder.encode("Hello\r\n")];
    const head = "Return-Path: <bob@example.test>\r\nDelivered-To: alice@example.test\r\n";
    const size = encoder.encode(head).length + 15 + 7;
    // A file of that name is a stale one to replace: proof the writer used it.
    await Deno.mkdir(`${dir}/tmp`, { recursive: true });
    await Deno.writeTextFile(`${dir}/tmp/${pendingName(uniqueName, size)}`, "stale");
    const result = await deliverToMaildir(dir, content, {
      returnPath: "bob@example.test",
      deliveredTo: "alice@example.test",
      uniqueName,
      syncName: "later",
    });
    ok(result.nameSynced instanceof Promise);
    await result.nameSynced;
    equal(result.path, `${dir}/new/${uniqueName}`);
    equal((await Deno.stat(result.path)).size, size);
    deepStrictEqual(await names(`${dir}/tmp`), []);
  });
});

Deno.test("syncName later falls back to now for a stream, whose size is not known", async () => {
  await withTempDir(async (root) => {
    const uniqueName = maildirUniqueName(1700000000123, "4F2A9C", 1, "mx.example.test");
    const result = await deliverToMaildir(`${root}/alice`, streamOf("Subject: s\r\n\r\nx\r\n"), {
      returnPath: "",
      deliveredTo: "alice@example.test",
      uniqueName,
      syncName: "later",
    });
    equal(result.nameSynced, undefined);
    deepStrictEqual(await names(`${root}/alice/new`), [uniqueName]);
  });
});

Deno.test("pendingName() and parsePendingName() agree; other names are not pending", () => {
  const uniqueName = maildirUniqueName(1700000000123, "4F2A9C", 0, "mx.example.test");
  deepStrictEqual(parsePendingName(pendingName(uniqueName, 4479)), { uniqueName, size: 4479 });
  equal(parsePendingName(uniqueName), null);
  equal(parsePendingName(`${uniqueName},S=`), null);
  equal(parsePendingName(`${uniqueName},S=12x`), null);
});

Deno.test("isUniqueNameOf() knows this host's names, a cut host name included", () => {
  const name = maildirUniqueName(1700000000123, "4F.2A:9C", 3, "mx.example.test");
  ok(isUniqueNameOf(name, "mx.example.test"));
  ok(!isUniqueNameOf(name, "mx2.example.test"));
  ok(!isUniqueNameOf(name, "mx.example"));
  const long = "h".repeat(300) + ".example.test";
  const cut = maildirUniqueName(1700000000123, "4F2A9C", 0, long);
  ok(isUniqueNameOf(cut, long));
  ok(!isUniqueNameOf(cut, "g".repeat(300) + ".example.test"));
  // Dovecot's and other writers' names are not tern's.
  ok(!isUniqueNameOf("1700000000.M123P456.mx.example.test", "mx.example.test"));
  ok(!isUniqueNameOf("1700000000.M123P456V1Q2.mx.example.test", "mx.example.test"));
});
