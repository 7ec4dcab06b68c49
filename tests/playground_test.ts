// The playground: its model (tern's server session with the playground's
// policy) in memory, its server (which files it serves, and how), and the
// page itself in headless Chromium, driven by playwright-core.

import assert from "node:assert/strict";
import { join } from "node:path";
import { playgroundFiles, servePlayground } from "../cli/playground.ts";
import { Lab, type TranscriptLine } from "../examples/playground/lab.ts";

function serverLines(lines: readonly TranscriptLine[]): string[] {
  return lines.filter((l) => l.side === "server").map((l) => l.text);
}

function greeted(): Lab {
  const lab = new Lab({ queueId: () => "PLAY01" });
  lab.start();
  lab.type("EHLO client.test");
  lab.type("MAIL FROM:<alice@client.test>");
  return lab;
}

const recipients = [
  {
    path: "bob@example.test",
    reply: "250 2.1.5 Ok: recipient accepted",
    rule: /RFC 5321 §4\.1\.1\.3/,
  },
  {
    path: "BOB@Example.TEST",
    reply: "250 2.1.5 Ok: recipient accepted",
    rule: /RFC 5321 §4\.1\.1\.3/,
  },
  { path: "nobody@example.test", reply: "550 5.1.1 No such user here", rule: /RFC 3463 §3\.2/ },
  { path: "carol@elsewhere.test", reply: "554 5.7.1 Relay access denied", rule: /RFC 3463 §3\.8/ },
  { path: "Postmaster", reply: "250 2.1.5 Ok: recipient accepted", rule: /RFC 5321/ },
];
for (const c of recipients) {
  Deno.test(`playground policy answers RCPT TO:<${c.path}> with ${c.reply.slice(0, 9)}`, () => {
    const lab = greeted();
    const out = lab.type(`RCPT TO:<${c.path}>`);
    const reply = out.find((l) => l.side === "server");
    assert.deepEqual(reply?.text, c.reply);
    assert.match(reply?.annotation ?? "", c.rule);
  });
}

Deno.test("playground shows the envelope as the transaction grows, then queues the message", () => {
  const lab = greeted();
  assert.deepEqual(lab.view.state, "mail");
  assert.deepEqual(lab.view.reversePath, "alice@client.test");
  lab.type("RCPT TO:<bob@example.test>");
  lab.type("RCPT TO:<nobody@example.test>");
  assert.deepEqual(lab.view.forwardPaths, ["bob@example.test"]);
  assert.deepEqual(lab.view.refused, [{ forwardPath: "nobody@example.test", code: 550 }]);
  lab.type("DATA");
  assert.deepEqual(lab.view.state, "data");
  lab.type("Subject: hi");
  lab.type("");
  const stuffed = lab.type("..starts with a dot");
  assert.match(stuffed[0]?.annotation ?? "", /RFC 5321 §4\.5\.2/);
  assert.deepEqual(lab.view.size, "Subject: hi\r\n\r\n.starts with a dot\r\n".length);
  const end = lab.type(".");
  assert.deepEqual(serverLines(end), ["250 2.0.0 Ok: queued as PLAY01"]);
  assert.match(end.at(-1)?.annotation ?? "", /RFC 5321 §6\.1/);
  assert.deepEqual(lab.view.state, "ready");
  assert.deepEqual(lab.view.reversePath, null);
  assert.deepEqual(lab.queued, [{
    queueId: "PLAY01",
    reversePath: "alice@client.test",
    forwardPaths: ["bob@example.test"],
    content: "Subject: hi\r\n\r\n.starts with a dot\r\n",
  }]);
});

Deno.test("playground annotates every command and reply line it shows", () => {
  const lab = new Lab();
  const lines = [
    ...lab.start(),
    ...[
      "EHLO client.test",
      "NOOP",
      "RSET",
      "VRFY bob",
      "HELP",
      "XYZZY",
      "RCPT TO:<a@b.test>",
      "QUIT",
    ]
      .flatMap((line) => lab.type(line)),
  ];
  let continued = false; // the line goes on a multi-line reply (RFC 5321 §4.2.1)
  for (const line of lines) {
    if (line.side === "note") continue;
    const isContinuation = continued;
    continued = line.side === "server" && line.text[3] === "-";
    // A reply is annotated on its first line; HELP's second line has nothing more to say.
    if (isContinuation && !line.text.startsWith("250")) continue;
    assert.ok(line.annotation !== null, `no annotation for ${line.side} line "${line.text}"`);
    assert.match(line.annotation, /^RFC [0-9]+( §[0-9.]+)? · ./);
  }
  assert.ok(lab.isClosed);
  assert.deepEqual(lab.type("NOOP")[0]?.side, "note");
});

