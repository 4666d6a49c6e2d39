"""worldgen: text → 360° panorama → layered 3D world, as an asynchronous service."""

__version__ = "0.1.0"
