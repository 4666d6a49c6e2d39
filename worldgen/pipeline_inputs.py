"""Names of the inputs a job reads besides its uploads (shared by the workers and the pipeline)."""

SOURCE_WORLD_INPUT = "source_world"
"""The source world's panorama.png, for a request with `source_world_id`."""
