// The loopjob dashboard: polls the JSON API and draws one card per job. Plain JavaScript,
// no build step, nothing fetched from elsewhere. Data is only ever set as text, never as HTML.
"use strict";

// Where the jobs come from. A cluster view reads another endpoint and maps its answer onto the
// same fields (name, state, leadership, cluster, last_run, next_tick_ms, counters,
// recent_runs); see the JSON schema in `loopjob::admin`.
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

// The last run as the card shows it: the cluster's (any node) for a guarded job, else this
// node's.
function lastRun(job) {
  const run = job.cluster && job.cluster.last_run;
  if (run) return { ...run, message: run.error };
  return job.last_run;
}

function fill(card, job, now) {
  card.dataset.job = job.name;
  card.querySelector(".name").textContent = job.name;
  const cluster = job.cluster || {};
  const stateName = cluster.paused ? "paused" : job.state;
  const state = card.querySelector(".state");
  state.textContent = stateName;
  state.className = "state " + stateName;

  const lead = job.leadership;
  const lastHolder = cluster.last_run ? cluster.last_run.holder : null;
  card.querySelector(".leader").textContent = !lead && !job.cluster ? "not guarded"
    : lead && lead.leader ? "this node · epoch " + lead.epoch
    : lastHolder ? "another node (last: " + lastHolder + ")" : "another node";

  const last = card.querySelector(".last");
  const errorText = card.querySelector(".error-text");
  last.textContent = "";
  const run = lastRun(job);
  if (!run) {
    last.textContent = "never";
  } else {
    const outcome = document.createElement("span");
    outcome.className = "outcome " + (run.outcome === "succeeded" ? "ok" : run.outcome ? "bad" : "");
    outcome.textContent = run.outcome || "running";
    last.append(outcome);
    const when = run.ended_ms ?? run.started_ms;
    last.append(" " + [duration(run.duration_ms), when ? ago(now - when) : ""]
      .filter(Boolean).join(" · "));
  }
  const problem = cluster.error || (run && run.outcome !== "succeeded" && run.message);
  errorText.textContent = problem || "";
  errorText.hidden = !problem;

  const next = cluster.next_due_ms ?? job.next_tick_ms;
  card.querySelector(".next").textContent =
    cluster.paused || job.state === "paused" ? "paused" : next ? ago(now - next) : "—";
  const c = job.counters;
  card.querySelector(".counts").textContent = c.runs + (c.runs === 1 ? " run" : " runs") +
    " · " + c.failures + " failed · " + c.skipped + " skipped";

  // Oldest on the left, newest on the right.
  const strip = card.querySelector(".strip");
  strip.textContent = "";
  const recent = (job.recent_runs || []).slice().reverse();
  strip.hidden = recent.length === 0;
  for (const past of recent) {
    const mark = document.createElement("li");
    mark.className = past.outcome === "succeeded" ? "" : past.outcome ? "bad" : "open";
    mark.title = (past.outcome || "running") + " · " + past.holder +
      (past.duration_ms != null ? " · " + duration(past.duration_ms) : "");
    strip.append(mark);
  }

  const paused = stateName === "paused";
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
