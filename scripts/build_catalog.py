"""Regenerate polyroute's bundled model catalog from LiteLLM's price list (MIT).

LiteLLM ships ``model_prices_and_context_window.json`` inside its wheel on PyPI; this script
reads it from the wheel (litellm itself is never installed), converts it with
:mod:`polyroute.catalog.litellm_import`, writes ``src/polyroute/catalog/data/catalog.json``
(one model per line, so that updates read well in a diff) and prints a summary of what it
kept and what it rejected, and why.

Usage::

    pip download litellm --no-deps -d /tmp/litellm_whl
    python scripts/build_catalog.py --wheel /tmp/litellm_whl/litellm-*.whl
    python scripts/build_catalog.py --download            # runs the pip download itself
    python scripts/build_catalog.py --json prices.json --litellm-version 1.2.3
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from polyroute.catalog.litellm_import import ImportReport, convert  # noqa: E402
from polyroute.catalog.load import BUNDLED, parse_catalog  # noqa: E402

PRICE_FILES = (
    "litellm/model_prices_and_context_window_backup.json",
    "litellm/model_prices_and_context_window.json",
)
GZIP_ABOVE = 1_000_000  # bytes


def read_wheel(wheel: Path) -> tuple[dict[str, object], str]:
    """LiteLLM's price list and version, from its wheel."""
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        member = next((n for n in PRICE_FILES if n in names), None)
        if member is None:
            sys.exit(f"{wheel}: none of {', '.join(PRICE_FILES)} in the wheel")
        raw = json.loads(zf.read(member))
        metadata = next((n for n in names if n.endswith(".dist-info/METADATA")), None)
        version = None
        if metadata:
            m = re.search(r"^Version: (\S+)$", zf.read(metadata).decode(), re.MULTILINE)
            version = m[1] if m else None
    return raw, version or _version_from_name(wheel.name)


def _version_from_name(name: str) -> str:
    m = re.match(r"litellm-([^-]+)-", name)
    return m[1] if m else "unknown"


def download_wheel(into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "litellm", "--no-deps", "-d", str(into)]
    print("$", " ".join(cmd))
    subprocess.run(cmd, check=True)
    return max(into.glob("litellm-*.whl"))


def write_catalog(report: ImportReport, out: Path) -> Path:
    """One model per line; gzip when the text passes GZIP_ABOVE bytes."""
    catalog = report.catalog
    head = {
        "schema_version": catalog.schema_version,
        "sources": [s.model_dump(mode="json", exclude_none=True) for s in catalog.sources],
    }
    lines = [
        json.dumps(m.model_dump(mode="json", exclude_defaults=True), separators=(",", ":"))
        for m in catalog.models
    ]
    text = json.dumps(head, separators=(",", ":"))[:-1] + ',"models":[\n'
    text += ",\n".join(lines) + "\n]}\n"
    data = text.encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    gz = out.with_name(out.name + ".gz")
    if len(data) > GZIP_ABOVE:
        gz.write_bytes(gzip.compress(data, mtime=0))
        out.unlink(missing_ok=True)
        written = gz
    else:
        out.write_bytes(data)
        gz.unlink(missing_ok=True)
        written = out
    if parse_catalog(data, source=str(written)).model_dump() != catalog.model_dump():
        sys.exit("the written catalog does not read back the same: a bug in the writer")
    return written


def summarise(report: ImportReport, written: Path, examples: int) -> None:
    catalog = report.catalog
    src = catalog.sources[0]
    print(
        f"source: {src.source} (litellm {src.version}, {src.licence}), generated {src.generated_at}"
    )
    print(
        f"wrote {written.relative_to(ROOT) if written.is_relative_to(ROOT) else written} "
        f"({written.stat().st_size:,} bytes): {len(catalog.models)} models, "
        f"{report.endpoint_count} endpoints"
    )
    per_provider = Counter(e.provider for m in catalog.models for e in m.endpoints)
    print("endpoints per provider: " + ", ".join(f"{p} {n}" for p, n in per_provider.most_common()))
    unpriced = sum(1 for m in catalog.models if not any(e.prices.known for e in m.endpoints))
    print(f"models with no known price at any endpoint: {unpriced} (their cost stays unknown)")
    print(f"skipped (out of scope): {sum(report.skipped.values())}")
    for reason, n in report.skipped.most_common():
        print(f"  {n:5d}  {reason}")
    by_reason: dict[str, list[str]] = defaultdict(list)
    for key, reason in report.rejected:
        by_reason[re.sub(r"\d{4}-\d\d-\d\d", "DATE", reason)].append(key)
    print(f"rejected: {len(report.rejected)}")
    for reason, keys in sorted(by_reason.items(), key=lambda kv: -len(kv[1])):
        shown = ", ".join(keys[:examples]) + (", ..." if len(keys) > examples else "")
        print(f"  {len(keys):5d}  {reason}: {shown}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--wheel", type=Path, help="a litellm wheel (from `pip download`)")
    source.add_argument("--download", action="store_true", help="pip download the wheel first")
    source.add_argument("--json", type=Path, help="the price list itself (needs --litellm-version)")
    parser.add_argument("--litellm-version", help="LiteLLM's version, with --json")
    parser.add_argument("--out", type=Path, default=BUNDLED, help=f"default: {BUNDLED}")
    parser.add_argument("--date", type=dt.date.fromisoformat, help="generated_at (default: today)")
    parser.add_argument(
        "--rejects", type=Path, help="also write every rejected key to this JSON file"
    )
    parser.add_argument("--examples", type=int, default=3, help="keys shown per reject reason")
    args = parser.parse_args(argv)

    if args.json:
        raw, version = json.loads(args.json.read_text()), args.litellm_version or "unknown"
    elif args.download:
        with tempfile.TemporaryDirectory() as tmp:
            raw, version = read_wheel(download_wheel(Path(tmp)))
    else:
        raw, version = read_wheel(args.wheel)

    report = convert(raw, version=version, today=args.date)
    written = write_catalog(report, args.out)
    summarise(report, written, args.examples)
    if args.rejects:
        rejects = [{"key": k, "reason": r} for k, r in report.rejected]
        args.rejects.write_text(json.dumps(rejects, indent=1) + "\n")
        print(f"wrote every rejected key to {args.rejects}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
