//! The status page served at `/`: one self-contained HTML document (the host may have no internet,
//! so no external fonts, scripts or styles) that polls the JSON API every 2 s.
//!
//! Everything that comes from the API is inserted with `textContent` / text nodes, never parsed as
//! HTML: container details, check messages and run errors carry text from container logs, which
//! may contain markup. The page therefore uses no `innerHTML` at all (a test checks this).

/// The status page. Polls `/api/v1/status` and `/api/v1/runs?limit=15`.
pub const STATUS_PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>stagectl</title>
<style>
:root {
  --bg: #f4f5f7; --card: #fff; --border: #e1e4e8; --line: #eef0f2;
  --text: #1f2328; --muted: #667085;
  --green: #1a7f37; --green-bg: #e6f4ea;
  --red: #b42318; --red-bg: #fdecea;
  --amber: #9a6700; --amber-bg: #fff3d4;
  --grey: #57606a; --grey-bg: #eceef1;
  --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { display: flex; align-items: center; gap: 10px; flex-wrap: wrap; padding: 12px 24px;
  background: var(--card); border-bottom: 1px solid var(--border); }
header h1 { font-size: 18px; font-weight: 600; margin: 0 8px 0 0; }
header h1 .tool { color: var(--muted); font-weight: 400; }
.spacer { flex: 1; }
#updated { color: var(--muted); font-size: 13px; }
#banner { margin: 16px 24px 0; padding: 10px 14px; border-radius: 8px; font-weight: 500;
  background: var(--red-bg); color: var(--red); border: 1px solid #f4c7c2; }
main { display: grid; grid-template-columns: minmax(0, 2fr) minmax(0, 1fr); gap: 16px;
  align-items: start; padding: 16px 24px 32px; max-width: 1680px; }
body.stale main { opacity: 0.55; }
.wide { grid-column: 1 / -1; }
.side { display: grid; gap: 16px; min-width: 0; }
.card { background: var(--card); border: 1px solid var(--border); border-radius: 8px;
  padding: 14px 16px; min-width: 0; }
.card h2 { font-size: 12px; font-weight: 600; text-transform: uppercase; letter-spacing: 0.05em;
  color: var(--muted); margin: 0 0 8px; }
.card h3 { font-size: 12px; font-weight: 600; color: var(--muted); margin: 14px 0 4px; }
table { width: 100%; border-collapse: collapse; }
th { text-align: left; font-size: 12px; font-weight: 500; color: var(--muted); white-space: nowrap;
  padding: 6px 8px; border-bottom: 1px solid var(--border); }
td { padding: 7px 8px; border-bottom: 1px solid var(--line); vertical-align: baseline; }
tbody tr:last-child td { border-bottom: none; }
.mono { font-family: var(--mono); font-size: 12.5px; }
.muted { color: var(--muted); }
.small { font-size: 12px; }
.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
.nowrap { white-space: nowrap; }
.name { font-weight: 500; }
/* Names and images come from manifests and can be one long token: break them rather than
   widen the page. */
.name, .image, #latency td:first-child { overflow-wrap: anywhere; }
td.image { min-width: 200px; }
.empty { color: var(--muted); text-align: center; padding: 16px; }
.badge { display: inline-block; padding: 1px 9px; border-radius: 999px; font-size: 12px;
  font-weight: 500; white-space: nowrap; }
.badge.green { color: var(--green); background: var(--green-bg); }
.badge.red { color: var(--red); background: var(--red-bg); }
.badge.amber { color: var(--amber); background: var(--amber-bg); }
.badge.grey { color: var(--grey); background: var(--grey-bg); }
.dot { white-space: nowrap; }
.dot::before { content: ""; display: inline-block; width: 8px; height: 8px; border-radius: 50%;
  margin-right: 6px; vertical-align: 1px; background: var(--grey); }
.dot.green::before { background: var(--green); }
.dot.red::before { background: var(--red); }
.dot.amber::before { background: var(--amber); }
/* Details and errors can be whole log excerpts: keep them readable but bounded. */
.detail { font-family: var(--mono); font-size: 12px; white-space: pre-wrap; overflow-wrap: anywhere;
  max-height: 6.5em; overflow: auto; color: var(--muted); }
.error { color: var(--red); }
ul.failed { list-style: none; margin: 8px 0 0; padding: 0; }
ul.failed li { overflow-wrap: anywhere; padding: 8px 10px; margin-top: 6px; border-left: 3px solid var(--red);
  background: #fff8f7; border-radius: 0 6px 6px 0; }
.meter { margin-bottom: 12px; }
.meter-head { display: flex; justify-content: space-between; gap: 8px; }
.bar { height: 8px; background: var(--grey-bg); border-radius: 4px; overflow: hidden; margin-top: 4px; }
.bar > div { height: 100%; background: var(--green); border-radius: 4px; }
.bar > div.amber { background: #d4a72c; }
.bar > div.red { background: var(--red); }
[hidden] { display: none !important; }
</style>
</head>
<body>
<header>
  <h1><span class="tool">stagectl /</span> <span id="stack">…</span></h1>
  <span id="docker"></span>
  <span id="engine"></span>
  <span id="busy"></span>
  <span class="spacer"></span>
  <span id="updated">connecting…</span>
</header>
<div id="banner" role="alert" hidden></div>
<main>
  <section class="card wide">
    <h2>Services</h2>
    <table>
      <thead><tr><th>Service</th><th>State</th><th>Ready</th><th>Image</th><th>Ports</th>
        <th class="num">Uptime</th><th>Detail</th></tr></thead>
      <tbody id="services"></tbody>
    </table>
    <p id="drift"></p>
  </section>
  <section class="card">
    <h2>Last runs</h2>
    <table>
      <thead><tr><th class="num">Run</th><th>Operation</th><th>Trigger</th><th>Status</th>
        <th class="num">Started</th><th class="num">Duration</th><th>Error / detail</th></tr></thead>
      <tbody id="runs"></tbody>
    </table>
  </section>
  <div class="side">
    <section class="card">
      <h2>Host</h2>
      <div id="host"><span class="muted">No data yet.</span></div>
    </section>
    <section class="card">
      <h2>Checks</h2>
      <div id="checks-summary"></div>
      <ul id="checks-failed" class="failed"></ul>
      <div id="latency-part" hidden>
        <h3>Latency</h3>
        <table>
          <thead><tr><th>Check</th><th class="num">p95</th><th class="num">p99</th><th class="num">Errors</th></tr></thead>
          <tbody id="latency"></tbody>
        </table>
      </div>
    </section>
  </div>
</main>
<script>
"use strict";
const POLL_MS = 2000;
const STATUS_URL = "/api/v1/status";
const RUNS_URL = "/api/v1/runs?limit=15";
const STATE_COLOUR = { running: "green", created: "amber", restarting: "amber", paused: "amber",
  removing: "amber", exited: "red", dead: "red" };
const RUN_COLOUR = { succeeded: "green", failed: "red", running: "amber", interrupted: "amber", queued: "grey" };

const $ = (id) => document.getElementById(id);

// Builds an element; string children become text nodes, so API data is never parsed as HTML.
function el(tag, cls, ...children) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}
const badge = (text, colour) => el("span", "badge " + colour, text);
const dash = () => el("span", "muted", "—");
const isNum = (n) => typeof n === "number" && isFinite(n);

function emptyRow(tbody, cols, text) {
  const td = el("td", "empty", text);
  td.colSpan = cols;
  tbody.append(el("tr", null, td));
}

function fmtBytes(n) {
  if (!isNum(n)) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 || n >= 100 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
}

function fmtDuration(s) {
  if (!isNum(s) || s < 0) return "—";
  if (s < 10) return s.toFixed(s < 1 ? 2 : 1) + " s";
  if (s < 60) return Math.round(s) + " s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + " m " + Math.floor(s % 60) + " s";
  const h = Math.floor(m / 60);
  if (h < 24) return h + " h " + (m % 60) + " m";
  return Math.floor(h / 24) + " d " + (h % 24) + " h";
}

// Local wall-clock time; the date only when it is not today.
function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (isNaN(d)) return String(iso);
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  if (d.toDateString() === new Date().toDateString()) return time;
  return d.toLocaleDateString([], { month: "short", day: "numeric" }) + " " + time;
}

function fmtMs(ms) {
  if (!isNum(ms)) return "—";
  return (ms < 10 ? ms.toFixed(2) : ms < 100 ? ms.toFixed(1) : ms.toFixed(0)) + " ms";
}

function renderHeader(st) {
  $("stack").textContent = st.stack || "—";
  document.title = "stagectl · " + (st.stack || "");
  $("docker").replaceChildren(st.docker ? badge("Docker reachable", "green") : badge("Docker unreachable", "red"));
  // `daemon --swarm`: up, rebuild and verify deploy Swarm services.
  const swarm = st.swarm || {};
  if (st.engine === "swarm") {
    $("engine").replaceChildren(badge("on Docker Swarm: ports " + (swarm.publish_on_node ? "on the node" : "via the ingress")
      + (swarm.registry ? ", built images from " + swarm.registry : ""), "grey"));
  } else {
    $("engine").replaceChildren();
  }
  $("busy").replaceChildren(st.busy
    ? badge(st.busy.operation + " running, run #" + st.busy.run_id, "amber")
    : badge("idle", "grey"));
  $("updated").textContent = "updated " + fmtTime(st.updated_at);
}

function renderServices(services) {
  const body = $("services");
  body.replaceChildren();
  if (!services || services.length === 0) { emptyRow(body, 7, "No services."); return; }
  for (const s of services) {
    const state = s.state || (s.container ? "unknown" : "missing");
    const ready = s.ready ? badge("ready", "green") : badge("not ready", state === "running" ? "amber" : "red");
    const name = el("td", null, el("div", "name", s.service));
    if (s.container) name.append(el("div", "mono small muted", String(s.container).slice(0, 12)));
    body.append(el("tr", null,
      name,
      el("td", null, el("span", "dot " + (STATE_COLOUR[state] || "grey"), state)),
      el("td", null, ready),
      el("td", "mono image", s.image || "—"),
      // One port mapping per line: mappings break badly at "->".
      el("td", "mono", ...(s.ports && s.ports.length ? s.ports.map((p) => el("div", "nowrap", p)) : ["—"])),
      el("td", "num", fmtDuration(s.uptime_seconds)),
      el("td", null, s.detail ? el("div", "detail", s.detail) : dash())));
  }
}

// What `stagectl diff` would say, recomputed by the daemon at most every 30 s.
function renderDrift(drift, engine) {
  const where = $("drift");
  if (engine === "swarm") { where.replaceChildren(el("span", "muted", "drift: not computed for a Swarm deployment")); return; }
  if (!drift) { where.replaceChildren(el("span", "muted", "drift: not known yet")); return; }
  where.replaceChildren(drift.drifted === 0
    ? badge("no drift from the manifest", "green")
    : badge(drift.drifted + " drifted: " + drift.services.join(", "), "amber"),
    el("span", "muted small", " checked " + fmtTime(drift.checked_at)));
}

function renderChecks(checks) {
  checks = checks || [];
  const failed = checks.filter((c) => c.outcome === "failed");
  const passed = checks.filter((c) => c.outcome === "passed").length;
  $("checks-summary").replaceChildren(checks.length === 0
    ? el("span", "muted", "No checks have run yet.")
    : badge(passed + "/" + checks.length + " checks passed", failed.length ? "red" : "green"));

  const list = $("checks-failed");
  list.replaceChildren();
  for (const c of failed) {
    list.append(el("li", null,
      el("div", "name", c.name, " ", el("span", "muted small", c.kind)),
      el("div", "detail error", c.message || "failed")));
  }

  const withLatency = checks.filter((c) => isNum(c.p95_ms) || isNum(c.p99_ms) || isNum(c.error_rate));
  $("latency-part").hidden = withLatency.length === 0;
  const lat = $("latency");
  lat.replaceChildren();
  for (const c of withLatency) {
    lat.append(el("tr", null,
      el("td", null, c.name),
      el("td", "num", fmtMs(c.p95_ms)),
      el("td", "num", fmtMs(c.p99_ms)),
      el("td", "num", isNum(c.error_rate) ? (c.error_rate * 100).toFixed(1) + " %" : "—")));
  }
}

function meter(label, used, total, text) {
  const pct = total > 0 ? Math.min(100, Math.max(0, (used / total) * 100)) : 0;
  const fill = el("div", pct >= 90 ? "red" : pct >= 75 ? "amber" : null);
  fill.style.width = pct.toFixed(1) + "%";
  return el("div", "meter",
    el("div", "meter-head", el("span", null, label), el("span", "num", text)),
    el("div", "bar", fill));
}

function renderHost(h) {
  const box = $("host");
  if (!h) { box.replaceChildren(el("span", "muted", "No host data.")); return; }
  const cpus = isNum(h.cpus) ? " of " + h.cpus + " CPU" + (h.cpus === 1 ? "" : "s") : "";
  box.replaceChildren(
    meter("CPU", h.cpu_percent, 100, (isNum(h.cpu_percent) ? h.cpu_percent.toFixed(1) + " %" : "—") + cpus),
    meter("Memory", h.memory_used_bytes, h.memory_total_bytes,
      fmtBytes(h.memory_used_bytes) + " / " + fmtBytes(h.memory_total_bytes)),
    meter("Disk " + (h.disk_path || ""), h.disk_used_bytes, h.disk_total_bytes,
      fmtBytes(h.disk_used_bytes) + " / " + fmtBytes(h.disk_total_bytes)),
    el("div", "muted small", "Load average (1 min): " + (isNum(h.load_average_1m) ? h.load_average_1m.toFixed(2) : "—")));
}

function renderRuns(runs) {
  const body = $("runs");
  body.replaceChildren();
  if (!runs || runs.length === 0) { emptyRow(body, 7, "No runs yet."); return; }
  for (const r of runs) {
    let seconds = r.seconds;
    // A running run has no duration yet: show the time since it started.
    if (!isNum(seconds) && r.status === "running" && r.started_at) {
      seconds = (Date.now() - new Date(r.started_at).getTime()) / 1000;
    }
    const notes = el("td");
    if (r.error) notes.append(el("div", "detail error", r.error));
    if (r.detail) notes.append(el("div", "detail", r.detail));
    const tags = [];
    if (r.snapshot) tags.push("snapshot " + r.snapshot);
    if (isNum(r.refresh_seconds)) tags.push("data refresh " + fmtDuration(r.refresh_seconds));
    if (tags.length) notes.append(el("div", "muted small", tags.join(" · ")));
    if (!notes.firstChild) notes.append(dash());
    body.append(el("tr", null,
      el("td", "num mono", "#" + r.id),
      el("td", null, r.operation),
      el("td", "muted", r.trigger),
      el("td", null, badge(r.status, RUN_COLOUR[r.status] || "grey")),
      el("td", "num", r.started_at ? fmtTime(r.started_at) : el("span", "muted", "queued " + fmtTime(r.queued_at))),
      el("td", "num", fmtDuration(seconds)),
      notes));
  }
}

async function getJSON(url) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 5000);
  try {
    let res;
    try {
      res = await fetch(url, { cache: "no-store", signal: ctl.signal });
    } catch (e) {
      throw new Error(e.name === "AbortError" ? "daemon unreachable: no answer within 5 s" : "daemon unreachable");
    }
    if (!res.ok) throw new Error("daemon answered HTTP " + res.status);
    return await res.json();
  } finally {
    clearTimeout(timer);
  }
}