Deno.test("playground never repeats an AUTH line's credentials in its annotation", () => {
  const lab = new Lab();
  lab.start();
  lab.type("EHLO client.test");
  const [echo] = lab.type("AUTH PLAIN AGFsaWNlAHNlY3JldA==");
  assert.deepEqual(echo?.annotation, "RFC 4954 §4 · logs in with a SASL mechanism");
});

Deno.test("playground serves the page and exactly the modules its script imports", async () => {
  const files = await playgroundFiles();
  for (
    const f of [
      "examples/playground/index.html",
      "examples/playground/app.ts",
      "examples/playground/lab.ts",
      "smtp/server_session.ts",
      "smtp/annotations.ts",
      "smtp/reply.ts",
    ]
  ) assert.ok(files.includes(f), `${f} is not served`);
  // The socket adapters and anything with I/O stay on the server.
  for (const f of files) {
    assert.ok(!/server\.ts$|client\.ts$|_test\.ts$|^(mta|queue|mda|cli)\//.test(f), f);
  }
});

Deno.test("playground server answers GET with JavaScript for modules and 404 for the rest", async () => {
  const server = await servePlayground({ port: 0 });
  try {
    const base = `http://127.0.0.1:${server.port}`;
    const root = await fetch(base, { redirect: "manual" });
    await root.body?.cancel();
    assert.deepEqual(root.status, 302);
    assert.deepEqual(root.headers.get("location"), "/examples/playground/");

    const session = await fetch(`${base}/smtp/server_session.ts`);
    assert.deepEqual(session.headers.get("content-type"), "text/javascript; charset=utf-8");
    const js = await session.text();
    assert.match(js, /export class ServerSession/);
    assert.ok(!js.includes("#state: SessionState"), "types were not stripped");
    assert.match(js, /sourceMappingURL=data:application\/json;base64,/);

    for (
      const path of [
        "/smtp/server.ts",
        "/deno.json",
        "/smtp/..%2Fdeno.json",
        "/../deno.json",
        "/%E0%A4%A",
      ]
    ) {
      const r = await fetch(base + path);
      await r.body?.cancel();
      assert.deepEqual(r.status, 404, path);
    }
    const post = await fetch(`${base}/examples/playground/`, { method: "POST", body: "x" });
    await post.body?.cancel();
    assert.deepEqual(post.status, 405);
  } finally {
    await server.shutdown();
  }
});

Deno.test("the page's script type-checks against the DOM (on its own: its DOM types must not leak)", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["check", "examples/playground/app.ts"],
    cwd: new URL("..", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
});

// --- the page in headless Chromium ------------------------------------------

const CHROMIUM = Deno.env.get("CHROMIUM_BIN") ?? "/usr/bin/chromium";
// Debian's Chromium, as node.md says: no sandbox as root, nothing that would
// reach the network on its own.
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--no-first-run",
  "--disable-sync",
];

async function whyBrowserCannotRun(): Promise<string | null> {
  try {
    await Deno.stat(CHROMIUM);
  } catch {
    return `${CHROMIUM} not found (install Debian's chromium, or set CHROMIUM_BIN)`;
  }
  try {
    await import("playwright-core");
  } catch (error: unknown) {
    return `npm playwright-core cannot be loaded: ${
      error instanceof Error ? error.message : error
    }`;
  }
  return null;
}

const skipReason = await whyBrowserCannotRun();
if (skipReason !== null) console.log(`playground browser test skipped: ${skipReason}`);

