"""End-to-end workflows built on the rest.

The demo, tagging suggestions and the quick-look image.
"""
