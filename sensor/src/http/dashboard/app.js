// otsensor dashboard: vanilla JS, no external assets. Pages are hash routes; data
// comes from /api (read endpoints open; alert changes send the API token).
"use strict";

const PROTOCOL_COLORS = {
  modbus: "#1f6feb", dnp3: "#8250df", bacnet: "#1a7f37", enip: "#e0802b", s7comm: "#d1242f",
  s7comm_plus: "#bf3989", s7commplus: "#bf3989", iec104: "#0598bc", opcua: "#6639ba", mqtt: "#9a6700",
};
const CLASS_COLORS = {
  plc: "#d1242f", ied: "#bc4c00", hmi: "#1f6feb", engineering_workstation: "#8250df", host: "#6e7781", l2_device: "#9a6700",
};
const SEVERITY = { 1: "high", 2: "medium", 3: "low" };
const SEVERITY_COLORS = { 1: "#d1242f", 2: "#e0802b", 3: "#c9a227", 4: "#6e7781" };
const main = document.getElementById("main");

function token() { return localStorage.getItem("otsensor-token") || ""; }

// The token may arrive in the fragment (#token=...; never sent to a server) or be typed in.
// A link never silently replaces a stored token (a crafted link could swap in its own):
// with a different token stored, the operator is asked, and nothing changes unless they save.
(function takeTokenFromFragment() {
  const match = location.hash.match(/token=([^&]+)/);
  if (!match) return;
  let offered = "";
  try { offered = decodeURIComponent(match[1]).trim(); } catch { offered = ""; }
  history.replaceState(null, "", location.pathname + location.search + "#/overview");
  const stored = token();
  if (!offered || offered === stored) return;
  if (!stored) {
    localStorage.setItem("otsensor-token", offered);
    return;
  }
  const dialog = document.getElementById("token-dialog");
  const notice = document.getElementById("token-notice");
  notice.textContent = "The link carries a different API token than the one stored in this browser. " +
    "Save to replace the stored token with the link's, Cancel to keep the stored one.";
  notice.hidden = false;
  document.getElementById("token-input").value = offered;
  dialog.showModal();
})();

async function api(path, options = {}) {
  const headers = options.headers || {};
  if (options.method && options.method !== "GET") headers["Authorization"] = "Bearer " + token();
  const response = await fetch(path, { ...options, headers });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.message || response.statusText);
    error.status = response.status;
    throw error;
  }
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const svgNS = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(svgNS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children.flat()) if (child) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function fmtNumber(n) { return Number(n || 0).toLocaleString("en-US"); }
function fmtBytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"]; let i = 0; n = Number(n || 0);
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}
function fmtTime(t) { return t ? t.replace("T", " ").replace(/\.\d+\+00:00$/, " UTC") : "–"; }
function nsToDate(ns) { return new Date(Number(ns) / 1e6); }
function label(s) { return String(s || "").replace(/_/g, " "); }
function protoColor(p) { return PROTOCOL_COLORS[p] || "#8c959f"; }

function barChart(entries, colorOf, format = fmtNumber) {
  const max = Math.max(1, ...entries.map(([, v]) => v));
  if (!entries.length) return el("div", { class: "empty" }, "No data yet");
  return el("div", { class: "bars" }, entries.map(([name, value]) =>
    el("div", { class: "row" },
      el("span", {}, label(name)),
      el("div", { class: "track" }, el("div", { class: "fill", style: `width:${(100 * value / max).toFixed(1)}%;background:${colorOf(name)}` })),
      el("span", { class: "n" }, format(value)))));
}

