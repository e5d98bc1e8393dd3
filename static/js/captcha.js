// The captcha a risk rule asks for (risk/captcha.py): the vendored ALTCHA widget's "external"
// build, which bundles no worker (no blob: URL for the Content-Security-Policy to allow). Its
// proof-of-work runs in the PBKDF2 worker served from this site (worker-src falls back to
// script-src 'self'), named by this script tag's data-worker.
(function () {
  var script = document.currentScript;
  if (!window.$altcha || !script) return;
  var worker = script.dataset.worker;
  window.$altcha.algorithms.set("PBKDF2/SHA-256", function () { return new Worker(worker); });
})();
