/**
 * `tern playground [--port N]`: serves the SMTP playground on 127.0.0.1, a
 * page where a learner types SMTP commands and tern's real server session
 * answers them, in the browser.
 *
 * The browser runs the very modules tern runs: `smtp/server_session.ts` and
 * what it imports, turned into JavaScript as they are served, by stripping
 * the TypeScript types (`stripTypeScriptTypes` of `node:module`, built into
 * Deno, so this works in the compiled binary too). Nothing is bundled ahead
 * of time, so nothing can be out of date.
 *
 * Only the page's own files (`examples/playground/`) and the modules its
 * script imports, found by following their `import` statements, are served;
 * any other path is 404.
 *
 * @module
 */

import { stripTypeScriptTypes } from "node:module";
import { parseArgs } from "node:util";
import { describeArgsError } from "./_common.ts";

/** Where the playground lives, relative to the repository root. */
const PLAYGROUND_DIR = "examples/playground/";

/** The page's static files, besides the modules. */
const STATIC_FILES = ["index.html", "style.css"];

/** The page's script; what it imports is served too. */
const ENTRY = `${PLAYGROUND_DIR}app.ts`;

const ROOT = new URL("../", import.meta.url);

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  html: "text/html; charset=utf-8",
  css: "text/css; charset=utf-8",
  ts: "text/javascript; charset=utf-8",
};

/**
 * The relative module specifiers a TypeScript module imports at run time:
 * `import ... from "./x.ts"` and `export ... from "./x.ts"` statements at the
 * start of a line (so the examples in doc comments do not count), without
 * `import type`.
 */
function importsOf(source: string): string[] {
  const out: string[] = [];
  const statement = /^(import|export)\s+(type\s)?[^;]*?from\s*"(\.{1,2}\/[^"]+)"/gm;
  for (const m of source.matchAll(statement)) {
    if (m[2] === undefined) out.push(m[3]!);
  }
  for (const m of source.matchAll(/^import\s*"(\.{1,2}\/[^"]+)"/gm)) out.push(m[1]!);
  return out;
}

/**
 * Every file the playground serves, as paths relative to the repository
 * root: the page's static files, its script, and every module the script
 * imports, directly or not.
 *
 * @returns The paths, sorted, such as `"smtp/server_session.ts"`.
 *
 * @example List the files the page needs
 * ```ts
 * import { playgroundFiles } from "./playground.ts";
 * const files = await playgroundFiles();
 * console.log(files.includes("smtp/server_session.ts")); // true
 * ```
 */
export async function playgroundFiles(): Promise<string[]> {
  const found = new Set<string>(STATIC_FILES.map((f) => PLAYGROUND_DIR + f));
  const pending = [ENTRY];
  while (pending.length > 0) {
    const path = pending.pop()!;
    if (found.has(path)) continue;
    found.add(path);
    const source = await Deno.readTextFile(new URL(path, ROOT));
    for (const specifier of importsOf(source)) {
      const resolved = new URL(specifier, new URL(path, ROOT)).href;
      if (!resolved.startsWith(ROOT.href)) {
        throw new Error(`Cannot serve "${specifier}" imported by ${path}: outside the repository`);
      }
      pending.push(resolved.slice(ROOT.href.length));
    }
  }
  return [...found].sort();
}

/**
 * Turns a TypeScript module into JavaScript for the browser: types
 * stripped, enums and the like transformed, and a source map that names the
 * real file, so the browser's developer tools show the TypeScript.
 *
 * @param source The TypeScript source.
 * @param path Its path from the repository root, for the source map.
 * @returns The JavaScript.
 *
 * @example Strip a type annotation
 * ```ts
 * import { toJavaScript } from "./playground.ts";
 * const js = toJavaScript("export const n: number = 1;\n", "x.ts");
 * console.log(js.startsWith("export const n = 1;")); // true
 * ```
 */
export function toJavaScript(source: string, path: string): string {
  const js = stripTypeScriptTypes(source, { mode: "transform", sourceMap: true });
  // The source map names a made-up file; give it the real one.
  return js.replace(
    /\/\/# sourceMappingURL=data:application\/json;base64,([A-Za-z0-9+/=]+)\s*$/,
    (_, base64: string) => {
      const map = JSON.parse(new TextDecoder().decode(decodeBase64(base64)));
      map.sources = [`/${path}`];
      return `//# sourceMappingURL=data:application/json;base64,${
        encodeBase64(new TextEncoder().encode(JSON.stringify(map)))
      }`;
    },
  );
}

function decodeBase64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

function encodeBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

/** Options of {@linkcode servePlayground}. */
export interface PlaygroundOptions {
  /** The port on 127.0.0.1; 0 picks a free one. @default {8025} */
  port?: number;
  /** Stops the server when aborted. */
  signal?: AbortSignal;
  /** Called once listening, with the page's address. */
  onListen?: (url: string) => void;
}

