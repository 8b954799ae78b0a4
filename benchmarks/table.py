"""``make bench``: run every benchmark, print ONE table of the issue's targets.

Each script runs once, in its own process, with ``--json`` (at the sizes in
``SCRIPTS``; its own defaults otherwise), its progress on stderr shown as it
goes. From each JSON object the top-level ``"targets"`` rows are collected:

    {"figure": "runner --help cold", "value": 0.21, "unit": "s",
     "reference": "python -c pass", "reference_value": 0.04,
     "target": "<= 0.3 s", "met": true}

(``value`` may be null for a figure that could not be measured, with a ``note``
saying why; ``reference_unit`` is optional, the row's unit otherwise). Printed:
figure, measured, reference, target, met or not, then how many targets are met.
A script that fails (non-zero exit, a timeout, no JSON) gets a row saying so and
the table is still printed; a script that emits no "targets" yet is listed under
the table. Each script's whole JSON is kept in ``--save`` (``.bench-results/``).

Which scripts run: the names in ``SCRIPTS`` (in that order), then any other
``benchmarks/*.py`` whose source has a module-level line ``TARGETS = True``.

    python benchmarks/table.py                        # what make bench runs
    python benchmarks/table.py --only startup --only tracing --json
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

SCRIPTS: dict[str, list[str]] = {
    "startup": [],
    "steps": [],
    "checkpoint": [],
    "tracing": [],
    "alpha_parallel": [],
    "parallel": [],
    "overhead": [],
    "fork": [],
    "end_to_end": [],
}
"""Scripts run by ``make bench``, in order, with their arguments (their defaults
when empty). A new script is added here, or marks itself with ``TARGETS = True``."""

MARKER = re.compile(r"^TARGETS\s*=\s*True\b", re.MULTILINE)
NOT_SCRIPTS = {"table"}


def discover(folder: Path) -> dict[str, list[str]]:
    """The scripts to run: ``SCRIPTS`` present in ``folder``, then the marked ones."""
    found = {name: args for name, args in SCRIPTS.items() if (folder / f"{name}.py").exists()}
    for path in sorted(folder.glob("*.py")):
        name = path.stem
        if name in found or name in NOT_SCRIPTS or name.startswith("_"):
            continue
        if MARKER.search(path.read_text(encoding="utf-8", errors="replace")):
            found[name] = []
    return found


def _tee(stream: IO[str], tail: deque[str]) -> None:
    """Show a script's stderr as it comes, keeping its last lines for a failure."""
    for line in stream:
        sys.stderr.write(line)
        sys.stderr.flush()
        if line.strip():
            tail.append(line.rstrip())


def _json_object(text: str) -> dict[str, Any] | None:
    """The JSON object a script printed (from the first line that opens one)."""
    decoder = json.JSONDecoder()
    starts = [0] + [m.start() + 1 for m in re.finditer(r"\n\{", text)]
    for start in starts:
        chunk = text[start:].lstrip()
        if not chunk.startswith("{"):
            continue
        try:
            doc, _ = decoder.raw_decode(chunk)
        except json.JSONDecodeError:
            continue
        if isinstance(doc, dict):
            return doc
    return None


