"""Our FLUX runtime: diffusers' model classes driven by our own loaders and sampling loop.

The panorama-specific parts (wrap-around seam handling, seed convention, streamed loading with
fused LoRAs) live here; the stages in `worldgen.stages` compose them.
"""
