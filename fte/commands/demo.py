"""`fte demo traffic`: real support messages through the ingress on all three channels.

  fte demo traffic --rate 2 --duration 60     2 messages a second for a minute, then a summary
  fte demo traffic --service                  what `fte up` runs: DEMO_TRAFFIC_RATE, until stopped,
                                              in development only (otherwise it idles)
"""

from __future__ import annotations

import signal
import threading

from sandbox.demo_traffic import CHANNELS, DemoTraffic


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="demo helpers")
    sub = p.add_subparsers(dest="demo_command", required=True)
    t = sub.add_parser("traffic", help="replay ../shared/data messages through the ingress")
    t.add_argument("--rate", type=float, default=1.0, help="messages a second (default 1)")
    t.add_argument("--duration", type=float, default=60.0, help="seconds; 0 runs until stopped")
    t.add_argument("--channels", default=",".join(CHANNELS), help="comma separated subset of email,whatsapp,web")
    t.add_argument("--seed", type=int, default=11)
    t.add_argument("--ingress-url", help="default http://INGRESS_HOST:INGRESS_PORT")
    t.add_argument("--sandbox-url", help="local Gmail API server, default http://127.0.0.1:SANDBOX_PORT")
    t.add_argument("--service", action="store_true",
                   help="run as an `fte up` service: DEMO_TRAFFIC_RATE until stopped, development only")
    t.set_defaults(func=run)


def run(args, settings) -> int:
    stopped = threading.Event()
    if args.service and (settings.ENVIRONMENT != "development" or settings.DEMO_TRAFFIC_RATE <= 0):
        print("demo traffic is off (development only; DEMO_TRAFFIC_RATE > 0 turns it on)")
        _until_signalled(stopped)  # idle, so the supervisor does not restart us in a loop
        return 0
    channels = tuple(c.strip() for c in args.channels.split(",") if c.strip())
    unknown = set(channels) - set(CHANNELS)
    if unknown:
        print(f"unknown channel(s): {', '.join(sorted(unknown))}")
        return 2
    sandbox_port = getattr(settings, "SANDBOX_PORT", 8025)
    traffic = DemoTraffic(
        settings,
        ingress_url=args.ingress_url or f"http://{settings.INGRESS_HOST}:{settings.INGRESS_PORT}",
        sandbox_url=args.sandbox_url or f"http://127.0.0.1:{sandbox_port}",
        channels=channels,
        seed=args.seed,
    )
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: traffic.stop())
    rate, duration = (settings.DEMO_TRAFFIC_RATE, 0.0) if args.service else (args.rate, args.duration)
    if args.service and not traffic.wait_for_ingress():
        return 0
    print(f"demo traffic: {rate:g} message(s)/s on {', '.join(channels)}"
          + (f" for {duration:g}s" if duration > 0 else " until stopped"), flush=True)
    traffic.run(rate, duration)
    print(traffic.summary())
    return 0


def _until_signalled(event: threading.Event) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: event.set())
    event.wait()
