/// <reference lib="dom" />
/**
 * The playground page: draws what {@linkcode Lab} (tern's server session
 * with the playground's policy) says, and sends it what the learner types.
 * `tern playground` serves this file, and every module it imports, as
 * JavaScript.
 *
 * @module
 */

import { rfcUrl } from "../../smtp/annotations.ts";
import { drawDiagram, lightState } from "./diagram.ts";
import { Lab, type TranscriptLine } from "./lab.ts";

const STATE_HINTS: Readonly<Record<string, string>> = {
  greeting: "waiting for the greeting",
  connected: "say EHLO (or HELO)",
  ready: "MAIL FROM starts a transaction",
  mail: "add recipients with RCPT TO",
  rcpt: "more RCPT TO, or DATA",
  data: "type the content; a line with only . ends it",
  bdat: "send the BDAT chunks",
  closed: "press Reconnect for a new session",
};

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  text?: string,
  className?: string,
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (className !== undefined) e.className = className;
  return e;
}

function byId<T extends HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (e === null) throw new Error(`Cannot find #${id} in the page`);
  return e as T;
}

const transcript = byId<HTMLOListElement>("transcript");
const form = byId<HTMLFormElement>("prompt");
const input = byId<HTMLInputElement>("command");
const promptLabel = byId<HTMLLabelElement>("prompt-label");
const diagram = drawDiagram();
byId("diagram").append(diagram);

let lab = new Lab();
const history: string[] = [];
let historyIndex = 0;

function row(line: TranscriptLine): HTMLLIElement {
  const li = element("li");
  li.dataset.side = line.side;
  if (line.side === "note") {
    li.className = "remark";
    li.append(element("span", "·", "who"), element("span", line.text, "text"));
    return li;
  }
  const who = line.side === "server" ? "S:" : "C:";
  li.className = line.side === "server" ? `server reply-${line.text[0] ?? ""}` : line.side;
  const note = element("span", undefined, "note");
  if (line.reference !== null && line.rule !== null && line.annotation !== null) {
    const link = element("a", line.annotation.slice(0, line.annotation.indexOf(" · ")));
    link.href = rfcUrl(line.reference);
    link.target = "_blank";
    link.rel = "noreferrer";
    note.append(link, ` · ${line.rule}`);
  }
  // An empty content line is still a line: show it as such.
  const text = line.text === "" && line.side === "content" ? "⏎ (empty line)" : line.text;
  li.append(element("span", who, "who"), element("code", text, "text"), note);
  return li;
}

function show(lines: readonly TranscriptLine[]): void {
  for (const line of lines) transcript.append(row(line));
  transcript.scrollTop = transcript.scrollHeight;
  render();
}

function list(id: string, items: readonly string[]): void {
  const ul = byId<HTMLUListElement>(id);
  ul.replaceChildren(
    ...(items.length === 0 ? [element("li", "none", "none")] : items.map((i) => element("li", i))),
  );
}

function render(): void {
  const view = lab.view;
  byId("state").textContent = view.state;
  byId("state-hint").textContent = STATE_HINTS[view.state] ?? "";
  lightState(diagram, view.state);
  byId("client-name").textContent = view.clientName === ""
    ? "–"
    : `${view.clientName} (${view.isExtended ? "EHLO: ESMTP" : "HELO: plain SMTP"})`;
  byId("reverse-path").textContent = view.reversePath === null
    ? "– (no transaction)"
    : `<${view.reversePath}>`;
  list("forward-paths", view.forwardPaths.map((p) => `<${p}>`));
  list("refused", view.refused.map((r) => `<${r.forwardPath}> (${r.code})`));
  byId("size").textContent = view.reversePath === null
    ? "–"
    : `${view.size} octets${view.state === "data" ? ", still arriving" : ""}`;
  promptLabel.textContent = view.state === "data" ? "C…" : "C:";
  input.placeholder = view.state === "data"
    ? "a line of the message, or . to end it"
    : view.state === "closed"
    ? "closed: press Reconnect"
    : "type a command";

  const queue = byId<HTMLOListElement>("queue");
  byId("queue-empty").hidden = lab.queued.length > 0;
  queue.replaceChildren(...lab.queued.map((m) => {
    const li = element("li");
    li.dataset.queueId = m.queueId;
    li.append(
      element("strong", m.queueId),
      ` from <${m.reversePath}> to ${m.forwardPaths.map((p) => `<${p}>`).join(", ")}`,
      element("pre", m.content),
    );
    return li;
  }));
}

function send(line: string): void {
  if (line !== "" || lab.view.state === "data") {
    history.push(line);
    historyIndex = history.length;
  }
  show(lab.type(line));
}

function connect(): void {
  lab = new Lab();
  transcript.replaceChildren();
  show(lab.start());
  input.focus();
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const line = input.value;
  input.value = "";
  send(line);
});

// A pasted block of lines is sent line by line, as a pipelining client would.
input.addEventListener("paste", (event) => {
  const text = event.clipboardData?.getData("text") ?? "";
  if (!/[\r\n]/.test(text)) return;
  event.preventDefault();
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  if (lines.at(-1) === "") lines.pop();
  for (const line of lines) send(line);
});

input.addEventListener("keydown", (event) => {
  if (event.key === "ArrowUp" && historyIndex > 0) {
    historyIndex--;
    input.value = history[historyIndex] ?? "";
    event.preventDefault();
  } else if (event.key === "ArrowDown" && historyIndex < history.length) {
    historyIndex++;
    input.value = history[historyIndex] ?? "";
    event.preventDefault();
  }
});

for (const button of document.querySelectorAll<HTMLButtonElement>(".suggestion")) {
  button.addEventListener("click", () => {
    input.value = button.textContent ?? "";
    input.focus();
  });
}

byId<HTMLButtonElement>("reconnect").addEventListener("click", connect);
byId("needs-server").hidden = true;
connect();
