// Workflows: the list (GET /v1/workflows, filtered and paged by the server)
// and one workflow's step graph, refreshed until it finishes; cancel.

import * as api from "./api.js";
import { ago, duration, facts, fill, h, jobHref, link, pagerButtons, stateBadge, table, when, workflowHref } from "./dom.js";
import { clearError, every, showError } from "./shell.js";

const STATES = ["running", "reverting", "cancelling", "succeeded", "failed", "revert_failed", "cancelled"];
const FINISHED = ["succeeded", "failed", "revert_failed", "cancelled"];
const STOPPING = ["reverting", "cancelling"];
const PAGE_SIZE = 50;
const LIST_REFRESH_MS = 2000;
const GRAPH_REFRESH_MS = 1000;
const SVG = "http://www.w3.org/2000/svg";

function isFinished(workflow) {
  return FINISHED.includes(workflow.state);
}

function workflowPath(id, rest = "") {
  return "/v1/workflows/" + encodeURIComponent(id) + rest;
}

// -- the list ------------------------------------------------------------------------

function listRow(workflow) {
  const done = workflow.steps.filter((step) => step.state === "succeeded").length;
  return h(
    "tr",
    { "data-workflow": workflow.id },
    h("td", {}, stateBadge(workflow.state)),
    h("td", {}, link(workflowHref(workflow.id), workflow.name), " ", h("span", { class: "muted" }, workflow.id)),
    h("td", { class: "steps-done", title: "steps succeeded / steps" }, `${done} / ${workflow.steps.length}`),
    h("td", {}, workflow.owner),
    h("td", { title: workflow.created_at }, ago(workflow.created_at)),
    h("td", {}, duration(workflow.created_at, workflow.finished_at)),
  );
}

const workflowList = {
  title: "Workflows",
  async render(main) {
    let filters = { state: "", cursor: "", ...Object.fromEntries(new URLSearchParams(location.search)) };
    const results = h("div", { id: "workflows" });
    const pager = h("div", { class: "pager" });
    const updated = h("span", { class: "muted updated" });
    const state = h(
      "select",
      { name: "state" },
      h("option", { value: "" }, "any"),
      STATES.map((s) => h("option", { value: s, selected: s === filters.state }, s)),
    );

    const load = async () => {
      const page = await api.get("/v1/workflows" + api.query({ state: filters.state, cursor: filters.cursor, limit: PAGE_SIZE }));
      clearError();
      fill(results, table(["State", "Workflow", "Steps done", "Owner", "Age", "Duration"], page.workflows.map(listRow), "No workflows match."));
      fill(pager, pagerButtons(filters.cursor, page.next_cursor, (cursor) => go({ ...filters, cursor })));
      fill(updated, "updated " + new Date().toLocaleTimeString());
    };
    let stop = every(LIST_REFRESH_MS, load);
    const go = (next) => {
      filters = next;
      history.pushState(null, "", "/ui/workflows" + api.query({ state: filters.state, cursor: filters.cursor }));
      stop();
      stop = every(LIST_REFRESH_MS, load);
    };
    addEventListener("popstate", () => location.reload());
    state.addEventListener("change", () => go({ state: state.value, cursor: "" }));

    fill(
      main,
      h("div", { class: "heading" }, h("h1", {}, "Workflows"), updated),
      h("form", { class: "filters", id: "filters" }, h("label", {}, h("span", {}, "State"), state), h("a", { href: "/ui/workflows", class: "reset" }, "Clear")),
      results,
      pager,
    );
  },
};

// -- one workflow: the step graph ----------------------------------------------------

/** Each step's column: the longest path of needs from a step with none. */
function depths(steps) {
  const needs = new Map(steps.map((step) => [step.name, step.needs]));
  const depth = new Map();
  const of = (name) => {
    if (!depth.has(name)) {
      depth.set(name, 0); // the server refuses cycles; this only guards the recursion
      depth.set(name, Math.max(-1, ...(needs.get(name) || []).filter((n) => needs.has(n)).map(of)) + 1);
    }
    return depth.get(name);
  };
  for (const step of steps) of(step.name);
  return depth;
}

function jobLink(id, text) {
  return id ? link(jobHref(id), text) : null;
}

