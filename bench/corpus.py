"""Time and peak memory of converting each file of the generated corpus (tests/corpus/).

    python -m bench.corpus [--scale N] [--dir DIR]

Each file is converted in a fresh process, so its peak RSS is its own (the interpreter
with the ingest modules loaded is measured alone first, as ``baseline``). Rows are checked
against the reference parser's count; a mismatch is printed and makes the exit status 1.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A fresh interpreter runs ``setup``, then (unless its first argument is "-", the baseline)
# the expression ``call`` giving the rows converted; it prints the time and its own peak RSS.
_CHILD = """
import json, resource, sys, time
from pathlib import Path
{setup}
args = sys.argv[1:]
rows, error = None, None
start = time.perf_counter()
if args[0] != "-":
    try:
        rows = {call}
    except Exception as exc:
        error = f"{{type(exc).__name__}}: {{exc}}"
seconds = time.perf_counter() - start
print(json.dumps({{"rows": rows, "seconds": seconds, "error": error,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def measure(setup: str, call: str, *args: str) -> dict:
    """Rows, seconds, error and peak RSS (MiB) of one conversion in a fresh process."""
    code = _CHILD.format(setup=setup, call=call)
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _convert(src: Path, out: Path) -> dict:
    call = "convert_file(Path(args[0]), Path(args[1]), file_name=Path(args[0]).name).row_count"
    return measure("from service.ingest import convert_file", call, str(src), str(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=20, help="row multiplier (500 rows per unit)")
    parser.add_argument("--dir", type=Path, default=None, help="where to write the corpus (default: a temp dir)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from tests.corpus.files import build

    with tempfile.TemporaryDirectory(prefix="corpus-") as tmp:
        directory = args.dir or Path(tmp)
        files = build(directory, scale=args.scale)
        out = Path(tmp) / "out.parquet"
        baseline = _convert(Path("-"), out)
        print(f"baseline (interpreter and ingest modules): {baseline['peak_mib']:.0f} MB peak RSS\n")
        print("| file | size (KB) | reference rows | rows | time (s) | peak RSS (MB) |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        failures = 0
        for f in files:
            m = _convert(directory / f.name, out)
            ok = m["rows"] == f.rows
            failures += not ok
            rows = m["rows"] if m["error"] is None else m["error"][:60]
            print(
                f"| {f.name} | {(directory / f.name).stat().st_size // 1024} | {f.rows} | {rows}{'' if ok else ' ✗'} "
                f"| {m['seconds']:.3f} | {m['peak_mib']:.0f} |"
            )
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
