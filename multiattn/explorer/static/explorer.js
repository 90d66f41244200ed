// multiattn attention explorer: renders window.MULTIATTN_REPORT (see multiattn/explorer/__init__.py).
// Static, no network: every asset is a relative path inside the report folder.
// Each task's renderer (its registered explorer.js, loaded before this file) sets
// window.MULTIATTN_RENDERERS[task] = (item, helpers) => [DOM nodes]; helpers are
// {el(tag, attrs, children), fmt(value), scores(object) -> node or null}.
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

  function scores(values) {
    if (!values) return null;
    return el("div", { class: "kv", text: Object.entries(values).map(([k, v]) => `${k} ${fmt(v)}`).join(" · ") });
  }
  const helpers = { el, fmt, scores };
  const renderers = window.MULTIATTN_RENDERERS || {};
  function render(task, item) {
    const renderer = renderers[task];
    if (!renderer) return [el("p", { text: `no renderer for task ${task}` })];
    return renderer(item, helpers);
  }

  function metricsTable(metrics) {
    const names = Object.keys(metrics || {});
    if (!names.length) return null;
    return el("table", { class: "metrics" }, [
      el("tr", {}, names.map((n) => el("th", { text: n }))),
      el("tr", {}, names.map((n) => el("td", { text: fmt(metrics[n]) }))),
    ]);
  }

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
      grid.appendChild(el("div", { class: "item", "data-task": section.task }, [el("h3", { text: item.file }), ...render(section.task, item)]));
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
