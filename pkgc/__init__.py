"""pkgc: packages compiled your way on a build farm, installed into any prefix."""

__version__ = "0.1.0"
