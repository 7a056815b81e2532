// The page of `vpt serve`. Plain browser JavaScript, no dependencies.
// Task names and labels come from files anyone can drop into the served folder: they only ever reach the DOM as text
// (textContent, text nodes, attribute values); nothing here parses HTML, and the page's Content-Security-Policy
// (require-trusted-types-for 'script') makes every HTML sink throw, so a slip would fail loudly instead of injecting.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  /** createElement with text-only content: props.text → textContent, props.class → className, aria-/data- → attributes. */
  function el(tag, props = {}, ...children) {
    const e = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null) continue;
      if (key === "text") e.textContent = String(value);
      else if (key === "class") e.className = value;
      else if (key.startsWith("aria-") || key.startsWith("data-")) e.setAttribute(key, String(value));
      else e[key] = value;
    }
    for (const child of children) if (child !== null && child !== undefined && child !== false) e.append(child);
    return e;
  }

  const nf = new Intl.NumberFormat("en-US");
  const fmtInt = (n) => nf.format(n);
  const fmtPct = (p) => (p > 0 && p < 0.0005 ? "<0.1%" : (p * 100).toFixed(p >= 0.9995 ? 0 : 1) + "%");
  const fmtMs = (ms) => (ms < 10 ? ms.toFixed(1) : Math.round(ms).toString()) + " ms";
  const fmtBytes = (b) => (b < 1024 ? b + " B" : b < 1048576 ? (b / 1024).toFixed(1) + " kB" : (b / 1048576).toFixed(1) + " MB");
  const fmtRate = (r) => (r === 0 ? "0" : r < 10 ? r.toFixed(1) : Math.round(r).toString());

  const state = {
    overview: null,       // GET v1/overview
    version: null,        // its tasks version, compared with v1/stats to notice hot reloads
    deselected: new Set(),// tasks the user unticked (new tasks start ticked)
    file: null,           // the chosen image (File/Blob)
    previewUrl: null,
    answers: null,        // { key, body, ms } of the last successful answer
    loading: false,
    seq: 0,
    controller: null,
    cardKey: null,
    cards: new Map(),     // task name → { card, rows: [{ li, label, prob, fill }] }
  };

  const ui = {
    results: $("results"), status: $("status"), error: $("error"), errorHead: $("error-head"), errorBody: $("error-body"),
    file: $("file"), fileName: $("file-name"), drop: $("drop"), preview: $("preview"), placeholder: $("preview-placeholder"),
    topk: $("topk"), run: $("run"), tasksBody: $("tasks-body"), tasksMeta: $("tasks-meta"), selectAll: $("select-all"),
    rejected: $("rejected"), rejectedList: $("rejected-list"), resMeta: $("res-meta"),
  };

  const tasks = () => (state.overview ? state.overview.tasks : []);
  const selectedTasks = () => tasks().filter((t) => !state.deselected.has(t.name));
  const topK = () => Number(ui.topk.value) || 3;

  // ---------- overview: backbone and tasks ----------

  async function loadOverview() {
    let data;
    try {
      const res = await fetch("v1/overview", { cache: "no-store" });
      if (!res.ok) throw new Error("HTTP " + res.status);
      data = await res.json();
    } catch (e) {
      ui.tasksMeta.textContent = "Could not read v1/overview: " + e.message;
      return;
    }
    state.overview = data;
    state.version = data.version;
    const before = state.cardKey;
    renderBackbone(data);
    renderTasks(data);
    renderCards();
    if (state.cardKey !== before) schedulePredict(); // a task came or went: ask the new set
  }

  function renderBackbone(data) {
    const bb = data.backbone, a = bb.architecture;
    // A long path shows its file name; the whole source is the title.
    const source = $("bb-source");
    source.textContent = !bb.source.startsWith("hf:") && bb.source.includes("/") ? "…/" + bb.source.split("/").pop() : bb.source;
    source.title = bb.source;
    const sha = $("bb-sha");
    sha.textContent = bb.sha256.slice(0, 16) + "…";
    sha.title = bb.sha256;
    sha.setAttribute("aria-label", "sha256 " + bb.sha256);
    $("bb-arch").textContent = a.family && a.family !== "vit"
      ? `${a.family} ${a.image_size}px, ${a.width}-d features, ${a.depth} blocks · ${fmtInt(bb.parameters)} params`
      : `ViT ${a.image_size}px, patch ${a.patch_size}, d ${a.width}, ${a.depth} blocks · ${fmtInt(bb.parameters)} params`;
    const precisions = [...new Set(data.tasks.map((t) => t.precision))];
    $("bb-precision").textContent = precisions.length ? precisions.join(" / ") : "fp32";
  }

  /** The settings that tell tasks of one method apart (p, r, k, depth, …); the full method JSON is the cell's title. */
  function methodSummary(json) {
    let c;
    try { c = JSON.parse(json); } catch { return ""; }
    if (!c || typeof c !== "object") return "";
    const parts = [];
    if (typeof c.tokens === "number") parts.push(`p = ${c.tokens}`);
    if (typeof c.reduction === "number") parts.push(`r = ${c.reduction}`);
    if (typeof c.layers === "number") parts.push(`${c.layers} layers`);
    if (typeof c.blocks === "number") parts.push(`${c.blocks} blocks`);
    if (typeof c.first_block === "number" && typeof c.last_block === "number") parts.push(`blocks ${c.first_block}–${c.last_block}`);
    if (typeof c.project_dim === "number" && c.project_dim > 0) parts.push(`projected from ${c.project_dim}`);
    for (const [key, usual] of [["location", "prepend"], ["output", "cls"], ["sharing", "none"], ["init", "random"]])
      if (typeof c[key] === "string" && c[key] !== usual) parts.push(`${key} ${c[key]}`);
    if (c.fixed === true) parts.push("fixed prompts");
    if (c.train_biases === true) parts.push("+ biases");
    if (c.prefix_form === true) parts.push("prefix form");
    return parts.join(" · ");
  }

  function renderTasks(data) {
    const rows = data.tasks.map((t, i) => {
      const box = el("input", { type: "checkbox", id: "sel-" + i, checked: !state.deselected.has(t.name), "aria-label": "Ask task " + t.name });
      box.addEventListener("change", () => {
        if (box.checked) state.deselected.delete(t.name); else state.deselected.add(t.name);
        selectionChanged();
      });
      const classes = t.classes;
      const preview = classes.slice(0, 4).join(", ") + (classes.length > 4 ? ", …" : "");
      const details = el("details", {},
        el("summary", { text: `${classes.length} classes` }),
        el("ul", {}, ...classes.map((c) => el("li", { text: c }))));
      const tp = t.trainable_parameters;
      const metrics = [];
      for (const [key, label] of [["val_top1", "val top-1"], ["test_top1", "test top-1"]])
        if (typeof t.metrics[key] === "number") metrics.push(`${label} ${fmtPct(t.metrics[key])}`);
      const td = (label, cls, ...children) => el("td", { class: cls, "data-label": label }, ...children);
      return el("tr", { "data-task": t.name },
        td("Ask", "col-sel", box),
        td("Task", undefined, el("label", { class: "task-name", htmlFor: "sel-" + i, text: t.name }), el("div", { class: "task-file", text: t.file })),
        td("Method", undefined, el("div", { class: "method-name", text: t.method, title: t.method_config }), el("div", { class: "sub-num", text: methodSummary(t.method_config) })),
        td("Classes", undefined, details, el("div", { class: "class-preview", text: preview })),
        td("Trainable", "num", el("div", { text: fmtInt(tp.total) }),
          el("div", { class: "sub-num", text: `${fmtInt(tp.method)} + ${fmtInt(tp.head)} head · ${tp.percent_of_backbone.toFixed(tp.percent_of_backbone < 0.1 ? 3 : 2)}%` })),
        td("Runs", undefined, t.one_pass
          ? el("span", { class: "badge one-pass", text: "one pass", title: "an exact VPT-prefix: shares one backbone pass with every other such task in a batch" })
          : el("span", { class: "badge", text: "own pass", title: "not a prefix of the backbone pass: runs through its own model" })),
        td("Precision", undefined, el("span", { text: t.precision })),
        td("Recorded", undefined, el("span", { class: metrics.length ? "" : "muted", text: metrics.length ? metrics.join(" · ") : "—" })));
    });
    ui.tasksBody.replaceChildren(...rows);
    if (data.tasks.length === 0)
      ui.tasksBody.replaceChildren(el("tr", {}, el("td", { colSpan: 8, class: "muted", text: `No task files in ${data.folder} yet: put .vpt files there, they load within seconds.` })));

    ui.rejected.hidden = data.rejected.length === 0;
    ui.rejectedList.replaceChildren(...data.rejected.map((r) =>
      el("li", {}, el("strong", { text: r.file }), " ", el("span", { class: "reason", text: r.reason }))));
    updateSelectAll();
  }

  function updateSelectAll() {
    const n = tasks().length, picked = selectedTasks().length;
    ui.selectAll.checked = n > 0 && picked === n;
    ui.selectAll.indeterminate = picked > 0 && picked < n;
    ui.tasksMeta.textContent = state.overview
      ? `${n} task${n === 1 ? "" : "s"} from ${state.overview.folder} · ${picked} selected`
      : "Loading…";
  }

  function selectionChanged() {
    updateSelectAll();
    renderCards();
    schedulePredict();
  }

  ui.selectAll.addEventListener("change", () => {
    if (ui.selectAll.checked) state.deselected.clear();
    else for (const t of tasks()) state.deselected.add(t.name);
    for (const box of ui.tasksBody.querySelectorAll("input[type=checkbox]")) box.checked = ui.selectAll.checked;
    selectionChanged();
  });

  // ---------- answers: one card per selected task, k rows reserved ----------

  function renderCards() {
    const picked = selectedTasks(), k = topK();
    const key = JSON.stringify([!!state.overview, picked.map((t) => [t.name, t.classes.length]), k]);
    if (key !== state.cardKey) {
      state.cardKey = key;
      state.cards.clear();
      if (!state.overview) return;
      if (picked.length === 0) {
        ui.results.replaceChildren(el("p", { class: "empty-note muted", text: tasks().length ? "No task selected: tick one or more in the table below." : "No tasks are loaded." }));
      } else {
        ui.results.replaceChildren(...picked.map((t) => {
          const rows = [];
          const n = Math.min(k, t.classes.length);
          const list = el("ol", { class: "rows" });
          for (let i = 0; i < n; i++) {
            const label = el("span", { class: "row-label", text: "—" });
            const prob = el("span", { class: "row-prob", text: "" });
            const fill = el("div", { class: "row-bar-fill" });
            const li = el("li", { class: "row pending" }, label, prob, el("div", { class: "row-bar" }, fill));
            rows.push({ li, label, prob, fill });
            list.append(li);
          }
          const card = el("article", { class: "card", "data-task": t.name, "aria-label": "Answer of task " + t.name },
            el("div", { class: "card-head" },
              el("h3", { class: "card-title", text: t.name, title: t.name }),
              el("div", { class: "card-meta" }, el("span", { class: "chip", text: t.method }), el("span", { text: t.one_pass ? "one pass" : "own pass" }))),
            list);
          state.cards.set(t.name, { card, rows });
          return card;
        }));
      }
    }
    fillCards();
  }

  function fillCards() {
    const body = state.answers && state.answers.key === state.cardKey ? state.answers.body : null;
    ui.results.setAttribute("aria-busy", state.loading ? "true" : "false");
    for (const [name, { card, rows }] of state.cards) {
      card.classList.toggle("loading", state.loading);
      const answer = body && Object.hasOwn(body, name) ? body[name] : null;
      rows.forEach((r, i) => {
        const s = answer && answer.top[i];
        r.li.classList.toggle("pending", !s);
        r.li.classList.toggle("top", !!s && i === 0);
        r.label.textContent = s ? s.label : "—";
        r.label.title = s ? s.label : "";
        r.prob.textContent = s ? fmtPct(s.probability) : "";
        r.fill.style.width = s ? (100 * s.probability).toFixed(2) + "%" : "0";
      });
    }
  }

  // ---------- asking the server ----------

  let predictTimer = 0;
  function schedulePredict() {
    clearTimeout(predictTimer);
    if (state.file) predictTimer = setTimeout(predict, 150);
  }

  function showError(head, body) {
    ui.errorHead.textContent = head;
    ui.errorBody.textContent = body;
    ui.error.hidden = false;
  }

  function setStatus(...parts) { ui.status.replaceChildren(...parts); }

  async function predict() {
    clearTimeout(predictTimer);
    if (!state.file || !state.overview) return;
    const picked = selectedTasks();
    if (picked.length === 0) { setStatus("Select at least one task in the table below."); return; }
    const k = topK();
    renderCards();
    const key = state.cardKey;
    if (state.controller) state.controller.abort();
    const controller = new AbortController();
    state.controller = controller;
    const seq = ++state.seq;
    state.loading = true;
    ui.error.hidden = true;
    fillCards();
    setStatus(`Asking ${picked.length} task${picked.length === 1 ? "" : "s"}…`);

    // Task names may hold any character a file name can: each is URL-encoded on its own.
    const url = "v1/predict?tasks=" + picked.map((t) => encodeURIComponent(t.name)).join(",") + "&top_k=" + k;
    const started = performance.now();
    let res, text;
    try {
      res = await fetch(url, {
        method: "POST", body: state.file, cache: "no-store", signal: controller.signal,
        headers: { "Content-Type": state.file.type || "application/octet-stream" },
      });
      text = await res.text();
    } catch (e) {
      if (e.name === "AbortError" || seq !== state.seq) return;
      state.loading = false; state.answers = null; fillCards();
      showError("The request did not complete", String(e.message || e));
      ui.resMeta.textContent = "no answers: the request did not complete";
      setStatus("No answer: the server could not be reached.");
      return;
    }
    const ms = performance.now() - started;
    if (seq !== state.seq) return;
    state.loading = false;
    let body = null;
    try { body = JSON.parse(text); } catch { /* not JSON: shown as text below */ }

    if (!res.ok) {
      state.answers = null;
      fillCards();
      // The API's own words: its {"error": "..."} message, else whatever it sent.
      const message = body && typeof body.error === "string" ? body.error : (text.trim() || res.statusText || "(empty response)");
      showError(`HTTP ${res.status}${res.statusText ? " " + res.statusText : ""}`, message);
      ui.resMeta.textContent = `no answers: HTTP ${res.status}`;
      setStatus(`No answer: the server refused the request after ${fmtMs(ms)}.`);
      return;
    }
    state.answers = { key, body, ms };
    fillCards();
    const summary = picked.filter((t) => body && Object.hasOwn(body, t.name) && body[t.name].top.length)
      .map((t) => `${t.name}: ${body[t.name].top[0].label} ${fmtPct(body[t.name].top[0].probability)}`).join("; ");
    setStatus(
      el("strong", { text: `${picked.length} answer${picked.length === 1 ? "" : "s"} in ${fmtMs(ms)}` }),
      ` (round trip, one request) for ${state.file.name || "the pasted image"}.`,
      el("span", { class: "visually-hidden", text: " Top-1: " + summary + "." }));
    ui.resMeta.textContent = `top-${k} of ${picked.length} task${picked.length === 1 ? "" : "s"} · ${fmtMs(ms)} round trip`;
  }

  // ---------- choosing an image: picker, drop, paste ----------

  function useFile(file) {
    if (!file) return;
    state.file = file;
    state.answers = null;
    if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
    state.previewUrl = URL.createObjectURL(file);
    ui.preview.classList.remove("pixelated");
    ui.preview.src = state.previewUrl;
    ui.preview.alt = "The chosen image: " + (file.name || "pasted image");
    ui.preview.hidden = false;
    ui.placeholder.toggleAttribute("hidden", true); // an SVG element: no .hidden property
    ui.fileName.textContent = `${file.name || "pasted image"} · ${fmtBytes(file.size)}`;
    ui.run.disabled = false;
    predict();
  }

  ui.preview.addEventListener("load", () => {
    // Small images (28×28 digits, 32×32 icons) are shown as crisp pixels rather than a blur.
    ui.preview.classList.toggle("pixelated", ui.preview.naturalWidth < 128);
  });
  ui.preview.addEventListener("error", () => { ui.preview.hidden = true; ui.placeholder.toggleAttribute("hidden", false); });

  ui.file.addEventListener("change", () => { if (ui.file.files.length) useFile(ui.file.files[0]); });
  ui.run.addEventListener("click", () => predict());
  ui.topk.addEventListener("change", () => { renderCards(); schedulePredict(); });

  for (const type of ["dragenter", "dragover"])
    ui.drop.addEventListener(type, (e) => { e.preventDefault(); ui.drop.classList.add("dragover"); });
  for (const type of ["dragleave", "drop"])
    ui.drop.addEventListener(type, () => ui.drop.classList.remove("dragover"));
  ui.drop.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer && e.dataTransfer.files.length) useFile(e.dataTransfer.files[0]);
  });
  // A file dropped beside the zone must not navigate away from the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
  document.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData ? e.clipboardData.items : [])].find((i) => i.kind === "file");
    if (item) { e.preventDefault(); useFile(item.getAsFile()); }
  });

  // ---------- live metrics ----------

  const history = [];
  const bucketRanges = { "1": "1", "2": "2", "4": "3–4", "8": "5–8", "16": "9–16", "32": "17–32", "64": "33–64", "128": "65–128", "+Inf": "over 128" };
  const bucketLabels = { "+Inf": "129+" }; // the axis shows each bucket's upper bound; titles and the aria label give ranges
  const histCols = [];

  function histogram(buckets) {
    const hist = $("m-hist");
    if (histCols.length !== buckets.length) {
      histCols.length = 0;
      hist.replaceChildren(...buckets.map((b) => {
        const bar = el("div", { class: "hist-bar empty" });
        histCols.push(bar);
        return el("div", { class: "hist-col" }, el("div", { class: "hist-area" }, bar), el("div", { class: "hist-label", text: bucketLabels[b.le] || b.le }));
      }));
    }
    let prev = 0;
    const counts = buckets.map((b) => { const n = b.count - prev; prev = b.count; return n; });
    const max = Math.max(1, ...counts);
    counts.forEach((n, i) => {
      histCols[i].style.height = (n ? Math.max(6, (100 * n) / max) : 0) + "%";
      histCols[i].classList.toggle("empty", n === 0);
      histCols[i].parentElement.parentElement.title = `${bucketRanges[buckets[i].le] || "≤ " + buckets[i].le} images: ${fmtInt(n)} batch${n === 1 ? "" : "es"}`;
    });
    const total = counts.reduce((a, b) => a + b, 0);
    hist.setAttribute("aria-label", total === 0 ? "No batches yet"
      : "Batches by size since start: " + counts.map((n, i) => `${bucketRanges[buckets[i].le] || "≤ " + buckets[i].le} images: ${n}`).join(", "));
    $("m-batches").textContent = `(${fmtInt(total)} since start)`;
  }

  function onStats(s) {
    if (history.length && s.uptime_seconds < history[history.length - 1].uptime_seconds) history.length = 0; // server restarted
    history.push(s);
    while (history.length > 2 && s.uptime_seconds - history[1].uptime_seconds >= 10) history.shift();
    const base = history[0];
    const dt = s.uptime_seconds - base.uptime_seconds;
    const code = (snap, pred) => Object.entries(snap.requests.by_code).filter(([c]) => pred(Number(c))).reduce((a, [, n]) => a + n, 0);
    const rate = (now, then) => (dt > 0 ? fmtRate((now - then) / dt) : "–");

    $("m-queue").textContent = fmtInt(s.queue_length);
    $("m-rps").textContent = rate(s.requests.total, base.requests.total);
    $("m-shed").textContent = rate(code(s, (c) => c === 429), code(base, (c) => c === 429));
    $("m-err").textContent = rate(code(s, (c) => c >= 400 && c !== 429), code(base, (c) => c >= 400 && c !== 429));

    // Means over the window when it saw traffic, else since start.
    const db = s.batches.count - base.batches.count;
    const meanBatch = db > 0 ? (s.batches.images - base.batches.images) / db : s.batches.count > 0 ? s.batches.images / s.batches.count : null;
    $("m-batch").textContent = meanBatch === null ? "–" : meanBatch.toFixed(1);
    const dl = s.latency_seconds.count - base.latency_seconds.count;
    const meanLat = dl > 0 ? (s.latency_seconds.sum - base.latency_seconds.sum) / dl : s.latency_seconds.count > 0 ? s.latency_seconds.sum / s.latency_seconds.count : null;
    $("m-lat").textContent = meanLat === null ? "–" : fmtMs(meanLat * 1000);
    histogram(s.batches.size_buckets);

    if (state.version !== null && s.tasks_version !== state.version) loadOverview(); // a task file was added, changed or removed
  }

  async function pollStats() {
    try {
      const res = await fetch("v1/stats", { cache: "no-store" });
      if (res.ok) onStats(await res.json());
    } catch { /* the next poll retries */ }
    setTimeout(pollStats, document.hidden ? 5000 : 2000);
  }

  renderCards();
  loadOverview().then(pollStats);
})();
