// mesh viz dashboard: a hash-routed page that polls the JSON API
// (/api/...) and redraws. Every value from the cluster is written with
// textContent, never as HTML.
"use strict";

const REFRESH_MS = 5000;
let timer = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "href") node.setAttribute("href", v);
    else node.setAttribute(k, v);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(path) {
  const response = await fetch("api/" + path, { headers: { accept: "application/json" } });
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message || "";
  box.hidden = !message;
}

const pct = (v) => (v === null || v === undefined ? "-" : (v * 100).toFixed(2) + "%");
const rps = (v) => (v === null || v === undefined ? "-" : v.toFixed(2));
const ms = (v) => (v === null || v === undefined ? "-" : (v < 10 ? v.toFixed(1) : Math.round(v)) + "ms");

function successClass(v) {
  if (v === null || v === undefined) return "muted";
  return v >= 0.99 ? "ok" : v >= 0.9 ? "warn" : "bad";
}

function goldenCells(row) {
  const g = row || {};
  return [
    el("td", { class: "num " + successClass(g.success) }, pct(g.success)),
    el("td", { class: "num" }, rps(g.rps)),
    el("td", { class: "num" }, ms(g.latency_ms_p50)),
    el("td", { class: "num" }, ms(g.latency_ms_p95)),
    el("td", { class: "num" }, ms(g.latency_ms_p99)),
  ];
}

const GOLDEN = ["Success", "RPS", "P50", "P95", "P99"];

function table(headers, rows) {
  const head = el("tr", {}, ...headers.map((h, i) => el("th", { class: i >= headers.length - 5 ? "num" : "" }, h)));
  return el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows));
}

function meshed(row) {
  return row.meshed ? row.meshed[0] + "/" + row.meshed[1] : "-";
}

async function namespacesPage() {
  const data = await api("namespaces");
  const rows = data.rows.map((r) =>
    el("tr", {},
      el("td", {}, el("a", { href: "#/namespace/" + encodeURIComponent(r.name) }, r.name)),
      el("td", {}, meshed(r)),
      ...goldenCells(r)));
  return [table(["Namespace", "Meshed", ...GOLDEN], rows)];
}

let pendingTopology = null;

async function namespacePage(namespace) {
  const query = "?namespace=" + encodeURIComponent(namespace);
  const [data, graph, routes] = await Promise.all([
    api("workloads" + query), api("edges" + query), api("httproutes" + query)]);
  const rows = data.rows.map((r) =>
    el("tr", { "data-workload": r.kind + "/" + r.name },
      el("td", {}, r.kind),
      el("td", {}, el("a", { href: workloadHref(namespace, r.kind, r.name) }, r.name)),
      el("td", {}, meshed(r)), ...goldenCells(r)));
  pendingTopology = graph.edges;
  const page = [
    table(["Kind", "Name", "Meshed", ...GOLDEN], rows),
    el("h2", {}, "Topology"),
    el("div", { id: "topology", class: "topology" }),
    el("h2", {}, "Edges"),
    edgeTable(graph.edges),
  ];
  if (routes.rows.length > 0) page.push(el("h2", {}, "HTTPRoutes"), httpRouteTable(routes.rows));
  return page;
}

// Each HTTPRoute per parent: a Service's (what its clients saw on the
// route) or a Server's (what its pods served on it).
function httpRouteTable(rows) {
  return table(["Route", "Parent", ...GOLDEN], rows.map((r) =>
    el("tr", { "data-httproute": r.name + " " + r.parent },
      el("td", {}, r.name), el("td", {}, r.parent), ...goldenCells(r))));
}

