// Shared by the status page and the job page. Data is only ever set as text (textContent), never
// as HTML: job names, messages and commands are whatever clients submitted.
"use strict";

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function bytes(count) {
  if (!count) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = Number(count);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value >= 10 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const value = Number(seconds);
  if (value < 60) return `${value.toFixed(value < 10 ? 2 : 1)} s`;
  if (value < 3600) return `${Math.floor(value / 60)} min ${Math.round(value % 60)} s`;
  if (value < 86400) return `${Math.floor(value / 3600)} h ${Math.round((value % 3600) / 60)} min`;
  return `${(value / 86400).toFixed(1)} d`;
}

function clock(epochSeconds) {
  return new Date(epochSeconds * 1000).toLocaleString(undefined, { hour12: false });
}

// The class of an exit reason's pill: green, red, amber or grey.
function reasonClass(reason) {
  if (reason === "FINISHED") return "pill ok";
  if (reason === "FAILED" || reason === "ERROR" || reason === "MEMLIMIT" || reason === "TIMELIMIT") return "pill bad";
  if (reason === "KILLED" || reason === "LOST" || reason === "MISSING") return "pill warn";
  return "pill";
}

async function fetchJson(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401 && body.token_wanted) askForToken(body.error);
  if (!response.ok) throw new Error(body.error || `${path}: HTTP ${response.status}`);
  return body;
}

// A service with tokens shows its data only to a tenant who gives one. The token is kept in a
// cookie of this page's origin alone (SameSite=Strict), so the live feed (EventSource, which
// can send no header) carries it too; the service checks it as it checks a gRPC call's.
function askForToken(why) {
  if (document.getElementById("token-form")) return;
  const form = element("form", null, "token-form");
  form.id = "token-form";
  const input = element("input");
  input.type = "password";
  input.name = "token";
  input.autocomplete = "off";
  input.placeholder = "bg_…";
  form.append(element("p", why), element("label", "Token "), input, element("button", "Show my jobs"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const secure = location.protocol === "https:" ? "; Secure" : "";
    document.cookie = `batchgate_token=${encodeURIComponent(input.value.trim())}; path=/; SameSite=Strict${secure}`;
    location.reload();
  });
  document.querySelector("main").prepend(form);
  input.focus();
}

function showService(overview) {
  const service = document.getElementById("service");
  service.textContent = "";
  const role = overview.gateway ? "gateway" : `${overview.kind} backend`;
  service.append(element("strong", overview.service));
  if (role !== overview.service) service.append(` · ${role}`);
  document.title = `${overview.service} · batchgate`;
}
