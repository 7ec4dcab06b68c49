import { deepStrictEqual } from "node:assert/strict";
import {
  type RecipientDirectory,
  type Resolution,
  resolveRecipient,
  validateAliases,
} from "./recipient.ts";

/** A configured site: accounts, aliases, an IDN domain. */
const site: RecipientDirectory = Object.freeze({
  localDomains: ["example.test", "bücher.example"],
  accounts: {
    "alice@example.test": {},
    "bob@example.test": {},
    "carol@example.test": {},
    "news+digest@example.test": {},
    "jörg@bücher.example": {},
    "both@example.test": {},
  },
  aliases: {
    "team@example.test": ["alice@example.test", "bob@example.test"],
    "all@example.test": ["team@example.test", "carol@example.test", "Alice@example.test"],
    "outer@example.test": ["all@example.test"],
    "sales@example.test": "carol@example.test",
    "partner@example.test": ["dave@example.net", "alice@example.test"],
    "loop-a@example.test": ["loop-b@example.test"],
    "loop-b@example.test": ["loop-a@example.test"],
    "into-loop@example.test": ["alice@example.test", "loop-a@example.test"],
    "self@example.test": ["self@example.test"],
    "both@example.test": ["bob@example.test"],
    "half-dangling@example.test": ["ghost@example.test", "carol@example.test"],
    "dangling@example.test": ["ghost@example.test"],
    "short@example.test": ["bob"],
    "buch@bücher.example": ["jörg@xn--bcher-kva.example"],
  },
});

/** The zero-config default: no accounts, no aliases. */
const zeroConfig: RecipientDirectory = Object.freeze({
  localDomains: ["localhost"],
  accounts: {},
  aliases: {},
});

/** Only aliases: then only what they lead to, plus postmaster, is a mailbox. */
const aliasesOnly: RecipientDirectory = Object.freeze({
  localDomains: ["example.test"],
  accounts: {},
  aliases: { "postmaster@example.test": ["root@example.net"] },
});

function local(original: string, ...targets: [string, string | null][]): Resolution {
  return {
    kind: "local",
    targets: targets.map(([address, mailbox]) => ({
      address,
      originalRecipient: original,
      mailbox,
    })),
  };
}

