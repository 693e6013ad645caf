"""``pice tune``: distil teacher data, train a LoRA adapter for the edge model, export it.

Sits at the bench layer (docs/architecture.md): it starts the embedded cloud through
:mod:`pice_stack` and reuses the gateway's sketch and expansion prompts and the edge's own
expansion prompt, so the adapter is trained on exactly what the edge is asked at serve time.
"""
