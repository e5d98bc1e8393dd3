"""Django's ``{% extends %}`` and ``{% url %}``, with what they look up kept per process; built
into every template (``TEMPLATES["OPTIONS"]["builtins"]``, after Django's own, so they replace
theirs). What they render is Django's, byte for byte.

``extends``: Django's ``ExtendsNode.render`` walks the root template's whole node tree for its
``{% block %}`` nodes on every render (``get_nodes_by_type``: base.html's navigation, footer and
all, about 25 nested node lists per page). A compiled template does not change while it is the
same object: the cached loader hands out the same ``Template`` until it is reset (Django's
autoreloader resets it when a template changes; the new ``Template`` gets its own entry), so
its block map is kept per template object, weakly (a dropped template takes its entry along).

``url``: ``reverse`` (about 35 µs a call: the resolver's per-language dictionaries, the
pattern's candidates, quoting) is kept per process for each URL name, arguments, current app,
URL conf (the resolver object: ``clear_url_caches`` makes a new one), script prefix and
language (patterns may be translated), the least recently used out first. Only arguments of
plain types (str, int, UUID) are kept: anything else is reversed each time, as Django does.
"""

import weakref
from uuid import UUID

from django import template
from django.template.base import TextNode
from django.template.defaulttags import URLNode
from django.template.defaulttags import url as django_url
from django.template.loader_tags import BLOCK_CONTEXT_KEY, BlockContext, BlockNode, ExtendsNode, do_extends
from django.urls import NoReverseMatch, get_resolver, get_script_prefix, get_urlconf, reverse
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString
from django.utils.translation import get_language

from marketplace.localcache import Drawn

register = template.Library()

# Compiled root template -> its {% block %} nodes by name (None: the parent extends another).
_parent_blocks: "weakref.WeakKeyDictionary[template.Template, dict[str, BlockNode] | None]"
_parent_blocks = weakref.WeakKeyDictionary()


def root_blocks(parent: template.Template) -> dict[str, BlockNode] | None:
    """The block nodes a root template adds to the block context; None when ``parent`` itself
    extends another (its ExtendsNode adds them when it renders). Django's rule: a template is a
    root unless its first node that is not text is an ExtendsNode."""
    try:
        return _parent_blocks[parent]
    except KeyError:
        pass
    blocks = None
    for node in parent.nodelist:
        if not isinstance(node, TextNode):
            if not isinstance(node, ExtendsNode):
                blocks = {n.name: n for n in parent.nodelist.get_nodes_by_type(BlockNode)}
            break
    _parent_blocks[parent] = blocks
    return blocks


class KeptExtendsNode(ExtendsNode):
    def render(self, context):
        compiled_parent = self.get_parent(context)
        block_context = context.render_context.get(BLOCK_CONTEXT_KEY)
        if block_context is None:
            block_context = context.render_context[BLOCK_CONTEXT_KEY] = BlockContext()
        block_context.add_blocks(self.blocks)
        blocks = root_blocks(compiled_parent)
        if blocks:
            block_context.add_blocks(blocks)
        with context.render_context.push_state(compiled_parent, isolated_context=False):
            return compiled_parent._render(context)


@register.tag("extends")
def kept_extends(parser, token):
    node = do_extends(parser, token)
    return KeptExtendsNode(node.nodelist, node.parent_name, node.template_dirs)


_reversed = Drawn(limit=4096)  # URLs by their key: never stale, only forgotten (least recently used)
PLAIN = (str, int, UUID)


def kept_reverse(viewname: str, args=(), kwargs=None, current_app: str | None = None) -> str:
    """``django.urls.reverse(viewname, args=args, kwargs=kwargs, current_app=current_app)``,
    kept per process (see the module's docstring); raises ``NoReverseMatch`` as it does."""
    kwargs = kwargs or {}
    if not isinstance(viewname, str) or not all(type(a) in PLAIN for a in (*args, *kwargs.values())):
        return reverse(viewname, args=args, kwargs=kwargs, current_app=current_app)
    urlconf = get_urlconf()
    key = (
        get_resolver(urlconf),
        get_script_prefix(),
        get_language(),
        viewname,
        tuple(args),
        tuple(sorted(kwargs.items())),
        current_app,
    )
    return _reversed.get_or_draw(
        key, lambda: reverse(viewname, urlconf=urlconf, args=args, kwargs=kwargs, current_app=current_app)
    )


class KeptURLNode(URLNode):
    def render(self, context):
        args = [arg.resolve(context) for arg in self.args]
        kwargs = {k: v.resolve(context) for k, v in self.kwargs.items()}
        view_name = self.view_name.resolve(context)
        try:
            current_app = context.request.current_app
        except AttributeError:
            try:
                current_app = context.request.resolver_match.namespace
            except AttributeError:
                current_app = None
        url = ""
        try:
            url = kept_reverse(view_name, args=args, kwargs=kwargs, current_app=current_app)
        except NoReverseMatch:
            if self.asvar is None:
                raise
        if self.asvar:
            context[self.asvar] = url
            return ""
        if context.autoescape:
            url = conditional_escape(url)
        return url


@register.tag("url")
def kept_url(parser, token):
    node = django_url(parser, token)
    return KeptURLNode(node.view_name, node.args, node.kwargs, node.asvar)


_quiet = Drawn(limit=256)  # what an include draws when it shows nothing, by (name, language)


def include_unless_quiet(context, name: str, shown: bool, **values) -> SafeString:
    """``{% include name with **values %}`` when ``shown``; otherwise the text the template drew
    the first time it was not shown (kept per process, name and language), without rendering it.
    For a part that draws only fixed text (its whitespace) unless a condition holds: ``shown`` is
    that condition, written again in Python by the caller (each caller's test renders the
    template quiet and compares). Django's include costs a template lookup, a context push and
    every node of the part even when it shows nothing (15-50 µs on the order page)."""
    if not shown:
        return _quiet.get_or_draw((name, get_language()), lambda: _include(context, name, values))
    return _include(context, name, values)


def _include(context, name: str, values: dict) -> SafeString:
    """``{% include name with **values %}`` in ``context``: the template of the rendering engine,
    drawn in a pushed copy of the context, as Django's ``IncludeNode`` draws it."""
    part = context.template.engine.get_template(name)
    with context.push(**values):
        return part.render(context)
