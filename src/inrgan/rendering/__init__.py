"""Rendering generated images: pictures, grids, any-resolution renders, interpolations and videos."""