def run_script(path: Path, args: list[str], *, timeout: float) -> tuple[dict[str, Any] | None,
                                                                         str, float]:
    """(its JSON object or None, why it failed or "", seconds it took)."""
    command = [sys.executable, str(path), *args, "--json"]
    print(f"--- {path.name} {' '.join(args)}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    tail: deque[str] = deque(maxlen=3)
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stderr is not None
    chunks: list[str] = []
    stdout = proc.stdout
    readers = [threading.Thread(target=_tee, args=(proc.stderr, tail), daemon=True),
               threading.Thread(target=lambda: chunks.append(stdout.read()), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None, f"timed out after {timeout:.0f} s", time.perf_counter() - started
    finally:
        for reader in readers:
            reader.join(timeout=10)
    out = "".join(chunks)
    took = time.perf_counter() - started
    if proc.returncode != 0:
        last = tail[-1] if tail else ""
        return None, f"exit {proc.returncode}" + (f": {last}" if last else ""), took
    doc = _json_object(out)
    if doc is None:
        return None, "printed no JSON object", took
    return doc, "", took


def _valid(row: Any) -> bool:
    return isinstance(row, dict) and isinstance(row.get("figure"), str)


def collect(scripts: dict[str, list[str]], folder: Path, *, timeout: float,
            save: Path | None) -> dict[str, Any]:
    """Run the scripts; every targets row (tagged with its script), and what failed."""
    rows: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    without: list[str] = []
    took: dict[str, float] = {}
    for name, args in scripts.items():
        doc, why, took[name] = run_script(folder / f"{name}.py", args, timeout=timeout)
        if doc is not None and save is not None:
            save.mkdir(parents=True, exist_ok=True)
            (save / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
        if doc is None:
            failed[name] = why
            rows.append({"script": name, "figure": f"{name}.py", "value": None, "unit": "",
                         "reference": "", "reference_value": None, "target": "",
                         "met": False, "error": why})
            continue
        targets = doc.get("targets")
        if not isinstance(targets, list) or not targets:
            without.append(name)
            continue
        for row in targets:
            if _valid(row):
                rows.append({"script": name, **row, "met": row.get("met") is True})
            else:
                rows.append({"script": name, "figure": f"{name}.py: a bad targets row",
                             "value": None, "unit": "", "reference": "",
                             "reference_value": None, "target": "", "met": False,
                             "error": f"not a targets row: {str(row)[:80]}"})
    measured = [r for r in rows if "error" not in r]
    return {"rows": rows, "met": sum(r["met"] for r in measured), "targets": len(measured),
            "failed": failed, "without_targets": without,
            "seconds": {k: round(v, 1) for k, v in took.items()}}


def fmt_value(value: Any, unit: str) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "not measured"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    return f"{value:.3g} {unit}".rstrip()


def render(result: dict[str, Any]) -> str:
    """The one table, then the summary line."""
    header = ("figure", "measured", "reference", "target", "met")
    lines: list[tuple[str, ...]] = []
    for row in result["rows"]:
        if "error" in row:
            lines.append((row["figure"], "FAILED", row["error"], "", "not met"))
            continue
        unit = str(row.get("unit", ""))
        ref = str(row.get("reference", ""))
        if row.get("reference_value") is not None:
            ref += f" ({fmt_value(row['reference_value'], str(row.get('reference_unit', unit)))})"
        lines.append((row["figure"], fmt_value(row.get("value"), unit), ref,
                      str(row.get("target", "")), "met" if row["met"] else "not met"))
    widths = [max([len(h)] + [len(line[i]) for line in lines]) for i, h in enumerate(header)]
    out = [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
           "-+-".join("-" * w for w in widths)]
    out += [" | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    notes = [f"  {row['figure']}: {row['note']}" for row in result["rows"] if row.get("note")]
    if notes:
        out += ["", "notes:", *notes]
    if result["without_targets"]:
        out.append("")
        out.append("no targets (yet): " + ", ".join(f"{n}.py" for n in result["without_targets"]))
    summary = f"{result['met']} of {result['targets']} targets met"
    if result["failed"]:
        summary += f"; {len(result['failed'])} script(s) failed: " + ", ".join(
            f"{n}.py" for n in result["failed"])
    out += ["", summary]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="run only this script (repeatable), e.g. --only startup")
    parser.add_argument("--dir", type=Path, default=HERE, help="where the scripts are")
    parser.add_argument("--timeout", type=float, default=3600,
                        help="seconds before a script is stopped and marked failed")
    parser.add_argument("--save", default=str(ROOT / ".bench-results"),
                        help="folder for each script's whole JSON ('' for none)")
    parser.add_argument("--json", action="store_true", help="print the merged rows as JSON")
    args = parser.parse_args()
    scripts = discover(args.dir)
    if args.only:
        unknown = [n for n in args.only if not (args.dir / f"{n}.py").exists()]
        if unknown:
            parser.error(f"no such script in {args.dir}: {', '.join(unknown)}")
        scripts = {n: scripts.get(n, SCRIPTS.get(n, [])) for n in args.only}
    save = Path(args.save) if args.save else None
    result = collect(scripts, args.dir, timeout=args.timeout, save=save)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(render(result))
    sys.exit(1 if result["failed"] else 0)


if __name__ == "__main__":
    main()
