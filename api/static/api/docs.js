// The API reference: Swagger UI from vendored assets, reading our OpenAPI schema.
// "Try it out" requests are signed in the browser with a key the agent types in (kept in memory).
(function () {
  var root = document.getElementById("swagger-ui");
  if (!root || typeof SwaggerUIBundle === "undefined") return;

  var keyInput = document.getElementById("try-key-id");
  var secretInput = document.getElementById("try-secret");
  var status = document.getElementById("try-status");
  var subtle = window.crypto && window.crypto.subtle;

  function hex(buffer) {
    return Array.prototype.map.call(new Uint8Array(buffer), function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  function nonce() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return hex(bytes);
  }

  function updateStatus() {
    if (!status) return;
    var ready = keyInput.value.trim() && secretInput.value.trim();
    status.textContent = !subtle ? status.dataset.insecure : ready ? status.dataset.ready : "";
  }
  if (keyInput && secretInput) {
    keyInput.addEventListener("input", updateStatus);
    secretInput.addEventListener("input", updateStatus);
    updateStatus();
  }

  // Same string to sign as the server: METHOD, path?query, timestamp, nonce, sha256(body).
  function sign(request) {
    var keyId = keyInput ? keyInput.value.trim() : "";
    var secret = secretInput ? secretInput.value.trim() : "";
    if (!subtle || !keyId || !secret || request.url.indexOf("/api/v1/schema") !== -1) return request;
    var url = new URL(request.url, window.location.href);
    var body = typeof request.body === "string" ? request.body : "";
    var encoder = new TextEncoder();
    var timestamp = String(Math.floor(Date.now() / 1000));
    var n = nonce();
    return subtle.digest("SHA-256", encoder.encode(body)).then(function (bodyHash) {
      var message = [request.method.toUpperCase(), url.pathname + url.search, timestamp, n, hex(bodyHash)].join("\n");
      return subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"])
        .then(function (key) { return subtle.sign("HMAC", key, encoder.encode(message)); })
        .then(function (signature) {
          request.headers["X-Api-Key"] = keyId;
          request.headers["X-Timestamp"] = timestamp;
          request.headers["X-Nonce"] = n;
          request.headers["X-Signature"] = hex(signature);
          return request;
        });
    });
  }

  window.ui = SwaggerUIBundle({
    url: root.dataset.schemaUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    docExpansion: "list",
    defaultModelsExpandDepth: 0,
    displayRequestDuration: true,
    tryItOutEnabled: false,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    requestInterceptor: sign,
  });
})();
