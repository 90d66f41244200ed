// The speech renderer of the attention explorer (multiattn/explorer/static/explorer.js calls it
// with one report item and the explorer's helpers).
// Item: {file, audio, spectrogram, duration, text, reference?, deleted: [str], scores: {...},
//        words: [{word, start, end, status: "ok" | "sub" | "ins"}]} (tasks/asr/report.py).
"use strict";
(function () {
  function renderAsr(item, { el, scores }) {
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
    if (item.scores) parts.push(scores(item.scores));
    return parts;
  }

  (window.MULTIATTN_RENDERERS = window.MULTIATTN_RENDERERS || {}).asr = renderAsr;
})();
