"""Model files: where they live (registry), how they are found or fetched (resolver), tiny twins."""
