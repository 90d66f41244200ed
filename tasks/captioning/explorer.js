// The captioning renderer of the attention explorer (multiattn/explorer/static/explorer.js calls it
// with one report item and the explorer's helpers).
// Item: {file, image, width, height, words: [str], grid: [h, w], attention: [[h*w floats] per word],
//        references: [str], scores: {...}} (tasks/captioning/report.py).
"use strict";
(function () {
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

  function renderCaption(item, { el, scores }) {
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
    return [stage, words, refs, scores(item.scores)];
  }

  (window.MULTIATTN_RENDERERS = window.MULTIATTN_RENDERERS || {}).captioning = renderCaption;
})();
