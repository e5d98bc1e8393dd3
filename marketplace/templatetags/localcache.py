"""``{% localcache "name" flag ... %}...{% endlocalcache %}``: a fragment rendered once per
process every ``marketplace.localcache.LOCAL_SECONDS`` for each language and value of the flags.

For the parts of every page that are the same for everyone who sees them alike (the footer,
the trust bar): what they show comes from values that are themselves kept that long per
process (agreements, qualifications, promises). Never around anything personal (a user's
email, a CSRF token, the current path): vary only on a few plain flags."""

from django import template
from django.utils.safestring import mark_safe
from django.utils.translation import get_language

from marketplace.localcache import FRAGMENT, local_fragment

register = template.Library()


class LocalCacheNode(template.Node):
    def __init__(self, nodelist, name, flags):
        self.nodelist = nodelist
        self.name = name
        self.flags = flags

    def render(self, context):
        values = [str(bool(f.resolve(context))) for f in self.flags]
        key = FRAGMENT + ":".join([self.name, get_language() or "", *values])
        return mark_safe(local_fragment(key, lambda: self.nodelist.render(context)))  # noqa: S308 (rendered by the template engine, escaped there)


@register.tag("localcache")
def do_localcache(parser, token):
    bits = token.split_contents()
    if len(bits) < 2 or bits[1][0] not in "\"'" or bits[1][0] != bits[1][-1]:
        raise template.TemplateSyntaxError('{% localcache "name" [flag ...] %} needs a quoted name')
    nodelist = parser.parse(("endlocalcache",))
    parser.delete_first_token()
    return LocalCacheNode(nodelist, bits[1][1:-1], [parser.compile_filter(b) for b in bits[2:]])