// Who calls whom: whether both sides presented identities, and what the
// caller saw.
function edgeTable(edges) {
  if (edges.length === 0) return el("p", { class: "muted" }, "No edges in this window.");
  const rows = edges.map((e) =>
    el("tr", { "data-edge": e.src + "→" + e.dst },
      el("td", {}, e.src), el("td", {}, e.dst), el("td", {}, e.src_namespace || "-"), el("td", {}, e.dst_namespace),
      el("td", { class: e.secured ? "ok" : "bad" }, e.secured ? "√" : (e.no_tls_reason || "no")),
      el("td", { class: "num " + successClass(e.success) }, pct(e.success)),
      el("td", { class: "num" }, rps(e.rps))));
  return el("table", {},
    el("thead", {}, el("tr", {}, ...["Source", "Destination", "Source ns", "Destination ns", "Secured", "Success", "RPS"].map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows));
}

function workloadHref(namespace, kind, name) {
  return "#/namespace/" + encodeURIComponent(namespace) + "/" + encodeURIComponent(kind) + "/" + encodeURIComponent(name);
}

// A workload: its golden metrics, who calls it and whom it calls, and its
// live calls (tapped by `mesh viz dashboard` with the user's credentials).
async function workloadPage(namespace, kind, name) {
  const query = "?namespace=" + encodeURIComponent(namespace);
  const routesQuery = query + "&kind=" + encodeURIComponent(kind) + "&name=" + encodeURIComponent(name);
  const [data, graph, routes] = await Promise.all([api("workloads" + query), api("edges" + query), api("routes" + routesQuery)]);
  const row = data.rows.find((r) => r.kind === kind && r.name === name);
  const inbound = graph.edges.filter((e) => e.dst === name && e.dst_namespace === namespace);
  const outbound = graph.edges.filter((e) => e.src === name && e.src_namespace === namespace);
  live.follow(namespace, kind, name);
  return [
    row
      ? table(["Kind", "Name", "Meshed", ...GOLDEN], [el("tr", { "data-workload": kind + "/" + name }, el("td", {}, kind), el("td", {}, name), el("td", {}, meshed(row)), ...goldenCells(row))])
      : el("p", { class: "muted" }, "No " + kind + " " + namespace + "/" + name + " (or no traffic in this window)."),
    el("h2", {}, "Inbound"),
    edgeTable(inbound),
    el("h2", {}, "Outbound"),
    edgeTable(outbound),
    el("h2", {}, "Routes"),
    ...routeTables(routes.services),
    el("h2", {}, "Live calls"),
    live.box,
  ];
}

// Each Service in front of the workload: its ServiceProfile routes as
// every client saw them, [DEFAULT] for requests that matched none.
function routeTables(services) {
  if (services.length === 0) return [el("p", { class: "muted" }, "No Service selects these pods.")];
  return services.map((s) => {
    const rows = s.rows.map((r) =>
      el("tr", { "data-route": s.service + " " + r.route }, el("td", {}, r.route), el("td", {}, s.service), ...goldenCells(r)));
    const note = s.profiled ? null : el("p", { class: "muted" }, "No ServiceProfile routes or HTTPRoutes for " + s.service + ": every request is [DEFAULT].");
    return el("div", {}, table(["Route", "Service", ...GOLDEN], rows), note);
  });
}

// The live tap of the workload on screen: one stream from `mesh viz
// dashboard`'s own /tap, a snapshot a second (calls summed as `viz top`
// sums them, the latest events as `viz tap` prints them). The box outlives
// the page's 5-second redraws; leaving the page stops the stream.
const live = {
  box: el("div", { id: "live" }),
  target: null,
  abort: null,

  follow(namespace, kind, name) {
    const target = namespace + "/" + kind + "/" + name;
    if (this.target === target) return;
    this.stop();
    this.target = target;
    this.box.replaceChildren(el("p", { class: "muted" }, "Waiting for requests…"));
    this.run(namespace, kind, name, target);
  },

  stop() {
    if (this.abort) this.abort.abort();
    this.abort = null;
    this.target = null;
  },

  async run(namespace, kind, name, target) {
    while (this.target === target) {
      const abort = new AbortController();
      this.abort = abort;
      let retryMs = 1000;
      try {
        const query = new URLSearchParams({ namespace, kind, name });
        const response = await fetch("tap?" + query, { signal: abort.signal });
        if (response.status === 404) {
          this.say("Live calls are tapped by `mesh viz dashboard` with your own credentials: open the dashboard through it.");
          return;
        }
        if (!response.ok) {
          this.say("tap: " + (await response.text()).trim());
          retryMs = 5000;
        } else if (await this.read(response.body.getReader(), target)) {
          retryMs = 5000; // the stream ended on an error: do not hammer the API server
        }
      } catch (e) {
        if (abort.signal.aborted) return;
        this.say("tap: " + e.message);
        retryMs = 5000;
      }
      await new Promise((resolve) => setTimeout(resolve, retryMs));
    }
  },

  // Shows each snapshot of the stream; says whether the last one was an
  // error.
  async read(reader, target) {
    const decoder = new TextDecoder();
    let pending = "";
    let failed = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (done || this.target !== target) return failed;
      pending += decoder.decode(value, { stream: true });
      let newline;
      while ((newline = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        if (!line.trim()) continue;
        const snapshot = JSON.parse(line);
        failed = Boolean(snapshot.error);
        this.show(snapshot);
      }
    }
  },

  say(message) {
    this.box.replaceChildren(el("div", { class: "error" }, message));
  },

  show(snapshot) {
    if (snapshot.error) return this.say("tap: " + snapshot.error);
    const rows = snapshot.calls.map((c) =>
      el("tr", { "data-call": c.source + "→" + c.destination + " " + c.method + " " + c.path },
        el("td", {}, c.source), el("td", {}, c.destination), el("td", {}, c.method), el("td", {}, c.path),
        el("td", { class: "num" }, c.count),
        el("td", { class: "num" }, ms(c.bestMs)), el("td", { class: "num" }, ms(c.worstMs)), el("td", { class: "num" }, ms(c.lastMs)),
        el("td", { class: "num " + successClass(c.successRate) }, pct(c.successRate))));
    this.box.replaceChildren(
      table(["Source", "Destination", "Method", "Path", "Count", "Best", "Worst", "Last", "Success"], rows),
      el("h2", {}, "Latest events"),
      el("pre", { class: "events" }, snapshot.latest.join("\n")));
  },
};

// After a namespace page is in the document: who calls whom, each edge
// labelled with the caller's success rate, dashed when not secured.
function drawTopology() {
  const box = document.getElementById("topology");
  if (!box || !pendingTopology) return;
  const nodes = new Map();
  const edges = [];
  for (const e of pendingTopology) {
    const src = (e.src_namespace || "?") + "/" + e.src;
    const dst = e.dst_namespace + "/" + e.dst;
    nodes.set(src, e.src);
    nodes.set(dst, e.dst);
    edges.push({ data: { id: src + "->" + dst, source: src, target: dst, label: pct(e.success), secured: e.secured ? "yes" : "no" } });
  }
  const cy = cytoscape({
    container: box,
    elements: [...[...nodes].map(([id, label]) => ({ data: { id, label } })), ...edges],
    layout: { name: "breadthfirst", directed: true, padding: 20, spacingFactor: 1.2 },
    userZoomingEnabled: false,
    style: [
      { selector: "node", style: { label: "data(label)", "background-color": "#2b6cb0", color: "#1d2733", "font-size": 12, "text-valign": "bottom", "text-margin-y": 4 } },
      { selector: "edge", style: { label: "data(label)", "curve-style": "bezier", "target-arrow-shape": "triangle", width: 2, "line-color": "#1a7f37", "target-arrow-color": "#1a7f37", "font-size": 11, "text-background-color": "#fff", "text-background-opacity": 1 } },
      { selector: "edge[secured = 'no']", style: { "line-style": "dashed", "line-color": "#b26b00", "target-arrow-color": "#b26b00" } },
    ],
  });
  // What the graph holds, for whoever reads the page's DOM (tests).
  box.setAttribute("data-drawn-edges", cy.edges().map((e) => e.source().data("label") + "→" + e.target().data("label")).join(" "));
}

function badge(text, cls) {
  return el("span", { class: "badge " + cls }, text);
}

function gatewayBadge(link) {
  if (link.alive === null || link.alive === undefined) return badge("unknown", "warn");
  return link.alive ? badge("alive", "ok") : badge("down", "bad");
}

function phaseBadge(phase) {
  if (!phase) return badge("not managed", "");
  const cls = phase === "Primary" ? "ok" : phase === "Invalid" || phase === "Unknown" ? "bad" : "warn";
  return badge(phase, cls);
}

async function clustersPage() {
  const data = await api("clusters");
  const out = [];
  if (data.prometheusError) out.push(el("div", { class: "error" }, "Prometheus: " + data.prometheusError));
  out.push(el("h2", {}, "Links"));
  if (data.links.length === 0) out.push(el("p", { class: "muted" }, "No Links: `mesh multicluster link` connects another cluster."));
  for (const link of data.links) {
    const services = link.services.map((s) =>
      el("tr", {}, el("td", {}, s.namespace), el("td", {}, s.name), ...goldenCells(s.stat && s.stat)));
    out.push(el("div", { class: "card", "data-link": link.targetClusterName },
      el("h3", {}, link.targetClusterName + " ", gatewayBadge(link)),
      el("div", { class: "muted" },
        "gateway " + link.gatewayAddress + " · probe latency " + ms(link.latencyMs) + " · identity " + link.gatewayIdentity),
      el("h4", {}, "Mirrored services (as clients here see them)"),
      services.length ? table(["Namespace", "Service", ...GOLDEN], services) : el("p", { class: "muted" }, "none")));
  }
  out.push(el("h2", {}, "Traffic splits"));
  if (data.trafficSplits.length === 0) out.push(el("p", { class: "muted" }, "No TrafficSplits."));
  for (const split of data.trafficSplits) {
    const key = split.namespace + "/" + split.name;
    const weights = split.backends.map((b) => b.service + " " + b.weight + "%").join(" · ");
    const card = el("div", { class: "card", "data-split": key },
      el("h3", {}, key + " → " + split.service + " ", phaseBadge(split.phase)),
      el("div", { class: "muted" }, "weights now: " + weights),
      el("div", { class: "charts", id: "charts-" + key }));
    out.push(card);
  }
  return out;
}

// After a clusters page is in the document: its splits' charts.
async function drawSplitCharts() {
  for (const card of document.querySelectorAll("[data-split]")) {
    const [namespace, name] = card.getAttribute("data-split").split("/");
    let history;
    try {
      history = await api("trafficsplit?namespace=" + encodeURIComponent(namespace) + "&name=" + encodeURIComponent(name));
    } catch (e) {
      card.append(el("div", { class: "error" }, "history: " + e.message));
      continue;
    }
    const box = card.querySelector(".charts");
    box.replaceChildren();
    if (history.backends.length === 0) {
      box.append(el("p", { class: "muted" }, "No failover series yet (is the failover controller scraped by viz's Prometheus?)"));
      continue;
    }
    const times = [...new Set(history.backends.flatMap((b) => b.weight.map((p) => p[0])))].sort((a, b) => a - b);
    const series = (field, scale) => history.backends.map((b) => {
      const byTime = new Map(b[field].map((p) => [p[0], p[1] * scale]));
      return times.map((t) => (byTime.has(t) ? byTime.get(t) : null));
    });
    const colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];
    const opts = (title, unit) => ({
      title, width: 560, height: 220,
      scales: { y: { range: [0, 100] } },
      axes: [{}, { values: (u, ticks) => ticks.map((t) => t + unit) }],
      series: [{}, ...history.backends.map((b, i) => ({ label: b.service, stroke: colors[i % colors.length], width: 2 }))],
    });
    new uPlot(opts("Weight (%)", "%"), [times, ...series("weight", 1)], box);
    new uPlot(opts("Success rate (%)", "%"), [times, ...series("successRate", 100)], box);
  }
}