function severityTimeline(alerts) {
  const width = 560, height = 180, pad = 28;
  if (!alerts.length) return el("div", { class: "empty" }, "No alerts");
  const times = alerts.map(a => Number(a.last_ns) / 1e6);
  const start = Math.min(...times), end = Math.max(...times);
  const span = Math.max(end - start, 60_000);
  const buckets = 24, size = span / buckets;
  const counts = Array.from({ length: buckets }, () => ({ 1: 0, 2: 0, 3: 0, 4: 0 }));
  for (const a of alerts) {
    const i = Math.min(buckets - 1, Math.floor((Number(a.last_ns) / 1e6 - start) / size));
    counts[i][Math.min(4, a.severity)]++;
  }
  const max = Math.max(1, ...counts.map(c => c[1] + c[2] + c[3] + c[4]));
  const bw = (width - pad * 2) / buckets;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img", "aria-label": "alerts by severity over time" });
  chart.append(svg("line", { x1: pad, y1: height - pad, x2: width - pad, y2: height - pad, stroke: "#dde3ea" }));
  counts.forEach((c, i) => {
    let y = height - pad;
    for (const sev of [1, 2, 3, 4]) {
      if (!c[sev]) continue;
      const h = (height - pad * 2) * c[sev] / max;
      y -= h;
      chart.append(svg("rect", { x: pad + i * bw + 1, y, width: Math.max(1, bw - 2), height: h, fill: SEVERITY_COLORS[sev], rx: 2 },
        svg("title", {}, `${c[sev]} ${SEVERITY[sev] || "info"}`)));
    }
  });
  chart.append(svg("text", { x: pad, y: height - 8, "font-size": 11, fill: "#627084" }, new Date(start).toISOString().slice(0, 16).replace("T", " ")));
  chart.append(svg("text", { x: width - pad, y: height - 8, "font-size": 11, fill: "#627084", "text-anchor": "end" }, new Date(start + span).toISOString().slice(0, 16).replace("T", " ")));
  chart.append(svg("text", { x: pad - 4, y: pad, "font-size": 11, fill: "#627084", "text-anchor": "end" }, max));
  const legend = el("div", { class: "legend" }, [1, 2, 3].map(s => el("span", {}, el("i", { style: `background:${SEVERITY_COLORS[s]}` }), SEVERITY[s])));
  return el("div", {}, chart, legend);
}

async function overview() {
  const [health, devices, alerts, flows] = await Promise.all([
    api("/api/health"), api("/api/devices"), api("/api/alerts"), api("/api/flows")]);
  const byClass = {};
  for (const d of devices) byClass[d.class] = (byClass[d.class] || 0) + 1;
  const traffic = Object.entries(flows.bytes_by_protocol || {}).sort((a, b) => b[1] - a[1]).slice(0, 10);
  return el("div", {},
    el("h1", {}, "Overview"),
    el("div", { class: "cards" },
      card("Devices", fmtNumber(devices.length)),
      card("Open alerts", fmtNumber(alerts.filter(a => a.status === "new").length)),
      card("Packets", fmtNumber(health.packets)),
      card("Flows", fmtNumber(flows.flows_ended)),
      card("Traffic", fmtBytes(flows.bytes))),
    el("div", { class: "grid" },
      el("section", { class: "panel", id: "devices-by-class" }, el("h2", {}, "Devices by class"),
        barChart(Object.entries(byClass).sort((a, b) => b[1] - a[1]), c => CLASS_COLORS[c] || "#8c959f")),
      el("section", { class: "panel", id: "alerts-by-severity" }, el("h2", {}, "Alerts by severity over time"), severityTimeline(alerts)),
      el("section", { class: "panel", id: "traffic-by-protocol" }, el("h2", {}, "Traffic by protocol"), barChart(traffic, protoColor, fmtBytes))));
}

function card(name, value) {
  return el("div", { class: "card" }, el("div", { class: "label" }, name), el("div", { class: "value" }, value));
}

