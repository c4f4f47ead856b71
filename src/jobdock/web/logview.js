// The log view, as GitHub's log viewer shows a step: one row per line with
// its number (and, where the server sends them, its arrival time) in a
// gutter, ANSI colours rendered, and a search that highlights and counts
// what it finds. The numbers and times are drawn by CSS from attributes, so
// the text of the view (and what a user copies) is the output itself.

import { AnsiDecoder, styleClasses } from "./ansi.js";
import { fill, h } from "./dom.js";

// The prefix ``timestamps=true`` puts on each line: RFC 3339 and one space.
const STAMP = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)) /;

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** The output of one attempt after another, line by line. */
export class LogView {
  /** ``limit``: characters kept; older lines are dropped from the view. */
  constructor(limit) {
    this.limit = limit;
    this.chars = 0;
    this.number = 0;
    this.line = null;
    this.streams = {};
    this.timestamps = false;
    this.pre = h("pre", { class: "log", id: "log", tabindex: "0", "aria-live": "off" });
    this.search = new LogSearch(this.pre);
  }

  /** Start another attempt's output: numbers start again from 1, after a
   * ``title`` line if given. */
  begin(title) {
    this.line = null;
    this.number = 0;
    this.streams = {};
    if (title) this.pre.append(h("div", { class: "mark" }, title));
  }

  /** Add output of ``stream`` ("stdout" or "stderr"). */
  write(stream, text) {
    const state = (this.streams[stream] ||= { decoder: new AnsiDecoder(), atStart: true, stamp: null });
    const touched = new Set();
    for (let part of text.split(/(?<=\n)/)) {
      // The server stamps each line of a stream where it begins (output
      // stored before it kept arrival times has none).
      if (this.timestamps && state.atStart) {
        const found = part.match(STAMP);
        state.stamp = found ? found[1] : null;
        if (found) part = part.slice(found[0].length);
      }
      for (const piece of state.decoder.decode(part)) touched.add(this.append(stream, piece, state.stamp));
      state.atStart = part.endsWith("\n");
      if (state.atStart) this.line = null;
    }
    this.trim();
    this.search.update(touched);
  }

  /** ``piece`` at the end of the open line (a new one if none is open). */
  append(stream, piece, stamp) {
    if (!this.line) this.line = this.newLine(stamp);
    const text = this.line.lastChild;
    const { classes, inline } = styleClasses(piece.style);
    const key = stream + " " + classes.join(" ") + JSON.stringify(inline);
    const last = text.lastChild;
    if (last && last.jobdockKey === key) last.append(piece.text);
    else {
      const segment = h("span", { class: [stream === "stderr" ? "err" : "out", ...classes].join(" "), "data-stream": stream }, piece.text);
      Object.assign(segment.style, inline);
      segment.jobdockKey = key;
      text.append(segment);
    }
    this.chars += piece.text.length;
    return this.line;
  }

  newLine(stamp) {
    this.number += 1;
    const line = h(
      "div",
      { class: "line", "data-line": this.number },
      h("span", { class: "ln", "data-n": this.number, "aria-hidden": "true" }),
      stamp ? h("span", { class: "ts", "data-time": stamp, title: stamp, "aria-hidden": "true" }) : null,
      h("span", { class: "text" }),
    );
    this.pre.append(line);
    return line;
  }

  trim() {
    while (this.chars > this.limit && this.pre.firstChild && this.pre.firstChild !== this.line) {
      this.chars -= this.pre.firstChild.textContent.length;
      this.pre.firstChild.remove();
    }
  }
}

/** Find text in the view: every match marked, a count, and the current
 * one (Enter: next, Shift+Enter: previous) scrolled to. */
export class LogSearch {
  constructor(pre) {
    this.pre = pre;
    this.pattern = null;
    this.current = -1;
    this.ids = 0;
    this.onJump = () => {};
    this.input = h("input", { type: "search", id: "log-search", placeholder: "Search the log", "aria-label": "Search the log", autocomplete: "off" });
    this.count = h("span", { class: "muted", id: "log-search-count", "aria-live": "polite" });
    const previous = h("button", { type: "button", id: "log-previous", title: "Previous match (Shift+Enter)", onclick: () => this.step(-1) }, "↑");
    const next = h("button", { type: "button", id: "log-next", title: "Next match (Enter)", onclick: () => this.step(1) }, "↓");
    this.input.addEventListener("input", () => this.find(this.input.value));
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        this.step(event.shiftKey ? -1 : 1);
      }
    });
    this.element = h("span", { class: "search" }, this.input, this.count, previous, next);
  }

  /** Mark every match of ``query`` (any case), the first one current. */
  find(query) {
    for (const line of this.pre.querySelectorAll(".line")) unmark(line);
    this.pattern = query ? new RegExp(escapeRegExp(query), "giu") : null;
    this.current = -1;
    if (this.pattern) for (const line of this.pre.querySelectorAll(".line")) this.mark(line);
    this.step(1);
  }

  /** Mark again the lines that output was added to. */
  update(lines) {
    if (!this.pattern) return;
    for (const line of lines) {
      unmark(line);
      this.mark(line);
    }
    this.show(false);
  }

  hits() {
    return [...this.pre.querySelectorAll("mark.hit[data-first]")];
  }

  /** Go to the next (1) or previous (-1) match, round the end. */
  step(by) {
    const total = this.hits().length;
    this.current = total ? (this.current + by + total) % total : -1;
    this.show(true);
  }

  show(jump) {
    const hits = this.hits();
    if (this.current >= hits.length) this.current = hits.length - 1;
    for (const old of this.pre.querySelectorAll("mark.current")) old.classList.remove("current");
    if (!this.pattern) fill(this.count);
    else if (hits.length === 0) fill(this.count, "no matches");
    else {
      if (this.current < 0) this.current = 0;
      const id = hits[this.current].dataset.match;
      for (const part of this.pre.querySelectorAll(`mark[data-match="${id}"]`)) part.classList.add("current");
      fill(this.count, `${this.current + 1} / ${hits.length}`);
      if (jump) {
        this.onJump();
        hits[this.current].scrollIntoView({ block: "nearest" });
      }
    }
  }

  /** Wrap each match in ``line`` in marks (one per piece of text it spans). */
  mark(line) {
    const nodes = [];
    const walker = document.createTreeWalker(line.lastChild, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) nodes.push(walker.currentNode);
    const whole = nodes.map((node) => node.data).join("");
    const matches = [...whole.matchAll(this.pattern)].filter((m) => m[0].length > 0);
    for (const match of matches) match.id = ++this.ids;
    let offset = 0;
    for (const node of nodes) {
      const start = offset;
      const end = (offset += node.data.length);
      const inside = matches.filter((m) => m.index < end && m.index + m[0].length > start);
      if (inside.length) node.replaceWith(markedText(whole, start, end, inside));
    }
  }
}

function markedText(whole, start, end, matches) {
  const parts = document.createDocumentFragment();
  let at = start;
  for (const match of matches) {
    const from = Math.max(match.index, start);
    const to = Math.min(match.index + match[0].length, end);
    if (from > at) parts.append(whole.slice(at, from));
    const mark = h("mark", { class: "hit", "data-match": match.id, "data-first": from === match.index }, whole.slice(from, to));
    parts.append(mark);
    at = to;
  }
  if (at < end) parts.append(whole.slice(at, end));
  return parts;
}

function unmark(line) {
  const marks = line.querySelectorAll("mark.hit");
  if (marks.length === 0) return;
  for (const mark of marks) mark.replaceWith(mark.textContent);
  line.normalize();
}
