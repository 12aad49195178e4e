"""``cage push`` and ``cage convert-authors-checkpoint``: parsers and handlers (thin; logic in this package)."""

from __future__ import annotations

import argparse
import sys

EXIT_OK = 0
EXIT_FAILED = 1
# authors_checkpoint.VARIANTS's keys, spelled out so that `cage --help` does not import torch
# (tests/test_cli_startup.py checks that the two agree).
VARIANT_NAMES = ["affectnet8-combined", "affectnet7-combined", "affectnet8-va", "affectnet7-va"]


def add_push_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``cage push MODEL_DIR --repo-id ID [...]``."""
    parser = subparsers.add_parser(
        "push",
        help="upload a model folder with its model card to the Hugging Face Hub (one commit)",
        description="Upload weights (safetensors), config with auto_map, code files, processor config and a "
        "rendered model card to a Hub repository in one commit. --dry-run DIR writes exactly that folder "
        "instead and sends nothing.",
    )
    parser.add_argument("model_dir", help="model folder written by cage (init-model, training, conversion)")
    parser.add_argument("--repo-id", required=True, help="Hub repository, namespace/name (e.g. cage/maxvit-va)")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--revision", default=None, help="branch to commit to (created if missing; default main)")
    parser.add_argument("--commit-message", default=None, help="commit message")
    parser.add_argument("--metrics", default=None, help="metrics JSON written by `cage evaluate`, for the card")
    parser.add_argument("--license", default=None, help="Hub license id for the card (default: from the config)")
    parser.add_argument("--dry-run", metavar="DIR", default=None, help="write the upload folder to DIR; send nothing")
    parser.set_defaults(handler=run_push)


def run_push(args: argparse.Namespace) -> int:
    from .push import HubPushError, push_model_folder, stage_model_folder

    try:
        if args.dry_run:
            path = stage_model_folder(args.model_dir, args.dry_run, args.repo_id, args.metrics, args.license)
            print(f"cage push: dry run: wrote the upload for {args.repo_id} to {path}", file=sys.stderr)
        else:
            url = push_model_folder(
                args.model_dir,
                args.repo_id,
                private=args.private or None,
                revision=args.revision,
                commit_message=args.commit_message,
                metrics=args.metrics,
                license=args.license,
            )
            print(f"cage push: pushed {args.model_dir} to {url}", file=sys.stderr)
    except HubPushError as error:
        print(f"cage push: {error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def add_convert_authors_checkpoint_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``cage convert-authors-checkpoint model.pt --variant V --out DIR``."""
    parser = subparsers.add_parser(
        "convert-authors-checkpoint",
        help="convert a checkpoint of the CAGE authors' training scripts into a cage model folder",
        description="Read a model.pt written by the CAGE authors' train.py (torchvision maxvit_t with their "
        "head; loaded with weights_only=True) and write a cage model folder computing the same function.",
    )
    parser.add_argument("checkpoint", help="the authors' model.pt (a state dict saved with torch.save)")
    parser.add_argument("--variant", required=True, choices=VARIANT_NAMES, help="which of their scripts wrote it")
    parser.add_argument("--out", required=True, help="model folder to write")
    parser.add_argument(
        "--weights-status",
        default="trained",
        choices=["trained", "untrained"],
        help="recorded in the config; 'untrained' for random test networks (default: trained)",
    )
    parser.set_defaults(handler=run_convert_authors_checkpoint)


def run_convert_authors_checkpoint(args: argparse.Namespace) -> int:
    from .authors_checkpoint import AuthorsCheckpointError, convert_authors_checkpoint

    try:
        path = convert_authors_checkpoint(args.checkpoint, args.variant, args.out, weights_status=args.weights_status)
    except (FileNotFoundError, AuthorsCheckpointError) as error:
        print(f"cage convert-authors-checkpoint: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(f"cage convert-authors-checkpoint: wrote {args.variant} model to {path}", file=sys.stderr)
    return EXIT_OK
