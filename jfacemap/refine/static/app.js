// jfacemap refine: correct keypoints on a frame, saved to the server on every change.
// Image pixel convention (as the tracker's): pixel i covers [i - 0.5, i + 0.5), so a
// keypoint at x is drawn at view.x + (x + 0.5) * view.scale on the canvas (CSS px).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  const HIT_RADIUS = 10; // CSS px around a point that grabs it

  const app = {
    bodyparts: [], frames: [], current: 0, selected: 0, undo: [],
    view: { scale: 1, x: 0, y: 0 }, fitted: -1, showPredicted: true,
    images: new Map(), saveQueue: Promise.resolve(), pendingSaves: 0, polling: false,
  };
  window.refine = app; // for scripted use and the browser test

  // ---------------------------------------------------------------- server ---

  async function api(path, body) {
    const init = body === undefined ? {} : {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    };
    const response = await fetch(path, init);
    let doc;
    try { doc = await response.json(); } catch (e) { doc = { error: response.statusText }; }
    if (!response.ok) throw new Error(doc.error || `${response.status} ${response.statusText}`);
    return doc;
  }

  function colour(k) {
    const hue = (k * 360 / Math.max(app.bodyparts.length, 1) + 10) % 360;
    return `hsl(${hue}, 90%, 58%)`;
  }

  async function loadState(keepFrame) {
    const doc = await api("api/state");
    const wasId = keepFrame && app.frames.length ? app.frames[app.current].id : null;
    app.bodyparts = doc.bodyparts;
    app.frames = doc.frames;
    app.model = doc.model;
    $("model").textContent = `model: ${shortName(doc.model)}`;
    if (doc.defaults && !app.epochsSet) { $("epochs").value = doc.defaults.epochs ?? ""; app.epochsSet = true; }
    const idx = app.frames.findIndex((f) => f.id === wasId);
    app.current = idx >= 0 ? idx : Math.min(app.current, app.frames.length - 1);
    for (const f of app.frames) f.keypoints.forEach((p, k) => { p.last = visibleXY(p, f.predicted[k], f); });
    buildKeypointList();
    buildStrip();
    showFrame(app.current);
    if (app.onState) app.onState(doc);
  }

  function shortName(path) {
    const parts = String(path).split(/[\\/]/).filter(Boolean);
    return parts.length > 2 ? `\u2026/${parts.slice(-2).join("/")}` : path;
  }

  function frame() { return app.frames[app.current]; }

  function clamp(v, lo, hi) { return Math.min(hi, Math.max(lo, v)); }

  // Where a point is (or was last, or the model puts it), clamped into the frame.
  function visibleXY(p, predicted, f) {
    const src = p.visible ? p : (p.last || predicted);
    // The model may have found no such point (null): start it at the frame's centre.
    if (src.x === null || src.y === null) return { x: (f.width - 1) / 2, y: (f.height - 1) / 2 };
    return { x: clamp(src.x, 0, f.width - 1), y: clamp(src.y, 0, f.height - 1) };
  }

  function saveFrame(f) {
    const body = {
      frame: f.id,
      keypoints: f.keypoints.map((p) => (p.visible
        ? { name: p.name, x: clamp(p.x, 0, f.width - 1), y: clamp(p.y, 0, f.height - 1), visible: true }
        : { name: p.name, visible: false })),
    };
    app.pendingSaves += 1;
    status("saving\u2026", false);
    app.saveQueue = app.saveQueue.then(async () => {
      try {
        const saved = await api("api/labels", body);
        f.corrected = saved.corrected;
        f.keypoints.forEach((p, k) => { p.source = saved.keypoints[k].source; });
        app.pendingSaves -= 1;
        if (app.pendingSaves === 0) status(`saved frame ${f.index} of ${f.video}`, false);
        buildStrip();
      } catch (err) {
        app.pendingSaves -= 1;
        status(`not saved: ${err.message}`, true);
      }
    });
    return app.saveQueue;
  }

  function status(text, isError) {
    const el = $("save-status");
    el.textContent = text;
    el.classList.toggle("error", !!isError);
  }

  // --------------------------------------------------------------- editing ---

  function snapshot(f) { return f.keypoints.map((p) => ({ x: p.x, y: p.y, visible: p.visible })); }

  function commit(f, before) {
    app.undo.push({ id: f.id, keypoints: before });
    if (app.undo.length > 500) app.undo.shift();
    f.keypoints.forEach((p) => { if (p.visible) p.last = { x: p.x, y: p.y }; });
    draw(); updateKeypointList();
    return saveFrame(f);
  }

  function undo() {
    const step = app.undo.pop();
    if (!step) { status("nothing to undo", false); return; }
    const idx = app.frames.findIndex((f) => f.id === step.id);
    if (idx < 0) return;
    if (idx !== app.current) showFrame(idx);
    const f = app.frames[idx];
    step.keypoints.forEach((s, k) => Object.assign(f.keypoints[k], s));
    draw(); updateKeypointList();
    saveFrame(f);
  }

  function toggleVisible(k) {
    const f = frame();
    const p = f.keypoints[k];
    const before = snapshot(f);
    if (p.visible) {
      p.last = { x: p.x, y: p.y };
      p.visible = false;
    } else {
      Object.assign(p, visibleXY(p, f.predicted[k], f), { visible: true });
    }
    commit(f, before);
  }

  function placeSelected(ix, iy) {
    const f = frame();
    const before = snapshot(f);
    Object.assign(f.keypoints[app.selected], {
      x: clamp(ix, 0, f.width - 1), y: clamp(iy, 0, f.height - 1), visible: true,
    });
    commit(f, before);
  }

  function select(k) {
    app.selected = (k + app.bodyparts.length) % app.bodyparts.length;
    draw(); updateKeypointList();
  }

  // ------------------------------------------------------------------ view ---

  function resizeCanvas() {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
  }

  function fit() {
    const f = frame();
    if (!f) return;
    resizeCanvas();
    const w = canvas.clientWidth, h = canvas.clientHeight;
    const s = Math.min(w / f.width, h / f.height) * 0.96;
    app.view = { scale: s, x: (w - f.width * s) / 2, y: (h - f.height * s) / 2 };
    app.fitted = f.id;
    draw();
  }

  function toScreen(x, y) {
    return { x: app.view.x + (x + 0.5) * app.view.scale, y: app.view.y + (y + 0.5) * app.view.scale };
  }

  function toImage(sx, sy) {
    return { x: (sx - app.view.x) / app.view.scale - 0.5, y: (sy - app.view.y) / app.view.scale - 0.5 };
  }

  // Canvas position (CSS px from its top-left) of keypoint k of the shown frame: for scripts and tests.
  app.screenPoint = (k) => { const p = frame().keypoints[k]; return toScreen(p.x, p.y); };

  function image(f) {
    let img = app.images.get(f.id);
    if (!img) {
      img = new Image();
      img.onload = () => { if (frame() && frame().id === f.id) draw(); };
      img.src = f.image;
      app.images.set(f.id, img);
    }
    return img;
  }

  function draw() {
    const f = frame();
    resizeCanvas();
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    if (!f) return;
    const img = image(f);
    const v = app.view;
    if (img.complete && img.naturalWidth) {
      ctx.setTransform(dpr * v.scale, 0, 0, dpr * v.scale, dpr * v.x, dpr * v.y);
      ctx.imageSmoothingEnabled = v.scale < 3;
      ctx.drawImage(img, 0, 0);
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.font = "12px system-ui, sans-serif";
    ctx.lineWidth = 1.5;
    if (f.corrected && app.showPredicted) {
      f.predicted.forEach((p, k) => { // the model's prediction: a cross
        if (p.x === null || p.y === null) return; // the model found no such point
        const s = toScreen(p.x, p.y);
        ctx.strokeStyle = colour(k);
        ctx.beginPath();
        ctx.moveTo(s.x - 4, s.y - 4); ctx.lineTo(s.x + 4, s.y + 4);
        ctx.moveTo(s.x + 4, s.y - 4); ctx.lineTo(s.x - 4, s.y + 4);
        ctx.stroke();
      });
    }
    f.keypoints.forEach((p, k) => {
      if (!p.visible) return;
      const s = toScreen(p.x, p.y);
      const selected = k === app.selected;
      ctx.beginPath();
      ctx.arc(s.x, s.y, selected ? 6 : 4.5, 0, 2 * Math.PI);
      ctx.fillStyle = colour(k);
      ctx.fill();
      ctx.strokeStyle = selected ? "#fff" : "#000";
      ctx.lineWidth = selected ? 2 : 1;
      ctx.stroke();
      ctx.lineWidth = 3;
      ctx.strokeStyle = "rgba(0,0,0,0.8)";
      ctx.strokeText(p.name, s.x + 8, s.y - 6);
      ctx.fillStyle = colour(k);
      ctx.fillText(p.name, s.x + 8, s.y - 6);
    });
  }

  function showFrame(idx) {
    if (!app.frames.length) return;
    app.current = clamp(idx, 0, app.frames.length - 1);
    const f = frame();
    $("frame-info").textContent =
      `${f.video} frame ${f.index} (${f.width}\u00d7${f.height}) \u00b7 ${app.current + 1}/${app.frames.length}` +
      (f.corrected ? " \u00b7 corrected" : " \u00b7 model's prediction");
    if (app.fitted !== f.id) fit(); else draw();
    updateKeypointList();
    for (const b of $("strip").children) b.classList.toggle("current", Number(b.dataset.index) === app.current);
    const current = $("strip").children[app.current];
    if (current && current.scrollIntoView) current.scrollIntoView({ block: "nearest", inline: "nearest" });
  }

  // --------------------------------------------------------------- widgets ---

  function buildKeypointList() {
    const list = $("keypoints");
    list.replaceChildren();
    app.bodyparts.forEach((name, k) => {
      const li = document.createElement("li");
      li.dataset.k = k;
      const key = document.createElement("span"); key.className = "key"; key.textContent = k < 9 ? k + 1 : "";
      const sw = document.createElement("span"); sw.className = "swatch"; sw.style.background = colour(k);
      const label = document.createElement("span"); label.className = "name"; label.textContent = name;
      const vis = document.createElement("input");
      vis.type = "checkbox"; vis.className = "visible"; vis.title = "visible";
      vis.addEventListener("click", (e) => { e.stopPropagation(); toggleVisible(k); });
      li.append(key, sw, label, vis);
      li.addEventListener("click", () => select(k));
      list.append(li);
    });
    updateKeypointList();
  }

  function updateKeypointList() {
    const f = frame();
    if (!f) return;
    for (const li of $("keypoints").children) {
      const k = Number(li.dataset.k);
      const p = f.keypoints[k];
      li.classList.toggle("selected", k === app.selected);
      li.classList.toggle("hidden", !p.visible);
      li.querySelector("input.visible").checked = p.visible;
      li.title = `${p.name}: likelihood ${p.likelihood.toFixed(2)}` + (p.visible ? "" : " (not visible)");
    }
    $("toggle-visible").textContent = f.keypoints[app.selected].visible ? "Not visible" : "Visible again";
  }

  function buildStrip() {
    const strip = $("strip");
    strip.replaceChildren();
    app.frames.forEach((f, i) => {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.index = i;
      b.dataset.frame = f.id;
      b.title = `${f.video} frame ${f.index}` + (f.corrected ? " (corrected)" : "") +
        (f.round > 0 ? ` (added after round ${f.round})` : "");
      b.classList.toggle("corrected", f.corrected);
      b.classList.toggle("new", f.round > 0);
      b.classList.toggle("current", i === app.current);
      const img = document.createElement("img");
      img.src = f.image; img.alt = `frame ${f.index}`;
      const label = document.createElement("span"); label.className = "label"; label.textContent = f.index;
      b.append(img, label);
      b.addEventListener("click", () => showFrame(i));
      strip.append(b);
    });
  }

  // ----------------------------------------------------------------- mouse ---

  let gesture = null;

  function canvasXY(e) {
    const r = canvas.getBoundingClientRect();
    return { x: e.clientX - r.left, y: e.clientY - r.top };
  }

  function nearestPoint(m) {
    let best = -1, bestD = HIT_RADIUS;
    frame().keypoints.forEach((p, k) => {
      if (!p.visible) return;
      const s = toScreen(p.x, p.y);
      const d = Math.hypot(s.x - m.x, s.y - m.y);
      if (d <= bestD || (d === bestD && k === app.selected)) { best = k; bestD = d; }
    });
    return best;
  }

  canvas.addEventListener("mousedown", (e) => {
    if (e.button !== 0 || !frame()) return;
    canvas.focus();
    const m = canvasXY(e);
    if (e.shiftKey) {
      const q = toImage(m.x, m.y);
      placeSelected(q.x, q.y);
      return;
    }
    const k = nearestPoint(m);
    if (k >= 0) {
      const p = frame().keypoints[k];
      gesture = { kind: "drag", k, start: m, from: { x: p.x, y: p.y }, before: snapshot(frame()), moved: false };
      select(k);
    } else {
      gesture = { kind: "pan", start: m, from: { x: app.view.x, y: app.view.y } };
    }
    canvas.classList.add("dragging");
    e.preventDefault();
  });

  window.addEventListener("mousemove", (e) => {
    if (!gesture) return;
    const m = canvasXY(e);
    const dx = m.x - gesture.start.x, dy = m.y - gesture.start.y;
    if (gesture.kind === "drag") {
      const f = frame(), p = f.keypoints[gesture.k];
      p.x = clamp(gesture.from.x + dx / app.view.scale, 0, f.width - 1);
      p.y = clamp(gesture.from.y + dy / app.view.scale, 0, f.height - 1);
      gesture.moved = gesture.moved || dx !== 0 || dy !== 0;
    } else {
      app.view.x = gesture.from.x + dx;
      app.view.y = gesture.from.y + dy;
    }
    draw();
  });

  window.addEventListener("mouseup", () => {
    if (!gesture) return;
    const g = gesture;
    gesture = null;
    canvas.classList.remove("dragging");
    if (g.kind === "drag" && g.moved) commit(frame(), g.before);
  });

  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    zoomAt(canvasXY(e), Math.exp(-e.deltaY * 0.0015));
  }, { passive: false });

  function zoomAt(m, factor) {
    const v = app.view;
    const s = clamp(v.scale * factor, 0.05, 80);
    v.x = m.x - (m.x - v.x) * (s / v.scale);
    v.y = m.y - (m.y - v.y) * (s / v.scale);
    v.scale = s;
    draw();
  }

  // -------------------------------------------------------------- keyboard ---

  window.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLInputElement && e.target.type !== "checkbox") return;
    const key = e.key;
    const centre = { x: canvas.clientWidth / 2, y: canvas.clientHeight / 2 };
    let handled = true;
    if ((e.ctrlKey || e.metaKey) && key.toLowerCase() === "z") undo();
    else if (e.ctrlKey || e.metaKey || e.altKey) handled = false;
    else if (key === "ArrowRight" || key === "d" || key === "n") showFrame(app.current + 1);
    else if (key === "ArrowLeft" || key === "a" || key === "p") showFrame(app.current - 1);
    else if (key === "ArrowDown" || key === "s" || (key === "Tab" && !e.shiftKey)) select(app.selected + 1);
    else if (key === "ArrowUp" || key === "w" || (key === "Tab" && e.shiftKey)) select(app.selected - 1);
    else if (/^[1-9]$/.test(key) && Number(key) <= app.bodyparts.length) select(Number(key) - 1);
    else if (key === "v" || key === "x") toggleVisible(app.selected);
    else if (key === "u") undo();
    else if (key === "f" || key === "0") fit();
    else if (key === "+" || key === "=") zoomAt(centre, 1.25);
    else if (key === "-") zoomAt(centre, 0.8);
    else if (key === "m") { app.showPredicted = !app.showPredicted; $("show-predicted").checked = app.showPredicted; draw(); }
    else handled = false;
    if (handled) e.preventDefault();
  });

  // ------------------------------------------------------------------ wire ---

  $("undo").addEventListener("click", undo);
  $("toggle-visible").addEventListener("click", () => toggleVisible(app.selected));
  $("fit").addEventListener("click", fit);
  $("show-predicted").addEventListener("change", (e) => { app.showPredicted = e.target.checked; draw(); });
  window.addEventListener("resize", () => { app.fitted = -1; if (frame()) fit(); });
  window.addEventListener("beforeunload", (e) => { if (app.pendingSaves > 0) e.preventDefault(); });

  Object.assign(app, { api, loadState, $ });
  // after every script has run, so train.js can hook onState first
  document.addEventListener("DOMContentLoaded", () => {
    loadState(false).catch((err) => status(`cannot load the project: ${err.message}`, true));
  });
})();
