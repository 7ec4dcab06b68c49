// `tern explain`, the annotation table behind it, whether the table covers
// every reply tern can send, and whether the docs generated from it are
// up to date.

import assert from "node:assert/strict";
import { join } from "node:path";
import { explain, ExplainError } from "../cli/explain.ts";
import { renderDocs } from "../docs/gen.ts";
import { ANNOTATIONS, describeStatus } from "../smtp/annotations.ts";

const ROOT = new URL("..", import.meta.url).pathname;

async function tern(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-kv", "main.ts", ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

Deno.test("tern explain 452 4.5.3 says what it means, when it is sent and where the RFC says so", async () => {
  const r = await tern(["explain", "452", "4.5.3"]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.split("\n");
  assert.equal(lines[0], "452 4.5.3: too many recipients: send the others in another transaction");
  assert.equal(
    lines[1],
    "  RFC 5321 §4.5.3.1.10  https://www.rfc-editor.org/rfc/rfc5321.html#section-4.5.3.1.10",
  );
  assert.match(
    r.stdout,
    /^Reply code 452: Requested action not taken: insufficient system storage$/m,
  );
  assert.match(r.stdout, /^ {2}Sent: In answer to MAIL or RCPT/m);
  assert.match(r.stdout, /^Enhanced status 4\.5\.3: Too many recipients\n {2}RFC 3463 §3\.6 /m);
  assert.match(r.stdout, /^tern sends:\n {2}452 4\.5\.3 Too many recipients$/m);
});

Deno.test("tern explain with an unknown code prints one line and exits 1", async () => {
  const r = await tern(["explain", "299"]);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, "");
  assert.equal(
    r.stderr,
    'tern explain: unknown reply code "299": neither RFC 5321 §4.2.3 nor the extensions tern knows define it\n',
  );
});

const explained = [
  { args: ["550"], first: "Reply code 550: Requested action not taken: mailbox unavailable" },
  { args: ["5.7.1"], first: "Enhanced status 5.7.1: Delivery not authorized, message refused" },
  {
    args: ["550", "5.1.1", "No", "such", "user", "here"],
    first: "550 5.1.1: no such mailbox here",
  },
  {
    args: ["550 5.6.11"],
    first: "550 5.6.11: lines must end with CRLF: bare CR or LF refused (SMTP smuggling)",
  },
  {
    args: ["556", "5.1.10"],
    first: "556 5.1.10: the domain publishes a null MX: it takes no mail",
  },
  { args: ["538", "5.7.11"], first: "538 5.7.11: AUTH: use STARTTLS first" },
  { args: ["4.7.0"], first: "Enhanced status 4.7.0: Other or undefined security status" },
  { args: ["x.1.10"], first: "Enhanced status X.1.10: Recipient address has null MX" },
  { args: ["mail"], first: "MAIL: starts a mail transaction" },
  {
    args: ["PIPELINING"],
    first:
      "EHLO keyword PIPELINING (Command Pipelining): the client may send several commands without waiting",
  },
  {
    args: ["NOTIFY"],
    first:
      "RCPT parameter NOTIFY=NEVER|SUCCESS,FAILURE,DELAY: when to send a delivery report: NEVER, or SUCCESS, FAILURE, DELAY",
  },
];
for (const c of explained) {
  Deno.test(`explain(${JSON.stringify(c.args)}) starts "${c.first.slice(0, 40)}..."`, () => {
    assert.equal(explain(c.args).split("\n")[0], c.first);
  });
}

const refused = [
  { args: [], error: /^give a reply code \(550\)/ },
  {
    args: ["5.9.1"],
    error:
      /^unknown enhanced status code "5\.9\.1": class 5 is "Permanent Failure", but no RFC defines subject 9$/,
  },
  {
    args: ["5.1.99"],
    error: /subject 1 "Addressing Status", but no RFC tern knows defines detail 99$/,
  },
  { args: ["3.1.1"], error: /^"3\.1\.1" is not an enhanced status code/ },
  { args: ["55"], error: /^"55" is not a reply code: reply codes have three digits$/ },
  { args: ["FROB"], error: /^unknown code or command "FROB": give a reply code/ },
];
for (const c of refused) {
  Deno.test(`explain(${JSON.stringify(c.args)}) is refused with one line`, () => {
    assert.throws(() => explain(c.args), (error: unknown) => {
      assert.ok(error instanceof ExplainError);
      assert.match(error.message, c.error);
      assert.ok(!error.message.includes("\n"));
      return true;
    });
  });
}

Deno.test("explain() notes a reply whose enhanced status disagrees with its code", () => {
  assert.match(explain(["250", "5.1.1"]), /^Note: 250 and 5\.1\.1 disagree/m);
});

// --- the table covers every reply tern can send ---------------------------------

/** The `.ts` files of tern itself, without tests, examples and benchmarks. */
async function sources(): Promise<string[]> {
  const out: string[] = [];
  for (const dir of ["smtp", "mta", "queue", "mda", "dns", "cli", "config"]) {
    for await (const entry of Deno.readDir(join(ROOT, dir))) {
      if (entry.isFile && entry.name.endsWith(".ts") && !entry.name.endsWith("_test.ts")) {
        out.push(join(dir, entry.name));
      }
    }
  }
  return out.sort();
}

Deno.test("every reply code and enhanced status tern sends is in the annotation table", async () => {
  const missing: string[] = [];
  for (const file of await sources()) {
    if (file === "smtp/annotations.ts") continue; // the table itself
    const text = await Deno.readTextFile(join(ROOT, file));
    // reply(550, "5.1.1", ...) and { code: 550, enhancedStatus: "5.1.1" }
    const pattern =
      /\breply\(\s*([2-5][0-9]{2})\s*,\s*(?:"([245]\.[0-9]+\.[0-9]+)")?|code:\s*([2-5][0-9]{2}),\s*enhancedStatus:\s*"([245]\.[0-9]+\.[0-9]+)"/g;
    for (const m of text.matchAll(pattern)) {
      const code = Number(m[1] ?? m[3]);
      const status = m[2] ?? m[4];
      if (!ANNOTATIONS.replyCodes[code]) missing.push(`${file}: reply code ${code}`);
      if (status !== undefined && describeStatus(status)?.detail === undefined) {
        missing.push(`${file}: enhanced status ${status}`);
      }
    }
    // Enhanced statuses written on their own, as in DSNs and delivery outcomes.
    for (const m of text.matchAll(/enhancedStatus:\s*"([245]\.[0-9]+\.[0-9]+)"/g)) {
      if (describeStatus(m[1]!)?.detail === undefined) {
        missing.push(`${file}: enhanced status ${m[1]}`);
      }
    }
  }
  assert.deepEqual([...new Set(missing)], []);
});

// --- docs generated from the table ----------------------------------------------

Deno.test("docs generated by docs/gen.ts are up to date (run `deno task docs`)", async () => {
  for (const [path, content] of Object.entries(await renderDocs())) {
    const current = await Deno.readTextFile(join(ROOT, path));
    assert.ok(current === content, `${path} is out of date: run "deno task docs"`);
  }
});
