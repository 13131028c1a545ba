"""imgsearch: image similarity search over your own photo collection."""

__version__ = "0.1.0"
