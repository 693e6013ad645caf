"""The ``pice`` command: the top layer, the one package that may import every other one."""
