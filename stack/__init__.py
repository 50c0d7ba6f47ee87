"""Run the stacks: the native one (``make dev``, and ``make up`` without a Docker
engine: :mod:`stack.native` says what stands in for what), ``make up``'s choice of
side (``stack.sh``), faults on purpose in either (:mod:`stack.faults`), and what a
user checks once one runs (:mod:`stack.verify`, ``make verify-stack``).

See ``python -m stack --help``.
"""
