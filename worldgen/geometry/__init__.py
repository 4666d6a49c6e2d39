"""Vectorised spherical geometry shared by the stages (projections, rays, meshes)."""
