// The API reference: Swagger UI from vendored assets, reading our OpenAPI schema.
// "Try it out" requests are signed in the browser with a key the agent types in (kept in memory).
(function () {
  // The canonical path and query that requests are signed with (api/schema_description.md,
  // "The canonical path and query"): the path percent-decoded then re-encoded, the query with
  // escapes of unreserved characters decoded and every other escape in capitals.
  var UNRESERVED = /^[A-Za-z0-9\-._~]$/;
  var QUERY_KEEP = /^[A-Za-z0-9\-._~!$&'()*+,;=:@\/?]$/;

  function escape(byte) {
    return "%" + (byte < 16 ? "0" : "") + byte.toString(16).toUpperCase();
  }

  function isHex(byte) {
    return (byte >= 48 && byte <= 57) || (byte >= 65 && byte <= 70) || (byte >= 97 && byte <= 102);
  }

  // Visits the UTF-8 bytes of text: fn(byte, true) for each %XX escape, fn(byte, false) otherwise.
  function eachByte(text, fn) {
    var bytes = new TextEncoder().encode(text);
    var out = "";
    for (var i = 0; i < bytes.length; i++) {
      if (bytes[i] === 37 && i + 2 < bytes.length && isHex(bytes[i + 1]) && isHex(bytes[i + 2])) {
        out += fn(parseInt(String.fromCharCode(bytes[i + 1], bytes[i + 2]), 16), true);
        i += 2;
      } else {
        out += fn(bytes[i], false);
      }
    }
    return out;
  }

  function canonical(target) {
    var at = target.indexOf("?");
    var path = at === -1 ? target : target.slice(0, at);
    var query = at === -1 ? "" : target.slice(at + 1);
    var signedPath = eachByte(path, function (byte) {
      var char = String.fromCharCode(byte);
      return byte < 128 && (UNRESERVED.test(char) || char === "/") ? char : escape(byte);
    });
    var signedQuery = eachByte(query, function (byte, escaped) {
      var char = String.fromCharCode(byte);
      if (escaped) return byte < 128 && UNRESERVED.test(char) ? char : escape(byte);
      return byte < 128 && QUERY_KEEP.test(char) ? char : escape(byte);
    });
    return signedPath + (signedQuery ? "?" + signedQuery : "");
  }
  window.kamarketApiCanonical = canonical;

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

  // Same string to sign as the server: METHOD, canonical path?query, timestamp, nonce, sha256(body).
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
      var target = canonical(url.pathname + url.search);
      var message = [request.method.toUpperCase(), target, timestamp, n, hex(bodyHash)].join("\n");
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
