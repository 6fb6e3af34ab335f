// The taskcounts dashboard: the fleet (#jobs?state=&alert=&account=&prefix=): its totals, the jobs
// that need attention first, then a page of jobs; one job with its history (#job/<account>/<id>).
// It polls the API every REFRESH_MS with If-None-Match, so an unchanged page costs a bodiless 304;
// a refresh makes at most three requests (totals, attention, the page), whatever the fleet's size.
"use strict";

const REFRESH_MS = 5000;
// The read key: in session storage (gone with the tab) unless the person asks to remember it.
const KEY_STORAGE = "taskcounts.readKey";
const API = "../"; // the page is served at <app>/api/dashboard/
const SVG = "http://www.w3.org/2000/svg";
const STATES = ["active", "running", "succeeded", "failed"];
const PAGE_SIZE = 50;
const ATTENTION_SIZE = 12; // stalled and failing jobs shown above the page
const FILTERS = ["state", "alert", "account", "prefix"];

const cached = new Map(); // url -> {etag, body}: the last 200 of each URL, reused on a 304
let notModified = 0; // polls answered 304 (shown on <body> for the browser tests)
let requests = 0; // requests made by the current refresh (shown on <body>)
let timer = null;
// Paging of the fleet view: the tokens of the pages reached under the current filters.
const pager = { filters: null, tokens: [null], index: 0, next: null };

class KeyRefused extends Error {}
class SignInNeeded extends Error {}
class RoleMissing extends Error {}

function storedKey() {
  return sessionStorage.getItem(KEY_STORAGE) || localStorage.getItem(KEY_STORAGE) || "";
}

function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
  localStorage.removeItem(KEY_STORAGE);
}

// ---- the API, with conditional requests --------------------------------------------------------

async function getJson(url) {
  // No key: with Microsoft Entra ID the browser's sign-in session (a cookie) is the credential.
  const key = storedKey();
  const headers = key ? { "x-functions-key": key } : {};
  const last = cached.get(url);
  if (last) headers["If-None-Match"] = last.etag;
  requests += 1;
  const response = await fetch(url, { headers, cache: "no-store" });
  if (response.status === 304 && last) {
    notModified += 1;
    return last.body;
  }
  if (response.status === 401) {
    // The app refuses a key with "AuthenticationFailed"; anything else is sign-in (App Service
    // Authentication answers before the app, or the app says "SignInRequired").
    let code = null;
    try { code = (await response.json()).code; } catch (ignored) { /* App Service's own 401 */ }
    throw code === "AuthenticationFailed" ? new KeyRefused() : new SignInNeeded();
  }
  if (response.status === 403) throw new RoleMissing();
  if (!response.ok) {
    let message = `HTTP ${response.status}`;
    try { message += `: ${(await response.json()).message.value}`; } catch (ignored) { /* not a Batch error body */ }
    throw new Error(message);
  }
  const body = await response.json();
  const etag = response.headers.get("ETag");
  if (etag) cached.set(url, { etag, body });
  return body;
}

function jobsUrl(filters, size, token) {
  const query = new URLSearchParams({ maxresults: String(size) });
  for (const [name, value] of filters) query.set(name, value);
  if (token) query.set("$skiptoken", token);
  return `${API}jobs?${query}`;
}

function tokenOf(nextLink) {
  return nextLink ? new URL(nextLink, location.href).searchParams.get("$skiptoken") : null;
}

