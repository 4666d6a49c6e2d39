"""Writers for the world's files: PLY, Draco, GLB, previews."""
