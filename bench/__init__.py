"""The purchase benchmark (run `python bench/purchase.py`); not part of the product."""
