"""Recipes: the versioned sources of packages, and the repositories that hold them."""
