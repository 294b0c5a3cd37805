"""failoverbench's 16 fault scenarios through the real gateway: what a client gets, and how fast.

Runs the fault-injecting upstream (tests/support/fault_upstream.py) and the gateway on
127.0.0.1 in this process, and sends each scenario through the real ``openai`` client,
non-streamed and streamed, with a fallback configured (``f-<scenario>``) and without
(``alone-<scenario>``). Prints one row per scenario: the outcome with a fallback (``whole``
means the complete answer, stitched in one stream where it was rescued), the error without
one, and the time each took. An outcome that is an incomplete answer presented as success is
``TRUNCATED`` and fails the run.

    python benchmarks/fault_scenarios.py        # ~30 s

Exits 1 when any scenario gives an incomplete answer as a success or an unexpected outcome.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import openai  # noqa: E402
from tests.conftest import serving  # noqa: E402
from tests.support.fault_scenarios import ALONE, SCENARIOS, STREAM_ONLY, fault_config  # noqa: E402
from tests.support.fault_upstream import (  # noqa: E402
    ANSWER,
    blackhole,
    closed_port,
    running_fault_upstream,
)

from polyroute.gateway import create_app  # noqa: E402

USER: Any = [{"role": "user", "content": "count to eight"}]


def outcome(client: openai.OpenAI, model: str, stream: bool) -> tuple[str, float]:
    """``whole``, ``TRUNCATED``, or the error the client got; and the seconds it took."""
    t0 = time.perf_counter()
    try:
        if stream:
            chunks = list(client.chat.completions.create(model=model, messages=USER, stream=True))
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
            whole = text == ANSWER and finishes[-1:] == ["stop"]
        else:
            r = client.chat.completions.create(model=model, messages=USER)
            whole = r.choices[0].message.content == ANSWER
        result = "whole" if whole else "TRUNCATED"
    except openai.APIStatusError as e:
        code = e.body.get("code") if isinstance(e.body, dict) else None
        result = f"{e.status_code} {code}"
    except openai.APIError:
        result = "in-band error"  # raised by the SDK from the error event in the stream
    return result, time.perf_counter() - t0


#: One row per scenario: its name and three cells (json and stream with a fallback, none).
Row = tuple[str, list[str]]
HEADER = f"{'scenario':26} {'with fallback: json':>24} {'stream':>24}   {'no fallback':>34}"


def format_row(row: Row) -> str:
    scenario, cells = row
    return f"{scenario:26} {cells[0]:>24} {cells[1]:>24}   {cells[2]:>34}"


def run_scenarios(*, echo: bool = True) -> tuple[list[Row], int]:
    """Every scenario through a fresh gateway: its rows, and how many outcomes were
    unexpected or incomplete answers presented as success (printed as they come if
    ``echo``)."""
    bad = 0
    rows: list[Row] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_fault_upstream() as upstream,
        blackhole() as hole,
    ):
        cfg = fault_config(upstream.base_url, f"sqlite:///{tmp}/p.db", closed_port(), hole)
        with serving(create_app(cfg)) as base_url:
            client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=30)
            if echo:
                print(HEADER, flush=True)
            for scenario in SCENARIOS:
                cells = []
                for stream in (False, True):
                    if not stream and scenario in STREAM_ONLY:
                        cells.append("(stream only)")
                        continue
                    got, took = outcome(client, f"f-{scenario}", stream)
                    bad += got != "whole"
                    cells.append(f"{got} {took:5.2f}s")
                if scenario in ALONE:
                    status, code = ALONE[scenario]
                    got, took = outcome(client, f"alone-{scenario}", False)
                    bad += got != f"{status} {code}"
                else:  # broken mid-stream: an error in the stream, never a stop
                    got, took = outcome(client, f"alone-{scenario}", True)
                    bad += got in ("whole", "TRUNCATED")
                    got = f"stream: {got}"
                cells.append(f"{got} {took:5.2f}s")
                rows.append((scenario, cells))
                if echo:
                    print(format_row(rows[-1]), flush=True)
    return rows, bad


def main() -> int:
    _, bad = run_scenarios()
    print(f"\n{len(SCENARIOS)} scenarios; unexpected or incomplete outcomes: {bad}")
    print("command: python benchmarks/fault_scenarios.py")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
