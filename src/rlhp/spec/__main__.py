"""The command line: `python -m rlhp.spec import|narrow ...` (see rlhp.spec)."""

import argparse
import sys
from pathlib import Path

import rlhp.spec
from rlhp.record import AnalysisError
from rlhp.spec import SpecError, import_spec, narrow


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
            name, text, dropped = import_spec(args.spec, args.spec_name)
            out = args.output or Path("conf/search") / f"{name}.yaml"
            _write(text, out, args.force)
            for d in dropped:
                print(f"rlhp.spec: not carried over: {d}", file=sys.stderr)
        else:
            out = _narrow(args)
    except (SpecError, AnalysisError, OSError) as e:
        print(f"rlhp: error: {e}", file=sys.stderr)
        return 2
    print(
        f"rlhp.spec: wrote {out}; search it with "
        f"python -m rlhp.train -m --config-dir {out.parent.parent} +search={out.stem}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