Deno.test({
  name: skipReason === null
    ? "playground page: a whole transaction typed in Chromium, with replies and annotations"
    : `playground page in Chromium (SKIPPED: ${skipReason})`,
  ignore: skipReason !== null,
  // playwright keeps the browser's pipes and timers of its own.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const { chromium } = await import("playwright-core");
    const server = await servePlayground({ port: 0 });
    const profile = await Deno.makeTempDir({ prefix: "tern-chromium-" });
    // Screenshots go to a temporary directory, kept when PLAYGROUND_SCREENSHOTS names one.
    const keep = Deno.env.get("PLAYGROUND_SCREENSHOTS");
    const shots = keep ?? await Deno.makeTempDir({ prefix: "tern-playground-" });
    if (keep !== undefined) await Deno.mkdir(keep, { recursive: true });
    // A fresh profile directory of our own (node.md); playwright passes it as --user-data-dir.
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      args: CHROMIUM_ARGS,
      viewport: { width: 1400, height: 1000 },
      timeout: 30_000,
    });
    try {
      const page = context.pages()[0] ?? await context.newPage();
      const errors: string[] = [];
      page.on("pageerror", (error) => errors.push(error.message));
      await page.goto(server.url);
      await page.waitForSelector("#transcript li");
      assert.deepEqual(await page.isHidden("#needs-server"), true);
      assert.deepEqual(await page.textContent("#state"), "connected");
      // The diagram is drawn from the command table and lights one state: where the session is.
      const lit = () => page.getAttribute("#diagram g.state.lit", "data-state");
      assert.deepEqual(await page.locator("#diagram g.state").count(), 8);
      assert.deepEqual(await page.locator("#diagram g.state.lit").count(), 1);
      assert.deepEqual(await lit(), "connected");

      const type = async (line: string) => {
        await page.fill("#command", line);
        await page.press("#command", "Enter");
      };
      const lastServerLine = () =>
        page.locator("#transcript li.server").last().locator(".text").textContent();
      const lastNote = () =>
        page.locator("#transcript li.server").last().locator(".note").textContent();

      await type("EHLO client.example.test");
      assert.deepEqual(await lastServerLine(), "250 HELP");
      assert.deepEqual(await page.textContent("#state"), "ready");
      assert.deepEqual(await lit(), "ready");

      await type("MAIL FROM:<alice@client.example.test>");
      assert.deepEqual(await lastServerLine(), "250 2.1.0 Ok: sender accepted");
      assert.match(await lastNote() ?? "", /RFC 5321 §4\.1\.1\.2/);
      assert.deepEqual(await page.textContent("#reverse-path"), "<alice@client.example.test>");
      assert.deepEqual(await lit(), "mail");

      await type("RCPT TO:<bob@example.test>");
      assert.deepEqual(await lastServerLine(), "250 2.1.5 Ok: recipient accepted");
      await type("RCPT TO:<nobody@example.test>");
      assert.deepEqual(await lastServerLine(), "550 5.1.1 No such user here");
      assert.match(await lastNote() ?? "", /RFC 3463 §3\.2 · no such mailbox here/);
      await type("RCPT TO:<carol@elsewhere.test>");
      assert.deepEqual(await lastServerLine(), "554 5.7.1 Relay access denied");
      assert.deepEqual(await page.textContent("#forward-paths"), "<bob@example.test>");
      assert.match(
        await page.textContent("#refused") ?? "",
        /nobody@example\.test.*550.*carol@elsewhere\.test.*554/,
      );

      await type("DATA");
      assert.deepEqual(await lastServerLine(), "354 End data with <CR><LF>.<CR><LF>");
      assert.deepEqual(await page.textContent("#state"), "data");
      for (
        const line of [
          "From: Alice <alice@client.example.test>",
          "Subject: Hello from the playground",
          "",
          "Hi Bob,",
          "..one dot",
        ]
      ) await type(line);
      assert.match(await page.textContent("#size") ?? "", /^[0-9]+ octets, still arriving$/);
      await page.screenshot({ path: join(shots, "during-data.png"), fullPage: true });

      await type(".");
      const accepted = await lastServerLine() ?? "";
      assert.match(accepted, /^250 2\.0\.0 Ok: queued as [0-9A-F]{6}$/);
      assert.match(await lastNote() ?? "", /RFC 5321 §6\.1 · the message is accepted/);
      const queued = await page.textContent("#queue") ?? "";
      assert.ok(queued.includes(accepted.slice(-6)), queued);
      assert.ok(queued.includes("Subject: Hello from the playground"), queued);
      assert.ok(queued.includes(".one dot") && !queued.includes("..one dot"), queued);
      assert.deepEqual(await page.textContent("#reverse-path"), "– (no transaction)");

      await type("QUIT");
      assert.deepEqual(await lastServerLine(), "221 2.0.0 Bye");
      assert.deepEqual(await page.textContent("#state"), "closed");
      const shot = join(shots, "after-quit.png");
      await page.screenshot({ path: shot, fullPage: true });
      assert.ok((await Deno.stat(shot)).size > 10_000);
      if (keep !== undefined) console.log(`screenshots: ${shots}`);
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
      await server.shutdown();
      await Deno.remove(profile, { recursive: true });
      if (keep === undefined) await Deno.remove(shots, { recursive: true });
    }
  },
});