let lastOk = null;

// Each response renders on its own; on failure the last data stays on screen, dimmed.
async function poll() {
  const problems = [];
  const [status, runs] = await Promise.allSettled([getJSON(STATUS_URL), getJSON(RUNS_URL)]);
  try {
    if (status.status === "fulfilled") {
      const st = status.value;
      renderHeader(st);
      renderServices(st.services);
      renderDrift(st.drift, st.engine);
      renderChecks(st.checks);
      renderHost(st.host);
    } else {
      problems.push(status.reason);
    }
    if (runs.status === "fulfilled") renderRuns(runs.value.runs);
    else problems.push(runs.reason);
  } catch (e) {
    problems.push(new Error("could not display the daemon's answer: " + e.message));
  }
  const banner = $("banner");
  if (problems.length) {
    const why = String((problems[0] && problems[0].message) || problems[0]);
    banner.textContent = why.charAt(0).toUpperCase() + why.slice(1) + ". "
      + (lastOk ? "Showing data from " + fmtTime(lastOk.toISOString()) + "." : "No data yet.");
    banner.hidden = false;
    document.body.classList.add("stale");
  } else {
    lastOk = new Date();
    banner.hidden = true;
    document.body.classList.remove("stale");
  }
  // Next poll after this one finished, so a slow daemon is never asked twice at once.
  setTimeout(poll, POLL_MS);
}

