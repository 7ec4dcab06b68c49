// Every command of main.ts answers --help with its usage and exit 0, the
// top-level help names every command, and an unknown option is one line
// naming it and --help. The commands are read from main.ts's COMMANDS table,
// so a new command without --help fails here.
import assert from "node:assert/strict";
import { MAIN, tern } from "./_helpers.ts";

const source = await Deno.readTextFile(MAIN);
const table = /const COMMANDS\b[^\n]*\{\n([\s\S]*?)\n\};/.exec(source)?.[1] ?? "";
const COMMANDS = [...table.matchAll(/^\s*"([a-z-]+)":/gm)].map((m) => m[1]!);
/** Commands whose unknown-option error is followed by their usage line. */
const SENDMAIL_STYLE = ["sendmail", "mailq", "send", "reload"];
/** Subcommands of queue, each with its own help. */
const QUEUE = ["list", "show", "flush", "delete", "hold", "release"];

Deno.test("main.ts's COMMANDS table is read", () => {
  for (const name of ["serve", "queue", "send", "version", "hash-password"]) {
    assert.ok(COMMANDS.includes(name), `${name} in ${COMMANDS}`);
  }
});

Deno.test("tern help and tern --help list every command and exit 0", async () => {
  for (const args of [["help"], ["--help"], ["-h"]]) {
    const r = await tern(args);
    assert.equal(r.code, 0, args.join(" "));
    for (const name of COMMANDS) {
      assert.match(r.stdout, new RegExp(`^  ${name}\\b`, "m"), `${name} in tern ${args}`);
    }
    for (const flag of ["--config", "--json", "--state", "--domain", "--trace", "--port"]) {
      assert.ok(r.stdout.includes(flag), `${flag} in tern ${args}`);
    }
  }
});

Deno.test("every command, and every queue subcommand, prints its usage for --help and exits 0", async () => {
  const runs = [
    ...COMMANDS.map((name) => [name]),
    ...QUEUE.map((sub) => ["queue", sub]),
  ];
  await Promise.all(runs.map(async (words) => {
    // sendmail's -h takes a value (a hop count), as in sendmail.
    const flags = SENDMAIL_STYLE.includes(words[0]!) ? ["--help"] : ["--help", "-h"];
    for (const flag of flags) {
      const r = await tern([...words, flag], "");
      assert.equal(r.code, 0, `${words.join(" ")} ${flag}: ${r.stderr}`);
      assert.match(r.stdout, /usage:/i, `${words.join(" ")} ${flag}`);
      // mailq is sendmail -bp: its usage is sendmail's.
      const name = words.at(-1) === "mailq" ? "sendmail" : words.at(-1)!;
      assert.ok(r.stdout.includes(name), `${words.join(" ")} ${flag} names itself`);
      assert.equal(r.stderr, "", `${words.join(" ")} ${flag}`);
    }
  }));
});

Deno.test("an unknown option is one line naming it and --help, with exit 1 (64 for sendmail)", async () => {
  const runs = [...COMMANDS.map((name) => [name]), ["queue", "list"], ["queue", "delete"]];
  await Promise.all(runs.map(async (words) => {
    const r = await tern([...words, "--no-such-option"], "");
    const label = words.join(" ");
    assert.equal(r.code, words[0] === "sendmail" || words[0] === "mailq" ? 64 : 1, label);
    const lines = r.stderr.trim().split("\n");
    assert.match(lines[0]!, /--no-such-option/, label);
    // sendmail, mailq, send and reload print their usage line after it instead.
    if (!SENDMAIL_STYLE.includes(words[0]!)) {
      assert.equal(lines.length, 1, `${label}: ${r.stderr}`);
      assert.match(lines[0]!, /--help/, label);
    } else {
      assert.match(r.stderr, /--help|usage:/, label);
    }
  }));
});
