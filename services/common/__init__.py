"""Code every service shares: app factory, settings, HTTP client, problem+json."""