let deviceSort = { key: "ip", dir: 1 };
async function devices(query = "") {
  const list = await api("/api/devices" + (query ? "?q=" + encodeURIComponent(query) : ""));
  const key = deviceSort.key;
  list.sort((a, b) => {
    const x = a[key] ?? "", y = b[key] ?? "";
    if (key === "ip") return deviceSort.dir * ipKey(a.id).localeCompare(ipKey(b.id));
    return deviceSort.dir * (typeof x === "number" ? x - y : String(x).localeCompare(String(y)));
  });
  const search = el("input", { type: "search", placeholder: "Search address, MAC, vendor, model", value: query, id: "device-search" });
  search.addEventListener("input", debounce(() => render(() => devices(search.value), true), 250));
  const header = (name, k, cls) => el("th", { class: "sortable " + (cls || ""), onclick: () => {
    deviceSort = { key: k, dir: deviceSort.key === k ? -deviceSort.dir : 1 }; render(() => devices(search.value), true);
  } }, name, deviceSort.key === k ? (deviceSort.dir > 0 ? " ▲" : " ▼") : "");
  return el("div", {},
    el("h1", {}, "Device inventory ", el("span", { class: "muted" }, `(${list.length})`)),
    el("div", { class: "toolbar" }, search),
    el("div", { class: "panel" }, list.length ? el("table", { id: "device-table" },
      el("thead", {}, el("tr", {}, header("Address", "ip"), header("Class", "class"), header("Vendor / model", "vendor", "hide-narrow"),
        header("Firmware", "firmware", "hide-narrow"), el("th", {}, "Vulnerabilities"), el("th", {}, "Protocols"), header("Last seen", "last_seen", "hide-narrow"), header("Bytes", "bytes"))),
      el("tbody", {}, list.map(d => el("tr", {},
        el("td", {}, el("a", { href: "#/devices/" + encodeURIComponent(d.id) }, d.id), d.mac && d.ip ? el("div", { class: "muted" }, d.mac) : null),
        el("td", {}, el("span", { class: "pill", style: `background:${CLASS_COLORS[d.class] || "#8c959f"}22` }, label(d.class))),
        el("td", { class: "hide-narrow" }, [d.vendor, d.model].filter(Boolean).join(" · ") || "–"),
        el("td", { class: "hide-narrow" }, d.firmware || "–"),
        el("td", { class: "vuln-cell" }, vulnSummary(d.vulnerabilities || [])),
        el("td", {}, d.protocols.map(p => el("span", { class: "pill", style: `border-left:3px solid ${protoColor(p)}` }, p))),
        el("td", { class: "hide-narrow" }, fmtTime(d.last_seen)),
        el("td", { class: "num" }, fmtBytes(d.bytes)))))) : el("div", { class: "empty" }, "No devices match")));
}

function ipKey(id) {
  const parts = id.split(".");
  return parts.length === 4 ? parts.map(p => p.padStart(3, "0")).join(".") : "~" + id;
}

async function deviceDetail(id) {
  const d = await api("/api/devices/" + encodeURIComponent(id));
  const alerts = d.ip ? await api("/api/alerts?device=" + encodeURIComponent(d.ip)) : [];
  return el("div", {},
    el("p", {}, el("a", { href: "#/devices" }, "← Devices")),
    el("h1", {}, d.id, " ", el("span", { class: "pill" }, label(d.class))),
    el("div", { class: "grid" },
      el("section", { class: "panel" }, el("h2", {}, "Identity"),
        el("dl", { class: "kv" },
          kv("IP address", d.ip || "–"), kv("MAC address", d.mac || "–"), kv("VLAN", d.vlan || "none"),
          Object.entries(d.identity || {}).map(([k, v]) => kv(label(k), v)),
          kv("Protocols", d.protocols.join(", ") || "–"),
          kv("First seen", fmtTime(d.first_seen)), kv("Last seen", fmtTime(d.last_seen)),
          kv("Traffic", `${fmtNumber(d.packets)} packets, ${fmtBytes(d.bytes)}`))),
      el("section", { class: "panel" }, el("h2", {}, "Identity and firmware history"),
        d.identity_history.length ? el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Time"), el("th", {}, "Field"), el("th", {}, "Value"), el("th", {}, "Via"))),
          el("tbody", {}, d.identity_history.map(h => el("tr", {}, el("td", {}, fmtTime(h.timestamp)), el("td", {}, label(h.field)), el("td", {}, h.value), el("td", {}, h.protocol)))))
          : el("div", { class: "empty" }, "No identity reported")),
      el("section", { class: "panel" }, el("h2", {}, "Peers"),
        d.peers.length ? el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Peer"), el("th", {}, "Protocols"), el("th", {}, "Flows"))),
          el("tbody", {}, d.peers.map(p => el("tr", {}, el("td", {}, el("a", { href: "#/devices/" + encodeURIComponent(p.ip) }, p.ip)),
            el("td", {}, p.protocols.map(x => el("span", { class: "pill" }, x))), el("td", { class: "num" }, fmtNumber(p.flows))))))
          : el("div", { class: "empty" }, "No peers yet")),
      el("section", { class: "panel" }, el("h2", {}, "Alerts"), alertTable(alerts, false))),
    el("section", { class: "panel", id: "device-vulnerabilities" }, el("h2", {}, "Known vulnerabilities (CISA ICS advisories)"),
      vulnTable((d.vulnerabilities || []).map(v => [null, v]))));
}

function kv(k, v) { return [el("dt", {}, k), el("dd", {}, v)]; }

