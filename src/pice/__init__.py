"""PICE: progressive inference across cloud and edge.

This package holds what the gateway and the edge agent share: the OpenAI protocol models, the
error tree, HTTP plumbing (auth, body limit, SSE), model provisioning and the ``pice`` CLI.
"""

__version__ = "0.1.0"
