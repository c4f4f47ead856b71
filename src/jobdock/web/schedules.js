// Cron schedules: when each fires next, what it runs, pause and resume.

import * as api from "./api.js";
import { fill, h, jobHref, link, table, until, when, whatRuns } from "./dom.js";
import { clearError, every, showError } from "./shell.js";

const REFRESH_MS = 5000;

function row(schedule, act) {
  // Names are per owner: an admin acts on another user's schedule by owner.
  const path = "/v1/schedules/" + encodeURIComponent(schedule.name);
  const owner = "?owner=" + encodeURIComponent(schedule.owner);
  const toggle = schedule.paused
    ? h("button", { type: "button", onclick: () => act(path + "/resume" + owner) }, "Resume")
    : h("button", { type: "button", onclick: () => act(path + "/pause" + owner) }, "Pause");
  return h(
    "tr",
    { "data-schedule": schedule.name, "data-owner": schedule.owner },
    h("td", {}, schedule.name),
    h("td", {}, schedule.owner),
    h("td", {}, h("code", {}, schedule.cron), " ", schedule.tz),
    h("td", { class: "command" }, h("code", {}, whatRuns(schedule.job))),
    h("td", {}, schedule.paused ? h("span", { class: "state state-cancelled" }, "paused") : [when(schedule.next_fire_at), " (", until(schedule.next_fire_at), ")"]),
    h("td", {}, when(schedule.last_fire_at)),
    h("td", {}, schedule.last_job_id ? link(jobHref(schedule.last_job_id), schedule.last_job_id) : ""),
    h("td", {}, toggle),
  );
}

export default {
  title: "Schedules",
  async render(main) {
    const list = h("div", { id: "schedules" });
    const load = async () => {
      const { schedules } = await api.get("/v1/schedules");
      clearError();
      fill(
        list,
        table(
          ["Name", "Owner", "Cron", "Runs", "Next fire", "Last fire", "Last job", ""],
          schedules.map((s) => row(s, act)),
          "No schedules. Add one with jobdock schedule add (see the README).",
        ),
      );
    };
    const act = async (path) => {
      try {
        await api.post(path);
        await load();
      } catch (error) {
        showError(error);
      }
    };
    fill(main, h("div", { class: "heading" }, h("h1", {}, "Schedules")), list);
    every(REFRESH_MS, load);
  },
};
