/* hueyq web UI: fills the pages from the JSON API and keeps them live over
 * server-sent events (/api/stream). Data only ever reaches the page through
 * textContent and attributes: never as HTML. Controls send the session's
 * CSRF token in the X-CSRF-Token header. */
(function () {
  "use strict";

  var body = document.body;
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";
  var readOnly = body.dataset.readOnly === "true";
  var skew = 0; /* server clock minus this browser's, in seconds */
  var SVG = "http://www.w3.org/2000/svg";

  /* ------------------------------------------------------------ helpers */

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      var value = attrs[key];
      if (value === null || value === undefined || value === false) return;
      if (key === "text") node.textContent = value;
      else if (key === "className") node.className = value;
      else if (key === "onclick") node.addEventListener("click", value);
      else node.setAttribute(key, value === true ? "" : value);
    });
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function setText(node, text) {
    text = text === null || text === undefined ? "" : String(text);
    if (node.textContent !== text) node.textContent = text;
  }

  function now() { return Date.now() / 1000 + skew; }

  function clock(doc) {
    if (doc && typeof doc.now === "number") skew = doc.now - Date.now() / 1000;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined || isNaN(seconds)) return "–";
    seconds = Math.max(0, seconds);
    if (seconds < 1) return Math.round(seconds * 1000) + " ms";
    if (seconds < 60) return seconds.toFixed(seconds < 10 ? 1 : 0) + " s";
    var m = Math.floor(seconds / 60), s = Math.floor(seconds % 60);
    if (m < 60) return m + " m " + s + " s";
    var h = Math.floor(m / 60);
    if (h < 48) return h + " h " + (m % 60) + " m";
    return Math.floor(h / 24) + " d " + (h % 24) + " h";
  }

  function ago(ts) { return ts ? duration(now() - ts) + " ago" : "–"; }

  function when(ts) {
    return ts ? new Date(ts * 1000).toLocaleString() : "–";
  }

  function size(bytes) {
    if (bytes === null || bytes === undefined) return "–";
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
    return (i ? bytes.toFixed(bytes < 10 ? 1 : 0) : bytes) + " " + units[i];
  }

  function percent(value) {
    return value === null || value === undefined ? "–" : Math.round(value * 100) + "%";
  }

  function shortTask(name) { return (name || "?").split(".").pop(); }

  function shortId(id) { return (id || "").slice(0, 8); }

  function flash(text, kind) {
    var box = document.getElementById("flash");
    if (!box) return;
    box.className = "flash flash-" + (kind || "info");
    box.textContent = text;
    box.hidden = false;
    clearTimeout(flash.timer);
    flash.timer = setTimeout(function () { box.hidden = true; }, 6000);
  }

  function api(method, path, payload) {
    var headers = { "Accept": "application/json" };
    if (method !== "GET") headers["X-CSRF-Token"] = csrf;
    if (payload !== undefined) headers["Content-Type"] = "application/json";
    return fetch(path, {
      method: method, headers: headers, credentials: "same-origin", cache: "no-store",
      body: payload === undefined ? undefined : JSON.stringify(payload)
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (doc) {
        if (response.status === 401) {
          window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname + window.location.search));
        }
        if (!response.ok) {
          var error = new Error(doc.detail || response.statusText || "request failed");
          error.status = response.status;
          throw error;
        }
        clock(doc);
        return doc;
      });
    });
  }

  /* A button that POSTs to the API, then refreshes what it changed. */
  function control(label, path, opts) {
    opts = opts || {};
    var button = el("button", { type: "button", className: opts.className || "", text: label,
                                "data-action": opts.action || label.toLowerCase() });
    if (readOnly) { button.disabled = true; button.title = "read-only mode"; return button; }
    button.addEventListener("click", function () {
      if (opts.confirm && !window.confirm(opts.confirm)) return;
      button.disabled = true;
      api("POST", path, opts.payload).then(function (doc) {
        flash(opts.done ? opts.done(doc) : label + ": done", "ok");
        if (opts.after) opts.after(doc);
      }).catch(function (error) {
        flash(label + " failed: " + error.message, "error");
      }).then(function () { button.disabled = false; });
    });
    return button;
  }

  /* Keep a container's children in step with items, keyed by item id, so
   * rows are updated in place (buttons stay clickable, details stay open). */
  function sync(container, items, key, create, update) {
    var old = {};
    Array.prototype.forEach.call(container.children, function (child) {
      old[child.dataset.key] = child;
    });
    items.forEach(function (item, index) {
      var k = String(key(item));
      var node = old[k];
      if (!node) { node = create(item); node.dataset.key = k; }
      delete old[k];
      update(node, item);
      if (container.children[index] !== node) {
        container.insertBefore(node, container.children[index] || null);
      }
    });
    Object.keys(old).forEach(function (k) { old[k].remove(); });
  }

  function showEmpty(id, empty) {
    var node = document.getElementById(id);
    if (node) node.hidden = !empty;
  }

  function progressBar() {
    var fill = el("div", { className: "fill" });
    var label = el("span", { className: "bar-label" });
    var bar = el("div", { className: "bar", role: "progressbar", "aria-valuemin": "0",
                          "aria-valuemax": "100" }, [fill, label]);
    bar.fill = fill;
    bar.label = label;
    return bar;
  }

  function setProgress(bar, value, message) {
    var pct = value === null || value === undefined ? null : Math.max(0, Math.min(100, value));
    bar.fill.style.width = (pct === null ? 0 : pct) + "%";
    bar.setAttribute("aria-valuenow", pct === null ? "0" : String(Math.round(pct)));
    bar.classList.toggle("unknown", pct === null);
    setText(bar.label, (pct === null ? "–" : Math.round(pct) + "%") + (message ? " · " + message : ""));
  }

  function jobLink(job) {
    return el("a", { href: "/jobs/" + encodeURIComponent(job.id), className: "job-link",
                     title: job.id }, [
      el("span", { className: "task", text: shortTask(job.task) }), " ",
      el("code", { text: shortId(job.id) })]);
  }

  function stateBadge(state) {
    return el("span", { className: "state state-" + state, text: state });
  }

  /* ------------------------------------------------------------ live */

  /* The header says "live" only while the stream is connected and
   * /api/health says the runtime is up; a 503 shows its reasons in a banner. */
  var liveState = { stream: "connecting", health: null };

  function showLive() {
    var status = document.getElementById("live");
    if (!status) return;
    var h = liveState.health, text, kind;
    if (liveState.stream !== "open") {
      text = liveState.stream; kind = liveState.stream === "connecting" ? "" : "off";
    } else if (h === null) {
      text = "connecting"; kind = "";
    } else if (h.healthy) {
      text = "live"; kind = "on";
    } else {
      var down = (h.reasons || []).some(function (r) { return r.indexOf("no runtime alive") === 0; });
      text = down ? "runtime down" : "unhealthy"; kind = "bad";
    }
    setText(status, text);
    status.className = "live" + (kind ? " " + kind : "");
    status.dataset.state = text;
    var banner = document.getElementById("health-banner");
    if (!banner) return;
    var bad = h !== null && !h.healthy;
    banner.hidden = !bad;
    if (bad) {
      var reasons = h.reasons && h.reasons.length ? h.reasons : ["no reason given"];
      banner.replaceChildren(el("strong", { text: "Not healthy (/api/health answers " + (h.status || 503) + "): " }),
        el("ul", {}, reasons.map(function (r) { return el("li", { text: r }); })));
    }
  }

  function renderHealth(doc) {
    liveState.health = doc;
    showLive();
  }

  function checkHealth() {
    /* 503 is an answer here, not a failure: read its reasons. */
    return fetch("/api/health", { headers: { "Accept": "application/json" }, credentials: "same-origin",
                                  cache: "no-store" }).then(function (response) {
      return response.json().then(function (doc) {
        if (response.status === 200 || response.status === 503) {
          renderHealth(Object.assign({ status: response.status }, doc));
        }
      });
    }).catch(function () {});
  }

  function live(query, handlers) {
    var source = new EventSource("/api/stream" + query);
    handlers = Object.assign({ health: renderHealth }, handlers);
    source.onopen = function () { liveState.stream = "open"; showLive(); checkHealth(); };
    source.onerror = function () { liveState.stream = "reconnecting"; showLive(); };
    Object.keys(handlers).forEach(function (name) {
      source.addEventListener(name, function (event) {
        var doc = JSON.parse(event.data);
        clock(doc);
        handlers[name](doc);
      });
    });
    source.addEventListener("problem", function (event) {
      var doc = JSON.parse(event.data);
      if (doc.topic === "job" && doc.status === 404) {
        source.close();
        flash("This job no longer exists (retention may have removed it).", "error");
        return;
      }
      flash(doc.topic + ": " + doc.detail, "error");
    });
    window.addEventListener("pagehide", function () { source.close(); });
    checkHealth();
    return source;
  }

  /* ------------------------------------------------------------ charts */

  var WINDOWS = {
    "1h": { unit: "jobs/min", tick: function (t) { return clockTime(t); } },
    "24h": { unit: "jobs/15 min", tick: function (t) { return clockTime(t); } },
    "7d": { unit: "jobs/h", tick: function (t) { return new Date(t * 1000).toLocaleDateString([], { month: "short", day: "numeric" }); } }
  };
  var chartWindow = "1h";
  var seriesDoc = null;

  function clockTime(t) {
    return new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function svgEl(tag, attrs, text) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /* A chart 300 x 110 (user units) with a y axis (0, half, top and a unit)
   * and an x axis (start, middle, end times of the window). */
  var CW = 300, CH = 110, PL = 44, PR = 6, PT = 14, PB = 18;

  function chartFrame(label, unit, top, format, doc) {
    var svg = svgEl("svg", { viewBox: "0 0 " + CW + " " + CH, "class": "chart", role: "img", "aria-label": label });
    svg.appendChild(svgEl("title", {}, label));
    svg.appendChild(svgEl("text", { x: PL, y: 10, "class": "unit" }, unit));
    [0, 0.5, 1].forEach(function (f) {
      var y = CH - PB - f * (CH - PB - PT);
      svg.appendChild(svgEl("line", { x1: PL, x2: CW - PR, y1: y, y2: y, "class": f ? "grid-line" : "axis" }));
      svg.appendChild(svgEl("text", { x: PL - 4, y: y + 3, "class": "tick y" }, format(top * f)));
    });
    var tick = WINDOWS[doc.window].tick;
    [[doc.start, "start"], [(doc.start + doc.end) / 2, "middle"], [doc.end, "end"]].forEach(function (pair, i) {
      var x = PL + i * (CW - PL - PR) / 2;
      svg.appendChild(svgEl("text", { x: x, y: CH - 4, "class": "tick x x-" + pair[1] }, tick(pair[0])));
    });
    svg.appendChild(svgEl("line", { x1: PL, x2: PL, y1: PT, y2: CH - PB, "class": "axis" }));
    return svg;
  }

  function tickDuration(v) {
    if (!v) return "0";
    if (v < 1) return String(Math.round(v * 10000) / 10) + " ms";
    return duration(v);
  }

  function niceTop(value) {
    if (!(value > 0)) return 1;
    var power = Math.pow(10, Math.floor(Math.log(value) / Math.LN10));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * power >= value) return steps[i] * power;
    return 10 * power;
  }

  function count(n) { return n >= 10000 ? Math.round(n / 1000) + "k" : String(Math.round(n * 10) / 10); }

  function throughputChart(s, doc) {
    var n = s.complete.length || 1;
    var totals = s.complete.map(function (c, i) { return c + (s.failed[i] || 0); });
    var top = niceTop(Math.max.apply(null, totals.concat([1])));
    var done = s.complete.reduce(function (a, b) { return a + b; }, 0);
    var failed = s.failed.reduce(function (a, b) { return a + b; }, 0);
    var label = "Throughput over the last " + doc.window + ": " + done + " complete, " + failed + " failed (" +
      WINDOWS[doc.window].unit + ")";
    var svg = chartFrame(label, "throughput, " + WINDOWS[doc.window].unit, top, count, doc);
    var width = (CW - PL - PR) / n, height = CH - PB - PT;
    totals.forEach(function (total, i) {
      if (!total) return;
      var x = PL + i * width + width * 0.1, w = Math.max(0.6, width * 0.8);
      var hc = height * s.complete[i] / top, hf = height * (s.failed[i] || 0) / top;
      if (hc) svg.appendChild(svgEl("rect", { x: x, width: w, y: CH - PB - hc, height: Math.max(0.8, hc), "class": "complete" }));
      if (hf) svg.appendChild(svgEl("rect", { x: x, width: w, y: CH - PB - hc - hf, height: Math.max(0.8, hf), "class": "failed" }));
    });
    return svg;
  }

  function runtimeChart(s, doc) {
    var values = s.max_runtime.filter(function (v) { return v !== null; });
    var top = niceTop(Math.max.apply(null, values.concat([0.001])));
    var n = s.mean_runtime.length || 1;
    var label = "Run time of completions over the last " + doc.window + " (mean and longest per bucket)";
    var svg = chartFrame(label, "run time: mean, longest", top, tickDuration, doc);
    var width = (CW - PL - PR) / n, height = CH - PB - PT;
    [["max_runtime", "longest"], ["mean_runtime", "mean"]].forEach(function (pair) {
      var points = [];
      s[pair[0]].forEach(function (v, i) {
        if (v === null) return;
        points.push((PL + (i + 0.5) * width).toFixed(1) + "," + (CH - PB - height * v / top).toFixed(1));
      });
      if (points.length > 1) svg.appendChild(svgEl("polyline", { points: points.join(" "), "class": "line " + pair[1] }));
      points.forEach(function (p) {
        var xy = p.split(",");
        svg.appendChild(svgEl("circle", { cx: xy[0], cy: xy[1], r: 1.6, "class": "dot " + pair[1] }));
      });
    });
    return svg;
  }

  function renderCharts() {
    if (!seriesDoc) return;
    document.querySelectorAll("article.card[data-queue]").forEach(function (card) {
      var s = seriesDoc.queues[card.dataset.queue];
      if (!s || !card.charts) return;
      var key = seriesDoc.window + ":" + seriesDoc.end + ":" + JSON.stringify(s);
      if (card.charts.dataset.key === key) return;
      card.charts.dataset.key = key;
      card.charts.replaceChildren(throughputChart(s, seriesDoc), runtimeChart(s, seriesDoc));
    });
  }

  function refreshSeries() {
    var query = "?window=" + chartWindow + (onlyQueue ? "&queue=" + encodeURIComponent(onlyQueue) : "");
    return api("GET", "/api/series" + query).then(function (doc) {
      if (doc.window !== chartWindow) return;
      seriesDoc = doc;
      renderCharts();
    }).catch(function (error) { flash("charts: " + error.message, "error"); });
  }

  function chartWindows() {
    var buttons = document.querySelectorAll(".window button[data-window]");
    if (!buttons.length) return;
    buttons.forEach(function (button) {
      button.addEventListener("click", function () {
        chartWindow = button.dataset.window;
        buttons.forEach(function (b) { b.setAttribute("aria-pressed", b === button ? "true" : "false"); });
        refreshSeries();
      });
    });
    refreshSeries();
    (function again() {
      setTimeout(function () { refreshSeries().then(again); }, chartWindow === "1h" ? 15000 : 60000);
    })();
  }

  /* ------------------------------------------------------------ queues */

  function stat(label) {
    var value = el("dd");
    var node = el("div", { className: "stat" }, [el("dt", { text: label }), value]);
    node.value = value;
    return node;
  }

  function createCard(q) {
    var card = el("article", { className: "card", "data-queue": q.name });
    var link = el("a", { href: "/queues/" + encodeURIComponent(q.name), text: q.name });
    card.badge = el("span", { className: "badge", hidden: true });
    card.appendChild(el("h3", {}, [link, " ", card.badge]));
    card.stats = {};
    var grid = el("dl", { className: "stats" });
    [["pending", "pending"], ["running", "running"], ["complete_recent", "complete 1 h"],
     ["failed_recent", "failed 1 h"], ["success", "success"], ["mean", "mean run"]].forEach(function (pair) {
      card.stats[pair[0]] = stat(pair[1]);
      grid.appendChild(card.stats[pair[0]]);
    });
    card.appendChild(grid);
    card.charts = el("div", { className: "chart-box" });
    card.appendChild(card.charts);
    card.foot = el("p", { className: "card-foot" });
    card.appendChild(card.foot);
    card.actions = el("div", { className: "actions" });
    card.appendChild(card.actions);
    return card;
  }

  function updateCard(card, q) {
    var s = card.stats;
    setText(s.pending.value, q.pending);
    setText(s.running.value, q.running);
    setText(s.complete_recent.value, q.complete_recent);
    setText(s.failed_recent.value, q.failed_recent);
    setText(s.success.value, percent(q.success_rate));
    setText(s.mean.value, duration(q.mean_runtime));
    s.failed_recent.classList.toggle("bad", q.failed_recent > 0);
    var paused = q.paused_by || [];
    card.classList.toggle("paused", paused.length > 0);
    card.badge.hidden = paused.length === 0;
    setText(card.badge, paused.length ? "paused" + (paused.join(",") === "user" ? "" : " by " + paused.join(", ")) : "");
    setText(card.foot, "scheduled " + q.scheduled + " · retryable " + q.retryable + " · " + q.workers + " " +
            q.worker_type + (q.workers === 1 ? " worker" : " workers") + " · p95 " + duration(q.p95_runtime) +
            (q.waiting_for_memory ? " · " + q.waiting_for_memory + " waiting for memory (" +
             size(Math.max(q.memory_room, 0)) + " left)" : ""));
    var state = (paused.indexOf("user") >= 0 ? "paused" : "running") + (readOnly ? "-ro" : "");
    if (card.actions.dataset.state !== state) {
      card.actions.dataset.state = state;
      var base = "/api/queues/" + encodeURIComponent(q.name);
      var toggle = paused.indexOf("user") >= 0
        ? control("Resume", base + "/resume", { action: "resume", after: refreshQueues,
                                                done: function () { return q.name + " resumed"; } })
        : control("Pause", base + "/pause", { action: "pause", after: refreshQueues,
                                              done: function () { return q.name + " paused"; } });
      var drain = control("Drain", base + "/drain", {
        action: "drain", className: "danger", after: refreshQueues,
        confirm: "Cancel every pending job of " + q.name + "?",
        done: function (doc) { return q.name + " drained: " + doc.drained + " jobs cancelled"; } });
      card.actions.replaceChildren(toggle, drain);
    }
  }

  var onlyQueue = body.dataset.queue || null;

  function renderQueues(doc) {
    var box = document.getElementById("queues");
    if (!box) return;
    var list = Object.keys(doc.queues).map(function (name) { return doc.queues[name]; });
    if (onlyQueue) list = list.filter(function (q) { return q.name === onlyQueue; });
    if (box.firstElementChild && box.firstElementChild.tagName === "P") box.replaceChildren();
    sync(box, list, function (q) { return q.name; }, createCard, updateCard);
    renderCharts();
  }

  function refreshQueues() {
    return api("GET", "/api/queues").then(renderQueues).catch(function (error) {
      flash("queues: " + error.message, "error");
    });
  }

  /* ------------------------------------------------------------ jobs */

  function cancelButton(job, after) {
    return control("Cancel", "/api/jobs/" + encodeURIComponent(job.id) + "/cancel", {
      action: "cancel", className: "danger", after: after,
      done: function (doc) { return shortId(doc.job_id) + " " + doc.state + ": " + doc.detail; } });
  }

  function retryButton(job, after) {
    return control("Retry", "/api/jobs/" + encodeURIComponent(job.id) + "/retry", {
      action: "retry", after: after,
      done: function (doc) { return shortId(doc.id) + " is " + doc.state + " again"; } });
  }

  function createRunning(job) {
    var tr = el("tr", { "data-job": job.id });
    tr.bar = progressBar();
    tr.elapsed = el("td", { className: "elapsed" });
    tr.worker = el("td", { className: "wide mono" });
    [el("td", {}, [jobLink(job)]), el("td", { text: job.queue }), el("td", {}, [tr.bar]),
     tr.elapsed, tr.worker, el("td", { className: "actions" }, [cancelButton(job, refreshRunning)])
    ].forEach(function (td) { tr.appendChild(td); });
    return tr;
  }

  function updateRunning(tr, job) {
    setProgress(tr.bar, job.progress, job.message);
    tr.dataset.started = job.started_at || "";
    setText(tr.elapsed, job.started_at ? duration(now() - job.started_at) : "–");
    setText(tr.worker, job.worker || "–");
  }

  function renderRunning(doc) {
    var table = document.getElementById("running");
    if (!table) return;
    sync(table.tBodies[0], doc.jobs, function (j) { return j.id; }, createRunning, updateRunning);
    setText(document.getElementById("running-count"), doc.jobs.length ? "(" + doc.jobs.length + ")" : "");
    showEmpty("running-empty", doc.jobs.length === 0);
  }

  function refreshRunning() {
    return api("GET", "/api/jobs?state=running&limit=50").then(renderRunning).catch(function () {});
  }

  function tickElapsed() {
    document.querySelectorAll("#running tr[data-started]").forEach(function (tr) {
      var started = parseFloat(tr.dataset.started);
      if (started) setText(tr.elapsed, duration(now() - started));
    });
  }

  var openTracebacks = {};

  function createFailure(job) {
    var tr = el("tr", { "data-job": job.id });
    tr.reason = el("div", { className: "reason" });
    tr.trace = el("pre", { className: "traceback" });
    tr.details = el("details", {}, [el("summary", { text: "traceback" }), tr.trace]);
    tr.details.addEventListener("toggle", function () { openTracebacks[job.id] = tr.details.open; });
    tr.ended = el("td", { className: "wide" });
    [el("td", {}, [jobLink(job)]), el("td", { text: job.queue }), el("td", {}, [stateBadge(job.state)]),
     el("td", { className: "reason-cell" }, [tr.reason, tr.details]), tr.ended,
     el("td", { className: "actions" }, [retryButton(job, refreshFailures)])
    ].forEach(function (td) { tr.appendChild(td); });
    return tr;
  }

  function updateFailure(tr, job) {
    var reason = job.error || job.reason || "";
    setText(tr.reason, reason);
    tr.reason.title = reason;
    setText(tr.trace, job.traceback || "");
    tr.details.hidden = !job.traceback;
    tr.details.open = !!openTracebacks[job.id];
    setText(tr.ended, ago(job.finished_at || job.updated_at));
  }

  function renderFailures(doc) {
    var table = document.getElementById("failures");
    if (!table) return;
    var list = doc.failed.concat(doc.dead);
    list.sort(function (a, b) { return (b.finished_at || b.updated_at || 0) - (a.finished_at || a.updated_at || 0); });
    sync(table.tBodies[0], list, function (j) { return j.id; }, createFailure, updateFailure);
    showEmpty("failures-empty", list.length === 0);
  }

  function refreshFailures() {
    return Promise.all([api("GET", "/api/jobs?state=failed&limit=20"),
                        api("GET", "/api/jobs?state=dead&limit=20")]).then(function (docs) {
      renderFailures({ failed: docs[0].jobs, dead: docs[1].jobs });
    }).catch(function (error) { flash("failures: " + error.message, "error"); });
  }

  /* ------------------------------------------------------------ workers */

  function createWorker(w) {
    var tr = el("tr", { "data-pid": w.pid });
    tr.memory = el("td");
    tr.jobs = el("td");
    tr.gpu = el("td", { className: "wide" });
    [el("td", { text: w.queue }), el("td", { className: "mono", text: String(w.pid), title: w.host }),
     el("td", { className: "wide", text: w.kind + (w.worker_type ? " · " + w.worker_type : "") }),
     tr.memory, tr.jobs, tr.gpu].forEach(function (td) { tr.appendChild(td); });
    tr.bar = progressBar();
    tr.bar.classList.add("memory");
    tr.memory.appendChild(tr.bar);
    return tr;
  }

  function updateWorker(tr, w, budgets) {
    var budget = budgets[w.queue] || {};
    var limit = w.worker_memory_hard || w.worker_memory_soft || budget.memory_limit || null;
    var pct = limit ? 100 * w.memory / limit : null;
    tr.bar.fill.style.width = (pct === null ? 0 : Math.min(100, pct)) + "%";
    tr.bar.setAttribute("aria-valuenow", pct === null ? "0" : String(Math.round(pct)));
    tr.bar.classList.toggle("unknown", pct === null);
    tr.bar.classList.toggle("warn", !!(w.worker_memory_soft && w.memory > w.worker_memory_soft));
    setText(tr.bar.label, size(w.memory) + (limit ? " / " + size(limit) : "") +
            (w.memory_kind ? " " + String(w.memory_kind).toUpperCase() : ""));
    var jobs = (w.jobs || []).map(function (j) {
      return el("a", { href: "/jobs/" + encodeURIComponent(j.id), title: j.id,
                       text: shortTask(j.task) + " " + shortId(j.id) });
    });
    tr.jobs.replaceChildren.apply(tr.jobs, jobs.length ? jobs : [document.createTextNode("idle")]);
    setText(tr.gpu, w.gpu ? size(w.gpu.allocated) + " (" + (w.gpu.device || "gpu") + ")" : "–");
  }

  /* Every host of the app (its host id): state, heartbeat age, consumers
   * by queue and the leases it holds. */
  function createHost(h) {
    var tr = el("tr", { "data-host": h.host });
    tr.cells_ = [el("td", { className: "mono", text: h.host }), el("td"), el("td"),
                 el("td", { className: "wide" }), el("td")];
    tr.cells_.forEach(function (td) { tr.appendChild(td); });
    return tr;
  }

  function updateHost(tr, h) {
    setText(tr.cells_[1], h.alive ? "alive" : "silent");
    tr.classList.toggle("warn", !h.alive);
    setText(tr.cells_[2], h.age === null || h.age === undefined ? "–" : duration(h.age) + " ago");
    var queues = {};
    (h.consumers || []).forEach(function (c) {
      if (c.alive) queues[c.queue] = (queues[c.queue] || 0) + 1;
    });
    setText(tr.cells_[3], Object.keys(queues).map(function (q) { return q + " ×" + queues[q]; }).join(", ") || "–");
    setText(tr.cells_[4], String(h.running || 0));
  }

  function renderHosts(doc) {
    var table = document.getElementById("hosts");
    if (!table) return;
    var hosts = doc.hosts || [];
    sync(table.tBodies[0], hosts, function (h) { return h.host; }, createHost, updateHost);
    showEmpty("hosts-empty", hosts.length === 0);
  }

  function renderWorkers(doc) {
    renderHosts(doc);
    var table = document.getElementById("workers");
    if (!table) return;
    sync(table.tBodies[0], doc.workers, function (w) { return w.host + ":" + w.pid; }, createWorker,
         function (tr, w) { updateWorker(tr, w, doc.budgets || {}); });
    var alive = (doc.runtimes || []).filter(function (r) { return r.alive; });
    var empty = document.getElementById("workers-empty");
    if (empty) {
      empty.textContent = alive.length ? "The runtime has no worker processes yet." :
        (doc.runtimes && doc.runtimes.length ? "No runtime is alive: the last heartbeat was " +
         ago(doc.runtimes[0].heartbeat) + "." : "No runtime is alive (start one with hueyq run).");
    }
    showEmpty("workers-empty", doc.workers.length === 0);
  }

  /* ------------------------------------------------------------ events */

  function createEvent() {
    var tr = el("tr");
    tr.cells_ = [el("td", { className: "when" }), el("td"), el("td"), el("td")];
    tr.cells_.forEach(function (td) { tr.appendChild(td); });
    return tr;
  }

  function updateEvent(tr, e) {
    setText(tr.cells_[0], ago(e.ts));
    tr.cells_[0].title = when(e.ts);
    setText(tr.cells_[1], e.queue || "–");
    setText(tr.cells_[2], e.action);
    var figures = e.value ? " (" + size(e.value) + (e.limit ? " > " + size(e.limit) : "") + ")" : "";
    setText(tr.cells_[3], (e.reason || "") + figures);
  }

  function renderEvents(doc) {
    var table = document.getElementById("events");
    if (!table) return;
    sync(table.tBodies[0], doc.events.slice(0, 20), function (e) { return e.id; }, createEvent, updateEvent);
    showEmpty("events-empty", doc.events.length === 0);
  }

  /* ------------------------------------------------------------ pages */

  function dashboard() {
    refreshQueues();
    refreshRunning();
    refreshFailures();
    api("GET", "/api/workers").then(renderWorkers).catch(function () {});
    api("GET", "/api/events?limit=20").then(renderEvents).catch(function () {});
    live("", { queues: renderQueues, running: renderRunning, failures: renderFailures,
               workers: renderWorkers, events: renderEvents });
    chartWindows();
    setInterval(tickElapsed, 1000);
  }

  /* ------------------------------------------------------------ search */

  var TERMS = ["queue", "state", "task", "id", "error", "since", "until"];

  function epochOf(local) {
    var t = new Date(local).getTime();
    return isNaN(t) ? null : String(t / 1000);
  }

  /* The API query for the page's URL: the form's terms, times in Unix
   * seconds (the form shows them as local date and time). */
  function searchQuery(params) {
    var query = new URLSearchParams();
    TERMS.forEach(function (k) {
      var v = params.get(k);
      if (!v) return;
      if (k === "since" || k === "until") v = epochOf(v);
      if (v) query.set(k, v);
    });
    return query;
  }

  function termsText(params) {
    return ["queue", "task", "id", "error", "since", "until"].filter(function (k) { return params.get(k); })
      .map(function (k) { return k + "=" + params.get(k); }).join(" ");
  }

  function jobRow(job, withQueue) {
    var bar = progressBar();
    setProgress(bar, job.progress, job.message);
    var cells = [el("td", {}, [jobLink(job)])];
    if (withQueue) cells.push(el("td", { text: job.queue }));
    cells.push(el("td", {}, [stateBadge(job.state)]), el("td", { className: "wide" }, [bar]),
               el("td", { text: ago(job.enqueued_at), title: when(job.enqueued_at) }),
               el("td", { className: "wide reason", text: job.waiting || job.error || job.reason || "" }));
    return el("tr", { "data-job": job.id }, cells);
  }

  function bulkButtons(params, reload) {
    var box = document.getElementById("bulk");
    var state = params.get("state") || "";
    if (!box || readOnly || (state !== "failed" && state !== "dead")) return;
    box.hidden = false;
    var terms = searchQuery(params);
    var text = termsText(params);
    [["bulk-retry", "retry", "Retry"], ["bulk-delete", "delete", "Delete"]].forEach(function (b) {
      var button = box.querySelector("[data-action=" + b[0] + "]");
      button.textContent = b[2] + " matching " + state;
      button.addEventListener("click", function () {
        button.disabled = true;
        api("GET", "/api/jobs/bulk?" + terms.toString()).then(function (doc) {
          if (!doc.matched) { flash("No " + state + " jobs match.", "info"); return null; }
          var n = Math.min(doc.matched, doc.limit);
          var question = b[2] + " " + n + " " + state + (n === 1 ? " job" : " jobs") +
            (text ? " matching " + text : "") + (doc.matched > n ? " (the newest " + n + " of " + doc.matched + ")" : "") +
            (b[1] === "delete" ? "? Their records, history and kept messages are removed." : "?");
          if (!window.confirm(question)) return null;
          return api("POST", "/api/jobs/bulk/" + b[1] + "?" + terms.toString()).then(function (result) {
            flash(result.done + " of " + result.matched + " " + state + " jobs " + (b[1] === "retry" ? "retried" : "deleted") +
                  (result.skipped.length ? ", " + result.skipped.length + " skipped (" + result.skipped[0].detail + ")" : "") +
                  (result.remaining ? "; " + result.remaining + " more match" : ""), "ok");
            reload();
          });
        }).catch(function (error) { flash(b[2] + " failed: " + error.message, "error"); })
          .then(function () { button.disabled = false; });
      });
    });
  }

  function searchPage() {
    var name = body.dataset.queue || null;
    var params = new URLSearchParams(window.location.search);
    var form = document.getElementById("search");
    TERMS.forEach(function (k) {
      var input = form.elements[k];
      if (input && params.get(k) && input.type !== "hidden") input.value = params.get(k);
    });
    var state = params.get("state") || "";
    document.querySelectorAll(".tabs a").forEach(function (a) {
      a.classList.toggle("active", a.dataset.state === state);
      var keep = new URLSearchParams(params);
      keep.delete("offset"); keep.delete("before"); keep.delete("before_id"); keep.delete("queue");
      if (a.dataset.state) keep.set("state", a.dataset.state); else keep.delete("state");
      a.href = "?" + keep.toString();
    });
    var query = searchQuery(params);
    if (name) query.delete("queue");
    query.set("limit", "50");
    ["offset", "before", "before_id"].forEach(function (k) { if (params.get(k)) query.set(k, params.get(k)); });
    var first = new URLSearchParams(params);
    first.delete("offset"); first.delete("before"); first.delete("before_id");
    if (name) first.delete("queue");
    document.getElementById("first-page").href = "?" + first.toString();
    api("GET", "/api/tasks").then(function (doc) {
      var list = document.getElementById("task-names");
      list.replaceChildren.apply(list, doc.tasks.map(function (t) { return el("option", { value: t }); }));
    }).catch(function () {});
    var path = name ? "/api/queues/" + encodeURIComponent(name) + "/jobs?" : "/api/jobs?";
    function load() {
      return api("GET", path + query.toString()).then(function (doc) {
        var tbody = document.getElementById("jobs").tBodies[0];
        tbody.replaceChildren.apply(tbody, doc.jobs.map(function (job) { return jobRow(job, !name); }));
        showEmpty("jobs-empty", doc.jobs.length === 0);
        var next = document.getElementById("next-page");
        if (doc.next) {
          var nextQuery = new URLSearchParams(first);
          Object.keys(doc.next).forEach(function (k) { nextQuery.set(k, doc.next[k]); });
          next.href = "?" + nextQuery.toString();
        }
        next.hidden = !doc.next;
      }).catch(function (error) { flash(error.message, "error"); });
    }
    load();
    bulkButtons(params, load);
  }

  function queuePage() {
    refreshQueues();
    live("?topics=queues,health", { queues: renderQueues });
    chartWindows();
    searchPage();
  }

  function jobsPage() {
    live("?topics=health", {});
    searchPage();
  }

  var ACTIVE = ["pending", "scheduled", "running", "retrying"];
  var RETRYABLE = ["failed", "cancelled", "dead", "expired"];

  function field(list, label, value) {
    if (value === null || value === undefined || value === "") return;
    list.appendChild(el("dt", { text: label }));
    list.appendChild(el("dd", { text: String(value) }));
  }

  function block(id, text) {
    var box = document.getElementById(id);
    box.hidden = text === null || text === undefined || text === "";
    setText(box.querySelector("pre"), box.hidden ? "" : text);
  }

  function renderJob(job) {
    setText(document.getElementById("job-task"), job.task || "job");
    var badge = document.getElementById("job-state");
    badge.className = "state state-" + job.state;
    setText(badge, job.state);
    var queueLink = document.getElementById("job-queue");
    queueLink.href = "/queues/" + encodeURIComponent(job.queue);
    setText(queueLink, "queue " + job.queue);
    var line = document.getElementById("job-progress");
    if (!line.bar) { line.bar = progressBar(); line.appendChild(line.bar); }
    setProgress(line.bar, job.progress, job.message);
    var actions = document.getElementById("job-actions");
    var kind = ACTIVE.indexOf(job.state) >= 0 ? "cancel" : RETRYABLE.indexOf(job.state) >= 0 ? "retry" : "";
    if (actions.dataset.kind !== kind) {
      actions.dataset.kind = kind;
      actions.replaceChildren();
      if (kind === "cancel") actions.appendChild(cancelButton(job, refreshJob));
      if (kind === "retry") actions.appendChild(retryButton(job, refreshJob));
    }
    var fields = document.getElementById("job-fields");
    fields.replaceChildren();
    field(fields, "queue", job.queue);
    field(fields, "waiting for", job.waiting);
    field(fields, "memory", job.memory ? size(job.memory) : null);
    field(fields, "attempts", job.attempts);
    field(fields, "redeliveries", job.redeliveries || null);
    field(fields, "priority", job.priority || null);
    field(fields, "worker", job.worker);
    field(fields, "enqueued", job.enqueued_at && when(job.enqueued_at));
    field(fields, "scheduled for", job.eta && when(job.eta));
    field(fields, "started", job.started_at && when(job.started_at));
    field(fields, "finished", job.finished_at && when(job.finished_at));
    field(fields, "run time", job.duration !== null && job.duration !== undefined ? duration(job.duration) : null);
    field(fields, "reason", job.reason);
    block("job-args", job.args);
    block("job-error", job.error);
    block("job-traceback", job.traceback);
    block("job-result", job.result_error || (job.state === "complete" && job.result !== null && job.result !== undefined
      ? JSON.stringify(job.result, null, 2) : null));
    var tbody = document.getElementById("history").tBodies[0];
    tbody.replaceChildren.apply(tbody, (job.history || []).map(function (h) {
      return el("tr", {}, [el("td", { text: when(h.ts) }), el("td", { text: h.event }),
                           el("td", { text: h.detail || "" }),
                           el("td", { className: "wide", text: h.duration ? duration(h.duration) : "" })]);
    }));
    showEmpty("history-empty", !(job.history || []).length);
  }

  function refreshJob() {
    return api("GET", "/api/jobs/" + encodeURIComponent(body.dataset.jobId)).then(renderJob)
      .catch(function (error) { flash(error.message, "error"); });
  }

  function jobPage() {
    refreshJob();
    live("?topics=health&job=" + encodeURIComponent(body.dataset.jobId), { job: renderJob });
  }

  var pages = { dashboard: dashboard, queue: queuePage, jobs: jobsPage, job: jobPage };
  if (pages[body.dataset.page]) pages[body.dataset.page]();
})();
