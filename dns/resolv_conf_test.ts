import assert from "node:assert/strict";
import { join } from "node:path";
import {
  FALLBACK_NAMESERVER,
  parseResolvConf,
  readResolvConf,
  readSystemNameservers,
} from "./resolv_conf.ts";

const DEFAULTS = { timeout: 5, attempts: 2, ndots: 1, rotate: false };

const cases = [
  { why: "an empty file", text: "", nameservers: [], options: DEFAULTS },
  {
    why: "IPv4 and IPv6 servers, in file order",
    text: "nameserver 192.0.2.53\nnameserver 2001:DB8::53\n",
    nameservers: ["192.0.2.53:53", "[2001:db8::53]:53"],
    options: DEFAULTS,
  },
  {
    why: "no more than three servers (glibc MAXNS)",
    text:
      "nameserver 192.0.2.1\nnameserver 192.0.2.2\nnameserver 192.0.2.3\nnameserver 192.0.2.4\n",
    nameservers: ["192.0.2.1:53", "192.0.2.2:53", "192.0.2.3:53"],
    options: DEFAULTS,
  },
  {
    why: "comments, blank lines, tabs, CRLF and search lines",
    text:
      "# a comment\r\n; another\r\n\r\nsearch example.test\r\n\tnameserver\t192.0.2.53   # trailing\r\ndomain example.test\r\n",
    nameservers: ["192.0.2.53:53"],
    options: DEFAULTS,
  },
  {
    why: "servers that are not IP addresses are skipped",
    text: "nameserver dns.example.test\nnameserver 999.1.1.1\nnameserver\nnameserver 127.0.0.53\n",
    nameservers: ["127.0.0.53:53"],
    options: DEFAULTS,
  },
  {
    why: "an IPv6 server with a scope",
    text: "nameserver fe80::1%eth0\n",
    nameservers: ["[fe80::1%eth0]:53"],
    options: DEFAULTS,
  },
  {
    why: "options on one line",
    text: "options timeout:1 attempts:3 ndots:2 rotate edns0\n",
    nameservers: [],
    options: { timeout: 1, attempts: 3, ndots: 2, rotate: true },
  },
  {
    why: "options spread over lines, the last one winning",
    text: "options timeout:3\noptions timeout:4 attempts:1\n",
    nameservers: [],
    options: { timeout: 4, attempts: 1, ndots: 1, rotate: false },
  },
  {
    why: "options capped as glibc caps them",
    text: "options timeout:99 attempts:99 ndots:99\n",
    nameservers: [],
    options: { timeout: 30, attempts: 5, ndots: 15, rotate: false },
  },
  {
    why: "bad option values ignored",
    text: "options timeout:x attempts: ndots:-1 timeout:0\n",
    nameservers: [],
    options: { timeout: 1, attempts: 2, ndots: 1, rotate: false },
  },
];
for (const c of cases) {
  Deno.test(`parseResolvConf() reads ${c.why}`, () => {
    assert.deepEqual(parseResolvConf(c.text), { nameservers: c.nameservers, options: c.options });
  });
}

Deno.test("readSystemNameservers() falls back to 127.0.0.1:53 for a missing file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assert.deepEqual(await readSystemNameservers(join(dir, "missing.conf")), [FALLBACK_NAMESERVER]);
    assert.deepEqual((await readResolvConf(join(dir, "missing.conf"))).nameservers, []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readSystemNameservers() falls back to 127.0.0.1:53 when the file names no server", async () => {
  const path = await Deno.makeTempFile();
  try {
    await Deno.writeTextFile(path, "search example.test\noptions rotate\n");
    assert.deepEqual(await readSystemNameservers(path), ["127.0.0.1:53"]);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("readSystemNameservers() returns the file's servers", async () => {
  const path = await Deno.makeTempFile();
  try {
    await Deno.writeTextFile(path, "nameserver 10.0.0.53\nnameserver ::1\n");
    assert.deepEqual(await readSystemNameservers(path), ["10.0.0.53:53", "[::1]:53"]);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("readResolvConf() throws other read errors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(readResolvConf(dir)); // a directory cannot be read as text
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
