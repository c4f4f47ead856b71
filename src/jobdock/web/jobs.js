// The job list: newest first, filtered and paginated by the server
// (GET /v1/jobs; the name field finds names holding its text, in any
// case), refreshed every two seconds.

import * as api from "./api.js";
import { ago, duration, fill, h, jobHref, labelChips, link, pagerButtons, stateBadge, table, whatRuns } from "./dom.js";
import { clearError, every } from "./shell.js";

const STATES = ["scheduled", "queued", "running", "retrying", "succeeded", "failed", "cancelled"];
const PAGE_SIZE = 50;
const REFRESH_MS = 2000;

/** The filters and page in the address bar. */
function readFilters() {
  const search = new URLSearchParams(location.search);
  return {
    state: search.get("state") || "",
    label: search.get("label") || "",
    name: search.get("name") || "",
    owner: search.get("owner") || "",
    cursor: search.get("cursor") || "",
  };
}

function labelsOf(text) {
  return text
    .split(",")
    .map((pair) => pair.trim())
    .filter(Boolean);
}

function row(job) {
  const title = job.name || job.id;
  return h(
    "tr",
    { "data-job": job.id },
    h("td", {}, stateBadge(job.state)),
    h("td", {}, link(jobHref(job.id), title), " ", labelChips(job.labels)),
    h("td", {}, job.owner),
    h("td", { class: "command" }, h("code", {}, whatRuns(job.spec))),
    h("td", { title: job.created_at }, ago(job.created_at)),
    h("td", {}, duration(job.started_at, job.finished_at)),
    h("td", {}, job.exit_code ?? ""),
  );
}

function filterForm(filters, me, apply) {
  const field = (label, input) => h("label", {}, h("span", {}, label), input);
  const state = h(
    "select",
    { name: "state" },
    h("option", { value: "" }, "any"),
    STATES.map((s) => h("option", { value: s, selected: s === filters.state }, s)),
  );
  const label = h("input", { name: "label", value: filters.label, placeholder: "key=value, …" });
  const name = h("input", { name: "name", value: filters.name, placeholder: "part of the name" });
  const owner = me.admin ? h("input", { name: "owner", value: filters.owner, placeholder: "anyone" }) : null;
  const form = h(
    "form",
    { class: "filters", id: "filters" },
    field("State", state),
    field("Label", label),
    field("Name", name),
    owner ? field("Owner", owner) : null,
    h("button", { type: "submit" }, "Filter"),
    h("a", { href: "/ui", class: "reset" }, "Clear"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    apply({ state: state.value, label: label.value, name: name.value, owner: owner ? owner.value : "", cursor: "" });
  });
  state.addEventListener("change", () => form.requestSubmit());
  return form;
}

export default {
  title: "Jobs",
  async render(main, { me }) {
    let filters = readFilters();
    const results = h("div", { id: "jobs" });
    const pager = h("div", { class: "pager" });
    const updated = h("span", { class: "muted updated" });

    const go = (next) => {
      filters = next;
      history.pushState(null, "", "/ui" + api.query(filters));
      refresh();
    };
    // Back and forward: the filters in the form come from the address too.
    addEventListener("popstate", () => location.reload());

    const load = async () => {
      const page = await api.get(
        "/v1/jobs" +
          api.query({
            state: filters.state,
            label: labelsOf(filters.label),
            name_contains: filters.name,
            owner: filters.owner,
            cursor: filters.cursor,
            limit: PAGE_SIZE,
          }),
      );
      clearError();
      fill(
        results,
        table(["State", "Job", "Owner", "Command / image", "Age", "Duration", "Exit"], page.jobs.map(row), "No jobs match."),
      );
      fill(pager, pagerButtons(filters.cursor, page.next_cursor, (cursor) => go({ ...filters, cursor })));
      fill(updated, "updated " + new Date().toLocaleTimeString());
    };
    let stop = every(REFRESH_MS, load);
    const refresh = () => {
      stop();
      stop = every(REFRESH_MS, load);
    };

    fill(
      main,
      h("div", { class: "heading" }, h("h1", {}, "Jobs"), updated, h("a", { class: "button", href: "/ui/submit" }, "Submit a job")),
      filterForm(filters, me, go),
      results,
      pager,
    );
  },
};
