"""``make load``: Locust users for the gateway (``locustfile.py``) and the rules they
follow (``rules.py``, importable without Locust, which patches the process with gevent)."""