async function networkMap() {
  const [devicesList, flows] = await Promise.all([api("/api/devices"), api("/api/flows")]);
  const nodes = new Map(devicesList.map(d => [d.id, { id: d.id, cls: d.class, x: 0, y: 0, vx: 0, vy: 0 }]));
  const edges = [];
  for (const c of flows.conversations.slice(0, 600)) {
    const a = String(c.client), b = String(c.server);
    for (const id of [a, b]) if (!nodes.has(id)) nodes.set(id, { id, cls: "external", x: 0, y: 0, vx: 0, vy: 0 });
    edges.push({ a, b, protocol: c.protocol, bytes: c.bytes });
  }
  const width = 1000, height = 640;
  // Sorted, so the same inventory gives the same picture.
  const list = [...nodes.values()].sort((a, b) => ipKey(a.id).localeCompare(ipKey(b.id)));
  list.forEach((n, i) => { const t = 2 * Math.PI * i / Math.max(1, list.length); n.x = width / 2 + 250 * Math.cos(t); n.y = height / 2 + 220 * Math.sin(t); });
  layout(list, edges, nodes, width, height);
  const chart = svg("svg", { id: "map", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "network map" });
  const maxBytes = Math.max(1, ...edges.map(e => e.bytes));
  for (const e of edges) {
    const a = nodes.get(e.a), b = nodes.get(e.b);
    chart.append(svg("line", { class: "edge", x1: a.x, y1: a.y, x2: b.x, y2: b.y, stroke: protoColor(e.protocol),
      "stroke-width": 1 + 4 * Math.sqrt(e.bytes / maxBytes) }, svg("title", {}, `${e.a} → ${e.b} ${e.protocol} ${fmtBytes(e.bytes)}`)));
  }
  const labels = placeLabels(list, width, height);
  for (const n of list) {
    const g = svg("g", { class: "node", transform: `translate(${n.x},${n.y})` });
    const link = svg("a", { href: n.cls === "external" ? "#/map" : "#/devices/" + encodeURIComponent(n.id) });
    link.append(svg("circle", { r: n.cls === "plc" ? 11 : 8, fill: CLASS_COLORS[n.cls] || "#adb5bd" }, svg("title", {}, `${n.id} (${label(n.cls)})`)));
    // A label with no free place is left out; the node's tooltip still names it.
    const at = labels.get(n.id);
    if (at) link.append(svg("text", { class: "node-label", x: at.x, y: at.y }, n.id));
    g.append(link);
    chart.append(g);
  }
  const protocols = legendProtocols(edges.map(e => e.protocol));
  return el("div", {},
    el("h1", {}, "Network map"),
    el("div", { class: "panel" }, list.length ? chart : el("div", { class: "empty" }, "No conversations yet"),
      el("div", { class: "legend" }, el("strong", {}, "Roles:"), Object.entries(CLASS_COLORS).map(([c, col]) => el("span", {}, el("i", { style: `background:${col};border-radius:50%` }), label(c))),
        el("span", {}, el("i", { style: "background:#adb5bd;border-radius:50%" }), "external")),
      el("div", { class: "legend" }, el("strong", {}, "Protocols:"), protocols.map(([name, color]) => el("span", {}, el("i", { style: `background:${color}` }), name)))));
}

// The legend names each protocol the sensor understands; bare ports ("tcp/8080", a
// scanner's "tcp/1" … "tcp/1024") are grouped per transport with their count.
function legendProtocols(names) {
  const named = new Set(), ports = new Map();
  for (const p of names) {
    const bare = /^(tcp|udp|ip)\/\d+$/.exec(p);
    if (bare) {
      const group = bare[1].toUpperCase();
      if (!ports.has(group)) ports.set(group, new Set());
      ports.get(group).add(p);
    } else named.add(p);
  }
  const out = [...named].sort().map(p => [p, protoColor(p)]);
  for (const [group, set] of [...ports].sort()) {
    const one = [...set][0];
    out.push([set.size === 1 ? one : `other ${group} ports (${set.size})`, protoColor(one)]);
  }
  return out;
}

