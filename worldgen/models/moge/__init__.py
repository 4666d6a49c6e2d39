"""MoGe-1 (monocular geometry) in our own code: transformers' DINOv2 backbone plus our head,
loading the official `model.pt` checkpoint."""
