// What every page shares: the page's element, errors above it, the sign-in
// form, and polling while the tab is visible.

import * as api from "./api.js";
import { fill, h } from "./dom.js";

export const main = document.getElementById("page");
const banner = document.getElementById("banner");

/** Show an error above the page (or the sign-in form, if the server wants
 * credentials). */
export function showError(error) {
  if (error instanceof api.AuthNeeded) {
    signIn(error.message);
    return;
  }
  fill(banner, error.message || String(error));
  banner.hidden = false;
}

export function clearError() {
  banner.hidden = true;
  banner.replaceChildren();
}

/** Run ``task`` now and then every ``ms`` milliseconds while the tab is
 * visible, each run after the previous one ended; returns a stop function. */
export function every(ms, task) {
  let timer = null;
  let stopped = false;
  const run = async () => {
    if (stopped) return;
    if (document.visibilityState === "visible") {
      try {
        await task();
      } catch (error) {
        showError(error);
      }
    }
    if (!stopped) timer = setTimeout(run, ms);
  };
  run();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

export function signOut() {
  api.setToken(null);
  location.reload();
}

function signIn(message) {
  const stale = api.token();
  api.setToken(null);
  document.title = "Sign in · jobdock";
  const input = h("input", { type: "password", name: "token", id: "token", autocomplete: "off", required: true });
  const form = h(
    "form",
    { class: "card signin", id: "signin" },
    h("h1", {}, "Sign in"),
    h("p", {}, "This jobdock server needs an API token (", h("code", {}, "jobdock tokens create USER"), ")."),
    h("label", { for: "token" }, "API token"),
    input,
    stale ? h("p", { class: "error" }, message) : null,
    h("button", { type: "submit" }, "Sign in"),
    h("p", { class: "muted" }, "The token is kept in this tab only, until you sign out or close it."),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    api.setToken(input.value.trim());
    location.reload();
  });
  fill(document.getElementById("user"));
  clearError();
  fill(main, form);
  input.focus();
}

