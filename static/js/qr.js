// QR codes drawn in the browser: <div class="qr" data-qr-text="..." data-qr-scale="5"
// data-qr-label="...">, filled with an inline SVG. Error correction M and the best of the eight
// masks, as the server draws the same code for a browser without JavaScript (payments/qr.py,
// the <noscript> image inside the element). Needs static/vendor/qrcode-generator/qrcode.js first.
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const DARK = "#1f2937";  // payments/qr.py's DARK
  const QUIET = 4;  // modules of light border around the code: the quiet zone scanners need

  if (typeof qrcode !== "function") return;
  qrcode.stringToBytes = qrcode.stringToBytesFuncs["UTF-8"];  // as segno encodes non-Latin-1 text

  function make(text, level) {
    const code = qrcode(0, level);  // 0: the smallest version that holds the text
    code.addData(text, "Byte");
    code.make();
    return code;
  }

  // Error correction M at least; higher when it fits in the same size, as segno's default
  // (boost_error) gives the server's drawing: a code is as robust here as it was there.
  function encode(text) {
    const base = make(text, "M");
    for (const level of ["H", "Q"]) {
      try {
        const code = make(text, level);
        if (code.getModuleCount() === base.getModuleCount()) return code;
      } catch (error) { /* too long for this level in any size: keep trying lower */ }
    }
    return base;
  }

  function draw(box) {
    if (box.dataset.qrDrawn) return;
    const code = encode(box.dataset.qrText);
    const count = code.getModuleCount();
    const side = count + 2 * QUIET;
    const scale = parseInt(box.dataset.qrScale, 10) || 4;
    // One path: each row's runs of dark modules as rectangles.
    const runs = [];
    for (let row = 0; row < count; row++) {
      for (let col = 0; col < count; col++) {
        if (!code.isDark(row, col)) continue;
        let end = col;
        while (end + 1 < count && code.isDark(row, end + 1)) end++;
        runs.push("M" + (col + QUIET) + " " + (row + QUIET) + "h" + (end - col + 1) + "v1h-" + (end - col + 1) + "z");
        col = end;
      }
    }
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 " + side + " " + side);
    svg.setAttribute("width", side * scale);
    svg.setAttribute("height", side * scale);
    svg.setAttribute("shape-rendering", "crispEdges");
    if (box.dataset.qrLabel) {
      svg.setAttribute("role", "img");
      svg.setAttribute("aria-label", box.dataset.qrLabel);
    } else {
      svg.setAttribute("aria-hidden", "true");
    }
    svg.setAttribute("focusable", "false");
    const light = document.createElementNS(SVG, "rect");
    light.setAttribute("width", side);
    light.setAttribute("height", side);
    light.setAttribute("fill", "#fff");
    const dark = document.createElementNS(SVG, "path");
    dark.setAttribute("d", runs.join(""));
    dark.setAttribute("fill", DARK);
    svg.append(light, dark);
    box.replaceChildren(svg);  // the <noscript> fallback goes: nothing else needs it
    box.dataset.qrDrawn = "true";
  }

  function drawIn(root) {
    if (root.matches && root.matches("[data-qr-text]")) draw(root);
    if (root.querySelectorAll) root.querySelectorAll("[data-qr-text]").forEach(draw);
  }

  drawIn(document);  // this script comes after the page's content
  // Content htmx swaps in (none of today's QR pages is swapped; a future one would be drawn).
  document.addEventListener("htmx:load", function (event) { drawIn(event.detail.elt); });
})();
