// The status page: one fetch of the latest updates, then everything live from /events
// (server-sent events): `overview` (backends, live job counts) whenever it changes, and each new
// update as it is published. No polling; a dropped feed reconnects by itself and resumes after
// the last update it had (the browser sends Last-Event-ID).
"use strict";

const MAX_ROWS = 200;

function renderBackends(backends) {
  const holder = document.getElementById("backends");
  holder.textContent = "";
  for (const backend of backends) {
    const card = element("article", null, "card");
    card.dataset.backend = backend.name;
    const title = element("h3");
    title.append(element("span", backend.name));
    title.append(element("span", backend.healthy ? "up" : "down", backend.healthy ? "pill ok" : "pill bad"));
    card.append(title);
    const capabilities = backend.capabilities;
    const facts = element("dl", null, "facts");
    const add = (name, value) => { facts.append(element("dt", name), element("dd", value)); };
    if (capabilities) {
      add("kind", capabilities.kind || "—");
      add("cores", capabilities.max_cores || "—");
      add("memory", bytes(capabilities.max_memory));
      add("disk", bytes(capabilities.max_disk));
      add("wall time", capabilities.max_wall_time_seconds ? duration(capabilities.max_wall_time_seconds) : "no limit");
      add("preemptible", capabilities.supports_preemptible ? "yes" : "no");
      const accelerators = (capabilities.accelerators || []).map((a) => `${a.count}× ${a.model || a.kind || "accelerator"}`);
      if (accelerators.length) add("accelerators", accelerators.join(", "));
      if ((capabilities.features || []).length) add("features", capabilities.features.join(", "));
    } else {
      add("capabilities", "not known yet (never reached)");
    }
    card.append(facts);
    holder.append(card);
  }
  if (!backends.length) holder.append(element("p", "No backend.", "empty"));
}

function renderJobs(rows, totals, notShown) {
  const body = document.querySelector("#jobs tbody");
  body.textContent = "";
  for (const row of rows) {
    const line = element("tr");
    line.append(element("td", row.backend), element("td", row.job_set || "(none)", row.job_set ? "" : "muted"));
    line.append(element("td", row.queued, "num"), element("td", row.running, "num"));
    body.append(line);
  }
  const note = notShown ? `…and ${notShown} more (backend, job set) rows, counted in the totals.` : rows.length ? "" : "No live job.";
  if (note) {
    const line = element("tr");
    line.append(element("td", note, "empty"));
    line.firstChild.colSpan = 4;
    body.append(line);
  }
  document.getElementById("total-queued").textContent = totals.queued;
  document.getElementById("total-running").textContent = totals.running;
}

function updateRow(update) {
  const row = element("tr");
  row.dataset.jobId = update.job_id;
  row.dataset.sequence = update.sequence;
  const job = element("td", null, "num");
  const link = element("a", update.job_id);
  link.href = `/jobs/${update.job_id}`;
  job.append(link);
  row.append(job);
  row.append(element("td", update.job_set || "(none)", update.job_set ? "" : "muted"));
  row.append(element("td", update.backend));
  const reason = element("td");
  reason.append(element("span", update.exit_reason, reasonClass(update.exit_reason)));
  row.append(reason);
  row.append(element("td", update.exit_status, update.exit_status === 0 ? "num" : "num bad-text"));
  row.append(element("td", duration(update.wall_time_seconds), "num"));
  const message = element("td");
  message.title = update.message;
  message.append(element("div", update.message, "message-cell"));
  row.append(message);
  return row;
}

function addUpdate(update, live) {
  const body = document.querySelector("#updates tbody");
  if (body.querySelector(`tr[data-sequence="${update.sequence}"]`)) return;
  const row = updateRow(update);
  if (live) row.classList.add("fresh");
  body.prepend(row);
  while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
  document.getElementById("no-updates").hidden = true;
}

function setConnection(state, label) {
  const indicator = document.getElementById("connection");
  indicator.dataset.state = state;
  indicator.textContent = label;
}

async function start() {
  let after = 0;
  try {
    const latest = await fetchJson("/api/updates?limit=50");
    for (const update of latest.updates.slice().reverse()) addUpdate(update, false);
    if (latest.updates.length) after = latest.updates[0].sequence;
  } catch (error) {
    setConnection("down", `cannot load updates: ${error.message}`);
  }
  const events = new EventSource(`/events?after=${after}`);
  events.addEventListener("open", () => setConnection("live", "live"));
  events.addEventListener("error", () => setConnection("down", "reconnecting…"));
  events.addEventListener("overview", (event) => {
    const overview = JSON.parse(event.data);
    showService(overview);
    renderBackends(overview.backends);
    renderJobs(overview.jobs, overview.totals, overview.rows_not_shown);
    const kills = document.getElementById("unconfirmed-kills");
    kills.hidden = !overview.unconfirmed_kills;
    kills.textContent = `${overview.unconfirmed_kills} kill(s) not yet confirmed by the scheduler: made again until they are.`;
  });
  events.addEventListener("updates", (event) => {
    const updates = JSON.parse(event.data);
    for (const update of updates.slice(-MAX_ROWS)) addUpdate(update, true);
  });
}

start();
