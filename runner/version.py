"""runner's version: the package's (pyproject.toml says the same; a test keeps them equal).

A leaf module, so what records the version (the spans' resource, cache entries, the
check cache) reads it without importing the package's facade nor scanning the
installed distributions.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
