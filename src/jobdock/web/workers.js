// The workers on this server's store: labels, heartbeats, running jobs.

import * as api from "./api.js";
import { ago, fill, h, jobHref, labelChips, link, table, when } from "./dom.js";
import { clearError, every } from "./shell.js";

const REFRESH_MS = 2000;

/** How busy: "2 / 4" running over concurrency, and a bar. */
function load(busy, concurrency) {
  const meter = h("meter", { min: 0, max: Math.max(concurrency, 1), value: busy, high: Math.max(concurrency, 1) - 0.5 });
  return h("span", { class: "load-of", title: `${busy} of ${concurrency} slots running` }, meter, h("span", { class: "load-text" }, `${busy} / ${concurrency}`));
}

/** Running over concurrency of the live workers, in all. */
function total(workers) {
  const alive = workers.filter((worker) => worker.state === "alive");
  const busy = alive.reduce((sum, worker) => sum + worker.busy, 0);
  const slots = alive.reduce((sum, worker) => sum + worker.concurrency, 0);
  const plural = alive.length === 1 ? "" : "s";
  return `${busy} of ${slots} slots running on ${alive.length} live worker${plural}`;
}

function row(worker) {
  return h(
    "tr",
    { "data-worker": worker.id },
    h("td", {}, worker.id),
    h("td", {}, worker.host),
    h("td", {}, h("span", { class: "state worker-" + worker.state }, worker.state)),
    h("td", {}, labelChips(worker.labels)),
    h("td", { class: "load" }, load(worker.busy, worker.concurrency)),
    h("td", { title: worker.heartbeat_at }, ago(worker.heartbeat_at)),
    h("td", {}, when(worker.started_at)),
    h("td", {}, worker.running.map((id) => [link(jobHref(id), id), " "])),
  );
}

export default {
  title: "Workers",
  async render(main) {
    const list = h("div", { id: "workers" });
    const loadTotal = h("p", { id: "load", class: "load-total" });
    fill(
      main,
      h("div", { class: "heading" }, h("h1", {}, "Workers")),
      h("p", { class: "muted" }, "Workers alive now, and those stopped or lost in the last ten minutes. Load is the jobs a worker runs over how many it may run at once (everyone's jobs); Jobs lists your own (an admin's: everyone's)."),
      loadTotal,
      list,
    );
    every(REFRESH_MS, async () => {
      const { workers } = await api.get("/v1/workers");
      clearError();
      fill(loadTotal, total(workers));
      fill(list, table(["Worker", "Host", "State", "Labels", "Load", "Heartbeat", "Started", "Jobs"], workers.map(row), "No workers."));
    });
  },
};
