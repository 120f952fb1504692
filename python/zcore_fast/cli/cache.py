"""`zcore-fast cache [show|clear]`: what the column cache holds, and removing it.

cli.py registers the subcommand (`add_cache_command`) and the scoring flags
(`add_cache_flags`), and hands `cache` runs to `run_cache_command`, which
reports its own errors with the exit statuses of the rest of the CLI: 0
success, 1 runtime error, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from zcore_fast.cache import CACHE_MODES, cache_dir_or_default
from zcore_fast.cache.admin import TEMP_MAX_AGE, Cleared, Listing, clear, scan
from zcore_fast.cache.admin import check_cache_dir as check_directory
from zcore_fast.cli.usage import UsageError

_DIR_HELP = (
    "cache directory (default $ZCORE_FAST_CACHE_DIR, else $XDG_CACHE_HOME/zcore-fast, "
    "else ~/.cache/zcore-fast)"
)


def add_cache_flags(p: argparse.ArgumentParser) -> None:
    """Adds --cache and --cache-dir to a scoring subcommand (select, score)."""
    g = p.add_argument_group("column cache (README: Column cache; CPU engine only)")
    g.add_argument(
        "--cache",
        choices=CACHE_MODES,
        default=None,
        help="score .npy files from a dimension-major copy on disk, built once and reused "
        "while they are unchanged: auto (when the float32 copy would exceed 1 GiB), always "
        "or never (default auto)",
    )
    g.add_argument("--cache-dir", metavar="DIR", help=_DIR_HELP)


def check_cache_dir(value: str | None) -> None:
    """Refuses a --cache-dir that names a file, before any work (the cache
    would fail on it with a bare "[Errno 17] File exists")."""
    if value is not None and Path(value).expanduser().exists():
        if not Path(value).expanduser().is_dir():
            raise UsageError(
                f"--cache-dir {value} is a file, not a directory; give a directory for the "
                "column cache (it is created if missing)"
            )


def add_cache_command(sub: Any) -> None:
    """Adds the `cache` subparser to `sub` (from add_subparsers)."""
    p = sub.add_parser(
        "cache",
        help="show or clear the column cache",
        description=(
            "show: every cached copy with its source files, shape, type and size, and whether "
            "it is stale (a source changed or vanished: it is never used again). clear: remove "
            "every entry (--stale: only stale ones), skipping those a running process uses, "
            f"and temporary files of builds killed over {TEMP_MAX_AGE / 3600:g} h ago."
        ),
    )
    p.add_argument("action", nargs="?", choices=("show", "clear"), default="show")
    p.add_argument("--stale", action="store_true", help="clear: only stale entries")
    p.add_argument("--cache-dir", metavar="DIR", help=_DIR_HELP)
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")


def run_cache_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Runs `zcore-fast cache`; returns the exit status."""
    try:
        if args.stale and args.action != "clear":
            raise UsageError("--stale applies to `cache clear`")
        check_cache_dir(args.cache_dir)
        directory = cache_dir_or_default(args.cache_dir)
        # $ZCORE_FAST_CACHE_DIR naming a file: one line, not "[Errno 20]".
        check_directory(directory, args.cache_dir, create=False)
        if args.action == "show":
            listing = scan(directory)
            print(json.dumps(_listing_json(listing)) if args.json else _show(listing))
        else:
            cleared = clear(directory, stale_only=args.stale)
            print(json.dumps(_cleared_json(directory, cleared)) if args.json else _cleared(cleared))
    except UsageError as e:
        parser.print_usage(sys.stderr)
        print(f"zcore-fast: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if args.debug:
            raise
        print(f"zcore-fast: error: {e}", file=sys.stderr)
        return 1
    return 0


def size_text(n: int) -> str:
    """Bytes for people: 1.4 GiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _show(listing: Listing) -> str:
    if not listing.entries and not listing.temps:
        return f"column cache {listing.directory}: empty"
    lines = [f"column cache {listing.directory}:"]
    for info in listing.entries:
        r = info.record
        what = f"{r['rows']:,} x {r['cols']:,} {r['dtype']}" if r else "?"
        created = f"  created {r['created']}" if r else ""
        state = f"  STALE ({info.problem})" if info.problem else ""
        lines.append(f"  {info.entry.npy.name}  {what}  {size_text(info.bytes)}{created}{state}")
        lines.extend(f"      {path}" for path in info.source_paths)
    for temp in listing.temps:
        lines.append(
            f"  {temp.path.name}  {size_text(temp.bytes)}  temporary: a build running or "
            f"killed {temp.age_seconds / 60:.0f} min ago"
        )
    stale = sum(info.stale for info in listing.entries)
    count = len(listing.entries)
    total = f"{count} {'entry' if count == 1 else 'entries'}, {size_text(listing.total_bytes)}"
    if stale:
        total += f"; {stale} stale (`zcore-fast cache clear --stale` removes them)"
    lines.append(total)
    return "\n".join(lines)


def _cleared(cleared: Cleared) -> str:
    lines = [f"removed {name} ({size_text(size)})" for name, size in cleared.removed]
    lines += [f"kept {name}: in use by a running process" for name in cleared.skipped]
    freed = sum(size for _, size in cleared.removed)
    lines.append(f"{len(cleared.removed)} removed, {size_text(freed)} freed")
    return "\n".join(lines)


def _listing_json(listing: Listing) -> dict[str, Any]:
    entries = []
    for info in listing.entries:
        r = info.record or {}
        entries.append(
            {
                "path": str(info.entry.npy),
                "sources": info.source_paths,
                "rows": r.get("rows"),
                "cols": r.get("cols"),
                "dtype": r.get("dtype"),
                "created": r.get("created"),
                "bytes": info.bytes,
                "stale": info.stale,
                "problem": info.problem,
            }
        )
    temps = [{"path": str(t.path), "bytes": t.bytes} for t in listing.temps]
    return {
        "directory": str(listing.directory),
        "entries": entries,
        "temporary": temps,
        "total_bytes": listing.total_bytes,
    }


def _cleared_json(directory: Path, cleared: Cleared) -> dict[str, Any]:
    return {
        "directory": str(directory),
        "removed": [{"name": name, "bytes": size} for name, size in cleared.removed],
        "skipped": cleared.skipped,
    }
