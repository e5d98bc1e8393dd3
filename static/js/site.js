// Small progressive enhancements; every page works without them.

// Copy buttons: <button data-copy-target="#id" data-copied-label="...">. Works without htmx too.
document.addEventListener("click", function (event) {
  const button = event.target.closest("[data-copy-target]");
  if (!button) return;
  const target = document.querySelector(button.dataset.copyTarget);
  if (!target) return;
  const text = target.textContent.trim();
  const label = button.dataset.label || button.innerHTML;
  button.dataset.label = label;
  const done = () => {
    button.dataset.copied = "true";
    button.innerHTML = '<i class="bi bi-check2"></i> ' + (button.dataset.copiedLabel || "OK");
    clearTimeout(button._copyTimer);
    button._copyTimer = setTimeout(() => { button.innerHTML = label; delete button.dataset.copied; }, 2000);
  };
  const fallback = () => {
    const area = document.createElement("textarea");
    area.value = text; area.setAttribute("readonly", "");
    area.style.position = "fixed"; area.style.opacity = "0";
    document.body.appendChild(area); area.select();
    try { document.execCommand("copy"); } finally { area.remove(); }
    done();
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, fallback);
  } else {
    fallback();
  }
});

// Quantity steppers on the product and checkout pages.
document.addEventListener("click", function (event) {
  const step = event.target.closest("[data-step]");
  if (!step) return;
  const input = document.querySelector(step.dataset.for);
  if (!input) return;
  const value = (parseInt(input.value, 10) || 0) + parseInt(step.dataset.step, 10);
  const min = parseInt(input.min || "1", 10), max = parseInt(input.max || "9999", 10);
  input.value = Math.min(max, Math.max(min, value));
  input.dispatchEvent(new Event("change", { bubbles: true }));
});

// The guest checkout's "Did you mean ...@qq.com?": one click puts the suggestion in both boxes.
document.addEventListener("click", function (event) {
  const button = event.target.closest("[data-fill-email]");
  if (!button) return;
  ["#guest_email", "#guest_email_confirm"].forEach(function (selector) {
    const input = document.querySelector(selector);
    if (input) { input.value = button.dataset.fillEmail; input.classList.remove("is-invalid"); }
  });
  const checked = button.parentElement.querySelector("input[name=guest_email_checked]");
  if (checked) checked.remove();
  button.closest(".col-sm-6").querySelectorAll(".invalid-feedback").forEach(function (el) { el.remove(); });
  button.remove();
});

// An amount in fen as the money template filter shows it: "¥5,612.76".
function formatFen(cents) {
  const sign = cents < 0 ? "-" : "";
  const text = (Math.abs(cents) / 100).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  return sign + "¥" + text;
}
window.formatFen = formatFen;

// Checkout: show the estimated total as the quantity changes (the server's price is final).
function updateTotal(input) {
  const out = document.querySelector(input.dataset.totalTarget);
  const qty = parseInt(input.value, 10);
  if (!out || !(qty > 0)) return;
  const cents = Math.round(parseFloat(input.dataset.unitPrice) * 100) * qty;
  out.textContent = formatFen(cents);
  // A coupon was applied: its discount was for the old quantity, so say to apply it again.
  const stale = input.dataset.staleNote && document.querySelector(input.dataset.staleNote);
  if (stale) stale.hidden = false;
  balanceCovers(input.form, cents);
}

// Checkout: the balance can be chosen only while it covers the total (the server checks again).
function balanceCovers(form, cents) {
  const option = form && form.querySelector("[data-balance-fen]");
  if (!option) return;
  const short = Math.round(parseFloat(option.dataset.balanceFen) * 100) < cents;
  const radio = option.querySelector("input[type=radio]");
  radio.disabled = short;
  option.querySelectorAll("[data-balance-ok]").forEach((el) => { el.hidden = short; });
  form.querySelectorAll("[data-balance-short]").forEach((el) => { el.hidden = !short; });
  if (short && radio.checked) {
    radio.checked = false;
    const other = form.querySelector("input[name=channel]:not(:disabled)");
    if (other) other.checked = true;
  }
}
["input", "change"].forEach(function (type) {
  document.addEventListener(type, function (event) {
    if (event.target.matches && event.target.matches("[data-unit-price]")) updateTotal(event.target);
  });
});

// Image pickers (templates/aftersales/_image_picker.html): show the chosen file names.
document.addEventListener("change", function (event) {
  const input = event.target;
  if (!input.matches || !input.matches("[data-image-picker] input[type=file]")) return;
  const shown = input.closest("[data-image-picker]").querySelector("[data-picked]");
  if (!shown.dataset.none) shown.dataset.none = shown.textContent;
  const names = Array.from(input.files || []).map((file) => file.name);
  shown.textContent = names.length ? names.join(", ") : shown.dataset.none;
});
// Focus on the hidden input shows on its button.
document.addEventListener("focusin", function (event) {
  if (event.target.matches && event.target.matches("[data-image-picker] input[type=file]")) {
    event.target.nextElementSibling.classList.add("focus-ring");
  }
});
document.addEventListener("focusout", function (event) {
  if (event.target.matches && event.target.matches("[data-image-picker] input[type=file]")) {
    event.target.nextElementSibling.classList.remove("focus-ring");
  }
});

