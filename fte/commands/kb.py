"""`fte kb load DIR`: load markdown articles into the knowledge base (idempotent)."""

from __future__ import annotations

from pathlib import Path

from fte.logs import get_logger

log = get_logger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser("kb", help="knowledge base")
    sub = p.add_subparsers(dest="kb_command", required=True)
    load = sub.add_parser("load", help="load markdown articles (front matter: title, intents, tags)")
    load.add_argument("directory", type=Path)
    load.add_argument("--no-prune", action="store_true",
                      help="keep articles loaded earlier from DIR whose file is gone")
    load.add_argument("--overwrite-edited", action="store_true",
                      help="replace articles changed in the console since with the files' text")
    load.set_defaults(func=run_load)


def run_load(args, settings) -> int:
    from flows.embeddings import build_embedder
    from flows.knowledge import load_directory
    from schema.db import connect

    if not args.directory.is_dir():
        print(f"directory: {args.directory} is not a directory")
        return 2
    embedder = build_embedder(settings)
    with connect(settings.database_url) as conn, conn.transaction():
        report = load_directory(conn, args.directory, embedder=embedder, prune=not args.no_prune,
                                overwrite_edited=args.overwrite_edited)
    log.info("kb.loaded", articles=report.articles, embedded=report.embedded_chunks,
             removed=len(report.removed_articles), embedder=embedder.name)
    print(f"{report.articles} article(s), {report.embedded_chunks} chunk(s) embedded, "
          f"{len(report.removed_articles)} removed, {len(report.kept_edited)} kept as edited in the "
          f"console ({embedder.name})")
    return 0
