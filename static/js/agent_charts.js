/* Agent dashboard charts (Chart.js, vendored under static/vendor/chartjs). */
(function () {
  var GREEN = "#198754", BLUE = "#3d7bd9", GRID = "rgba(0,0,0,.06)";
  function yuan(v) { return "¥" + Number(v).toLocaleString(undefined, {maximumFractionDigits: 2}); }
  function base() {
    return {
      responsive: true, maintainAspectRatio: false, animation: false,
      interaction: {mode: "index", intersect: false},
      plugins: {
        legend: {position: "bottom", labels: {boxWidth: 12, usePointStyle: true}},
        tooltip: {callbacks: {label: function (c) { return c.dataset.label + ": " + yuan(c.chart.options.indexAxis === "y" ? c.parsed.x : c.parsed.y); }}}
      }
    };
  }
  window.agentCharts = {
    daily: function (id, d, names) {
      var el = document.getElementById(id);
      if (!el || !window.Chart) return;
      var opts = base();
      // Earnings are a small share of revenue: they get their own axis (right) to stay readable.
      opts.scales = {
        x: {grid: {display: false}, ticks: {maxRotation: 0, autoSkip: true, maxTicksLimit: 8}},
        y: {beginAtZero: true, grid: {color: GRID}, ticks: {callback: yuan, color: BLUE}},
        y1: {beginAtZero: true, position: "right", grid: {display: false}, ticks: {callback: yuan, color: GREEN}}
      };
      new Chart(el, {
        type: "line",
        data: {labels: d.labels, datasets: [
          {label: names.revenue, data: d.revenue.map(Number), yAxisID: "y", borderColor: BLUE, backgroundColor: "rgba(61,123,217,.10)", fill: true, cubicInterpolationMode: "monotone", pointRadius: 2, pointHoverRadius: 4, borderWidth: 2},
          {label: names.earnings, data: d.earnings.map(Number), yAxisID: "y1", borderColor: GREEN, backgroundColor: "rgba(25,135,84,0)", fill: false, cubicInterpolationMode: "monotone", pointRadius: 2, pointHoverRadius: 4, borderWidth: 2}
        ]},
        options: opts
      });
    },
    products: function (id, d, names) {
      var el = document.getElementById(id);
      if (!el || !window.Chart || !d.labels.length) return;
      var opts = base();
      opts.indexAxis = "y";
      opts.scales = {
        x: {beginAtZero: true, grid: {color: GRID}, ticks: {callback: yuan}},
        y: {grid: {display: false}, ticks: {callback: function (v) { var s = this.getLabelForValue(v); return s.length > 14 ? s.slice(0, 13) + "…" : s; }}}
      };
      new Chart(el, {
        type: "bar",
        data: {labels: d.labels, datasets: [
          {label: names.revenue, data: d.revenue.map(Number), backgroundColor: "rgba(61,123,217,.75)", borderRadius: 4},
          {label: names.earnings, data: d.earnings.map(Number), backgroundColor: "rgba(25,135,84,.85)", borderRadius: 4}
        ]},
        options: opts
      });
    }
  };
})();
