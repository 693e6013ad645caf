"""The PICE gateway: an OpenAI-compatible front door for progressive inference.

The cloud writes a short numbered sketch, edge agents expand its points in parallel, and the
gateway merges the expansions into one streamed answer. See ``docs/architecture.md``.
"""
