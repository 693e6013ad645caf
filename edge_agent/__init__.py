"""The PICE edge agent: one GGUF model on a batched llama.cpp engine, served over HTTP.

``engine`` decodes many sequences per step with continuous batching; ``api`` serves it
(``/v1/expand``, ``/v1/chat/completions``, ``/v1/load``); ``cli`` adds ``pice edge``.
Only this package and :mod:`pice`'s shared modules are needed on a device (``pip install
pice[edge]``): nothing here imports httpx or the gateway.
"""