const cases: { what: string; address: string; directory?: RecipientDirectory; want: Resolution }[] =
  [
    {
      what: "an account resolves to its own mailbox",
      address: "alice@example.test",
      want: local("alice@example.test", ["alice@example.test", "alice@example.test"]),
    },
    {
      what: "lookup ignores case but keeps the sender's spelling in address",
      address: "ALICE@Example.TEST",
      want: local("ALICE@Example.TEST", ["ALICE@Example.TEST", "alice@example.test"]),
    },
    {
      what: "a quoted local part that needs no quotes is the same mailbox",
      address: '"alice"@example.test',
      want: local('"alice"@example.test', ['"alice"@example.test', "alice@example.test"]),
    },
    {
      what: "plus-addressing delivers alice+tag to alice and keeps the tag in address",
      address: "Alice+Lists@example.test",
      want: local("Alice+Lists@example.test", [
        "Alice+Lists@example.test",
        "alice@example.test",
      ]),
    },
    {
      what: "an empty tag still means alice",
      address: "alice+@example.test",
      want: local("alice+@example.test", ["alice+@example.test", "alice@example.test"]),
    },
    {
      what: "an account spelled with a plus is itself, not its base",
      address: "news+digest@example.test",
      want: local("news+digest@example.test", [
        "news+digest@example.test",
        "news+digest@example.test",
      ]),
    },
    {
      what: "plus-addressing on an alias expands the alias",
      address: "sales+web@example.test",
      want: local("sales+web@example.test", ["carol@example.test", "carol@example.test"]),
    },
    {
      what: "a plus on an unknown base is still unknown",
      address: "ghost+tag@example.test",
      want: { kind: "unknown" },
    },
    {
      what: "an alias with one target given as a string",
      address: "sales@example.test",
      want: local("sales@example.test", ["carol@example.test", "carol@example.test"]),
    },
    {
      what: "an alias fans out to every target",
      address: "team@example.test",
      want: local(
        "team@example.test",
        ["alice@example.test", "alice@example.test"],
        ["bob@example.test", "bob@example.test"],
      ),
    },
    {
      what: "nested aliases expand recursively and duplicates are dropped",
      address: "outer@example.test",
      want: local(
        "outer@example.test",
        ["alice@example.test", "alice@example.test"],
        ["bob@example.test", "bob@example.test"],
        ["carol@example.test", "carol@example.test"],
      ),
    },
    {
      what: "a remote alias target is relayed, with no mailbox",
      address: "partner@example.test",
      want: local(
        "partner@example.test",
        ["dave@example.net", null],
        ["alice@example.test", "alice@example.test"],
      ),
    },
    {
      what: "a loop a → b → a is reported with its chain",
      address: "loop-a@example.test",
      want: {
        kind: "loop",
        chain: ["loop-a@example.test", "loop-b@example.test", "loop-a@example.test"],
      },
    },
    {
      what: "a loop reached through another alias shows the whole path",
      address: "into-loop@example.test",
      want: {
        kind: "loop",
        chain: [
          "into-loop@example.test",
          "loop-a@example.test",
          "loop-b@example.test",
          "loop-a@example.test",
        ],
      },
    },
    {
      what: "an alias to itself is a loop",
      address: "self@example.test",
      want: { kind: "loop", chain: ["self@example.test", "self@example.test"] },
    },
    {
      what: "an address that is both an alias and an account follows the alias",
      address: "both@example.test",
      want: local("both@example.test", ["bob@example.test", "bob@example.test"]),
    },
    {
      what: "an alias target with no mailbox is left out, the rest delivered",
      address: "half-dangling@example.test",
      want: local("half-dangling@example.test", ["carol@example.test", "carol@example.test"]),
    },
    {
      what: "an alias with nothing deliverable is unknown",
      address: "dangling@example.test",
      want: { kind: "unknown" },
    },
    {
      what: "an unqualified alias target is in the alias's domain",
      address: "short@example.test",
      want: local("short@example.test", ["bob@example.test", "bob@example.test"]),
    },
    {
      what: "an unknown local part of a local domain is unknown",
      address: "mallory@example.test",
      want: { kind: "unknown" },
    },
    {
      what: "another domain is remote",
      address: "alice@example.net",
      want: { kind: "remote" },
    },
    {
      what: "a subdomain of a local domain is remote",
      address: "alice@sub.example.test",
      want: { kind: "remote" },
    },
    {
      what: "the A-label form of a local IDN domain is the same domain",
      address: "Jörg@xn--bcher-kva.example",
      want: local("Jörg@xn--bcher-kva.example", [
        "Jörg@xn--bcher-kva.example",
        "jörg@bücher.example",
      ]),
    },
    {
      what: "the U-label form in another case is the same domain",
      address: "jörg@BÜCHER.example",
      want: local("jörg@BÜCHER.example", ["jörg@BÜCHER.example", "jörg@bücher.example"]),
    },
    {
      what: "a decomposed (non-NFC) spelling is the same address",
      address: "jo\u0308rg@bu\u0308cher.example",
      want: local("jo\u0308rg@bu\u0308cher.example", [
        "jo\u0308rg@bu\u0308cher.example",
        "jörg@bücher.example",
      ]),
    },
    {
      what: "an alias target in A-label form reaches the U-label account",
      address: "buch@bücher.example",
      want: local("buch@bücher.example", ["jörg@xn--bcher-kva.example", "jörg@bücher.example"]),
    },
    {
      what: "Postmaster with no domain is postmaster of the first local domain",
      address: "Postmaster",
      want: local("Postmaster", ["Postmaster@example.test", "postmaster@example.test"]),
    },
    {
      what: "POSTMASTER with no domain is accepted too (case-insensitive)",
      address: "POSTMASTER",
      want: local("POSTMASTER", ["POSTMASTER@example.test", "postmaster@example.test"]),
    },
    {
      what: "postmaster of any local domain is accepted without an account",
      address: "postmaster@bücher.example",
      want: local("postmaster@bücher.example", [
        "postmaster@bücher.example",
        "postmaster@bücher.example",
      ]),
    },
    {
      what: "a bare local part other than Postmaster is unknown",
      address: "alice",
      want: { kind: "unknown" },
    },
    {
      what: "the zero-config default delivers any local part of a local domain",
      address: "anything@localhost",
      directory: zeroConfig,
      want: local("anything@localhost", ["anything@localhost", "anything@localhost"]),
    },
    {
      what: "the zero-config default folds case and tags into one mailbox",
      address: "Anything+Tag@LOCALHOST",
      directory: zeroConfig,
      want: local("Anything+Tag@LOCALHOST", ["Anything+Tag@LOCALHOST", "anything@localhost"]),
    },
    {
      what: "the zero-config default accepts a bare Postmaster",
      address: "postmaster",
      directory: zeroConfig,
      want: local("postmaster", ["postmaster@localhost", "postmaster@localhost"]),
    },
    {
      what: "the zero-config default still relays other domains",
      address: "someone@example.net",
      directory: zeroConfig,
      want: { kind: "remote" },
    },
    {
      what: "with aliases configured, an unlisted local part is unknown",
      address: "anything@example.test",
      directory: aliasesOnly,
      want: { kind: "unknown" },
    },
    {
      what: "a postmaster alias to a remote address is followed",
      address: "Postmaster@example.test",
      directory: aliasesOnly,
      want: local("Postmaster@example.test", ["root@example.net", null]),
    },
  ];

