// SPDX-License-Identifier: Apache-2.0
// earmark review pages: keyboard shortcuts and synchronised players (no framework, no build).
"use strict";
(function () {
  const $ = (sel) => document.querySelector(sel);
  const $$ = (sel) => Array.from(document.querySelectorAll(sel));
  // true while the reader types or works a control: shortcuts stay out of the way
  const busy = (e) => {
    const t = e.target;
    if (!t || !t.tagName) return false;
    if (t.isContentEditable) return true;
    if (t.tagName === "INPUT") return t.type !== "radio";
    return /^(TEXTAREA|SELECT)$/.test(t.tagName);
  };
  const plain = (e) => !(e.ctrlKey || e.metaKey || e.altKey) && !busy(e);

  function queue() {
    const rows = $$("#queue tbody tr");
    let i = -1;
    const select = (n) => {
      if (!rows.length) return;
      i = Math.max(0, Math.min(rows.length - 1, n));
      rows.forEach((r, k) => r.classList.toggle("selected", k === i));
      rows[i].scrollIntoView({ block: "nearest" });
    };
    select(0);
    rows.forEach((r, k) => r.addEventListener("click", (e) => {
      if (e.target.tagName !== "A") { select(k); location.href = r.dataset.href; }
    }));
    document.addEventListener("keydown", (e) => {
      if (!plain(e)) return;
      const onControl = e.target && /^(A|BUTTON)$/.test(e.target.tagName);
      if (e.key === "j") { select(i + 1); e.preventDefault(); }
      else if (e.key === "k") { select(i - 1); e.preventDefault(); }
      else if (e.key === "Enter" && i >= 0 && !onControl) {
        e.preventDefault();
        location.href = rows[i].dataset.href;
      }
    });
  }

  function scan() {
    const up = $("#upload-audio"), ref = $("#ref-audio"), pick = $("#ref-select");
    const note = $("#note");
    const abs = (u) => new URL(u, location.href).href;
    if (pick && ref) pick.addEventListener("change", () => { ref.src = pick.value; });

    const playSeg = (el) => {
      const d = el.dataset;
      if (ref && d.refUrl) {
        if (ref.src !== abs(d.refUrl)) ref.src = d.refUrl;
        if (pick) pick.value = d.refUrl;
        ref.currentTime = Number(d.r) / 1000;
        ref.playbackRate = Number(d.tempo) || 1;  // keep the reference in step with the upload
      }
      up.currentTime = Number(d.q) / 1000;
      up.play().catch(() => {});
      if (ref) ref.play().catch(() => {});
    };
    const segs = $$(".play-seg");
    segs.forEach((b) => b.addEventListener("click", () => playSeg(b)));
    $$("#timeline rect.seg").forEach((r) => r.addEventListener("click", () => playSeg(r)));

    const tl = $("#timeline"), head = $("#playhead");
    if (tl && head && up) {
      const x0 = Number(tl.dataset.x0), span = Number(tl.dataset.span);
      const dur = Number(tl.dataset.duration);
      up.addEventListener("timeupdate", () => {
        const x = x0 + span * Math.min(1, (up.currentTime * 1000) / dur);
        head.setAttribute("x1", x); head.setAttribute("x2", x);
      });
    }

    const form = $("#decide");
    if (form) form.addEventListener("submit", () => {
      const b = $("#submit");
      setTimeout(() => { b.disabled = true; }, 0);  // no double decision on a double Enter
    });
    const keys = {};
    $$("#decide input[type=radio]").forEach((r) => { keys[r.dataset.key] = r; });

    document.addEventListener("keydown", (e) => {
      if (!plain(e)) return;
      if (keys[e.key]) {
        keys[e.key].checked = true;
        if (note) note.focus();
        e.preventDefault();
      } else if (/^[1-9]$/.test(e.key) && segs[Number(e.key) - 1]) {
        playSeg(segs[Number(e.key) - 1]);
        e.preventDefault();
      } else if (e.key === " " && up && !/^(BUTTON|AUDIO)$/.test(e.target.tagName)) {
        if (up.paused) { up.play().catch(() => {}); } else { up.pause(); if (ref) ref.pause(); }
        e.preventDefault();
      } else if (e.key === "q" && $("#back")) {
        location.href = $("#back").href;
      } else if (e.key === "n" && $("#skip")) {
        location.href = $("#skip").href;
      }
    });
  }

  function live() {
    const table = $("#live");
    if (!table || !window.EventSource) return;
    const body = table.querySelector("tbody");
    const src = new EventSource("/v1/live/events/stream?after=" + table.dataset.last);
    src.onmessage = null;
    const add = (msg) => {
      const e = JSON.parse(msg.data);
      const tr = document.createElement("tr");
      tr.className = "ev-" + e.event;
      const what = [e.reference_id || "", e.level ? e.level + " (" + e.action + ")" : "",
                    e.ai_probability !== undefined ? "AI " + e.ai_probability : "",
                    e.detail || ""].filter(Boolean).join(" ");
      for (const text of [e.wall_time, e.stream, (e.stream_ms / 1000).toFixed(1) + " s",
                          e.event, what]) {
        const td = document.createElement("td");
        td.textContent = text;  // never innerHTML: stream names and details are untrusted
        tr.appendChild(td);
      }
      body.insertBefore(tr, body.firstChild);
    };
    for (const name of ["match_started", "match_updated", "match_ended", "ai_suspected",
                        "escalation", "stream_error", "stream_reconnected", "stream_ended"]) {
      src.addEventListener(name, add);
    }
  }

  const page = document.body.dataset.page;
  if (page === "queue") queue();
  else if (page === "scan") scan();
  else if (page === "live") live();
})();
