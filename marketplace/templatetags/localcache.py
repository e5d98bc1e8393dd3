"""``{% localcache "name" flag ... %}...{% endlocalcache %}``: a fragment rendered once per
process every ``marketplace.localcache.LOCAL_SECONDS`` for each language and value of the flags.

For the parts of every page that are the same for everyone who sees them alike (the footer,
the trust bar, the navigation): what they show comes from values that are themselves kept that
long per process (agreements, qualifications, promises). Never around anything personal (a
user's email, a CSRF token, the current path) unless it is inside ``{% percall %}``: vary only on
a few plain flags.

``{% percall %}...{% endpercall %}`` inside a fragment is rendered on every call, in the
caller's context, and put in its place in the kept text: the navigation keeps its links and
labels per language and kind of viewer, and draws the viewer's own email, CSRF token, search
query and path each time. Which ``percall`` parts a fragment holds may depend only on the
fragment's flags (an ``{% if %}`` on anything else around one would be kept as first seen).

A fragment inside another fragment being kept is drawn into the outer one's text (its percall
parts become the outer's): base.html keeps the whole page frame per language and kind of viewer
with the blocks, the CSRF token and the messages as percall parts, and the navigation, footer and
the like inside it (their flags must be among the frame's). Parts whose source is the same plain
text, ``{{ variable }}``s and ``{% csrf_token %}`` (the navigation's two forms' token, the
account link's email twice) are drawn once per call and their text reused: nothing changes the
context between a fragment's parts."""

from django import template
from django.template.base import TextNode, VariableNode
from django.template.defaulttags import CsrfTokenNode
from django.utils.safestring import mark_safe
from django.utils.translation import get_language

from marketplace.localcache import FRAGMENT, local_fragment

register = template.Library()

HOLE = "\x00percall\x00"  # what a percall part leaves in the kept text (never in a page's own text)
CAPTURE = "_localcache_percall"  # the context variable of a fragment being kept: its percall parts


PURE = (TextNode, VariableNode, CsrfTokenNode)  # parts that draw the same text twice in one context


class PerCallNode(template.Node):
    def __init__(self, nodelist):
        self.nodelist = nodelist
        # Its source when made only of PURE nodes (two such parts with one source draw one text).
        self.source: tuple | None = None
        if all(type(node) in PURE for node in nodelist):
            self.source = tuple(
                (type(node).__name__, node.s if type(node) is TextNode else node.token.contents) for node in nodelist
            )

    def render(self, context):
        parts = context.get(CAPTURE)
        if parts is None:  # outside a fragment being kept: an ordinary render
            return self.nodelist.render(context)
        parts.append(self)
        return HOLE


class LocalCacheNode(template.Node):
    def __init__(self, nodelist, name, flags):
        self.nodelist = nodelist
        self.name = name
        self.flags = flags
        self.has_percall = bool(nodelist.get_nodes_by_type(PerCallNode))

    def render(self, context):
        if context.get(CAPTURE) is not None:  # inside a fragment being kept: drawn into its text
            return self.nodelist.render(context)
        values = [str(bool(f.resolve(context))) for f in self.flags]
        key = FRAGMENT + ":".join([self.name, get_language() or "", *values])
        if not self.has_percall:
            return mark_safe(local_fragment(key, lambda: self.nodelist.render(context)))  # noqa: S308 (rendered by the template engine, escaped there)
        texts, calls, same = local_fragment(key, lambda: self._keep(context))
        out = [texts[0]]
        drawn: list[str] = []
        for node, earlier, text in zip(calls, same, texts[1:], strict=True):
            part = node.render(context) if earlier is None else drawn[earlier]
            drawn.append(part)
            out.append(part)
            out.append(text)
        return mark_safe("".join(out))  # noqa: S308 (the kept text and the percall parts: rendered and escaped by the engine)

    def _keep(self, context) -> tuple[list[str], list[PerCallNode], list[int | None]]:
        """The fragment's text split at its percall parts, those parts in order and, for each,
        the index of an earlier part of the same pure source (its text reused) or None."""
        calls: list[PerCallNode] = []
        with context.push({CAPTURE: calls}):
            text = self.nodelist.render(context)
        texts = text.split(HOLE)
        if len(texts) != len(calls) + 1:
            raise template.TemplateSyntaxError(f"localcache {self.name!r}: its text holds a percall marker")
        first: dict[tuple, int] = {}
        same: list[int | None] = []
        for i, node in enumerate(calls):
            same.append(None if node.source is None else first.get(node.source))
            if node.source is not None:
                first.setdefault(node.source, i)
        return texts, calls, same


@register.tag("localcache")
def do_localcache(parser, token):
    bits = token.split_contents()
    if len(bits) < 2 or bits[1][0] not in "\"'" or bits[1][0] != bits[1][-1]:
        raise template.TemplateSyntaxError('{% localcache "name" [flag ...] %} needs a quoted name')
    nodelist = parser.parse(("endlocalcache",))
    parser.delete_first_token()
    return LocalCacheNode(nodelist, bits[1][1:-1], [parser.compile_filter(b) for b in bits[2:]])


@register.tag("percall")
def do_percall(parser, token):
    if len(token.split_contents()) != 1:
        raise template.TemplateSyntaxError("{% percall %} takes no argument")
    nodelist = parser.parse(("endpercall",))
    parser.delete_first_token()
    return PerCallNode(nodelist)
