// The dashboard's router: which page a path shows, the navigation and who
// is signed in. Every /ui path serves the same HTML; this script renders the
// page for the path.

import * as api from "./api.js";
import { fill, h } from "./dom.js";
import { main, showError, signOut } from "./shell.js";
import jobList from "./jobs.js";
import jobPage from "./job.js";
import machines from "./machines.js";
import schedules from "./schedules.js";
import submit from "./submit.js";
import workers from "./workers.js";
import { workflowList, workflowPage } from "./workflows.js";

// The pages, in navigation order. A page is a module's export (its default
// one, or a named one where a module holds two) with ``title`` and
// ``render(main, context, ...routeGroups)``; to add one,
// import it above and add its routes here (``nav`` names the tab it lights
// up, ``href`` makes it a tab of its own).
const PAGES = [
  { route: /^\/ui\/?$/, nav: "Jobs", href: "/ui", page: jobList },
  { route: /^\/ui\/jobs\/([^/]+)\/?$/, nav: "Jobs", page: jobPage },
  { route: /^\/ui\/submit\/?$/, nav: "Submit", href: "/ui/submit", page: submit },
  { route: /^\/ui\/schedules\/?$/, nav: "Schedules", href: "/ui/schedules", page: schedules },
  { route: /^\/ui\/workers\/?$/, nav: "Workers", href: "/ui/workers", page: workers },
  { route: /^\/ui\/workflows\/?$/, nav: "Workflows", href: "/ui/workflows", page: workflowList },
  { route: /^\/ui\/workflows\/([^/]+)\/?$/, nav: "Workflows", page: workflowPage },
  { route: /^\/ui\/machines\/?$/, nav: "Machines", href: "/ui/machines", page: machines, admin: true },
];

// A page with ``admin`` is a tab for administrators only (once /v1/me says).
function renderNav(current, me) {
  const tabs = PAGES.filter((page) => page.href && (!page.admin || (me && me.admin))).map((page) =>
    h("a", { href: page.href, "aria-current": current && current.nav === page.nav ? "page" : null }, page.nav),
  );
  fill(document.getElementById("nav"), tabs);
}

function renderUser(me) {
  const who = h("span", { class: "who", "data-user": me.name }, me.name, me.admin ? " (admin)" : "");
  const out = api.token()
    ? h("button", { class: "link", type: "button", onclick: () => signOut() }, "Sign out")
    : null;
  fill(document.getElementById("user"), who, out);
}

async function boot() {
  const path = location.pathname;
  const found = PAGES.find((page) => page.route.test(path));
  renderNav(found);
  let me;
  try {
    me = await api.get("/v1/me");
  } catch (error) {
    showError(error);
    return;
  }
  renderUser(me);
  renderNav(found, me);
  if (!found) {
    document.title = "Not found · jobdock";
    fill(main, h("h1", {}, "Not found"), h("p", {}, "No dashboard page at this address. ", h("a", { href: "/ui" }, "All jobs")));
    return;
  }
  const groups = path.match(found.route).slice(1).map(decodeURIComponent);
  document.title = `${found.page.title} · jobdock`;
  try {
    await found.page.render(main, { me }, ...groups);
  } catch (error) {
    if (error instanceof api.AuthNeeded) showError(error);
    else showPageError(error);
  }
}

/** A page that cannot be shown (an unknown job, say) says why in its
 * place, instead of "Loading…". */
function showPageError(error) {
  const title = error.status === 404 ? "Not found" : "Cannot show this page";
  document.title = `${title} · jobdock`;
  fill(
    main,
    h("h1", {}, title),
    h("p", { class: "error", id: "page-error", role: "alert" }, error.message || String(error)),
    h("p", {}, h("a", { href: "/ui" }, "All jobs")),
  );
}

boot();
