"""The SageMaker Processing backend: the API only submits; our image runs each job on a GPU
instance and results land in S3."""
