// The loopjob dashboard: polls the JSON API and draws one card per job. Plain JavaScript,
// no build step, nothing fetched from elsewhere. Data is only ever set as text, never as HTML.
"use strict";

// Where the jobs come from. A cluster view reads another endpoint and maps its answer onto the
// same fields (name, state, leadership, last_run, next_tick_ms, counters, recent_runs).
const SOURCE = {
  url: "api/jobs",
  jobs: (answer) => answer.jobs,
  action: (job, action) => "api/jobs/" + encodeURIComponent(job) + "/" + action,
};
const REFRESH_MS = 3000;
const TOKEN_KEY = "loopjob.admin.token";

const $ = (id) => document.getElementById(id);
let pendingAction = null;

function token() { return sessionStorage.getItem(TOKEN_KEY); }

function headers() {
  const value = token();
  return value ? { Authorization: "Bearer " + value } : {};
}

let messageTimer = null;

function showMessage(text, isError) {
  const box = $("message");
  box.textContent = text;
  box.hidden = !text;
  box.classList.toggle("error", Boolean(isError));
  clearTimeout(messageTimer);
  if (!isError) messageTimer = setTimeout(() => { box.hidden = true; }, 5000);
}

function askForToken(then) {
  pendingAction = then || null;
  $("token-form").hidden = false;
  $("token-input").focus();
}

function ago(ms) {
  const s = Math.round(Math.abs(ms) / 1000);
  const text = s < 60 ? s + " s" : s < 3600 ? Math.round(s / 60) + " min"
    : s < 86400 ? Math.round(s / 3600) + " h" : Math.round(s / 86400) + " d";
  return ms >= 0 ? text + " ago" : "in " + text;
}

function duration(ms) {
  if (ms == null) return "";
  return ms < 1000 ? ms + " ms" : (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
}

function fill(card, job, now) {
  card.dataset.job = job.name;
  card.querySelector(".name").textContent = job.name;
  const state = card.querySelector(".state");
  state.textContent = job.state;
  state.className = "state " + job.state;

  const lead = job.leadership;
  card.querySelector(".leader").textContent = !lead ? "not guarded"
    : lead.leader ? "this node · epoch " + lead.epoch : "another node";

  const last = card.querySelector(".last");
  const errorText = card.querySelector(".error-text");
  last.textContent = "";
  errorText.hidden = true;
  if (!job.last_run) {
    last.textContent = "never";
  } else {
    const run = job.last_run;
    const outcome = document.createElement("span");
    outcome.className = "outcome " + (run.outcome === "succeeded" ? "ok" : run.outcome ? "bad" : "");
    outcome.textContent = run.outcome || "running";
    last.append(outcome);
    const when = run.ended_ms ?? run.started_ms;
    last.append(" " + [duration(run.duration_ms), when ? ago(now - when) : ""]
      .filter(Boolean).join(" · "));
    if (run.message) {
      errorText.textContent = run.message;
      errorText.hidden = false;
    }
  }
  card.querySelector(".next").textContent = job.next_tick_ms ? ago(now - job.next_tick_ms) : "—";
  const c = job.counters;
  card.querySelector(".counts").textContent = c.runs + (c.runs === 1 ? " run" : " runs") +
    " · " + c.failures + " failed · " + c.skipped + " skipped";

  const strip = card.querySelector(".strip");
  strip.textContent = "";
  const recent = job.recent_runs || [];
  strip.hidden = recent.length === 0;
  for (const run of recent) {
    const mark = document.createElement("li");
    mark.className = run.outcome === "succeeded" ? "" : "bad";
    mark.title = run.outcome + (run.duration_ms != null ? " · " + duration(run.duration_ms) : "");
    strip.append(mark);
  }

  const paused = job.state === "paused";
  card.querySelector('[data-action="pause"]').disabled = paused || job.state === "stopped";
  card.querySelector('[data-action="resume"]').disabled = !paused;
}

function draw(answer) {
  const list = $("jobs");
  const jobs = SOURCE.jobs(answer);
  $("node").textContent = answer.node || "";
  $("group").textContent = answer.group ? "group " + answer.group : "";
  const seen = new Set();
  for (const job of jobs) {
    seen.add(job.name);
    let card = list.querySelector('[data-job="' + CSS.escape(job.name) + '"]');
    if (!card) {
      card = $("job-card").content.firstElementChild.cloneNode(true);
      list.append(card);
    }
    fill(card, job, answer.now_ms);
  }
  for (const card of [...list.children]) {
    if (card.dataset.job && !seen.has(card.dataset.job)) card.remove();
  }
  const empty = list.querySelector(".empty");
  if (jobs.length === 0 && !empty) {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = "No jobs.";
    list.append(p);
  } else if (jobs.length > 0 && empty) {
    empty.remove();
  }
}

async function refresh() {
  try {
    const response = await fetch(SOURCE.url, { headers: headers(), cache: "no-store" });
    if (response.status === 401) {
      $("live").className = "dot down";
      $("updated").textContent = "needs the admin token";
      askForToken(null);
      return;
    }
    if (!response.ok) throw new Error((await response.json()).error || response.statusText);
    draw(await response.json());
    $("live").className = "dot up";
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (error) {
    $("live").className = "dot down";
    $("updated").textContent = "unreachable: " + error.message;
  }
}

async function act(job, action) {
  if (!token()) {
    askForToken(() => act(job, action));
    return;
  }
  const response = await fetch(SOURCE.action(job, action), { method: "POST", headers: headers() });
  const answer = await response.json().catch(() => ({}));
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    showMessage(answer.error || "the token was refused", true);
    askForToken(() => act(job, action));
    return;
  }
  if (!response.ok) {
    showMessage(answer.error || response.statusText, true);
    return;
  }
  const result = answer.result ? " (" + answer.result.replace(/_/g, " ") + ")" : "";
  showMessage(action + " " + job + ": done" + result, false);
  refresh();
}

$("jobs").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  const card = button && button.closest("[data-job]");
  if (card) act(card.dataset.job, button.dataset.action);
});

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("token-input").value.trim();
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  $("token-input").value = "";
  $("token-form").hidden = true;
  const then = pendingAction;
  pendingAction = null;
  if (then) then(); else refresh();
});

$("token-forget").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  $("token-form").hidden = true;
  showMessage("token forgotten", false);
});

$("token-button").addEventListener("click", () => askForToken(null));

refresh();
setInterval(refresh, REFRESH_MS);