// The filters the hash names (#jobs?state=active&...), those the API knows only.
function currentFilters() {
  const query = new URLSearchParams(location.hash.replace(/^#jobs\??/, "").replace(/^#.*/, ""));
  return new URLSearchParams(FILTERS.filter((name) => query.get(name)).map((name) => [name, query.get(name)]));
}

// ---- building elements (no innerHTML: ids and notes are data, not markup) ------------------------

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  return fill(node, attributes, children);
}

function svg(tag, attributes = {}, ...children) {
  return fill(document.createElementNS(SVG, tag), attributes, children);
}

function fill(node, attributes, children) {
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// ---- formatting ------------------------------------------------------------------------------------

const number = new Intl.NumberFormat();

function clock(iso) {
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function span(milliseconds) {
  const minutes = Math.round(Math.abs(milliseconds) / 60000);
  if (minutes < 1) return "<1 min";
  if (minutes < 120) return `${minutes} min`;
  const hours = Math.round(minutes / 60);
  return hours < 48 ? `${hours} h` : `${Math.round(hours / 24)} days`;
}

function ago(iso) {
  return iso ? `${span(Date.now() - new Date(iso))} ago` : "never";
}

function eta(progress) {
  if (!progress.eta) return "—";
  return `in ${span(new Date(progress.eta) - Date.now())} (${clock(progress.eta)})`;
}

function rate(progress) {
  const value = progress.completionsPerMinute;
  return value === null || value === undefined ? "—" : `${number.format(Math.round(value * 10) / 10)} /min`;
}

// ---- a job's card ----------------------------------------------------------------------------------

function bar(counts) {
  const total = STATES.reduce((sum, state) => sum + counts[state], 0);
  const image = svg("svg", { class: "bar", viewBox: "0 0 1000 10", preserveAspectRatio: "none", role: "img",
                             "aria-label": STATES.map((s) => `${s} ${counts[s]}`).join(", ") });
  let x = 0;
  for (const state of STATES) {
    const width = total ? (1000 * counts[state]) / total : 0;
    image.append(svg("rect", { class: state, x, y: 0, width, height: 10, "data-state": state },
                     svg("title", {}, `${state}: ${number.format(counts[state])}`)));
    x += width;
  }
  return image;
}

function badges(job) {
  const progress = job.progress || {};
  const status = job.validationStatus;
  return [
    progress.stalledSince ? el("span", { class: "badge stalled", "data-badge": "stalled",
                                         title: `nothing completed since ${progress.stalledSince}` },
                               `stalled since ${clock(progress.stalledSince)}`) : null,
    progress.failing ? el("span", { class: "badge failing", "data-badge": "failing" },
                          `failing ${Math.round(progress.recentFailureRatio * 100)}%`) : null,
    el("span", { class: `badge validation ${status}`, "data-field": "validation",
                 title: job.validationNote || "" },
       status === "unvalidated" ? "unvalidated" : `${status} ${ago(job.lastValidatedAt)}`),
  ];
}

function numbers(job) {
  const counts = job.taskCounts;
  const progress = job.progress || {};
  const cell = (label, field, value, swatch) => el("div", {},
    el("dt", {}, swatch ? el("span", { class: `swatch ${swatch}` }) : null, label),
    el("dd", { "data-field": field }, value));
  return el("dl", { class: "numbers" },
    ...STATES.map((state) => cell(state, state, number.format(counts[state]), state)),
    cell("rate", "rate", rate(progress)),
    cell("ETA", "eta", eta(progress)));
}

// A job's page: #job/<account>/<id> (any account, the default one by its name too), or #job/<id>.
function jobLink(job) {
  const account = job.account ? `${encodeURIComponent(job.account)}/` : "";
  return `#job/${account}${encodeURIComponent(job.id)}`;
}

function card(job, linked) {
  const title = linked ? el("a", { href: jobLink(job) }, job.id) : job.id;
  const account = job.account ? [el("span", { "data-field": "account" }, job.account), " · "] : [];
  return el("article", { class: "card", "data-job": job.id, "data-account": job.account || "" },
    el("h2", {}, title, badges(job)), bar(job.taskCounts), numbers(job),
    el("p", { class: "meta" }, ...account, "counts changed ",
       el("span", { "data-field": "updated" }, ago(job.lastUpdatedAt))));
}

// ---- a job's history chart -------------------------------------------------------------------------

function chart(points) {
  const width = 720, height = 260, left = 50, bottom = 24, top = 10;
  const image = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img",
                             "aria-label": "completed and failed tasks over time" });
  if (points.length === 0) {
    image.append(svg("text", { x: left, y: height / 2 }, "No history yet: a point is recorded when counts change."));
    return image;
  }
  const times = points.map((p) => new Date(p.at).getTime());
  const first = times[0], last = Math.max(times[times.length - 1], first + 1);
  const highest = Math.max(1, ...points.map((p) => p.completed));
  const x = (t) => left + ((t - first) / (last - first)) * (width - left - 10);
  const y = (value) => height - bottom - (value / highest) * (height - bottom - top);
  const line = (field) => points.map((p, i) => `${x(times[i]).toFixed(1)},${y(p[field]).toFixed(1)}`).join(" ");
  image.append(
    svg("line", { class: "axis", x1: left, y1: height - bottom, x2: width - 10, y2: height - bottom }),
    svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: height - bottom }),
    svg("text", { x: 4, y: top + 10 }, number.format(highest)),
    svg("text", { x: 4, y: height - bottom }, "0"),
    svg("text", { x: left, y: height - 6 }, clock(points[0].at)),
    svg("text", { x: width - 60, y: height - 6 }, clock(points[points.length - 1].at)),
    svg("polyline", { class: "completed", points: line("completed") }, svg("title", {}, "completed")),
    svg("polyline", { class: "failed", points: line("failed") }, svg("title", {}, "failed")));
  return image;
}

