// The viewer: window/level of the display rendering on a canvas, zoom, and per finding a heat layer that a
// switch shows or hides and a slider makes more or less opaque.
(function () {
  "use strict";
  var stage = document.getElementById("stage");
  if (!stage) return;

  // -- window / level: a lookup table from the stored 8-bit rendering to the screen --
  var source = document.getElementById("radiograph-source");
  var canvas = document.getElementById("radiograph");
  var level = document.getElementById("level");
  var width = document.getElementById("window");
  var pixels = null;

  function draw() {
    if (!pixels) return;
    var ctx = canvas.getContext("2d");
    var out = ctx.createImageData(pixels.width, pixels.height);
    var c = Number(level.value), w = Math.max(1, Number(width.value));
    var lut = new Uint8ClampedArray(256);
    for (var v = 0; v < 256; v++) lut[v] = ((v - (c - w / 2)) / w) * 255;
    var src = pixels.data, dst = out.data;
    for (var i = 0; i < src.length; i += 4) {
      var g = lut[src[i]];
      dst[i] = g; dst[i + 1] = g; dst[i + 2] = g; dst[i + 3] = 255;
    }
    ctx.putImageData(out, 0, 0);
  }

  function load() {
    canvas.width = source.naturalWidth;
    canvas.height = source.naturalHeight;
    var ctx = canvas.getContext("2d");
    ctx.drawImage(source, 0, 0);
    pixels = ctx.getImageData(0, 0, canvas.width, canvas.height);
    stage.style.aspectRatio = canvas.width + " / " + canvas.height;
    stage.classList.add("loaded");
    draw();
  }
  if (source) {
    if (source.complete && source.naturalWidth) load(); else source.addEventListener("load", load);
    // A result filed before display renderings were kept has no image and no layers: show its overlays
    // (radiograph burned in) instead; the switch and the slider act on them the same way.
    source.addEventListener("error", function () {
      stage.classList.add("no-image");
      document.querySelectorAll("img.layer[data-overlay]").forEach(function (layer) {
        layer.classList.add("standalone");
        markLayer(layer, false);  // its own failure was the missing image's: the overlay is tried instead
        layer.src = layer.getAttribute("data-overlay");
      });
      document.querySelectorAll(".wl").forEach(function (el) { el.hidden = true; });
    });
    level.addEventListener("input", draw);
    width.addEventListener("input", draw);
    document.getElementById("reset-wl").addEventListener("click", function () {
      level.value = 128; width.value = 256; draw();
    });
  }

  // -- a heat layer that cannot be drawn says so instead of vanishing; its switch and slider are disabled --
  function layerControls(layer) {
    return document.querySelectorAll('[aria-controls="' + layer.id + '"]');
  }
  // failed: the layer could not be drawn (hidden, its controls off and disabled, its note shown); not
  // failed: as the page first showed it.
  function markLayer(layer, failed) {
    if (!failed && layer.getAttribute("data-failed") !== "true") return;
    if (failed) layer.setAttribute("data-failed", "true"); else layer.removeAttribute("data-failed");
    layer.hidden = failed;
    layerControls(layer).forEach(function (control) {
      control.disabled = failed;
      if (control.hasAttribute("data-layer-switch")) {
        control.checked = !failed;
        control.setAttribute("aria-checked", failed ? "false" : "true");
      }
    });
    var note = document.querySelector('[data-layer-failed="' + layer.id + '"]');
    if (note) note.hidden = !failed;
  }
  document.querySelectorAll("img.layer").forEach(function (layer) {
    layer.addEventListener("error", function () { markLayer(layer, true); });
    if (layer.complete && layer.naturalWidth === 0 && layer.getAttribute("src")) markLayer(layer, true);
  });

  // -- zoom --
  var zoom = document.getElementById("zoom");
  var zoomed = document.getElementById("zoomed");
  function applyZoom() {
    zoomed.style.transform = "scale(" + Number(zoom.value) / 100 + ")";
    document.getElementById("zoom-value").textContent = zoom.value + " %";
  }
  if (zoom) zoom.addEventListener("input", applyZoom);

  // -- heat layers: a switch and an opacity slider per positive finding --
  document.querySelectorAll("[data-layer-switch]").forEach(function (toggle) {
    var layer = document.getElementById(toggle.getAttribute("aria-controls"));
    function apply() {
      var on = toggle.checked;
      toggle.setAttribute("aria-checked", on ? "true" : "false");
      layer.hidden = !on;
      layer.setAttribute("data-visible", on ? "true" : "false");
    }
    toggle.addEventListener("change", apply);
    apply();
  });
  document.querySelectorAll("[data-layer-opacity]").forEach(function (slider) {
    var layer = document.getElementById(slider.getAttribute("aria-controls"));
    function apply() {
      layer.style.opacity = Number(slider.value) / 100;
      slider.setAttribute("aria-valuetext", slider.value + " %");
    }
    slider.addEventListener("input", apply);
    apply();
  });

  // -- a disagreement asks for the correct label before it is sent --
  document.querySelectorAll("[data-disagree]").forEach(function (button) {
    button.addEventListener("click", function (event) {
      var picker = document.getElementById(button.getAttribute("data-disagree"));
      if (picker.hidden) { event.preventDefault(); picker.hidden = false; picker.querySelector("select").focus(); }
    });
  });
})();