// A confirmation in a Bootstrap modal before an htmx request: <form data-confirm-modal="#id">.
// The modal's [data-confirm-go] button sends the request; closing it sends nothing.
document.addEventListener("htmx:confirm", function (event) {
  const elt = event.detail.elt;
  const selector = elt && elt.dataset ? elt.dataset.confirmModal : null;
  const modalEl = selector ? document.querySelector(selector) : null;
  if (!modalEl || !window.bootstrap) return;
  event.preventDefault();
  const modal = bootstrap.Modal.getOrCreateInstance(modalEl);
  const go = modalEl.querySelector("[data-confirm-go]");
  // Bootstrap ignores hide() while the modal is still fading in: a confirmation that quick is
  // closed once the modal is shown, instead of leaving it open over the page.
  let confirmed = false;
  modalEl.addEventListener("shown.bs.modal", function () {
    if (confirmed) modal.hide();
  }, { once: true });
  go.disabled = false;
  go.onclick = function () {
    go.disabled = true;  // one confirmation, one request
    go.onclick = null;
    confirmed = true;
    modal.hide();
    event.detail.issueRequest(true);
  };
  modal.show();
});

// One click, one request: <form data-submit-once> disables its submit button once sent (the
// server deduplicates as well); data-submit-once="spinner" also shows a spinner on it. Disabled
// after the event, so the button's own name and value are still sent.
document.addEventListener("submit", function (event) {
  const form = event.target;
  if (!form.matches || !form.matches("form[data-submit-once]") || event.defaultPrevented) return;
  // The button pressed (a form may have two: the checkout's "apply coupon" and "place order").
  const button = event.submitter || form.querySelector("button[type=submit], button:not([type])");
  if (!button) return;
  setTimeout(function () {
    button.disabled = true;
    if (form.dataset.submitOnce === "spinner") {
      button.innerHTML = '<span class="spinner-border spinner-border-sm"></span> ' + button.textContent;
    }
  }, 0);
});

// A confirmation before a destructive submit: <button data-confirm="Revoke this key?">.
document.addEventListener("click", function (event) {
  const button = event.target.closest ? event.target.closest("[data-confirm]") : null;
  if (button && !window.confirm(button.dataset.confirm)) event.preventDefault();
}, true);

// A select that submits its form when changed: <select data-autosubmit>.
document.addEventListener("change", function (event) {
  if (event.target.matches && event.target.matches("select[data-autosubmit]")) event.target.form.submit();
});

// Preset buttons that fill a field: <button data-fill-target="#amount" data-fill-value="50">.
document.addEventListener("click", function (event) {
  const button = event.target.closest ? event.target.closest("[data-fill-target]") : null;
  if (!button) return;
  const field = document.querySelector(button.dataset.fillTarget);
  if (field) { field.value = button.dataset.fillValue; field.dispatchEvent(new Event("input", { bubbles: true })); }
});

// Past a rate limit the server answers 429 with a fragment that says how long to wait
// (marketplace.ratelimit): shown where the answer would have gone. It stays an error, so a
// data-remove-after-success form stays, to try again later. Other errors are not swapped.
document.addEventListener("htmx:beforeSwap", function (event) {
  if (event.detail.xhr && event.detail.xhr.status === 429) event.detail.shouldSwap = true;
});

// An htmx form that goes away once its request succeeded (a reveal button): data-remove-after-success.
document.addEventListener("htmx:afterRequest", function (event) {
  const elt = event.detail.elt;
  if (event.detail.successful && elt && elt.matches && elt.matches("[data-remove-after-success]")) elt.remove();
});

// Refund request: the count, total and expected outcome follow the codes ticked.
(function () {
  const form = document.getElementById("refund-form");
  if (!form) return;
  const unit = parseFloat(form.dataset.unitPrice);
  const update = function () {
    const n = form.querySelectorAll("input.refund-code:checked").length;
    document.getElementById("refund-count").textContent = n;
    document.getElementById("refund-total").textContent = n ? formatFen(Math.round(unit * 100) * n) : "";
    const box = document.getElementById("refund-outcome");
    const revealed = form.querySelectorAll('input.refund-code:checked[data-revealed="1"]').length;
    const review = box.dataset.automatic !== "1" || revealed > 0;
    box.querySelector('[data-outcome="auto"]').classList.toggle("d-none", review || !n);
    box.querySelector('[data-outcome="review"]').classList.toggle("d-none", !review || !n);
  };
  form.addEventListener("change", update);
  update();
})();
