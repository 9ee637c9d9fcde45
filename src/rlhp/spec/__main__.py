"""The command line: `python -m rlhp.spec import|narrow ...` (see rlhp.spec)."""

import argparse
import sys
from pathlib import Path

import rlhp.spec
from rlhp.record import AnalysisError
from rlhp.spec import SpecError, import_spec, narrow
from rlhp.spec._import import train_command


def _write(text: str, out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise SpecError(f"{out} exists; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


def _parser() -> argparse.ArgumentParser:
    doc = (rlhp.spec.__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m rlhp.spec", description=doc)
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="an SLM-Lab spec as an rlhp search preset")
    imp.add_argument("spec", type=Path)
    imp.add_argument("spec_name", nargs="?")
    imp.add_argument("-o", "--output", type=Path, help="default: conf/search/SPEC_NAME.yaml")
    imp.add_argument(
        "-s", "--set", action="append", default=[], metavar="VAR=VALUE", help="a spec variable"
    )
    nar = sub.add_parser("narrow", help="stage 2: a preset spanning a search's top-k trials")
    nar.add_argument("sweep_dir", type=Path)
    nar.add_argument("-o", "--output", type=Path, required=True)
    nar.add_argument("--top_k", type=int, default=5)
    nar.add_argument("--max_session", type=int, default=4, help="seeds per trial")
    nar.add_argument("--sessions", type=int, help=argparse.SUPPRESS)  # before 2026-12
    nar.add_argument("--n_trials", type=int, default=12)
    nar.add_argument("--pad", type=float, default=0.1)
    for p in (imp, nar):
        p.add_argument("--force", action="store_true", help="replace an existing output file")
    return parser


def _narrow(args: argparse.Namespace) -> Path:
    if args.top_k < 2:
        raise SpecError(f"--top_k must be at least 2, got {args.top_k}")
    if args.sessions is not None:
        print("rlhp.spec: warning: --sessions is deprecated; use --max_session", file=sys.stderr)
        args.max_session = args.sessions
    out = args.output
    text = narrow(args.sweep_dir, out.stem, args.top_k, args.max_session, args.n_trials, args.pad)
    _write(text, out, args.force)
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "import":
            sets = dict(_assignment(a) for a in args.set)
            presets = import_spec(args.spec, args.spec_name, sets, args.output)
            for out, text, _, _ in presets:
                _write(text, out, args.force)
            for out, _, dropped, notes in presets:
                for line in [*notes, *(f"not carried over: {d}" for d in dropped)]:
                    print(f"rlhp.spec: {line}", file=sys.stderr)
                print(f"rlhp.spec: wrote {out}; search it with {train_command(out)}")
        else:
            out = _narrow(args)
            print(f"rlhp.spec: wrote {out}; search it with {train_command(out)}")
    except (SpecError, AnalysisError, OSError) as e:
        print(f"rlhp: error: {e}", file=sys.stderr)
        return 2
    return 0


def _assignment(text: str) -> tuple[str, str]:
    """VAR=VALUE of --set."""
    var, sep, value = text.partition("=")
    if not sep or not var:
        raise SpecError(f"--set takes VAR=VALUE, got {text!r}")
    return var, value


if __name__ == "__main__":
    sys.exit(main())