for (const c of cases) {
  Deno.test(`resolveRecipient(): ${c.what}`, () => {
    deepStrictEqual(resolveRecipient(c.address, c.directory ?? site), c.want);
  });
}

Deno.test("resolveRecipient() finishes quickly on a wide, deep alias graph", () => {
  // Each level lists the next level twice: 2^40 paths without memoisation.
  const aliases: Record<string, string[]> = {};
  for (let i = 0; i < 40; i++) {
    aliases[`l${i}@example.test`] = [`l${i + 1}@example.test`, `l${i + 1}+x@example.test`];
  }
  aliases["l40@example.test"] = ["alice@example.test"];
  const directory = {
    localDomains: ["example.test"],
    accounts: { "alice@example.test": {} },
    aliases,
  };
  const started = performance.now();
  const result = resolveRecipient("l0@example.test", directory);
  deepStrictEqual(result, local("l0@example.test", ["alice@example.test", "alice@example.test"]));
  const elapsed = performance.now() - started;
  deepStrictEqual(elapsed < 1000, true, `${elapsed} ms`);
});

Deno.test("resolveRecipient() reports a long loop without overflowing the stack", () => {
  const aliases: Record<string, string[]> = {};
  for (let i = 0; i < 2000; i++) {
    aliases[`a${i}@example.test`] = [`a${(i + 1) % 2000}@example.test`];
  }
  const result = resolveRecipient("a0@example.test", {
    localDomains: ["example.test"],
    accounts: {},
    aliases,
  });
  deepStrictEqual(result.kind, "loop");
  deepStrictEqual(result.kind === "loop" && result.chain.length, 2001);
});

Deno.test("validateAliases() reports each loop once, as its cycle", () => {
  deepStrictEqual(validateAliases(site), [
    ["loop-a@example.test", "loop-b@example.test", "loop-a@example.test"],
    ["self@example.test", "self@example.test"],
  ]);
});

Deno.test("validateAliases() finds nothing in a directory without loops", () => {
  deepStrictEqual(validateAliases(zeroConfig), []);
  deepStrictEqual(validateAliases(aliasesOnly), []);
});
