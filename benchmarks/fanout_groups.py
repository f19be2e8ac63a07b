#!/usr/bin/env python
"""In-process micro-benchmark of one broadcast's fan-out cost by the number
of subscription groups (distinct subscription ids): ``Topic.publish_batch``
plus the raw WebSocket encoding each group's batch gets, per message.

    python benchmarks/fanout_groups.py                 # this checkout
    python benchmarks/fanout_groups.py --tree /tmp/old # another checkout, for a baseline

Clients choose their ids, so the worst case is one group per subscriber
(a resume loop, remounting React components); the usual case is one
group (``sub-0``). Run both trees in the same session: the machine is noisy.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", default=os.path.dirname(HERE), help="the checkout to measure")
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    sys.path.insert(0, args.tree)
    from anonchat.chat.fanout import Topic
    from anonchat.web import websocket

    encoding = getattr(websocket, "TEXT_MESSAGES", None)

    class Subscriber:
        version = "1.2"

        def deliver(self, out: Any) -> None:
            if encoding is not None:
                out.encoded(encoding)
            else:  # trees before the spliced batches
                old: Any = websocket
                out.encoded_all(old._WIRE, old._prepare, b"".join)

    body = ('{"id":"1796447085297-0","type":"CHAT","sender":"익명-30509","content":'
            '"hello there, this is a chat message","timestamp":"2026-12-05T05:04:45.297Z"}').encode()
    print(f"tree {args.tree}")
    print("| groups | subscribers per group | batch | µs per message |")
    print("| ---: | ---: | ---: | ---: |")
    for groups, per_group, batch in ((1, 20, 20), (26, 1, 20), (50, 1, 20), (50, 1, 100), (200, 1, 20)):
        topic = Topic("/topic/chat")
        for g in range(groups):
            for _ in range(per_group):
                topic.add(Subscriber(), f"r{g}-{g * 7}")  # type: ignore[arg-type]
        messages = [(f"1796447085297-{i}", body) for i in range(batch)]
        started = time.perf_counter()
        for _ in range(args.rounds):
            topic.publish_batch(messages)
        per_message = (time.perf_counter() - started) / (args.rounds * batch) * 1e6
        print(f"| {groups} | {per_group} | {batch} | {per_message:.1f} |")


if __name__ == "__main__":
    main()