poll();
</script>
</body>
</html>
"##;

/// Escapes text for an HTML element body or a quoted attribute value.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_html_specials() {
        assert_eq!(escape_html(r#"<img src=x onerror="alert('1')">&"#), "&lt;img src=x onerror=&quot;alert(&#39;1&#39;)&quot;&gt;&amp;");
        assert_eq!(escape_html("plain text, ünïcode"), "plain text, ünïcode");
        assert_eq!(escape_html("&amp;"), "&amp;amp;");
        assert_eq!(escape_html(""), "");
    }

    #[test]
    fn page_never_parses_data_as_html() {
        for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"] {
            assert!(!STATUS_PAGE.contains(sink), "status page uses {sink}");
        }
    }

    #[test]
    fn page_polls_the_api() {
        assert!(STATUS_PAGE.contains("\"/api/v1/status\""));
        assert!(STATUS_PAGE.contains("\"/api/v1/runs?limit=15\""));
        assert!(STATUS_PAGE.contains("POLL_MS = 2000"));
    }

    #[test]
    fn page_is_self_contained() {
        // No external resources at all: the host may be offline.
        assert!(!STATUS_PAGE.contains("://"), "external URL in the status page");
        for attr in ["src=", "href=", "@import", "url("] {
            assert!(!STATUS_PAGE.contains(attr), "status page loads a resource via {attr}");
        }
        assert!(STATUS_PAGE.starts_with("<!doctype html>"));
        assert!(STATUS_PAGE.trim_end().ends_with("</html>"));
    }
}
