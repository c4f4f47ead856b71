// Machine pools (admins): each pool's live machines, back-off and the
// autoscaler's last decision, then the machines with their jobs and times.

import * as api from "./api.js";
import { ago, fill, h, jobHref, labelChips, link, span, table, until, when } from "./dom.js";
import { clearError, every } from "./shell.js";

const REFRESH_MS = 5000;

/** "1 booting, 2 ready" of the live machines by state. */
function byState(live) {
  return Object.entries(live)
    .filter(([, count]) => count > 0)
    .map(([state, count]) => `${count} ${state}`)
    .join(", ");
}

function backoff(pool) {
  const failed = pool.failures ? `${pool.failures} failed` : "";
  if (!pool.backoff_until || Date.parse(pool.backoff_until) <= Date.now()) return failed;
  return [h("span", { class: "state state-retrying" }, "backing off"), " ", until(pool.backoff_until), ` (${failed})`];
}

function poolRow(pool) {
  const live = Object.values(pool.live).reduce((sum, count) => sum + count, 0);
  return h(
    "tr",
    { "data-pool": pool.name },
    h("td", {}, pool.name),
    h("td", {}, pool.provider),
    h("td", {}, labelChips(pool.labels)),
    h("td", { title: "live / min / max" }, `${live} / ${pool.min} / ${pool.max}`, live ? ` (${byState(pool.live)})` : ""),
    h("td", {}, backoff(pool)),
    h("td", { title: pool.decided_at || "" }, pool.last_decision || "", pool.decided_at ? [" (", ago(pool.decided_at), ")"] : ""),
    h("td", { class: "error-text" }, pool.last_error || ""),
  );
}

function machineRow(machine) {
  return h(
    "tr",
    { "data-machine": machine.id },
    h("td", {}, machine.id, machine.provider_id ? h("div", { class: "muted" }, machine.provider_id) : null),
    h("td", {}, machine.pool),
    h("td", {}, h("span", { class: "state machine-" + machine.state, "data-state": machine.state }, machine.state)),
    h("td", { title: machine.requested_at }, ago(machine.requested_at)),
    h("td", {}, machine.jobs.map((id) => [link(jobHref(id), id), " "]), machine.jobs_done ? h("div", { class: "muted" }, `${machine.jobs_done} done`) : null),
    h("td", {}, span(machine.boot_seconds)),
    h("td", {}, span(machine.machine_seconds)),
    h("td", {}, when(machine.stopped_at)),
    h("td", { class: "error-text" }, machine.error || ""),
  );
}

export default {
  title: "Machines",
  async render(main) {
    const pools = h("div", { id: "pools" });
    const machines = h("div", { id: "machines" });
    fill(
      main,
      h("div", { class: "heading" }, h("h1", {}, "Machines")),
      h("p", { class: "muted" }, "The machine pools the autoscaler keeps (admins only): live machines over min and max, back-off after failures, and its last decision. Then the live machines, and those stopped or failed in the last 24 hours."),
      h("h2", {}, "Pools"),
      pools,
      h("h2", {}, "Machines"),
      machines,
    );
    every(REFRESH_MS, async () => {
      const found = await api.get("/v1/machines");
      clearError();
      fill(pools, table(["Pool", "Provider", "Labels", "Live", "Back-off", "Last decision", "Last error"], found.pools.map(poolRow), "No pools: add [[pools]] to the server's settings (docs/machines.md)."));
      fill(machines, table(["Machine", "Pool", "State", "Age", "Jobs", "Boot", "Machine time", "Stopped", "Error"], found.machines.map(machineRow), "No machines."));
    });
  },
};
