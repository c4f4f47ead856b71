// ANSI escapes in a job's output, as a terminal (and GitHub's log viewer)
// shows them: SGR colours and bold, italic, underline become a style for
// the text that follows; every other escape (cursor moves, titles, links)
// is dropped. The result is text and a style, never markup: the log pane
// puts the text in text nodes.

// CSI (ESC [ params final), OSC (ESC ] ... BEL or ESC \), or any other
// two-byte escape. A sequence cut by the end of a piece of output is kept
// for the next piece.
const ESCAPE = /\x1b(?:\[([0-?]*)[ -/]*([@-~])|\][^\x07\x1b\n]*(?:\x07|\x1b\\)|[ -/]*[0-~])/g;
const UNFINISHED = /\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b\n]*\x1b?|[ -/]*)$/;
// A sequence longer than this is not one: its ESC is dropped, the rest shown.
const LONGEST = 512;
const PALETTE = ["black", "red", "green", "yellow", "blue", "magenta", "cyan", "white"];

/** The plain style: no colour, no emphasis. */
export function plain() {
  return { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false, inverse: false };
}

/** The colour of xterm's 256-colour index ``n``: a palette name for the
 * first 16, else "rgb(...)". */
function colour256(n) {
  if (n < 8) return PALETTE[n];
  if (n < 16) return "bright-" + PALETTE[n - 8];
  if (n < 232) {
    const level = (v) => (v === 0 ? 0 : 55 + v * 40);
    const i = n - 16;
    return `rgb(${level(Math.floor(i / 36))}, ${level(Math.floor(i / 6) % 6)}, ${level(i % 6)})`;
  }
  const grey = 8 + (n - 232) * 10;
  return `rgb(${grey}, ${grey}, ${grey})`;
}

/** An extended colour (38/48 ;5;n or ;2;r;g;b) at ``codes[i]``; returns
 * [colour or null, how many codes it used]. */
function extended(codes, i) {
  if (codes[i + 1] === 5 && codes[i + 2] >= 0 && codes[i + 2] <= 255) return [colour256(codes[i + 2]), 3];
  if (codes[i + 1] === 2 && codes.slice(i + 2, i + 5).length === 3) {
    const [r, g, b] = codes.slice(i + 2, i + 5).map((v) => Math.min(Math.max(v || 0, 0), 255));
    return [`rgb(${r}, ${g}, ${b})`, 5];
  }
  return [null, 1];
}

const FLAGS = {
  1: ["bold", true],
  2: ["dim", true],
  3: ["italic", true],
  4: ["underline", true],
  7: ["inverse", true],
  22: ["bold", false],
  23: ["italic", false],
  24: ["underline", false],
  27: ["inverse", false],
};

/** The colour a basic SGR code sets: ["fg" or "bg", colour or null], or
 * null if it sets none (30-37, 90-97, 40-47, 100-107, 39, 49). */
function basicColour(code) {
  const ranges = [
    [30, "fg", ""],
    [90, "fg", "bright-"],
    [40, "bg", ""],
    [100, "bg", "bright-"],
  ];
  for (const [first, part, prefix] of ranges) {
    if (code >= first && code < first + 8) return [part, prefix + PALETTE[code - first]];
  }
  if (code === 39 || code === 49) return [code === 39 ? "fg" : "bg", null];
  return null;
}

/** ``style`` after the SGR parameters ``params`` ("1;31", "" = reset). */
export function applySgr(style, params) {
  let next = { ...style };
  const codes = params === "" ? [0] : params.split(/[;:]/).map((p) => (p === "" ? 0 : Number(p)));
  for (let i = 0; i < codes.length; i += 1) {
    const code = codes[i];
    const colour = basicColour(code);
    if (code === 0) next = plain();
    else if (FLAGS[code]) {
      next[FLAGS[code][0]] = FLAGS[code][1];
      if (code === 22) next.dim = false;
    } else if (colour) next[colour[0]] = colour[1];
    else if (code === 38 || code === 48) {
      const [value, used] = extended(codes, i);
      if (value) next[code === 38 ? "fg" : "bg"] = value;
      i += used - 1;
    }
  }
  return next;
}

/** One stream's decoder: ``decode(text)`` gives [{text, style}] pieces
 * with the escapes taken out, the style carried from piece to piece. */
export class AnsiDecoder {
  constructor() {
    this.style = plain();
    this.pending = "";
  }

  decode(input) {
    let text = this.pending + input;
    this.pending = "";
    const cut = text.match(UNFINISHED);
    if (cut && cut[0].length <= LONGEST) {
      this.pending = cut[0];
      text = text.slice(0, cut.index);
    }
    const pieces = [];
    const add = (part) => {
      // An ESC no sequence follows is dropped too.
      const shown = part.replaceAll("\x1b", "");
      if (shown) pieces.push({ text: shown, style: this.style });
    };
    let at = 0;
    for (const match of text.matchAll(ESCAPE)) {
      add(text.slice(at, match.index));
      if (match[2] === "m") this.style = applySgr(this.style, match[1]);
      at = match.index + match[0].length;
    }
    add(text.slice(at));
    return pieces;
  }
}

/** The class names that show ``style`` (ansi-fg-red, ansi-bold, ...), and
 * the colours no class names (256-colour and RGB) as CSS values. */
export function styleClasses(style) {
  let { fg, bg } = style;
  if (style.inverse) [fg, bg] = [bg || "default-bg", fg || "default-fg"];
  const classes = [];
  const inline = {};
  for (const [part, colour] of [["fg", fg], ["bg", bg]]) {
    if (!colour) continue;
    if (colour.startsWith("rgb(")) inline[part === "fg" ? "color" : "backgroundColor"] = colour;
    else classes.push(`ansi-${part}-${colour}`);
  }
  for (const flag of ["bold", "dim", "italic", "underline"]) if (style[flag]) classes.push("ansi-" + flag);
  return { classes, inline };
}
