// The workers on this server's store: labels, heartbeats, running jobs.

import * as api from "./api.js";
import { ago, fill, h, jobHref, labelChips, link, table, when } from "./dom.js";
import { clearError, every } from "./shell.js";

const REFRESH_MS = 2000;

function row(worker) {
  return h(
    "tr",
    { "data-worker": worker.id },
    h("td", {}, worker.id),
    h("td", {}, worker.host),
    h("td", {}, h("span", { class: "state worker-" + worker.state }, worker.state)),
    h("td", {}, labelChips(worker.labels)),
    h("td", {}, `${worker.busy} / ${worker.concurrency}`),
    h("td", { title: worker.heartbeat_at }, ago(worker.heartbeat_at)),
    h("td", {}, when(worker.started_at)),
    h("td", {}, worker.running.map((id) => [link(jobHref(id), id), " "])),
  );
}

export default {
  title: "Workers",
  async render(main) {
    const list = h("div", { id: "workers" });
    fill(
      main,
      h("div", { class: "heading" }, h("h1", {}, "Workers")),
      h("p", { class: "muted" }, "Workers alive now, and those stopped or lost in the last ten minutes. Jobs lists your own jobs (an admin's: everyone's); Running counts everyone's."),
      list,
    );
    every(REFRESH_MS, async () => {
      const { workers } = await api.get("/v1/workers");
      clearError();
      fill(list, table(["Worker", "Host", "State", "Labels", "Running", "Heartbeat", "Started", "Jobs"], workers.map(row), "No workers."));
    });
  },
};
