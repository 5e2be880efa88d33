"""The client side of batchgate: the Python client, its update-stream reader, and the
`batchgate` command built on them (cli), with how it shows answers to a person (formatting).

    from batchgate.client import BatchgateClient, job_spec
"""

from batchgate.client.batch_client import DEFAULT_ADDRESS, BatchgateClient, job_spec

__all__ = ["DEFAULT_ADDRESS", "BatchgateClient", "job_spec"]
