from django.urls import path

from . import views_catalog as views

# The platform's catalogue pages keep their namespace (catalog:home ...): they live in orders
# because they show each viewer's price (orders.selectors.purchase_infos).
app_name = "catalog"
urlpatterns = [
    path("", views.home, name="home"),
    path("search/", views.search, name="search"),
    path("c/<slug:slug>/", views.category, name="category"),
    path("p/<slug:slug>/", views.product, name="product"),
]