// Places each node's label beside it (right, left, above, below) where it overlaps no
// other label or node; greedy, in list order (sorted, so stable).
function placeLabels(list, width, height) {
  // Generous estimates (the text is not measured before it is drawn) and a margin, so
  // the drawn text stays inside its box whatever the font.
  const charWidth = 7.4, lineHeight = 13, margin = 3;
  const placed = [], out = new Map();
  const nodeBoxes = list.map(n => ({ x1: n.x - 11, y1: n.y - 11, x2: n.x + 11, y2: n.y + 11, id: n.id }));
  const hits = (a, b) => a.x1 < b.x2 && b.x1 < a.x2 && a.y1 < b.y2 && b.y1 < a.y2;
  for (const n of list) {
    const w = n.id.length * charWidth;
    const candidates = [[13, 4], [-13 - w, 4], [-w / 2, -14], [-w / 2, 24]];
    for (const [dx, dy] of candidates) {
      const box = { x1: n.x + dx - margin, y1: n.y + dy - lineHeight - margin, x2: n.x + dx + w + margin, y2: n.y + dy + 4 + margin };
      if (box.x1 < 0 || box.x2 > width || box.y1 < 0 || box.y2 > height) continue;
      if (placed.some(b => hits(b, box)) || nodeBoxes.some(b => b.id !== n.id && hits(b, box))) continue;
      placed.push(box);
      out.set(n.id, { x: dx, y: dy });
      break;
    }
  }
  return out;
}

// A small force layout: springs along edges, repulsion between nodes, gravity to the centre.
function layout(list, edges, nodes, width, height) {
  const k = Math.sqrt((width * height) / Math.max(1, list.length)) * 0.45;
  for (let step = 0; step < 300; step++) {
    const cool = 1 - step / 300;
    for (const a of list) { a.vx = 0; a.vy = 0; }
    for (let i = 0; i < list.length; i++) for (let j = i + 1; j < list.length; j++) {
      const a = list[i], b = list[j];
      let dx = a.x - b.x, dy = a.y - b.y; let d2 = dx * dx + dy * dy;
      if (d2 < 0.01) { dx = Math.random(); dy = Math.random(); d2 = 1; }
      const f = (k * k) / d2;
      a.vx += dx * f; a.vy += dy * f; b.vx -= dx * f; b.vy -= dy * f;
    }
    for (const e of edges) {
      const a = nodes.get(e.a), b = nodes.get(e.b); if (a === b) continue;
      const dx = a.x - b.x, dy = a.y - b.y, d = Math.sqrt(dx * dx + dy * dy) || 1;
      const f = (d * d) / k / d;
      a.vx -= dx * f; a.vy -= dy * f; b.vx += dx * f; b.vy += dy * f;
    }
    for (const n of list) {
      n.vx += (width / 2 - n.x) * 0.12; n.vy += (height / 2 - n.y) * 0.12;
      const v = Math.sqrt(n.vx * n.vx + n.vy * n.vy) || 1, limit = 30 * cool + 1;
      n.x += n.vx / v * Math.min(v, limit); n.y += n.vy / v * Math.min(v, limit);
      n.x = Math.min(width - 80, Math.max(20, n.x)); n.y = Math.min(height - 20, Math.max(20, n.y));
    }
  }
}

let alertStatusFilter = "";
async function alerts() {
  const list = await api("/api/alerts" + (alertStatusFilter ? "?status=" + alertStatusFilter : ""));
  const filter = el("select", { id: "alert-status-filter", onchange: e => { alertStatusFilter = e.target.value; render(alerts, true); } },
    ["", "new", "acknowledged", "learned", "muted"].map(s => el("option", { value: s, selected: s === alertStatusFilter }, s ? label(s) : "All statuses")));
  return el("div", {},
    el("h1", {}, "Alerts ", el("span", { class: "muted" }, `(${list.length})`)),
    el("div", { class: "toolbar" }, filter),
    el("div", { class: "panel" }, alertTable(list, true)));
}