const WORKLOAD_ROUTE = /^#\/namespace\/([^/]+)\/([^/]+)\/([^/]+)$/;

const routes = [
  [WORKLOAD_ROUTE, (m) => {
    const [namespace, kind, name] = m.slice(1).map(decodeURIComponent);
    return [kind + " " + namespace + "/" + name, () => workloadPage(namespace, kind, name), "namespaces"];
  }],
  [/^#\/namespace\/(.+)$/, (m) => ["Namespace " + decodeURIComponent(m[1]), () => namespacePage(decodeURIComponent(m[1])), "namespaces"]],
  [/^#\/clusters$/, () => ["Clusters", clustersPage, "clusters"]],
  [/^.*$/, () => ["Namespaces", namespacesPage, "namespaces"]],
];

async function render() {
  const hash = location.hash || "#/namespaces";
  for (const [pattern, page] of routes) {
    const match = hash.match(pattern);
    if (!match) continue;
    const [title, build, nav] = page(match);
    if (pattern !== WORKLOAD_ROUTE) live.stop();
    document.getElementById("title").textContent = title;
    for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.id === "nav-" + nav);
    try {
      const nodes = await build();
      document.getElementById("content").replaceChildren(...nodes);
      if (nav === "clusters") await drawSplitCharts();
      else drawTopology();
      showError("");
      document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    } catch (e) {
      showError(e.message);
    }
    return;
  }
}

function schedule() {
  clearTimeout(timer);
  render().finally(() => { timer = setTimeout(schedule, REFRESH_MS); });
}

window.addEventListener("hashchange", schedule);
schedule();
