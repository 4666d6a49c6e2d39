"""The container contract (SageMaker Processing) and the entrypoint that runs one job under it."""
