"""Experiments on the whole system, with their results beside them (``results/``): the
benchmark (``make bench``), the fault drills (``make drills``), load (``make load``)."""
