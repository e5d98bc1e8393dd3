// Copy buttons: <button data-copy-target="#id">. Works without htmx too.
document.addEventListener("click", function (event) {
  const button = event.target.closest("[data-copy-target]");
  if (!button) return;
  const target = document.querySelector(button.dataset.copyTarget);
  if (!target) return;
  const text = target.textContent.trim();
  const done = () => {
    const label = button.innerHTML;
    button.innerHTML = '<i class="bi bi-check2"></i> ' + (button.dataset.copiedLabel || "OK");
    setTimeout(() => { button.innerHTML = label; }, 1500);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done);
  } else {
    const area = document.createElement("textarea");
    area.value = text; document.body.appendChild(area); area.select();
    document.execCommand("copy"); area.remove(); done();
  }
});
// Quantity steppers on the product and checkout pages.
document.addEventListener("click", function (event) {
  const step = event.target.closest("[data-step]");
  if (!step) return;
  const input = document.querySelector(step.dataset.for);
  const value = (parseInt(input.value, 10) || 0) + parseInt(step.dataset.step, 10);
  const min = parseInt(input.min || "1", 10), max = parseInt(input.max || "9999", 10);
  input.value = Math.min(max, Math.max(min, value));
  input.dispatchEvent(new Event("change"));
});
