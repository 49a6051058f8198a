"""Command line of the agent: ``serve --workdir W`` (the JSON-lines protocol) and ``info``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional

DEFAULT_WORKDIR = os.path.join("~", ".edgenas")


def main(argv: Optional[List[str]] = None) -> int:
    from . import agent_version, files, fingerprint

    ap = argparse.ArgumentParser(prog="edgenas-agent", description="edgenas device agent")
    sub = ap.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="speak the JSON-lines protocol on stdin/stdout")
    serve.add_argument("--workdir", default=DEFAULT_WORKDIR)
    info = sub.add_parser("info", help="print the device fingerprint as JSON")
    info.add_argument("--runtime", default=None)
    info.add_argument("--threads", type=int, default=None)
    info.add_argument("--precision", default=None)
    sub.add_parser("version", help="print the agent version (SHA-256 of this zipapp)")
    args = ap.parse_args(argv)
    if args.command == "serve":
        from .server import serve_stdio

        return serve_stdio(files.init_workdir(args.workdir))
    if args.command == "info":
        settings = {k: v for k, v in (("runtime", args.runtime), ("threads", args.threads),
                                      ("precision", args.precision)) if v is not None}
        fp, digest, state = fingerprint.collect(settings, agent_version=agent_version())
        print(json.dumps({"fingerprint": fp, "fingerprint_hash": digest, "state": state}, indent=2))
        return 0
    if args.command == "version":
        print(agent_version())
        return 0
    ap.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
