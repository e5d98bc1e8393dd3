// Behaviours of the project's own admin pages (scripts from files only: see the CSP settings).

// A confirmation before a weighty submit: <input type="submit" data-confirm="…">.
document.addEventListener("click", function (event) {
  const button = event.target.closest ? event.target.closest("[data-confirm]") : null;
  if (button && !window.confirm(button.dataset.confirm)) event.preventDefault();
}, true);

// Reply templates on a ticket: the chosen text goes into the reply box (after what is there),
// to edit before sending.
(function () {
  const select = document.getElementById("reply-template");
  const source = document.getElementById("reply-templates");
  if (!select || !source) return;
  const templates = JSON.parse(source.textContent);
  const box = select.closest("form").querySelector("textarea[name=body]");
  select.addEventListener("change", function () {
    const chosen = templates[parseInt(select.value, 10)];
    if (!chosen) return;
    box.value = box.value.trim() ? box.value.replace(/\s+$/, "") + "\n\n" + chosen.body : chosen.body;
    select.value = "";
    box.focus();
  });
})();
