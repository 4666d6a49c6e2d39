"""Pipeline stages, one per file: text/image → panorama, layers, depth, mesh, export."""
