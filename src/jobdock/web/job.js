// One job: its record and spec, its attempts, and the log pane that follows
// every attempt's output from its start; stop and re-run.

import * as api from "./api.js";
import { ago, duration, facts, fill, h, jobHref, labelChips, link, size, stateBadge, table, when, whatRuns, workflowHref } from "./dom.js";
import { LogView } from "./logview.js";
import { clearError, every, showError } from "./shell.js";

const REFRESH_MS = 1000;
// Characters of output kept on the page; older output is dropped from the
// pane (the download has all of it).
const PANE_LIMIT = 2_000_000;
// The labels a workflow puts on its steps' jobs (workflows.py).
const WORKFLOW_LABEL = "jobdock.io/workflow";
const STEP_LABEL = "jobdock.io/step";

function isTerminal(job) {
  return ["succeeded", "failed", "cancelled"].includes(job.state);
}

/** The job's spec as submitted again: without what made it once only. */
function rerunSpec(spec) {
  const copy = structuredClone(spec);
  for (const key of ["idempotency_key", "run_at", "allow_past", "stdin", "stdin_base64"]) delete copy[key];
  return copy;
}

/** A link to the workflow whose step this job runs, if it is one. */
function workflowOf(job) {
  const id = (job.labels || {})[WORKFLOW_LABEL];
  return id ? [link(workflowHref(id), id), " step ", (job.labels || {})[STEP_LABEL] || ""] : "";
}

/** The sizes of an attempt's output (growing while it runs). */
function outputSizes(attempt) {
  return `${size(attempt.stdout_bytes)} / ${size(attempt.stderr_bytes)}`;
}

function summary(job) {
  const last = job.attempts.at(-1);
  const running = last && !last.finished_at;
  return facts([
    ["Job id", h("code", { id: "job-id" }, job.id)],
    ["State", stateBadge(job.state)],
    // Why a queued job has not started (servers that tell).
    ["Waiting", job.waiting_reason ? h("span", { id: "waiting", class: "waiting" }, job.waiting_reason) : ""],
    ["Reason", job.reason],
    ["Message", job.message],
    ["Exit code", job.exit_code ?? (job.signal ? `signal ${job.signal}` : "")],
    ["Owner", job.owner],
    ["Runs", h("code", {}, whatRuns(job.spec))],
    ["Image", job.spec.image ? h("code", { id: "image" }, job.spec.image) : ""],
    ["Container", last && last.container ? h("code", { id: "container" }, last.container) : ""],
    ["Labels", labelChips(job.labels)],
    ["Workflow", workflowOf(job)],
    ["Created", [when(job.created_at), " (", ago(job.created_at), ")"]],
    ["Started", when(job.started_at)],
    ["Finished", when(job.finished_at)],
    ["Duration", duration(job.started_at, job.finished_at)],
    ["Attempt", job.attempt ? String(job.attempt) : "not started"],
    ["Next attempt", when(job.next_attempt_at)],
    ["Output so far", running ? h("span", { id: "output-so-far" }, outputSizes(last), " (stdout / stderr)") : ""],
    ["Peak memory", last ? size(last.peak_memory) : ""],
    ["CPU time", last && last.cpu_seconds !== null ? `${last.cpu_seconds.toFixed(2)}s` : ""],
    ["Stop requested", job.cancel_requested && !isTerminal(job) ? "yes" : ""],
  ]);
}

function attemptRows(job) {
  return job.attempts.map((a) =>
    h(
      "tr",
      { "data-attempt": a.number },
      h("td", {}, String(a.number)),
      h("td", {}, a.worker || ""),
      h("td", {}, when(a.started_at)),
      h("td", {}, duration(a.started_at, a.finished_at)),
      h("td", {}, a.exit_code ?? (a.signal ? `signal ${a.signal}` : "")),
      h("td", {}, a.reason || (a.finished_at ? "" : "running")),
      h("td", { class: "message" }, a.message || ""),
      h("td", { class: "sizes" }, outputSizes(a)),
      h("td", {}, size(a.peak_memory)),
      h("td", {}, a.cpu_seconds !== null && a.cpu_seconds !== undefined ? a.cpu_seconds.toFixed(2) : ""),
      h("td", {}, a.isolation || ""),
      job.spec.image ? h("td", {}, a.container ? h("code", {}, a.container) : "") : null,
    ),
  );
}

