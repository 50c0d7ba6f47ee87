"""``make trace``: one request's waterfall and log lines, read from either stack's stores."""
