"""``python -m traces`` (``make trace``): send a chat request, or take a trace id, and
print its waterfall and log lines from whichever stack runs here."""

import argparse
import json
import os
import sys

from services.gateway.settings import DEMO_API_KEY
from stack.native import RUN_DIR
from traces.view import TraceError, find_stores, trace_view
from traces.waterfall import as_json, print_view


def main() -> int:
    """Print the trace (or its JSON); a clear message and a non-zero exit when it cannot."""
    parser = argparse.ArgumentParser(prog="python -m traces", description=__doc__)
    parser.add_argument("--id", dest="trace_id", help="show this trace instead (any form)")
    parser.add_argument("--message", help="the chat message to send")
    parser.add_argument("--session", help="continue this session")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--timeout", type=float, default=30, help="seconds to wait for the whole trace"
    )
    args = parser.parse_args()
    try:
        view = trace_view(
            find_stores(RUN_DIR),
            trace_id=args.trace_id,
            message=args.message,
            session=args.session,
            api_key=os.environ.get("API_KEY", DEMO_API_KEY),
            timeout=args.timeout,
        )
    except TraceError as exc:
        print(f"make trace: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        print(json.dumps(as_json(view), indent=2))
    else:
        print_view(view)
    return 0


if __name__ == "__main__":
    sys.exit(main())
