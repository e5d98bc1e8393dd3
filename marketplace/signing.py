"""The agent API's request signature, one recipe for every side of it: the API verifying a
request (api.auth, agents.services.api_keys), this platform signing its delivery callbacks to
agents' shops, and this platform buying from another instance as an agent (supply's kamarket
adapter)::

    string_to_sign = "\\n".join([METHOD, canonical_target(path_with_query), timestamp, nonce,
                                sha256_hex(body)])
    X-Signature = hex(HMAC-SHA256(secret, string_to_sign))

Pure functions of their arguments (no settings, no models), so every layer may use them.
"""

import hashlib
import hmac
import re
from urllib.parse import quote, unquote_to_bytes

# RFC 3986: unreserved characters (an escape of one means the character itself), and the
# reserved characters a query may carry as they are (an escape of one is a different query).
_UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
_QUERY_TOKEN = re.compile(rb"%[0-9A-Fa-f]{2}|[^-A-Za-z0-9._~!$&'()*+,;=:@/?]")


def _query_token(match: re.Match) -> bytes:
    token = match.group()
    if len(token) == 3:  # an escape: an unreserved character itself, anything else in capitals
        byte = int(token[1:], 16)
        return bytes([byte]) if byte in _UNRESERVED else b"%%%02X" % byte
    return b"%%%02X" % token[0]  # a byte that may not appear as it is (a lone % included)


def canonical_path_bytes(decoded: bytes) -> str:
    """The signed form of a path already percent-decoded (what a WSGI server gives us): every
    byte but A-Z a-z 0-9 - . _ ~ and / percent-encoded, with capital hex digits."""
    return quote(decoded, safe="/")


def canonical_query(query: str | bytes) -> str:
    """The signed form of a query string as sent (RFC 3986 normalisation, section 6.2.2):
    an escape of an unreserved character becomes the character, any other escape gets capital
    hex digits, and every byte (of the UTF-8 text) that is neither unreserved nor one of
    ``! $ & ' ( ) * + , ; = : @ / ?`` is percent-encoded (a ``%`` not starting an escape too).
    The meaning never changes: ``%26`` stays ``%26``, distinct from ``&``."""
    raw = query.encode() if isinstance(query, str) else query
    return _QUERY_TOKEN.sub(_query_token, raw).decode("ascii")


def canonical_target(target: str) -> str:
    """What the client signs for a path with its query (the part of the URL after the host).

    Path: percent-decode it, then percent-encode every byte (of the UTF-8 text) except
    A-Z a-z 0-9 - . _ ~ and /, with capital hex digits. Query (after the first ``?``):
    ``canonical_query``; an empty query is no query (no ``?``). So ``/api/v1/orders/%41BC/``,
    ``/api/v1/orders/ABC/`` and ``/api/v1/orders/%61BC/`` sign ``/api/v1/orders/ABC/``,
    ``/api/v1/orders/%61BC/`` ``/api/v1/orders/aBC/``, and ``/api/v1/orders/订单/``
    ``/api/v1/orders/%E8%AE%A2%E5%8D%95/``. The server computes the same string from the path
    it receives (decoded, by the WSGI contract) and the query (undecoded)."""
    path, _sep, query = target.partition("?")
    out = canonical_path_bytes(unquote_to_bytes(path))
    return out + ("?" + canonical_query(query) if query else "")


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body or b"").hexdigest()


def string_to_sign(*, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    return "\n".join([method.upper(), path, str(timestamp), nonce, body_digest(body)])


def signature_compute(*, secret: str, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    message = string_to_sign(method=method, path=path, timestamp=timestamp, nonce=nonce, body=body)
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()
