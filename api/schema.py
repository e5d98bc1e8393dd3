"""OpenAPI description of the request signature (loaded by ``ApiConfig.ready``)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension

SIGNING = (
    "Every request carries four headers. `X-Signature` is the lowercase hex HMAC-SHA256, keyed "
    "with your secret, of these five lines joined by `\\n` (no trailing newline):\n\n"
    "1. the HTTP method in capitals (`GET`, `POST`)\n"
    "2. the canonical path and query (`/api/v1/products/?page=2`; see the description: the path "
    "percent-decoded and re-encoded, escapes in the query in capitals)\n"
    "3. `X-Timestamp`\n"
    "4. `X-Nonce`\n"
    "5. the lowercase hex SHA-256 of the raw body (of an empty body for GET: "
    "`e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855`)"
)


class SignedRequestScheme(OpenApiAuthenticationExtension):
    target_class = "api.auth.SignedRequestAuthentication"
    name = ["ApiKey", "Timestamp", "Nonce", "Signature"]

    def get_security_definition(self, auto_schema):
        def header(name: str, description: str) -> dict:
            return {"type": "apiKey", "in": "header", "name": name, "description": description}

        return [
            header("X-Api-Key", "Your key ID (`ak_...`), from the agent centre → API."),
            header("X-Timestamp", "Unix time in seconds; refused when off our clock by more than the allowed skew."),
            header("X-Nonce", "16-64 characters of `[A-Za-z0-9_-]`, new for every request (a reuse is refused)."),
            header("X-Signature", SIGNING),
        ]


def postprocess_description(result, generator, request, public):
    """The API's long description (signing, errors, callbacks) from schema_description.md."""
    from pathlib import Path
    from string import Template

    from django.conf import settings

    text = (Path(__file__).with_name("schema_description.md")).read_text(encoding="utf-8")
    result["info"]["description"] = Template(text).substitute(
        max_skew=settings.AGENT_API_MAX_SKEW, rate=settings.AGENT_API_RATE_PER_MINUTE
    )
    return result
