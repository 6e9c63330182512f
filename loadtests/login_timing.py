"""How long a console login check takes for a known user with a wrong password, the right
password, and an unknown user (they should match: no user-name oracle by timing).

    python -m loadtests.login_timing [--rounds 12] [--tries 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

from console import auth


def timed(users: dict[str, bytes], name: str, password: str, tries: int) -> float:
    samples = []
    for _ in range(tries):
        started = time.perf_counter()
        auth.verify(users, name, password)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=12, help="bcrypt cost of the configured user")
    ap.add_argument("--tries", type=int, default=20)
    args = ap.parse_args()
    import bcrypt

    users = {"ana": bcrypt.hashpw(b"right-password", bcrypt.gensalt(rounds=args.rounds))}
    auth.verify(users, "nobody", "x")  # build the dummy hash once, as the console does
    known_wrong = timed(users, "ana", "wrong-password", args.tries)
    known_right = timed(users, "ana", "right-password", args.tries)
    unknown = timed(users, "nobody", "wrong-password", args.tries)
    print(f"console login check, bcrypt cost {args.rounds}, median of {args.tries}: "
          f"known user wrong password {known_wrong:.0f} ms, right password {known_right:.0f} ms, "
          f"unknown user {unknown:.0f} ms (ratio unknown/known {unknown / known_wrong:.2f})")


if __name__ == "__main__":
    main()