function lastValidation(job) {
  const summary = job.lastValidation;
  if (!summary) return el("p", { class: "empty" }, "Not validated yet.");
  const corrected = summary.corrected || {};
  const rows = [
    ["finished", summary.finishedAt ? ago(summary.finishedAt) : "—"],
    ["tasks listed", number.format(summary.tasksListed ?? 0)],
    ...Object.entries(corrected).map(([kind, count]) => [`corrected: ${kind}`, number.format(count)]),
    ["counter rows repaired", number.format(summary.countersRepaired ?? 0)],
  ];
  return el("dl", { class: "numbers", "data-field": "last-validation" },
    ...rows.map(([label, value]) => el("div", {}, el("dt", {}, label), el("dd", {}, value))));
}

// ---- views -----------------------------------------------------------------------------------------

function totalsView(fleet, title) {
  const counts = fleet.taskCounts;
  const jobs = [["jobs", fleet.jobs], ["active jobs", fleet.activeJobs], ["finished", fleet.finishedJobs],
                ["stalled", fleet.stalledJobs], ["failing", fleet.failingJobs]];
  return el("article", { class: "totals", "data-totals": title },
    el("h2", {}, title),
    bar(counts),
    el("dl", { class: "numbers" },
      ...STATES.map((state) => el("div", {}, el("dt", {}, el("span", { class: `swatch ${state}` }), state),
                                  el("dd", { "data-total": state }, number.format(counts[state])))),
      ...jobs.map(([label, value]) => el("div", {}, el("dt", {}, label),
                                         el("dd", { "data-total": label.replace(" ", "-") }, number.format(value))))));
}

// The filter form: its values follow the hash, unless a person is changing them.
function syncFilters(filters, accounts) {
  const form = document.getElementById("filters");
  const choices = form.elements.account;
  const names = ["", ...accounts];
  if ([...choices.options].map((option) => option.value).join() !== names.join()) {
    choices.replaceChildren(...names.map((name) => el("option", { value: name }, name || "all")));
  }
  for (const name of FILTERS) {
    if (document.activeElement !== form.elements[name]) form.elements[name].value = filters.get(name) || "";
  }
}

function applyFilters(event) {
  event.preventDefault();
  const form = document.getElementById("filters");
  const chosen = new URLSearchParams();
  for (const name of FILTERS) {
    const value = form.elements[name].value.trim();
    if (value) chosen.set(name, value);
  }
  location.hash = `#jobs?${chosen}`;
}

function showPager(nextToken) {
  pager.next = nextToken;
  document.getElementById("newer").disabled = pager.index === 0;
  document.getElementById("older").disabled = !nextToken;
  document.querySelector('.pager [data-field="page"]').textContent = `page ${pager.index + 1}`;
}

