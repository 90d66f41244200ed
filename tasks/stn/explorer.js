// The classifier renderer of the attention explorer (multiattn/explorer/static/explorer.js calls it
// with one report item and the explorer's helpers).
// Item: {file, image, warped, width, height, corners: [[x, y] x 4], label, probabilities: {class: p},
//        true_label?, iou?} (tasks/stn/report.py).
"use strict";
(function () {
  function renderStn(item, { el, fmt }) {
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

  (window.MULTIATTN_RENDERERS = window.MULTIATTN_RENDERERS || {}).stn = renderStn;
})();
