"""Small text forms shared by every app: how an email address is compared, and how a secret
is shown masked."""


def email_normalise(email: str) -> str:
    """An address as stored and compared (guest orders, credit events, restock alerts): stripped,
    lower case."""
    return (email or "").strip().lower()


def mask_ends(text: str, fill: str = "*") -> str:
    """The first and last characters, the rest as ``fill``: 1****************X, 张*丰. A
    two-character text keeps its first only (张*)."""
    if not text:
        return ""
    if len(text) <= 2:
        return text[0] + fill * (len(text) - 1)
    return text[0] + fill * (len(text) - 2) + text[-1]


# The mailbox providers most buyers here use (and a few worldwide): an address one keystroke away
# from one of them is most likely that one mistyped ("qq.con", "163.cm", "gmial.com").
MAIL_DOMAINS = (
    "qq.com",
    "163.com",
    "126.com",
    "foxmail.com",
    "sina.com",
    "sina.cn",
    "sohu.com",
    "yeah.net",
    "aliyun.com",
    "139.com",
    "189.cn",
    "outlook.com",
    "hotmail.com",
    "live.com",
    "gmail.com",
    "icloud.com",
    "yahoo.com",
    # Real ones near those, so that they are not taken for slips.
    "163.net",
    "263.net",
    "21cn.com",
    "tom.com",
    "vip.qq.com",
    "vip.163.com",
    "vip.126.com",
    "vip.sina.com",
    "live.cn",
    "msn.com",
    "me.com",
    "mac.com",
)


def _distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
    neighbours, each 1 ("gmial" -> "gmail" is 1)."""
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            row[j] = min(rows[i - 1][j] + 1, row[j - 1] + 1, rows[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[i - 2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def email_domain_suggestion(email: str, *, confirmed: str = "") -> str | None:
    """The address with a well-known provider's domain, when the one typed is a likely misspelling
    of it (one edit away; two for the longer names), else None. A suggestion, never a refusal: the
    buyer may confirm the address as typed, by submitting it again as ``confirmed`` (the address a
    form pointed out, sent back with it): then None too."""
    address = email_normalise(email)
    if address == email_normalise(confirmed):
        return None
    local, _at, domain = address.rpartition("@")
    if not local or not domain or domain in MAIL_DOMAINS:
        return None
    # The nearest provider; of those equally near, the first listed.
    distance, _order, best = min((_distance(domain, known), i, known) for i, known in enumerate(MAIL_DOMAINS))
    if distance == 1 or (distance == 2 and len(best) >= 9):
        return f"{local}@{best}"
    return None
