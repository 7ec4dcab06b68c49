/**
 * `tern hash-password`: reads a password on standard input and prints the
 * hash to put in `accounts` in `tern.yaml`.
 *
 * ```sh
 * printf '%s' 's3cret' | tern hash-password
 * ```
 *
 * @module
 */

import { hashPassword } from "../config/mod.ts";
import { refuseArguments } from "./_common.ts";

const ENTER = new Set([0x0a, 0x0d]);
const CTRL_C = 0x03;
const CTRL_D = 0x04;
const BACKSPACE = new Set([0x08, 0x7f]);

/**
 * Reads one line from a terminal without echoing it. `null` when the user
 * gives up with Ctrl-C.
 */
async function readHiddenLine(): Promise<string | null> {
  const bytes: number[] = [];
  const chunk = new Uint8Array(256);
  Deno.stdin.setRaw(true);
  try {
    for (;;) {
      const n = await Deno.stdin.read(chunk);
      if (n === null) break;
      for (const byte of chunk.subarray(0, n)) {
        if (byte === CTRL_C) return null;
        if (ENTER.has(byte) || byte === CTRL_D) {
          return new TextDecoder().decode(new Uint8Array(bytes));
        }
        if (BACKSPACE.has(byte)) {
          // Drop a whole UTF-8 character: its continuation bytes are 10xxxxxx.
          while (bytes.length > 0 && ((bytes.pop() ?? 0) & 0xc0) === 0x80);
        } else {
          bytes.push(byte);
        }
      }
    }
  } finally {
    Deno.stdin.setRaw(false);
    console.error("");
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

/** The whole of standard input (a pipe or a file), less one final line break. */
async function readPipedPassword(): Promise<string> {
  const text = await new Response(Deno.stdin.readable).text();
  return text.replace(/\r?\n$/, "");
}

const USAGE = `usage: tern hash-password < password
  Read a password on standard input (typed without echo on a terminal) and
  print its hash, for accounts.<address>.password in the configuration.
  -h, --help      this help`;

/**
 * Runs `tern hash-password`: reads the password from standard input (all of
 * it, less one trailing `\n` or `\r\n`; on a terminal, one line typed without
 * echo), prints its hash on standard output and returns 0. An empty password
 * prints an error line on standard error and returns 1.
 *
 * @param args The arguments after `hash-password`; there are none.
 * @returns The exit code.
 *
 * @example Hash a password from main.ts
 * ```ts
 * import { hashPasswordCommand } from "./hash_password.ts";
 *
 * // What main.ts does for `printf '%s' s3cret | tern hash-password`:
 * async function run(): Promise<void> {
 *   Deno.exitCode = await hashPasswordCommand([]);
 * }
 * console.log(typeof run); // "function"
 * ```
 */
export async function hashPasswordCommand(args: string[]): Promise<number> {
  const note = "the password is read from standard input; ";
  const refused = refuseArguments("hash-password", args, USAGE, note);
  if (refused !== null) return refused;
  let password: string | null;
  if (Deno.stdin.isTerminal()) {
    console.error("Password (not shown), then Enter:");
    password = await readHiddenLine();
    if (password === null) return 1;
  } else {
    password = await readPipedPassword();
  }
  if (password === "") {
    console.error("tern hash-password: empty password (give it on standard input)");
    return 1;
  }
  console.log(await hashPassword(password));
  return 0;
}
