"""Territories and geometry: the leaf package, importing nothing of ours."""
