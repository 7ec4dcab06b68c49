/**
 * Lists the messages of a Maildir, such as one tern delivered into, with
 * their date and Subject.
 *
 * ```sh
 * deno run -A examples/read_maildir.ts data/mail/localhost/me
 * ```
 *
 * A Maildir (https://cr.yp.to/proto/maildir.html) keeps one message per
 * file: `new/` holds messages no mail reader has seen yet, `cur/` the ones it
 * has, their names ending in `:2,` and flags such as `S` (seen). A file name
 * starts with the delivery time in seconds since 1970. tern writes each
 * message into `tmp/` first and renames it into `new/`, so a reader never
 * sees half a message (mda/maildir.ts).
 *
 * @module
 */

const dir = Deno.args[0];
if (dir === undefined) {
  console.error("usage: deno run -A examples/read_maildir.ts MAILDIR");
  Deno.exit(2);
}

/** Reads a message's header section: up to the first empty line (RFC 5322 §2.1). */
async function readHeader(path: string): Promise<string> {
  const file = await Deno.open(path);
  try {
    const buffer = new Uint8Array(64 * 1024); // enough for any sane header section
    const n = (await file.read(buffer)) ?? 0;
    const text = new TextDecoder().decode(buffer.subarray(0, n));
    const end = text.search(/\r?\n\r?\n/);
    return end < 0 ? text : text.slice(0, end);
  } finally {
    file.close();
  }
}

/** One header field's value, unfolded (RFC 5322 §2.2.3): continuation lines start with a space or tab. */
function field(header: string, name: string): string | null {
  const unfolded = header.replace(/\r?\n(?=[ \t])/g, "");
  for (const line of unfolded.split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon > 0 && line.slice(0, colon).trim().toLowerCase() === name.toLowerCase()) {
      return line.slice(colon + 1).trim();
    }
  }
  return null;
}

/** Decodes RFC 2047 encoded-words, such as `=?utf-8?Q?caf=C3=A9?=`, in UTF-8 or Latin-1. */
function decodeWords(text: string): string {
  return text
    .replace(/(=\?[^?]+\?[BbQq]\?[^?]*\?=)\s+(?==\?)/g, "$1") // space between words is dropped
    .replace(
      /=\?([^?]+)\?([BbQq])\?([^?]*)\?=/g,
      (word, charset: string, encoding: string, data: string) => {
        let bytes: Uint8Array;
        if (encoding.toUpperCase() === "B") {
          bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        } else {
          const q = data.replace(/_/g, " ").replace(
            /=([0-9A-Fa-f]{2})/g,
            (_, h: string) => String.fromCharCode(parseInt(h, 16)),
          );
          bytes = Uint8Array.from(q, (c) => c.charCodeAt(0));
        }
        try {
          return new TextDecoder(charset.toLowerCase()).decode(bytes);
        } catch {
          return word; // a charset we cannot decode: show it as it is
        }
      },
    );
}

let count = 0;
for (const folder of ["new", "cur"]) {
  let names: string[];
  try {
    names = [];
    for await (const entry of Deno.readDir(`${dir}/${folder}`)) {
      if (entry.isFile && !entry.name.startsWith(".")) names.push(entry.name);
    }
  } catch (error: unknown) {
    if (error instanceof Deno.errors.NotFound) {
      console.error(`${dir} is not a Maildir: it has no ${folder}/ directory`);
      Deno.exit(1);
    }
    throw error;
  }
  for (const name of names.sort()) {
    const header = await readHeader(`${dir}/${folder}/${name}`);
    const seconds = Number(name.split(".", 1)[0]);
    const when = Number.isFinite(seconds)
      ? new Date(seconds * 1000).toISOString().slice(0, 16).replace("T", " ")
      : "?";
    const flags = name.includes(":2,") ? name.slice(name.indexOf(":2,") + 3) : "";
    const subject = decodeWords(field(header, "Subject") ?? "(no subject)");
    const from = decodeWords(field(header, "From") ?? "");
    console.log(`${folder} ${when} ${flags.padEnd(3)} ${subject}  (from ${from || "?"})`);
    count++;
  }
}
console.log(`${count} message${count === 1 ? "" : "s"}`);
