// multiattn attention explorer: renders window.MULTIATTN_REPORT (see multiattn/explorer/__init__.py).
// Static, no network: every asset is a relative path inside the report folder.
"use strict";
(function () {
  const report = window.MULTIATTN_REPORT;
  const PAGE_SIZE = 24;
  const main = document.getElementById("main");
  const tabs = document.getElementById("tabs");

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const c of children || []) if (c) node.appendChild(c);
    return node;
  }
  function fmt(v) {
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v)) return String(v);
    return Math.abs(v) >= 100 ? v.toFixed(1) : v.toFixed(4);
  }

  // A "jet"-like colour map, alpha growing with the weight.
  function colour(t) {
    const r = Math.max(0, Math.min(1, 1.5 - Math.abs(4 * t - 3)));
    const g = Math.max(0, Math.min(1, 1.5 - Math.abs(4 * t - 2)));
    const b = Math.max(0, Math.min(1, 1.5 - Math.abs(4 * t - 1)));
    return [r * 255, g * 255, b * 255, 60 + 150 * t];
  }
  function drawHeat(canvas, weights, grid) {
    const [gh, gw] = grid;
    canvas.width = canvas.clientWidth || 256;
    canvas.height = canvas.clientHeight || 256;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!weights) return;
    const max = Math.max(...weights) || 1;
    const small = document.createElement("canvas");
    small.width = gw;
    small.height = gh;
    const sctx = small.getContext("2d");
    const img = sctx.createImageData(gw, gh);
    for (let i = 0; i < gh * gw; i++) {
      const c = colour(weights[i] / max);
      img.data.set(c.map(Math.round), 4 * i);
    }
    sctx.putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = true; // smooth upsampling of the grid
    ctx.drawImage(small, 0, 0, canvas.width, canvas.height);
  }

  function metricsTable(metrics) {
    const names = Object.keys(metrics || {});
    if (!names.length) return null;
    return el("table", { class: "metrics" }, [
      el("tr", {}, names.map((n) => el("th", { text: n }))),
      el("tr", {}, names.map((n) => el("td", { text: fmt(metrics[n]) }))),
    ]);
  }

  function renderCaption(item) {
    const img = el("img", { src: item.image, alt: item.file, loading: "lazy", width: item.width, height: item.height });
    const canvas = el("canvas", { "data-testid": "heat" });
    const stage = el("div", { class: "stage" }, [img, canvas]);
    const words = el("div", { class: "words" });
    let active = null;
    item.words.forEach((w, i) => {
      const b = el("button", {
        text: w, "data-testid": "word", "data-index": String(i),
        onclick: () => select(i === active ? null : i),
        onmouseenter: () => drawHeat(canvas, item.attention[i], item.grid),
        onmouseleave: () => drawHeat(canvas, active === null ? null : item.attention[active], item.grid),
      });
      words.appendChild(b);
    });
    function select(i) {
      active = i;
      canvas.setAttribute("data-word", i === null ? "" : String(i));
      words.querySelectorAll("button").forEach((b, j) => b.classList.toggle("active", j === i));
      drawHeat(canvas, i === null ? null : item.attention[i], item.grid);
    }
    const refs = el("ol", { class: "refs" }, (item.references || []).map((r) => el("li", { text: r })));
    const scores = item.scores ? el("div", { class: "kv", text: Object.entries(item.scores).map(([k, v]) => `${k} ${fmt(v)}`).join(" · ") }) : null;
    return [stage, words, refs, scores];
  }

  function renderStn(item) {
    const img = el("img", { src: item.image, alt: item.file, loading: "lazy", width: item.width, height: item.height });
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", `-0.5 -0.5 ${item.width} ${item.height}`);
    svg.setAttribute("preserveAspectRatio", "none");
    const poly = document.createElementNS("http://www.w3.org/2000/svg", "polygon");
    poly.setAttribute("points", item.corners.map((p) => p.join(",")).join(" "));
    poly.setAttribute("fill", "none");
    poly.setAttribute("stroke", "#ff1744");
    poly.setAttribute("stroke-width", String(Math.max(1, item.width / 60)));
    poly.setAttribute("data-testid", "region");
    svg.appendChild(poly);
    const stage = el("div", { class: "stage" }, [img, svg]);
    const warped = el("img", { src: item.warped, alt: "warped", loading: "lazy", width: 96, height: 96 });
    const pair = el("div", { class: "pair" }, [
      el("figure", {}, [stage, el("figcaption", { text: "input and sampled region" })]),
      el("figure", {}, [el("div", { class: "stage" }, [warped]), el("figcaption", { text: "what the classifier saw" })]),
    ]);
    const probs = Object.entries(item.probabilities || {}).sort((a, b) => b[1] - a[1]).slice(0, 10);
    const bars = el("div", { class: "bars", "data-testid": "bars" }, probs.map(([name, p], i) =>
      el("div", { class: "bar" + (i === 0 ? " top" : "") }, [
        el("span", { text: name }),
        el("div", { class: "track" }, [el("div", { class: "fill", style: `width:${(100 * p).toFixed(1)}%` })]),
        el("span", { text: (100 * p).toFixed(1) + "%" }),
      ])));
    const facts = [`label ${item.label}`];
    if (item.true_label !== undefined && item.true_label !== null) facts.push(`true ${item.true_label}`);
    if (item.iou !== undefined && item.iou !== null) facts.push(`IoU ${fmt(item.iou)}`);
    return [pair, el("div", { class: "kv", text: facts.join(" · ") }), bars];
  }

  function renderAsr(item) {
    const spectro = el("img", { class: "spectro", src: item.spectrogram, alt: "spectrogram and alignments", loading: "lazy" });
    const audio = el("audio", { controls: "", preload: "metadata", src: item.audio, "data-testid": "audio" });
    const words = el("div", { class: "words" });
    item.words.forEach((w, i) => {
      words.appendChild(el("button", {
        text: w.word, class: w.status && w.status !== "ok" ? w.status : "",
        title: `${w.start.toFixed(2)}–${w.end.toFixed(2)} s`, "data-testid": "word", "data-index": String(i),
        onclick: (ev) => {
          audio.currentTime = w.start;
          words.querySelectorAll("button").forEach((b) => b.classList.remove("active"));
          ev.currentTarget.classList.add("active");
        },
      }));
    });
    const parts = [spectro, words, audio];
    if (item.reference !== undefined && item.reference !== null) parts.push(el("div", { class: "kv", text: "reference: " + item.reference }));
    if (item.deleted && item.deleted.length) parts.push(el("div", { class: "deleted", text: "missed: " + item.deleted.join(" ") }));
    if (item.scores) parts.push(el("div", { class: "kv", text: Object.entries(item.scores).map(([k, v]) => `${k} ${fmt(v)}`).join(" · ") }));
    return parts;
  }

  const RENDER = { captioning: renderCaption, stn: renderStn, asr: renderAsr };

  function showSection(index, page) {
    const section = report.sections[index];
    tabs.querySelectorAll("button").forEach((b, i) => b.classList.toggle("active", i === index));
    main.replaceChildren();
    const head = el("div", { class: "section-head" }, [
      el("dl", {}, [
        el("dt", { text: "checkpoint" }), el("dd", { text: section.checkpoint || "" }),
        el("dt", { text: "data" }), el("dd", { text: section.data || "" }),
        el("dt", { text: "examples" }), el("dd", { text: String(section.items.length) }),
      ]),
      metricsTable(section.metrics),
    ]);
    main.appendChild(head);
    const pages = Math.max(1, Math.ceil(section.items.length / PAGE_SIZE));
    page = Math.min(Math.max(0, page), pages - 1);
    const pager = el("div", { class: "pager" }, [
      el("button", { text: "‹ previous", onclick: () => showSection(index, page - 1) }),
      el("span", { text: `page ${page + 1} of ${pages}`, "data-testid": "page" }),
      el("button", { text: "next ›", onclick: () => showSection(index, page + 1) }),
    ]);
    main.appendChild(pager);
    const grid = el("div", { class: "items" });
    for (const item of section.items.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE)) {
      grid.appendChild(el("div", { class: "item", "data-task": section.task }, [el("h3", { text: item.file }), ...RENDER[section.task](item)]));
    }
    main.appendChild(grid);
  }

  if (!report || !report.sections) {
    main.textContent = "No report data (data.js missing).";
    return;
  }
  document.getElementById("summary").textContent =
    `${report.sections.length} section(s)` + (report.created ? ` · written ${report.created}` : "");
  report.sections.forEach((s, i) => tabs.appendChild(el("button", { text: s.title || s.task, onclick: () => showSection(i, 0) })));
  showSection(0, 0);
})();
