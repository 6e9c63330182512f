"""`fte model train | show`: the learned routing model (flows/routing.py).

`train` reads the labelled sets (Bitext dev and HINT3 train under --data, the examples in
flows/routing_examples.yaml, the leads' labels stored by the console), fits on all of them
(the held-out parts included: the shipped model learns from every labelled message;
`--exclude-heldout` leaves them out, the model `fte eval --split heldout` needs), prints
grouped cross-validated figures on the non-held-out part, compares the new
model with the current one on the leads' labels, and installs it (unless it is worse there
and --force is not given). The last line printed is the new model's metadata as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fte.settings import REPO_ROOT

WRITTEN_EXAMPLES = REPO_ROOT / "flows" / "routing_examples.yaml"
LEAD_LABELS_SQL = "SELECT id, text, label FROM routing_labels ORDER BY id"


def register(subparsers) -> None:
    p = subparsers.add_parser("model", help="train or show the learned routing model")
    sub = p.add_subparsers(dest="model_command", required=True)
    t = sub.add_parser("train", help="train, cross-validate, compare and install the model")
    t.add_argument("--data", type=Path, default=None,
                   help="folder with bitext/ and hint3/ (default: settings SHARED_DATA_DIR)")
    t.add_argument("--folds", type=int, default=5, help="grouped CV folds (0: skip CV)")
    t.add_argument("--no-leads", action="store_true", help="do not read the leads' labels")
    t.add_argument("--exclude-heldout", action="store_true",
                   help="leave out the held-out parts of Bitext and HINT3 (for held-out figures)")
    t.add_argument("--if-absent", action="store_true", help="only when no model is installed")
    t.add_argument("--force", action="store_true", help="install even if worse on the leads' labels")
    t.set_defaults(func=run_train)
    s = sub.add_parser("show", help="print the installed model's metadata")
    s.set_defaults(func=run_show)


def lead_labels(database_url: str) -> list[dict]:
    """The console's labels; none when the database is not reachable or not migrated."""
    import psycopg
    from psycopg.rows import dict_row

    try:
        with psycopg.connect(database_url, connect_timeout=5, row_factory=dict_row) as conn:
            return list(conn.execute(LEAD_LABELS_SQL).fetchall())
    except psycopg.Error:
        return []


def accuracy_on(router, rows: list[dict]) -> float | None:
    if router is None or not rows:
        return None
    routes = router.route_many([r["text"] for r in rows])
    return round(sum(r["label"] == route.label for r, route in zip(rows, routes)) / len(rows), 4)


def run_train(args, settings) -> int:
    from flows import routing
    from flows.routing_data import load_examples

    path = routing.model_path(settings)
    if args.if_absent and path.exists():
        print(f"model present: {path}")
        return 0
    leads = [] if args.no_leads else lead_labels(settings.database_url)
    data = args.data or settings.SHARED_DATA_DIR
    examples = load_examples(data, WRITTEN_EXAMPLES, leads)
    if not examples:
        print(f"no training data under {data} or {WRITTEN_EXAMPLES}", file=sys.stderr)
        return 2
    new = routing.train(examples, cv_folds=args.folds, include_heldout=not args.exclude_heldout)
    current = None
    if path.exists():
        try:
            current = routing.load(path)
        except (ValueError, OSError, KeyError) as exc:
            print(f"current model unreadable ({exc}); replacing it", file=sys.stderr)
    new_acc, cur_acc = accuracy_on(new, leads), accuracy_on(current, leads)
    print(f"leads' labels: {len(leads)}; accuracy new {new_acc}, current {cur_acc}"
          f"{' (' + current.version + ')' if current else ''}", file=sys.stderr)
    if cur_acc is not None and new_acc is not None and new_acc < cur_acc and not args.force:
        print("the new model is worse on the leads' labels: kept the current one "
              "(--force installs it anyway)", file=sys.stderr)
        print(json.dumps({**new.meta, "installed": False}))
        return 1
    routing.save(new, path)
    print(f"installed {new.version} at {path}", file=sys.stderr)
    print(json.dumps({**new.meta, "installed": True, "leads_accuracy": {"new": new_acc,
                                                                         "current": cur_acc}}))
    return 0


def run_show(args, settings) -> int:
    from flows import routing

    path = routing.model_path(settings)
    if not path.exists():
        print(f"no model at {path}: run `fte model train`", file=sys.stderr)
        return 1
    print(json.dumps(routing.load(path).meta))
    return 0
