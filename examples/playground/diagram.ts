/// <reference lib="dom" />
/**
 * The server's state diagram, drawn as SVG from the command table
 * (`smtp/server_commands.ts`), the same data docs/state-machine.md is drawn
 * from. The states stand in a row, in the order of a dialogue; an arrow to a
 * later state arcs above the row, one back arcs below, and a command that
 * keeps the state loops over its box. {@linkcode lightState} marks the state
 * the session is in.
 *
 * @module
 */

import { arrowsOf, SERVER_STATES, serverTransitions } from "../../smtp/server_commands.ts";

const SVG = "http://www.w3.org/2000/svg";
const BOX_WIDTH = 84;
const BOX_HEIGHT = 30;
const GAP = 36;
const ROW = 150; // the boxes' top edge: room for the arcs above

function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attributes: Readonly<Record<string, string | number>>,
  text?: string,
): SVGElementTagNameMap[K] {
  const e = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) e.setAttribute(name, String(value));
  if (text !== undefined) e.textContent = text;
  return e;
}

/**
 * Draws the diagram.
 *
 * @returns The `<svg>` element, each state a `<g data-state="…">`.
 */
export function drawDiagram(): SVGSVGElement {
  const states = Object.keys(SERVER_STATES);
  const x = (state: string) => states.indexOf(state) * (BOX_WIDTH + GAP) + BOX_WIDTH / 2;
  const width = states.length * (BOX_WIDTH + GAP) - GAP;
  const root = svg("svg", {
    viewBox: `-10 0 ${width + 20} ${ROW * 2 + BOX_HEIGHT}`,
    role: "img",
    "aria-label": "The server's states, and the commands that move between them",
  });
  const defs = svg("defs", {});
  const marker = svg("marker", {
    id: "arrow-head",
    viewBox: "0 0 8 8",
    refX: 7,
    refY: 4,
    markerWidth: 7,
    markerHeight: 7,
    orient: "auto-start-reverse",
  });
  marker.append(svg("path", { d: "M0,0 L8,4 L0,8 z", class: "head" }));
  defs.append(marker);
  root.append(defs);

  for (const arrow of arrowsOf(serverTransitions())) {
    const label = arrow.labels.join(", ");
    const x1 = x(arrow.from);
    const x2 = x(arrow.to);
    let d: string;
    let lx: number;
    let ly: number;
    if (x1 === x2) {
      // A loop over the box.
      d = `M${x1 - 12},${ROW} C${x1 - 30},${ROW - 40} ${x1 + 30},${ROW - 40} ${x1 + 12},${ROW}`;
      lx = x1;
      ly = ROW - 34;
    } else {
      const forward = x2 > x1;
      const y = forward ? ROW : ROW + BOX_HEIGHT;
      const lift = Math.min(ROW - 10, 26 + Math.abs(x2 - x1) * 0.22) * (forward ? -1 : 1);
      d = `M${x1},${y} Q${(x1 + x2) / 2},${y + lift * 2} ${x2},${y}`;
      lx = (x1 + x2) / 2;
      ly = y + lift + (forward ? -4 : 12);
    }
    const g = svg("g", { class: "arrow", "data-from": arrow.from, "data-to": arrow.to });
    g.append(
      svg("path", { d, "marker-end": "url(#arrow-head)" }),
      svg("text", { x: lx, y: ly, "text-anchor": "middle" }, label),
    );
    root.append(g);
  }

  for (const state of states) {
    const g = svg("g", { class: "state", "data-state": state });
    g.append(
      svg("title", {}, `${state}: ${SERVER_STATES[state as keyof typeof SERVER_STATES]}`),
      svg("rect", {
        x: x(state) - BOX_WIDTH / 2,
        y: ROW,
        width: BOX_WIDTH,
        height: BOX_HEIGHT,
        rx: 6,
      }),
      svg("text", { x: x(state), y: ROW + 20, "text-anchor": "middle" }, state),
    );
    root.append(g);
  }
  return root;
}

/**
 * Lights the state the session is in, and no other.
 *
 * @param diagram What {@linkcode drawDiagram} drew.
 * @param state The session's state.
 */
export function lightState(diagram: SVGSVGElement, state: string): void {
  for (const g of diagram.querySelectorAll<SVGGElement>("g.state")) {
    const lit = g.dataset.state === state;
    g.classList.toggle("lit", lit);
    if (lit) g.setAttribute("aria-current", "step");
    else g.removeAttribute("aria-current");
  }
}
