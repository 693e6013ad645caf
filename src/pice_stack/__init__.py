"""``pice up``: the whole system on one machine, as supervised child processes.

Above the edge agent and the gateway, which it starts as ``pice edge serve`` / ``pice gateway``
children without importing either. See the layers in ``docs/architecture.md``.
"""