function stepNode(step) {
  const ran = step.finished_at ? "ran for " : "running for ";
  const revert = step.revert_job_id
    ? h("div", { class: "revert" }, "revert: ", stateBadge(step.revert_state || "queued"), " ", jobLink(step.revert_job_id, "job"))
    : step.has_revert
      ? h("div", { class: "revert muted" }, "revert: not run")
      : null;
  return h(
    "div",
    { class: "step step-" + step.state, "data-step": step.name, id: "step-" + step.name },
    h("div", { class: "step-head" }, h("strong", { class: "step-name" }, step.name), stateBadge(step.state)),
    step.job_id ? h("div", {}, jobLink(step.job_id, "job " + step.job_id)) : h("div", { class: "muted" }, "not started"),
    step.started_at ? h("div", { class: "muted duration" }, `attempt ${step.attempt} · ${ran}${duration(step.started_at, step.finished_at)}`) : null,
    step.needs.length ? h("div", { class: "needs muted" }, "needs: " + step.needs.join(", ")) : null,
    revert,
    step.output !== null && step.output !== undefined ? h("code", { class: "output", title: "output" }, JSON.stringify(step.output)) : null,
    step.error ? h("div", { class: "step-error" }, step.error) : null,
  );
}

/** The steps in columns by depth, with a line from each need to its step. */
function graph(steps) {
  const depth = depths(steps);
  const columns = [];
  for (const step of steps) (columns[depth.get(step.name)] ||= []).push(stepNode(step));
  const lines = svg("svg", { class: "edges", "aria-hidden": "true" });
  const element = h("div", { class: "graph", id: "graph" }, lines, columns.map((nodes) => h("div", { class: "graph-column" }, nodes)));
  return { element, draw: () => drawEdges(element, lines, steps) };
}

function svg(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, value);
  return el;
}

function drawEdges(element, lines, steps) {
  const arrow = svg("marker", { id: "arrow", viewBox: "0 0 8 8", refX: "8", refY: "4", markerWidth: "7", markerHeight: "7", orient: "auto" });
  arrow.append(svg("path", { d: "M0,0 L8,4 L0,8 z" }));
  const defs = svg("defs", {});
  defs.append(arrow);
  lines.replaceChildren(defs);
  lines.setAttribute("width", String(element.scrollWidth));
  lines.setAttribute("height", String(element.scrollHeight));
  const origin = element.getBoundingClientRect();
  const box = (name) => element.querySelector(`[data-step="${CSS.escape(name)}"]`)?.getBoundingClientRect();
  for (const step of steps) {
    const to = box(step.name);
    for (const need of step.needs) {
      const from = box(need);
      if (!from || !to) continue;
      const x1 = from.right - origin.left + element.scrollLeft;
      const y1 = from.top + from.height / 2 - origin.top;
      const x2 = to.left - origin.left + element.scrollLeft;
      const y2 = to.top + to.height / 2 - origin.top;
      const bend = Math.max((x2 - x1) / 2, 12);
      lines.append(svg("path", { class: "edge", d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`, "marker-end": "url(#arrow)" }));
    }
  }
}

function about(workflow) {
  return facts([
    ["State", stateBadge(workflow.state)],
    ["Error", workflow.error ? h("span", { class: "step-error" }, workflow.error) : ""],
    ["Id", workflow.id],
    ["Owner", workflow.owner],
    ["Created", [when(workflow.created_at), " (", ago(workflow.created_at), ")"]],
    ["Finished", when(workflow.finished_at)],
    ["Duration", duration(workflow.created_at, workflow.finished_at)],
    ["Concurrency", String(workflow.concurrency)],
    ["Params", Object.keys(workflow.params || {}).length ? h("code", {}, JSON.stringify(workflow.params)) : ""],
  ]);
}

const workflowPage = {
  title: "Workflow",
  async render(main, context, id) {
    let workflow = await api.get(workflowPath(id));
    document.title = `${workflow.name} · jobdock`;
    const head = h("div", { class: "heading" });
    const summary = h("div", { id: "summary" });
    const steps = h("section", { id: "steps" });
    const cancelButton = h("button", { type: "button", id: "cancel", class: "danger", onclick: () => cancel() }, "Cancel");
    let draw = () => {};

    const show = () => {
      cancelButton.hidden = isFinished(workflow);
      cancelButton.disabled = STOPPING.includes(workflow.state);
      fill(head, h("h1", {}, workflow.name), stateBadge(workflow.state), h("span", { class: "spacer" }), cancelButton);
      fill(summary, about(workflow));
      const drawn = graph(workflow.steps);
      fill(steps, h("h2", {}, "Steps"), drawn.element);
      draw = drawn.draw;
      draw();
    };
    const cancel = async () => {
      cancelButton.disabled = true;
      try {
        workflow = await api.post(workflowPath(id, "/cancel"));
        show();
      } catch (error) {
        showError(error);
        cancelButton.disabled = false;
      }
    };

    fill(main, head, summary, steps);
    show();
    addEventListener("resize", () => draw());
    if (isFinished(workflow)) return;
    const stopPolling = every(GRAPH_REFRESH_MS, async () => {
      workflow = await api.get(workflowPath(id));
      clearError();
      show();
      if (isFinished(workflow)) stopPolling();
    });
  },
};

export { workflowList, workflowPage };
