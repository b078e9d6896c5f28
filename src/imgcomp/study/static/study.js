// The rating page: a magnifier synchronised over the three images (mouse and touch), keyboard
// shortcuts, and one vote per trial (the server refuses a second one with 409).
(function () {
  "use strict";
  var trial = document.getElementById("trial");
  if (!trial) return;
  var token = trial.dataset.token;
  var frames = Array.prototype.slice.call(document.querySelectorAll(".frame"));
  var buttons = Array.prototype.slice.call(document.querySelectorAll(".choose"));
  var zoomLabel = document.getElementById("zoom");
  var errorBox = document.getElementById("error");
  var started = Date.now();
  var zoom = 2, enabled = true, used = false, sending = false, last = null;

  function place(fx, fy) {
    last = [fx, fy];
    frames.forEach(function (frame) {
      var img = frame.querySelector("img"), lens = frame.querySelector(".lens");
      if (!enabled || !img.naturalWidth) { lens.hidden = true; return; }
      var w = frame.clientWidth, h = frame.clientHeight;
      lens.hidden = false;
      var lw = lens.offsetWidth, lh = lens.offsetHeight;
      // zoom x the image's own pixels, or x the displayed size when it is shown enlarged
      var bw = Math.max(img.naturalWidth, w) * zoom, bh = bw * img.naturalHeight / img.naturalWidth;
      lens.style.left = (fx * w - lw / 2) + "px";
      lens.style.top = (fy * h - lh / 2) + "px";
      lens.style.backgroundImage = "url(\"" + img.getAttribute("src") + "\")";
      lens.style.backgroundSize = bw + "px " + bh + "px";
      lens.style.backgroundPosition = (lw / 2 - fx * bw) + "px " + (lh / 2 - fy * bh) + "px";
    });
    if (enabled) used = true;
  }
  function hide() { frames.forEach(function (f) { f.querySelector(".lens").hidden = true; }); }
  function at(frame, clientX, clientY) {
    var r = frame.getBoundingClientRect();
    var fx = (clientX - r.left) / r.width, fy = (clientY - r.top) / r.height;
    place(Math.min(1, Math.max(0, fx)), Math.min(1, Math.max(0, fy)));
  }
  frames.forEach(function (frame) {
    frame.addEventListener("mousemove", function (e) { at(frame, e.clientX, e.clientY); });
    frame.addEventListener("mouseleave", hide);
    function touch(e) {
      if (!e.touches.length) return;
      e.preventDefault();
      at(frame, e.touches[0].clientX, e.touches[0].clientY);
    }
    frame.addEventListener("touchstart", touch, { passive: false });
    frame.addEventListener("touchmove", touch, { passive: false });
  });

  function setZoom(z) {
    zoom = Math.min(8, Math.max(1, z));
    zoomLabel.textContent = String(zoom);
    if (last) place(last[0], last[1]);
  }

  function vote(choice) {
    if (sending) return;
    sending = true;
    buttons.forEach(function (b) { b.disabled = true; });
    fetch("/api/vote", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: token, choice: choice, response_ms: Date.now() - started, magnifier: used })
    }).then(function (r) {
      if (r.ok) return r.json().then(function (d) { window.location.replace(d.next); });
      if (r.status === 409) { window.location.replace("/rate"); return; }
      throw new Error("the server answered " + r.status);
    }).catch(function (err) {
      sending = false;
      buttons.forEach(function (b) { b.disabled = false; });
      errorBox.textContent = "Your choice was not saved (" + err.message + "). Please try again.";
      errorBox.hidden = false;
    });
  }
  buttons.forEach(function (b) {
    b.addEventListener("click", function () { vote(b.dataset.choice); });
  });
  document.addEventListener("keydown", function (e) {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.key === "ArrowLeft") { e.preventDefault(); vote("left"); }
    else if (e.key === "ArrowRight") { e.preventDefault(); vote("right"); }
    else if (e.key === "+" || e.key === "=") { setZoom(zoom + 1); }
    else if (e.key === "-" || e.key === "_") { setZoom(zoom - 1); }
    else if (e.key === "m" || e.key === "M") { enabled = !enabled; if (!enabled) hide(); else if (last) place(last[0], last[1]); }
  });
})();
