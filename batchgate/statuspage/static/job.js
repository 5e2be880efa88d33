// One job's page: /api/jobs/ID once; and, while the job is live, again each time the service's
// live feed says anything happened (no timer).
"use strict";

const jobId = Number(location.pathname.split("/").pop());

function row(list, name, value, className) {
  list.append(element("dt", name), element("dd", value === "" || value === undefined || value === null ? "—" : value, className));
}

function specValue(value) {
  if (Array.isArray(value)) return value.map(specValue).join(", ");
  if (value !== null && typeof value === "object") {
    return Object.entries(value).map(([key, inner]) => `${key}=${specValue(inner)}`).join("\n");
  }
  return String(value);
}

function renderJob(job) {
  document.getElementById("title").textContent = `Job ${job.job_id}`;
  document.title = `job ${job.job_id} · ${job.service} · batchgate`;
  const service = document.getElementById("service");
  if (!service.textContent) service.append(element("strong", job.service));
  const summary = document.getElementById("summary");
  summary.textContent = "";
  const update = job.update;
  const state = element("dd");
  state.append(element("span", update ? update.exit_reason : job.state, update ? reasonClass(update.exit_reason) : "pill live"));
  summary.append(element("dt", "state"), state);
  row(summary, "backend", job.backend);
  row(summary, "job set", job.job_set);
  row(summary, "scheduler id", job.scheduler_id);
  if (update) {
    row(summary, "exit status", update.exit_status, update.exit_status === 0 ? "" : "bad-text");
    row(summary, "wall time", duration(update.wall_time_seconds));
  }
  const message = document.getElementById("message");
  message.hidden = !(update && update.message);
  message.textContent = update ? update.message : "";
  message.classList.toggle("plain", Boolean(update) && update.exit_reason === "FINISHED");

  const timeline = document.getElementById("timeline");
  timeline.textContent = "";
  let previous = null;
  for (const step of job.timeline) {
    const item = element("li");
    item.dataset.event = step.event;
    item.append(element("strong", step.event), element("time", clock(step.at)));
    if (step.estimated) item.append(element("span", "(from its wall time)", "muted"));
    if (previous !== null) item.append(element("span", `+${duration(step.at - previous)}`, "muted"));
    previous = step.at;
    timeline.append(item);
  }

  const spec = document.getElementById("spec");
  spec.textContent = "";
  for (const [name, value] of Object.entries(job.spec)) {
    const shown = name === "memory" || name === "disk" ? `${bytes(value)} (${value} bytes)` : specValue(value);
    row(spec, name.replaceAll("_", " "), shown, "code");
  }

  for (const name of ["stdout", "stderr"]) {
    const { text, missing } = job.output[name];
    const shown = document.getElementById(name);
    shown.textContent = missing ?? (text === "" ? "(empty)" : text);
    shown.classList.toggle("muted", missing !== undefined || text === "");
  }
  document.getElementById("job").hidden = false;
  return ["queued", "submitted", "running", "killing"].includes(job.state);
}

async function load() {
  try {
    return renderJob(await fetchJson(`/api/jobs/${jobId}`));
  } catch (error) {
    const shown = document.getElementById("error");
    shown.textContent = error.message;
    shown.hidden = false;
    return false;
  }
}

async function start() {
  if (!(await load())) return;
  // Live: look again whenever the service reports a change (an overview or an update), until
  // the job has ended.
  let loading = false;
  const events = new EventSource("/events");
  const again = async () => {
    if (loading) return;
    loading = true;
    const live = await load();
    loading = false;
    if (!live) events.close();
  };
  events.addEventListener("overview", (event) => { showService(JSON.parse(event.data)); again(); });
  events.addEventListener("updates", (event) => { if (JSON.parse(event.data).some((update) => update.job_id === jobId)) again(); });
}

start();
