// Building the page from data. Everything a job, a user or a worker wrote
// (names, labels, commands, output) becomes a text node: nothing here parses
// HTML, so no job can put markup or script into the page.

/** An element with attributes (on* are event listeners) and children
 * (elements, or anything else as text). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Replace everything in ``el`` with ``children``. */
export function fill(el, ...children) {
  el.replaceChildren();
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** A link to a dashboard page. */
export function link(href, ...children) {
  return h("a", { href }, ...children);
}

/** The dashboard page of a job. */
export function jobHref(id) {
  return "/ui/jobs/" + encodeURIComponent(id);
}

/** The dashboard page of a workflow. */
export function workflowHref(id) {
  return "/ui/workflows/" + encodeURIComponent(id);
}

/** A job's state as a coloured badge. */
export function stateBadge(state) {
  return h("span", { class: "state state-" + state, "data-state": state }, state);
}

/** key=value chips. */
export function labelChips(labels) {
  return Object.entries(labels || {}).map(([key, value]) => h("span", { class: "chip" }, `${key}=${value}`));
}

const SECOND = 1000;
const UNITS = [
  ["d", 86400],
  ["h", 3600],
  ["m", 60],
  ["s", 1],
];

/** A span of seconds as "1h 5m", "12s" or "0.4s". */
export function span(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "";
  if (seconds < 10) return `${Math.max(seconds, 0).toFixed(1)}s`;
  const parts = [];
  let left = Math.round(seconds);
  for (const [unit, size] of UNITS) {
    if (left >= size || (unit === "s" && parts.length === 0)) {
      parts.push(`${Math.floor(left / size)}${unit}`);
      left %= size;
    }
    if (parts.length === 2) break;
  }
  return parts.join(" ");
}

/** How long ago ``iso`` was, e.g. "5m ago". */
export function ago(iso) {
  if (!iso) return "";
  return span((Date.now() - Date.parse(iso)) / SECOND) + " ago";
}

/** From ``start`` to ``end`` (or to now, while it lasts). */
export function duration(start, end) {
  if (!start) return "";
  const stop = end ? Date.parse(end) : Date.now();
  return span((stop - Date.parse(start)) / SECOND);
}

/** How long from now until ``iso``, e.g. "in 5m". */
export function until(iso) {
  if (!iso) return "";
  const seconds = (Date.parse(iso) - Date.now()) / SECOND;
  return seconds >= 0 ? "in " + span(seconds) : span(-seconds) + " ago";
}

/** A time as the browser's locale writes it, the ISO form on hover. */
export function when(iso) {
  if (!iso) return "";
  return h("time", { datetime: iso, title: iso }, new Date(iso).toLocaleString());
}

/** A size in bytes, e.g. "12.5 MiB". */
export function size(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** What a job runs, in one line: its image and command, or its command. */
export function whatRuns(spec) {
  const command = (spec.command || []).map(quote).join(" ");
  return spec.image ? `${spec.image}${command ? " " + command : ""}` : command;
}

function quote(word) {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : "'" + word.replaceAll("'", "'\\''") + "'";
}

/** A table of ``rows`` under ``headings``; ``empty`` when there are none. */
export function table(headings, rows, empty) {
  if (rows.length === 0) return h("p", { class: "muted empty" }, empty);
  return h(
    "table",
    { class: "grid" },
    h("thead", {}, h("tr", {}, headings.map((text) => h("th", {}, text)))),
    h("tbody", {}, rows),
  );
}

/** A list's paging buttons: back to the newest page (when on a later
 * one, ``cursor``), and on to the next (when the server gave ``next``);
 * ``go(cursor)`` shows the page at a cursor ("" for the newest). */
export function pagerButtons(cursor, next, go) {
  return [
    cursor ? h("button", { type: "button", onclick: () => go("") }, "« Newest") : null,
    next ? h("button", { type: "button", id: "older", onclick: () => go(next) }, "Older »") : null,
  ];
}

/** A definition list from [term, value] pairs; empty values are left out. */
export function facts(pairs) {
  return h(
    "dl",
    { class: "facts" },
    pairs
      .filter(([, value]) => value !== undefined && value !== null && value !== "" && !(Array.isArray(value) && value.length === 0))
      .map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]),
  );
}