/** What the latest started attempt really ran (its pinned inputs): the
 * image's digest, the resolved command, env names, stdin's hash... */
function inputsView(job) {
  const last = [...job.attempts].reverse().find((a) => a.inputs);
  if (!last) return "";
  const i = last.inputs;
  const code = (text) => (text ? h("code", {}, text) : "");
  const words = (list) => (list && list.length ? list.join(" ") : "");
  const stdin = i.stdin_bytes === null ? "streamed" : `${size(i.stdin_bytes)}, sha256 ${i.stdin_sha256}`;
  return [
    h("h2", {}, `Ran with (attempt ${last.number})`),
    h(
      "div",
      { id: "inputs" },
      facts([
        ["Image", i.image ? code(i.image) : ""],
        ["Digest", i.image_digest ? h("code", { id: "image-digest" }, i.image_digest) : ""],
        ["Entrypoint", code(words(i.entrypoint))],
        ["Command", code(words(i.command))],
        ["Env names", code(words(i.env))],
        ["Stdin", stdin],
        ["Working dir", code(i.cwd)],
        ["User", code(i.user)],
        ["Limits", Object.entries(i.limits || {}).map(([k, v]) => `${k}=${v}`).join(" ")],
        ["Isolation", i.isolation],
        ["Runtime", i.runtime],
      ]),
    ),
  ];
}

/** The log pane: output of each attempt in turn, stdout and stderr apart. */
class LogPane {
  constructor(id) {
    this.id = id;
    this.following = true;
    this.held = [];
    this.view = new LogView(PANE_LIMIT);
    this.pre = this.view.pre;
    this.view.search.onJump = () => this.setFollowing(false);
    this.state = h("span", { class: "muted", id: "log-state" }, "waiting for the job to start…");
    this.toggle = h("button", { type: "button", id: "follow", onclick: () => this.setFollowing(!this.following) }, "Pause");
    this.download = h("button", { type: "button", id: "download", onclick: () => this.save() }, "Download");
    this.times = h("input", { type: "checkbox", id: "log-times", checked: true, onchange: () => this.showTimes() });
    this.timesLabel = h("label", { class: "choice", hidden: true }, this.times, "Timestamps");
    this.attempt = 0;
    this.element = h(
      "section",
      { class: "logs" },
      h(
        "div",
        { class: "logbar" },
        h("h2", {}, "Output"),
        h("span", { class: "legend" }, h("span", { class: "out" }, "stdout"), h("span", { class: "err" }, "stderr")),
        this.state,
        this.view.search.element,
        this.timesLabel,
        this.toggle,
        this.download,
      ),
      this.pre,
    );
  }

  setFollowing(on) {
    this.following = on;
    fill(this.toggle, on ? "Pause" : "Follow");
    this.toggle.setAttribute("aria-pressed", on ? "false" : "true");
    if (on) {
      for (const [stream, text] of this.held.splice(0)) this.show(stream, text);
      this.pre.scrollTop = this.pre.scrollHeight;
    }
  }

  showTimes() {
    this.pre.classList.toggle("with-times", this.view.timestamps && this.times.checked);
  }

  write(stream, text) {
    if (this.following) this.show(stream, text);
    else this.held.push([stream, text]);
  }

  show(stream, text) {
    this.view.write(stream, text);
    if (this.following) this.pre.scrollTop = this.pre.scrollHeight;
  }

