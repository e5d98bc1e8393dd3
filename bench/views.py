from django.http import Http404, HttpResponse

from catalog.models import Product


def product_price(request, slug):
    """The baseline: a trivial view doing one indexed query (a product by its unique slug)."""
    try:
        pk, price = Product.objects.values_list("pk", "price").get(slug=slug)
    except Product.DoesNotExist:
        raise Http404 from None
    return HttpResponse(f"{pk} {price}\n", content_type="text/plain")
