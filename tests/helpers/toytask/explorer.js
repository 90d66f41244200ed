// The tally task's explorer renderer (a task defined only in the tests).
"use strict";
(window.MULTIATTN_RENDERERS = window.MULTIATTN_RENDERERS || {}).tally = (item, { el }) => [
  el("p", { text: `${item.words} words`, "data-testid": "tally" }),
];
