// The agent centre's page behaviours (no inline scripts: the Content-Security-Policy allows
// scripts from files only). Each part looks for its page's elements and does nothing without them.
(function () {
  // Highlight the current section in both navs.
  var section = document.querySelector("[data-dashboard-section]");
  if (section) {
    var current = section.getAttribute("data-dashboard-section");
    document.querySelectorAll(".agent-nav [data-section='" + current + "']").forEach(function (a) {
      a.classList.add("active"); a.setAttribute("aria-current", "page");
    });
  }

  // Charts: <canvas data-chart="daily|products" data-chart-source="#json-script-id"
  // data-chart-key="days" data-label-revenue="…" data-label-earnings="…">.
  document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
    if (!window.agentCharts || !canvas.id) return;
    var source = document.querySelector(canvas.dataset.chartSource);
    if (!source) return;
    var data = JSON.parse(source.textContent);
    if (canvas.dataset.chartKey) data = data[canvas.dataset.chartKey];
    var names = {revenue: canvas.dataset.labelRevenue, earnings: canvas.dataset.labelEarnings};
    window.agentCharts[canvas.dataset.chart](canvas.id, data, names);
  });

  // Storefront settings: preview the chosen logo before uploading it (the server checks and
  // re-encodes it anyway).
  var logo = document.getElementById("logo-input");
  if (logo) logo.addEventListener("change", function () {
    var file = this.files && this.files[0];
    var img = document.getElementById("logo-preview"), empty = document.getElementById("logo-empty");
    if (!file || !file.type.startsWith("image/")) return;
    img.src = URL.createObjectURL(file); img.classList.remove("d-none");
    if (empty) empty.classList.add("d-none");
  });

  // Withdrawals: the account field follows the chosen method; "all" fills in the available amount.
  var form = document.getElementById("withdrawal-form");
  if (form) {
    var sync = function () {
      var checked = form.querySelector("input[name=method]:checked");
      var method = checked ? checked.value : "alipay";
      form.querySelectorAll("[data-for]").forEach(function (el) {
        el.classList.toggle("d-none", el.getAttribute("data-for") !== method);
      });
      document.getElementById("w-account").setAttribute("inputmode", method === "bank" ? "numeric" : "email");
    };
    form.querySelectorAll("input[name=method]").forEach(function (r) { r.addEventListener("change", sync); });
    sync();
    var all = document.getElementById("w-all");
    if (all) all.addEventListener("click", function () {
      var amount = document.getElementById("w-amount");
      amount.value = all.getAttribute("data-available");
      amount.dispatchEvent(new Event("input", { bubbles: true }));
    });
  }

  // Pricing: the scope select shows the field of its scope.
  var scope = document.querySelector("[data-scope-select]");
  if (scope) {
    var showScope = function () {
      document.querySelectorAll("[data-scope-field]").forEach(function (el) {
        el.hidden = el.getAttribute("data-scope-field") !== scope.value;
      });
    };
    scope.addEventListener("change", showScope); showScope();
  }

  // Invitations: copy a link or code (<button data-copy="text" data-copied-label="…">).
  document.querySelectorAll("[data-copy]").forEach(function (btn) {
    btn.addEventListener("click", function () {
      var text = btn.getAttribute("data-copy"), original = btn.innerHTML;
      var done = function () {
        btn.textContent = (btn.dataset.copiedLabel || "OK") + " ✓";
        setTimeout(function () { btn.innerHTML = original; }, 1500);
      };
      if (navigator.clipboard && window.isSecureContext) { navigator.clipboard.writeText(text).then(done); }
      else { var input = btn.parentElement.querySelector("input"); input.value = text; input.select(); document.execCommand("copy"); input.value = input.defaultValue; done(); }
    });
  });
})();