function alertTable(list, withActions) {
  if (!list.length) return el("div", { class: "empty" }, "No alerts");
  return el("table", { id: "alert-table" },
    el("thead", {}, el("tr", {}, el("th", {}, "Severity"), el("th", {}, "Alert"), el("th", { class: "hide-narrow" }, "Source → destination"),
      el("th", { class: "hide-narrow" }, "Last seen"), el("th", {}, "Status"), withActions ? el("th", {}, "") : null)),
    el("tbody", {}, list.map(a => el("tr", { "data-alert-id": a.id },
      el("td", {}, el("span", { class: "sev sev-" + Math.min(4, a.severity) }, SEVERITY[a.severity] || "info")),
      el("td", {}, el("strong", {}, label(a.signature)), el("div", { class: "muted" }, a.message), a.mitre ? el("span", { class: "pill" }, a.mitre) : null,
        // The packets behind the alert (pcapng), when the sensor kept them.
        a.evidence ? el("a", { class: "pcap-link", href: `/api/alerts/${a.id}/pcap`, download: `otsensor-alert-${a.id}.pcapng` }, "Download PCAP") : null),
      el("td", { class: "hide-narrow" }, `${a.src_ip || "–"}${a.src_port ? ":" + a.src_port : ""} → ${a.dest_ip || "–"}${a.dest_port ? ":" + a.dest_port : ""}`, a.app_proto ? el("div", {}, el("span", { class: "pill" }, a.app_proto)) : null),
      el("td", { class: "hide-narrow" }, nsToDate(a.last_ns).toISOString().replace("T", " ").slice(0, 19), a.count > 1 ? el("div", { class: "muted" }, `×${a.count}`) : null),
      el("td", { class: "alert-status status-" + a.status }, label(a.status)),
      withActions ? el("td", {}, el("div", { class: "actions" },
        actionButton(a, "acknowledge", "Acknowledge", a.status === "acknowledged"),
        actionButton(a, "learn", "Learn", a.status === "learned"),
        actionButton(a, "mute", "Mute", a.status === "muted"))) : null))));
}

function actionButton(alert, action, text, disabled) {
  return el("button", { type: "button", class: "action-" + action, disabled, onclick: async (event) => {
    event.target.disabled = true;
    try {
      await api(`/api/alerts/${alert.id}/${action}`, { method: "POST" });
      render(alerts, true);
    } catch (error) {
      event.target.disabled = false;
      if (error.status === 401) { askToken(); } else { window.alert(error.message); }
    }
  } }, text);
}

// Known vulnerabilities: matches of the inventory against CISA's ICS advisories
// (GET /api/vulnerabilities). Confidence: high = exact model and firmware in range,
// medium = product family or version undecidable, low = vendor only.
function cvssClass(score) {
  return score >= 9 ? "critical" : score >= 7 ? "high" : score >= 4 ? "medium" : score > 0 ? "low" : "none";
}
function cvssBadge(score) {
  return el("span", { class: "cvss cvss-" + cvssClass(score), title: "CVSS " + score.toFixed(1) }, score.toFixed(1));
}
function vulnSummary(list) {
  const sure = list.filter(v => v.confidence !== "low");
  if (!list.length) return el("span", { class: "muted" }, "–");
  if (!sure.length) return el("span", { class: "muted", title: "vendor-only matches" }, `${list.length} vendor only`);
  const worst = Math.max(...sure.map(v => v.max_cvss));
  const high = sure.filter(v => v.confidence === "high").length;
  return el("span", {}, cvssBadge(worst), ` ${sure.length} advisor${sure.length > 1 ? "ies" : "y"}`,
    high ? el("span", { class: "conf conf-high" }, `${high} high`) : null);
}
// rows: [device or null, match]; the device column shows when the first row has one.
function vulnTable(rows) {
  if (!rows.length) return el("div", { class: "empty" }, "No advisory matches");
  const withDevice = !!rows[0][0];
  return el("table", { class: "vuln-table", id: "vuln-table" },
    el("thead", {}, el("tr", {}, withDevice ? el("th", {}, "Device") : null, el("th", {}, "CVSS"), el("th", {}, "Advisory"),
      el("th", {}, "Confidence"), el("th", { class: "hide-narrow" }, "Affected product"), el("th", { class: "hide-narrow" }, "Why"))),
    el("tbody", {}, rows.map(([device, v]) => el("tr", {},
      device ? el("td", {}, el("a", { href: "#/devices/" + encodeURIComponent(device.device) }, device.device),
        el("div", { class: "muted" }, [device.vendor, device.model, device.firmware].filter(Boolean).join(" · "))) : null,
      el("td", {}, cvssBadge(v.max_cvss)),
      el("td", {}, el("strong", {}, v.advisory), el("div", {}, v.title),
        el("div", { class: "cves" }, v.cves.slice(0, 8).map(c => el("span", { class: "pill" }, c)), v.cves.length > 8 ? `+${v.cves.length - 8}` : null)),
      el("td", {}, el("span", { class: "conf conf-" + v.confidence }, v.confidence)),
      el("td", { class: "hide-narrow" }, v.product, el("div", { class: "muted" }, "affected: " + v.affected + (v.fixed ? " · fixed in " + v.fixed : ""))),
      el("td", { class: "hide-narrow muted" }, v.reason)))));
}
let vulnConfidence = "medium";
async function vulnerabilities() {
  const view = await api("/api/vulnerabilities");
  const rank = { high: 0, medium: 1, low: 2 };
  const rows = [];
  for (const d of view.devices) for (const v of d.vulnerabilities) if (rank[v.confidence] <= rank[vulnConfidence]) rows.push([d, v]);
  rows.sort((a, b) => rank[a[1].confidence] - rank[b[1].confidence] || b[1].max_cvss - a[1].max_cvss);
  const filter = el("select", { id: "vuln-confidence", onchange: e => { vulnConfidence = e.target.value; render(vulnerabilities, true); } },
    [["high", "High confidence"], ["medium", "High and medium"], ["low", "All, with vendor only"]].map(([v, t]) => el("option", { value: v, selected: v === vulnConfidence }, t)));
  const counts = view.vulnerable_devices || {};
  return el("div", {},
    el("h1", {}, "Known vulnerabilities ", el("span", { class: "muted" }, `(${view.devices.filter(d => d.severity).length} devices)`)),
    el("div", { class: "cards" }, ["critical", "high", "medium", "low"].map(s =>
      el("div", { class: "card" }, el("div", { class: "label" }, `${s} devices`), el("div", { class: "value cvss-text-" + s }, fmtNumber(counts[s] || 0))))),
    el("div", { class: "toolbar" }, filter, el("span", { class: "muted" }, `${fmtNumber(view.advisories)} advisories, ${fmtNumber(view.products)} products · ${view.source}`)),
    el("div", { class: "panel" }, rows.length ? vulnTable(rows) : el("div", { class: "empty" }, "No device matches an advisory at this confidence")));
}

