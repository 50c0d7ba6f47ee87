"""Run the demo's whole pipeline natively, without Docker (``make dev``).

See ``python -m stack --help``; :mod:`stack.native` says what stands in for what.
"""