async function showJobs() {
  const filters = currentFilters();
  if (pager.filters !== filters.toString()) Object.assign(pager, { filters: filters.toString(), tokens: [null], index: 0 });
  // Stalled and failing jobs first: above the first page, unless the filter already asks for them.
  const attentionShown = !filters.has("alert") && pager.index === 0;
  const attentionFilters = new URLSearchParams([...filters, ["alert", "any"]]);
  const [totals, page, attention] = await Promise.all([
    getJson(`${API}totals`), // every account's: the account filter lists them all
    getJson(jobsUrl(filters, PAGE_SIZE, pager.tokens[pager.index])),
    attentionShown ? getJson(jobsUrl(attentionFilters, ATTENTION_SIZE, null)) : null,
  ]);
  const shownFirst = attention ? attention.value : [];
  const firstKeys = new Set(shownFirst.map((job) => `${job.account}/${job.id}`));
  const rest = page.value.filter((job) => !firstKeys.has(`${job.account}/${job.id}`));
  const cards = (jobs) => jobs.map((job) => card(job, true));
  const account = totals.accounts.find((entry) => entry.account === filters.get("account"));
  document.getElementById("totals").replaceChildren(totalsView(account || totals.fleet, account ? account.account : "Fleet"));
  syncFilters(filters, totals.accounts.map((entry) => entry.account).filter(Boolean));
  document.getElementById("attention-title").hidden = shownFirst.length === 0;
  document.getElementById("attention").replaceChildren(...cards(shownFirst));
  const none = el("p", { class: "empty" }, filters.toString() ? "No jobs match." : "No jobs yet.");
  document.getElementById("page").replaceChildren(...(rest.length || shownFirst.length ? cards(rest) : [none]));
  showPager(tokenOf(page["odata.nextLink"]));
  show(document.getElementById("jobs"));
}

async function showJob(account, jobId) {
  const where = account ? `accounts/${encodeURIComponent(account)}/` : "";
  const path = `${API}${where}jobs/${encodeURIComponent(jobId)}`;
  const [job, history] = await Promise.all([getJson(`${path}/taskcounts`), getJson(`${path}/history`)]);
  const section = document.getElementById("job");
  section.replaceChildren(
    card({ id: history.jobId, account, ...job }, false),
    el("article", { class: "card" }, el("h2", {}, "Completed and failed over time"), chart(history.value)),
    el("article", { class: "card" }, el("h2", {}, "Last validation"), lastValidation(job)));
  show(section);
}

function show(section) {
  for (const id of ["jobs", "job", "key-form", "sign-in"]) document.getElementById(id).hidden = id !== section.id;
  document.getElementById("change-key").hidden = !storedKey();
}

function setStatus(text, isError = false) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function askForKey(reason) {
  clearTimeout(timer);
  show(document.getElementById("key-form"));
  document.getElementById("change-key").hidden = true;
  setStatus(reason || "Enter a read key to read the API.", Boolean(reason));
  document.getElementById("key").focus();
}

function askToSignIn(reason) {
  clearTimeout(timer);
  const back = location.pathname + location.hash;
  document.getElementById("sign-in-link").href = `/.auth/login/aad?post_login_redirect_uri=${encodeURIComponent(back)}`;
  show(document.getElementById("sign-in"));
  setStatus(reason, true);
}

async function refresh() {
  clearTimeout(timer);
  requests = 0;
  const route = location.hash.match(/^#job\/(?:([^/]+)\/)?([^/]+)$/);
  try {
    await (route ? showJob(route[1] && decodeURIComponent(route[1]), decodeURIComponent(route[2])) : showJobs());
    setStatus(`updated ${new Date().toLocaleTimeString()} · every ${REFRESH_MS / 1000} s`);
    document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
    document.body.dataset.notModified = String(notModified);
    document.body.dataset.requests = String(requests);
  } catch (failure) {
    if (failure instanceof KeyRefused) {
      return askForKey(storedKey() ? "That key was refused: it is not a read key of this app." : undefined);
    }
    if (failure instanceof SignInNeeded) return askToSignIn("Sign in to read the counts.");
    if (failure instanceof RoleMissing) {
      return askToSignIn("Your account lacks the TaskCounts.Read role of this app; ask its owner, or sign in as another.");
    }
    setStatus(`Cannot read the API (${failure.message}); retrying.`, true);
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  forgetKey();
  const store = document.getElementById("remember").checked ? localStorage : sessionStorage;
  store.setItem(KEY_STORAGE, document.getElementById("key").value.trim());
  document.getElementById("key").value = "";
  cached.clear();
  refresh();
});
document.getElementById("change-key").addEventListener("click", () => {
  forgetKey();
  cached.clear();
  askForKey();
});
document.getElementById("filters").addEventListener("submit", applyFilters);
for (const select of document.querySelectorAll("#filters select")) select.addEventListener("change", applyFilters);
document.getElementById("newer").addEventListener("click", () => { pager.index -= 1; refresh(); });
document.getElementById("older").addEventListener("click", () => {
  pager.tokens[pager.index + 1] = pager.next;
  pager.index += 1;
  refresh();
});
window.addEventListener("hashchange", refresh);
refresh();
