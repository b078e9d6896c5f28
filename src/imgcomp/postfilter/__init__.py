"""Pixel-domain corrections any system may add to its output (the low-pass layer today)."""