/** A running playground server. */
export interface PlaygroundServer {
  /** The page's address, such as `http://127.0.0.1:8025/examples/playground/`. */
  readonly url: string;
  /** The port bound. */
  readonly port: number;
  /** Resolves when the server has stopped. */
  readonly finished: Promise<void>;
  /** Stops the server. */
  shutdown(): Promise<void>;
}

/**
 * Serves the playground on 127.0.0.1. Files are read and transpiled on the
 * first request, then kept.
 *
 * @param options The port, a signal to stop, and a callback once listening.
 * @returns The running server.
 *
 * @example Serve on a free port, fetch the page, stop
 * ```ts
 * import { servePlayground } from "./playground.ts";
 * const server = await servePlayground({ port: 0 });
 * const page = await fetch(server.url);
 * console.log(page.status, page.headers.get("content-type")); // 200 "text/html; charset=utf-8"
 * await page.body?.cancel();
 * await server.shutdown();
 * ```
 */
export async function servePlayground(options: PlaygroundOptions = {}): Promise<PlaygroundServer> {
  const files = new Set(await playgroundFiles());
  const cache = new Map<string, string>();

  async function body(path: string): Promise<string> {
    let text = cache.get(path);
    if (text === undefined) {
      const source = await Deno.readTextFile(new URL(path, ROOT));
      text = path.endsWith(".ts") ? toJavaScript(source, path) : source;
      cache.set(path, text);
    }
    return text;
  }

  async function handle(request: Request): Promise<Response> {
    const headers = {
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
      "content-security-policy":
        "default-src 'self'; style-src 'self'; script-src 'self'; base-uri 'none'; form-action 'none'",
    };
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("Method not allowed\n", { status: 405, headers });
    }
    const { pathname } = new URL(request.url);
    if (pathname === "/" || pathname === "/index.html") {
      return new Response(null, { status: 302, headers: { location: `/${PLAYGROUND_DIR}` } });
    }
    if (pathname === "/favicon.ico") return new Response(null, { status: 204, headers });
    let path: string;
    try {
      path = decodeURIComponent(pathname.slice(1));
    } catch {
      return new Response("Not found\n", { status: 404, headers }); // malformed %-escape
    }
    if (path === PLAYGROUND_DIR) path += "index.html";
    if (!files.has(path)) return new Response("Not found\n", { status: 404, headers });
    const type = CONTENT_TYPES[path.slice(path.lastIndexOf(".") + 1)] ?? "text/plain";
    try {
      return new Response(request.method === "HEAD" ? null : await body(path), {
        headers: { ...headers, "content-type": type },
      });
    } catch (error: unknown) {
      const why = error instanceof Error ? error.message : String(error);
      console.error(`tern playground: cannot serve ${path}: ${why}`);
      return new Response(`Cannot serve ${path}: ${why}\n`, { status: 500, headers });
    }
  }

  const { promise: listening, resolve } = Promise.withResolvers<number>();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: options.port ?? 8025,
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    onListen: ({ port }) => resolve(port),
  }, handle);
  const port = await listening;
  const url = `http://127.0.0.1:${port}/${PLAYGROUND_DIR}`;
  options.onListen?.(url);
  return {
    url,
    port,
    finished: server.finished,
    shutdown: () => server.shutdown(),
  };
}

const USAGE = `usage: tern playground [--port N]
  Serve a web page on 127.0.0.1 to type SMTP to tern's server session.
  --port N        the port (default 8025)
  -h, --help      this help`;

/**
 * Runs `tern playground`: serves the page until interrupted.
 *
 * @param args The arguments after `playground`.
 * @returns The exit code: 0 after Ctrl-C, 1 on bad arguments or a port in use.
 *
 * @example What main.ts does for `tern playground --port 8025`
 * ```ts
 * import { playgroundCommand } from "./playground.ts";
 * async function run(): Promise<void> {
 *   Deno.exitCode = await playgroundCommand(["--port", "8025"]);
 * }
 * console.log(typeof run); // "function"
 * ```
 */
export async function playgroundCommand(args: string[]): Promise<number> {
  let port = 8025;
  try {
    const { values } = parseArgs({
      args,
      options: { port: { type: "string" }, help: { type: "boolean", short: "h" } },
      strict: true,
      allowPositionals: false,
    });
    if (values.help === true) {
      console.log(USAGE);
      return 0;
    }
    if (values.port !== undefined) {
      if (!/^[0-9]{1,5}$/.test(values.port) || Number(values.port) > 65535) {
        console.error(
          `tern playground: --port must be a number from 0 to 65535, not "${values.port}"`,
        );
        return 1;
      }
      port = Number(values.port);
    }
  } catch (error: unknown) {
    console.error(`tern playground: ${describeArgsError(error)} (see "tern playground --help")`);
    return 1;
  }
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    const server = await servePlayground({ port, signal: stop.signal });
    console.log(`tern playground: open ${server.url} (Ctrl-C to stop)`);
    await server.finished;
    return 0;
  } catch (error: unknown) {
    if (error instanceof Deno.errors.AddrInUse) {
      console.error(`tern playground: cannot listen on 127.0.0.1:${port}: address already in use`);
      return 1;
    }
    throw error;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}