  /** Follow attempt 1, 2, … as the job runs them, until it ends; nothing
   * is left to pause then. */
  async run(latest) {
    this.view.timestamps = await api.offersLogTimestamps();
    this.timesLabel.hidden = !this.view.timestamps;
    this.showTimes();
    let number = 1;
    for (;;) {
      const job = await latest();
      this.toggle.hidden = isTerminal(job);
      if (job.attempt < number) {
        if (isTerminal(job)) break;
        fill(this.state, job.attempt ? "waiting for the next attempt…" : "waiting for the job to start…");
        await new Promise((resolve) => setTimeout(resolve, REFRESH_MS));
        continue;
      }
      this.view.begin(job.attempts.length > 1 ? `── attempt ${number} ──\n` : "");
      this.attempt = number;
      fill(this.state, isTerminal(job) ? `attempt ${number}` : `following attempt ${number}`);
      await api.followLog(this.id, number, (stream, text) => this.write(stream, text), undefined, this.view.timestamps);
      number += 1;
    }
    fill(this.state, "the job has ended");
    this.toggle.hidden = true;
    this.setFollowing(true);
  }

  async save() {
    const number = this.attempt || 1;
    try {
      const blob = await api.logBlob(this.id, number);
      const url = URL.createObjectURL(blob);
      const anchor = h("a", { href: url, download: `${this.id}-attempt-${number}.log` });
      document.body.append(anchor);
      anchor.click();
      anchor.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (error) {
      showError(error);
    }
  }
}

export default {
  title: "Job",
  async render(main, context, id) {
    let job = await api.get(api.jobPath(id));
    document.title = `${job.name || job.id} · jobdock`;
    const head = h("div", { class: "heading" });
    const about = h("div", { id: "summary" });
    const attempts = h("div", { id: "attempts" });
    const pane = new LogPane(id);
    pane.toggle.hidden = isTerminal(job);
    const stopButton = h("button", { type: "button", id: "stop", class: "danger", onclick: () => stop() }, "Stop");
    const rerunButton = h("button", { type: "button", id: "rerun", onclick: () => rerun() }, "Re-run");

    const stop = async () => {
      stopButton.disabled = true;
      try {
        job = await api.post(api.jobPath(id, "/cancel"));
        show();
      } catch (error) {
        showError(error);
        stopButton.disabled = false;
      }
    };
    const rerun = async () => {
      rerunButton.disabled = true;
      try {
        const again = await api.post("/v1/jobs", rerunSpec(job.spec));
        location.assign(jobHref(again.id));
      } catch (error) {
        showError(error);
        rerunButton.disabled = false;
      }
    };
    const show = () => {
      stopButton.hidden = isTerminal(job);
      stopButton.disabled = job.cancel_requested && !isTerminal(job);
      rerunButton.title = job.stdin_bytes ? "Its stdin is not kept, so the new job runs without it" : "";
      fill(head, h("h1", {}, job.name || job.id), stateBadge(job.state), h("span", { class: "spacer" }), stopButton, rerunButton);
      fill(about, summary(job));
      fill(
        attempts,
        h("h2", {}, "Attempts"),
        table(
          ["#", "Worker", "Started", "Duration", "Exit", "Reason", "Message", "stdout / stderr", "Peak memory", "CPU s", "Isolation", job.spec.image ? "Container" : null].filter(Boolean),
          attemptRows(job),
          "Not started yet.",
        ),
        inputsView(job),
      );
    };
    const refresh = async () => {
      if (!isTerminal(job)) job = await api.get(api.jobPath(id));
      clearError();
      show();
      return job;
    };

    show();
    fill(
      main,
      head,
      h("div", { class: "columns" }, about, h("details", { class: "spec" }, h("summary", {}, "Spec (JSON)"), h("pre", {}, JSON.stringify(job.spec, null, 2)))),
      pane.element,
      attempts,
    );
    let stopPolling = () => {};
    stopPolling = every(REFRESH_MS, async () => {
      await refresh();
      if (isTerminal(job)) stopPolling();
    });
    pane.run(refresh).catch(showError);
  },
};
