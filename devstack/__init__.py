"""Run the demo's whole pipeline natively, without Docker (``make dev``).

See ``python -m devstack --help``; :mod:`devstack.native` says what stands in for what.
"""
