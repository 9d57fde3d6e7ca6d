// tbhook console: live rows, keyboard, sorting, copy. No library; nothing inline (the CSP
// allows only this file). Rows arrive as HTML the server escaped; they are inserted as is.
"use strict";

(function live() {
  const marker = document.getElementById("live");
  const body = document.getElementById("rows");
  if (!marker || !body || !window.EventSource) return;
  const onFirstPage = marker.dataset.live === "on";
  const button = document.getElementById("new-events");
  const seen = new Set(Array.from(body.querySelectorAll("tr[data-id]"), (tr) => tr.dataset.id));
  let waiting = [];

  function atTop() {
    return window.scrollY < 40 && !body.querySelector("tr.selected");
  }
  function show(rows) {
    const empty = document.getElementById("empty");
    if (empty) empty.remove();
    for (const html of rows) {
      body.insertAdjacentHTML("afterbegin", html);
      const row = body.firstElementChild;
      row.classList.add("fresh");
      setTimeout(() => row.classList.remove("fresh"), 2000);
    }
  }
  function count() {
    marker.hidden = waiting.length === 0;
    button.textContent = waiting.length + " new";
  }
  button.addEventListener("click", () => {
    if (!onFirstPage) { window.location = "/" + window.location.search.replace(/([?&])before=\d+&?/, "$1"); return; }
    show(waiting);
    waiting = [];
    count();
    window.scrollTo(0, 0);
  });

  const url = marker.dataset.stream + (marker.dataset.stream.includes("?") ? "&" : "?") + "after=" + marker.dataset.after;
  const source = new EventSource(url);
  source.addEventListener("delivery", (message) => {
    const data = JSON.parse(message.data);
    const id = String(data.id);
    if (seen.has(id)) return;
    seen.add(id);
    if (onFirstPage && atTop() && waiting.length === 0) show([data.html]);
    else { waiting.push(data.html); count(); }
  });
  window.addEventListener("scroll", () => {
    if (onFirstPage && atTop() && waiting.length) { show(waiting); waiting = []; count(); }
  });
})();

(function queue() {
  // The queue's rows come again from the server each time what they show changes; between
  // times each row's seconds are counted here, while the business clock runs.
  const state = document.getElementById("queue-state");
  const body = document.getElementById("queue-rows");
  if (!state || !body) return;
  const standing = document.getElementById("standing");
  const clock = document.getElementById("clock");
  let since = Date.now();
  let running = state.dataset.running === "yes";

  function duration(s) {  // as the command writes it: 90s, 10m, 3h05m, 2d04h
    if (s < 0) return "-" + duration(-s);
    const two = (n) => String(n).padStart(2, "0");
    if (s < 120) return s + "s";
    if (s < 7200) return Math.floor(s / 60) + "m";
    if (s < 172800) return Math.floor(s / 3600) + "h" + two(Math.floor((s % 3600) / 60)) + "m";
    return Math.floor(s / 86400) + "d" + two(Math.floor((s % 86400) / 3600)) + "h";
  }
  const OLDEST = "the oldest has waited ";
  function tick() {
    const passed = running && state.dataset.stream ? Math.floor((Date.now() - since) / 1000) : 0;
    const cut = standing.textContent.lastIndexOf(OLDEST);  // the line under the rows, in step
    if (standing.dataset.oldest && cut >= 0) {
      const oldest = Number(standing.dataset.oldest) + passed;
      standing.textContent = standing.textContent.slice(0, cut + OLDEST.length) + duration(oldest);
    }
    for (const row of body.querySelectorAll("tr[data-waited]")) {
      row.querySelector('[data-shows="waited"]').textContent = duration(Number(row.dataset.waited) + passed);
      if (row.dataset.left === undefined) continue;
      const left = Number(row.dataset.left) - passed;
      const target = Number(row.dataset.target);
      const mark = left < 0 ? "breached" : left * 4 < target ? "at risk" : "";
      row.querySelector('[data-shows="left"]').textContent = duration(left);
      row.querySelector('[data-shows="state"]').textContent = mark;
      row.classList.toggle("breached", mark === "breached");
      row.classList.toggle("at-risk", mark === "at risk");
    }
  }
  if (!state.dataset.stream || !window.EventSource) return;
  setInterval(tick, 1000);
  const source = new EventSource(state.dataset.stream);
  source.addEventListener("queue", (message) => {
    const data = JSON.parse(message.data);
    body.innerHTML = data.html;
    standing.textContent = data.standing;
    standing.dataset.oldest = data.oldest === null ? "" : data.oldest;
    state.dataset.at = data.at;
    running = data.running;
    if (clock) clock.textContent = running ? "" : ", closed now: the clock stands still";
    since = Date.now();
    tick();
  });
})();

(function keyboard() {
  function items() {
    return Array.from(document.querySelectorAll("[data-list] tbody tr[data-href], .timeline li[data-href]"));
  }
  function select(list, index) {
    list.forEach((el) => el.classList.remove("selected"));
    const el = list[Math.max(0, Math.min(index, list.length - 1))];
    if (!el) return;
    el.classList.add("selected");
    el.scrollIntoView({ block: "nearest" });
  }
  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest("input, select, textarea");
    if (event.key === "/" && !typing) {
      event.preventDefault();
      const search = document.getElementById("search");
      if (search) search.focus();
      return;
    }
    if (typing || event.metaKey || event.ctrlKey || event.altKey) return;
    const list = items();
    const current = list.findIndex((el) => el.classList.contains("selected"));
    if (event.key === "j") select(list, current + 1);
    else if (event.key === "k") select(list, current < 0 ? 0 : current - 1);
    else if (event.key === "Enter" && current >= 0) window.location = list[current].dataset.href;
  });
})();

(function sortable() {
  for (const table of document.querySelectorAll("table.sortable")) {
    const heads = Array.from(table.querySelectorAll("th"));
    heads.forEach((th, column) => {
      if (!th.dataset.sort) return;
      th.addEventListener("click", () => {
        const body = table.tBodies[0];
        const rows = Array.from(body.rows);
        const down = th.dataset.order !== "asc";
        th.dataset.order = down ? "asc" : "desc";
        const key = (row) => {
          const cell = row.cells[column];
          const raw = cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent.trim();
          if (raw === "") return null;
          if (th.dataset.sort !== "num") return raw;
          return Number(raw.replace(/[^\d.-]/g, ""));
        };
        rows.sort((a, b) => {
          const x = key(a), y = key(b);
          // An empty cell (no reply yet) is last whichever way the column is sorted.
          if (x === null || y === null) return (x === null) - (y === null);
          const order = x < y ? -1 : x > y ? 1 : 0;
          return down ? order : -order;
        });
        rows.forEach((row) => body.appendChild(row));
      });
    });
  }
})();

(function copying() {
  for (const button of document.querySelectorAll("[data-copy]")) {
    button.addEventListener("click", async () => {
      const text = document.getElementById(button.dataset.copy).textContent;
      try { await navigator.clipboard.writeText(text); button.textContent = "Copied"; }
      catch (_) { button.textContent = "Select the text below to copy it"; }
    });
  }
})();
