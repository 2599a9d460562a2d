// jfacemap refine: the Train and Save model panels (uses window.refine from app.js).
"use strict";

(() => {
  const app = window.refine;
  const { api, $ } = app;

  async function startTraining() {
    // An empty field: the finetune preset's own plan (36 epochs, or more to make >= 300 steps).
    const field = $("epochs").value.trim();
    $("train-result").textContent = "";
    try {
      await app.saveQueue; // train on what is saved, all of it
      await api("api/train", field === "" ? {} : { epochs: Number(field) });
      pollTraining();
    } catch (err) {
      trainStatus(`not started: ${err.message}`, true);
    }
  }

  function trainStatus(text, isError) {
    const el = $("train-status");
    el.textContent = text;
    el.classList.toggle("error", !!isError);
  }

  async function pollTraining() {
    if (app.polling) return;
    app.polling = true;
    $("train").disabled = true;
    try {
      for (;;) {
        const s = await api("api/train");
        const epochs = Math.max(s.epochs || 1, 1);
        $("train-progress").max = epochs;
        $("train-progress").value = s.epoch || 0;
        const last = s.history && s.history.length ? s.history[s.history.length - 1] : null;
        trainStatus(`round ${s.round}: ${s.stage}, epoch ${s.epoch || 0}/${epochs}` +
          (last ? ` \u00b7 loss ${last.loss.toFixed(3)}` : ""), false);
        if (s.state === "done") { showResult(s.result); await app.loadState(true); break; }
        if (s.state === "failed") { trainStatus(`training failed: ${s.error}`, true); break; }
        if (s.state !== "running") break;
        await new Promise((r) => setTimeout(r, 500));
      }
    } catch (err) {
      trainStatus(`lost contact with the server: ${err.message}`, true);
    } finally {
      app.polling = false;
      $("train").disabled = false;
    }
  }

  function showResult(r) {
    const el = $("train-result");
    el.replaceChildren();
    const fmt = (e) => (e && e.mean_px !== null ? `${e.mean_px.toFixed(1)} px` : "\u2013");
    el.append(`Round ${r.round}: error on the ${r.frames} corrected frame${r.frames === 1 ? "" : "s"}: ` +
      `before ${fmt(r.before)} \u2192 `);
    const after = document.createElement("span");
    after.className = "after";
    after.textContent = `after ${fmt(r.after)}`;
    el.append(after, `. ${r.new_frames.length} new frame${r.new_frames.length === 1 ? "" : "s"} ` +
      "(yellow) show the new model's predictions.");
    $("train-progress").value = $("train-progress").max;
  }

  async function saveModel() {
    const el = $("save-model-status");
    try {
      const r = await api("api/save-model", { name: $("model-name").value.trim(), overwrite: $("overwrite").checked });
      el.classList.remove("error");
      el.textContent = `saved as ${r.name} (${r.path}): jfacemap track --model ${r.name}`;
    } catch (err) {
      el.classList.add("error");
      el.textContent = `not saved: ${err.message}`;
    }
  }

  $("train").addEventListener("click", startTraining);
  $("save-model").addEventListener("click", saveModel);
  // a round still running when the page (re)loads: follow it
  app.onState = (doc) => { if (doc.train && doc.train.state === "running") pollTraining(); };
})();
