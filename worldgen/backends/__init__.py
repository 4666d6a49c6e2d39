"""Backends run queued jobs: `local` (a worker process on this machine) or `sagemaker`."""
