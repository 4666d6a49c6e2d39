"""The HTTP API (FastAPI): routes, schemas and error handling, separated."""