function debounce(fn, ms) { let t; return () => { clearTimeout(t); t = setTimeout(fn, ms); }; }

let current = null;
async function render(page, keepFocus = false) {
  current = page;
  const focused = keepFocus && document.activeElement && document.activeElement.id;
  const caret = focused && document.activeElement.selectionStart;
  try {
    const view = await page();
    if (current !== page) return;
    main.replaceChildren(view);
    if (focused) { const f = document.getElementById(focused); if (f) { f.focus(); if (caret != null && f.setSelectionRange) f.setSelectionRange(caret, caret); } }
  } catch (error) {
    main.replaceChildren(el("div", { class: "panel error" }, "Could not load: " + error.message));
  }
  refreshStatus();
}

function route() {
  const hash = location.hash.replace(/^#\/?/, "") || "overview";
  const [page, arg] = hash.split("/");
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === page);
  if (page === "devices" && arg) return render(() => deviceDetail(decodeURIComponent(arg)));
  render({ overview, devices: () => devices(), map: networkMap, alerts, vulnerabilities }[page] || overview);
}

async function refreshStatus() {
  const status = document.getElementById("status");
  try {
    const h = await api("/api/health");
    status.className = "status";
    status.replaceChildren(el("span", { class: "dot" }), `${fmtNumber(h.analyzer.devices)} devices · ${fmtNumber(h.packets)} packets`);
    document.getElementById("foot-version").textContent = "otsensor " + h.version;
    const badge = document.getElementById("alert-badge");
    badge.hidden = !h.analyzer.alerts_new; badge.textContent = h.analyzer.alerts_new;
  } catch {
    status.className = "status down";
    status.replaceChildren(el("span", { class: "dot" }), "sensor unreachable");
  }
}

function askToken() {
  const dialog = document.getElementById("token-dialog");
  document.getElementById("token-notice").hidden = true;
  document.getElementById("token-input").value = token();
  dialog.showModal();
}
document.getElementById("token-button").addEventListener("click", askToken);
document.getElementById("token-dialog").addEventListener("close", () => {
  const dialog = document.getElementById("token-dialog");
  if (dialog.returnValue === "save") localStorage.setItem("otsensor-token", document.getElementById("token-input").value.trim());
});

window.addEventListener("hashchange", route);
route();
setInterval(refreshStatus, 10000);
