// The submit form: a command, or an image (and its command), with the
// fields people set most; anything else as JSON. POST /v1/jobs decides.

import * as api from "./api.js";
import { h, jobHref } from "./dom.js";
import { showError } from "./shell.js";

/** Words of a command line as a POSIX shell splits them (quotes and
 * backslashes; no expansions). Throws on an unclosed quote. */
export function shellWords(line) {
  const words = [];
  let word = null;
  let quote = null;
  for (let i = 0; i < line.length; i += 1) {
    const c = line[i];
    if (quote === "'") {
      if (c === "'") quote = null;
      else word += c;
    } else if (quote === '"') {
      if (c === '"') quote = null;
      else if (c === "\\" && i + 1 < line.length && '\\"$`\n'.includes(line[i + 1])) word += line[++i];
      else word += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      word = word ?? "";
    } else if (c === "\\" && i + 1 < line.length) {
      word = (word ?? "") + line[++i];
    } else if (/\s/.test(c)) {
      if (word !== null) words.push(word);
      word = null;
    } else {
      word = (word ?? "") + c;
    }
  }
  if (quote) throw new Error(`the command has an unclosed ${quote}`);
  if (word !== null) words.push(word);
  return words;
}

function pairs(text, separator, what) {
  const found = {};
  for (const item of text.split(separator).map((s) => s.trim()).filter(Boolean)) {
    const at = item.indexOf("=");
    if (at < 1) throw new Error(`${what}: ${JSON.stringify(item)} is not key=value`);
    found[item.slice(0, at)] = item.slice(at + 1);
  }
  return found;
}

function specOf(form) {
  const value = (name) => form.elements[name].value.trim();
  const spec = {};
  const command = shellWords(value("command"));
  if (command.length) spec.command = command;
  if (form.elements.kind.value === "image") spec.image = value("image");
  if (value("name")) spec.name = value("name");
  const labels = pairs(value("labels"), ",", "labels");
  if (Object.keys(labels).length) spec.labels = labels;
  const env = pairs(value("env"), "\n", "environment");
  if (Object.keys(env).length) spec.env = env;
  if (value("timeout")) spec.timeout = value("timeout");
  if (value("extra")) {
    let extra;
    try {
      extra = JSON.parse(value("extra"));
    } catch {
      throw new Error("more fields: not valid JSON");
    }
    Object.assign(spec, extra);
  }
  return spec;
}

export default {
  title: "Submit a job",
  async render(main) {
    const row = (label, input, hint) => h("label", { class: "row" }, h("span", {}, label), input, hint ? h("small", {}, hint) : null);
    const kind = (value, text, checked) => h("label", { class: "choice" }, h("input", { type: "radio", name: "kind", value, checked }), text);
    const image = h("input", { name: "image", id: "image", placeholder: "busybox:latest" });
    const imageRow = row("Image", image);
    const form = h(
      "form",
      { class: "card submit", id: "submit-form" },
      h("h1", {}, "Submit a job"),
      h("fieldset", { class: "kinds" }, h("legend", {}, "Runs"), kind("command", "a command", true), kind("image", "an image")),
      imageRow,
      row(
        "Command",
        h("input", { name: "command", id: "command", placeholder: "sh -c 'echo hello; sleep 5'" }),
        "Split into words as a shell would (quotes work; no variables or globs).",
      ),
      row("Name", h("input", { name: "name", id: "name" })),
      row("Labels", h("input", { name: "labels", id: "labels", placeholder: "team=data, env=test" })),
      row("Environment", h("textarea", { name: "env", id: "env", rows: 3, placeholder: "KEY=value, one a line" })),
      row("Timeout", h("input", { name: "timeout", id: "timeout", placeholder: "10m" })),
      row(
        "More fields",
        h("textarea", { name: "extra", id: "extra", rows: 3, placeholder: '{"resources": {"memory": "256m"}, "priority": 5}' }),
        "Any other fields of the job spec, as JSON (see the API docs at /docs).",
      ),
      h("button", { type: "submit", id: "submit" }, "Submit"),
    );
    const sync = () => {
      imageRow.hidden = form.elements.kind.value !== "image";
      image.required = !imageRow.hidden;
    };
    form.addEventListener("change", sync);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      for (const marked of form.querySelectorAll(".invalid")) marked.classList.remove("invalid");
      try {
        const job = await api.post("/v1/jobs", specOf(form));
        location.assign(jobHref(job.id));
      } catch (error) {
        const field = error.field && form.elements[error.field.split(".")[0]];
        if (field && field.classList) field.classList.add("invalid");
        showError(error);
      }
    });
    main.replaceChildren(form);
    sync();
  },
};
