"""Compatibility layers: other systems' APIs mapped onto hpcbridge's own."""
