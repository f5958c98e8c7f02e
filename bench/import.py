"""Import benchmark: `bridge subscribers import` of a large list, as an operator runs it.

    .venv/bin/python bench/import.py [--lines 50000] [--invalid 0.01] [--welcome]

Writes a list of ``--lines`` Dutch mobile numbers in the forms people keep them in
("06-12345678", "0612345678", "+31 6 1234 5678", "0031612345678"), of which the fraction
``--invalid`` is broken (too short, letters, 0800/0900 numbers, Excel's 3.16E+10), runs the
real command (`python -m bridge subscribers import FILE`) in a subprocess against a fresh
store, and prints the wall time, the outcome counts, and checks them line by line against
what was written. Target: 50,000 lines with 1 % invalid in under 10 s.
"""

from __future__ import annotations

import argparse
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from helpers import write_config  # noqa: E402

BROKEN = ["06-1234", "O6-12345678", "0800-1234567", "0900-1234567", "3.16123E+10",
          "tel: onbekend", "0612345678901234", "+31 6 12"]
FORMS = ["06-{a}{b}", "06{a}{b}", "+31 6 {a} {b}", "0031 6{a}{b}", "06 {a}{b}"]


def make_list(path: Path, n: int, invalid: float, seed: int = 12) -> set[int]:
    """Write the list; return the line numbers (1-based) that are broken."""
    rnd = random.Random(seed)
    broken = set(rnd.sample(range(2, n + 2), int(n * invalid)))
    lines = ["telefoonnummer"]
    for i in range(2, n + 2):
        if i in broken:
            lines.append(rnd.choice(BROKEN))
            continue
        # 06-1... to 06-5...: mobile ranges in the Dutch plan; distinct for n <= 9,999,999
        digits = f"{'12345'[i % 5]}{(i * 7919) % 9999991:07d}"
        lines.append(rnd.choice(FORMS).format(a=digits[:4], b=digits[4:]))
    path.write_text("\n".join(lines) + "\n")
    return broken


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=50_000)
    ap.add_argument("--invalid", type=float, default=0.01)
    ap.add_argument("--welcome", action="store_true", help="also queue the welcome messages")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        cfg = write_config(tmp_path)
        listing = tmp_path / "leden.txt"
        broken = make_list(listing, args.lines, args.invalid)
        cmd = [sys.executable, "-m", "bridge", "subscribers", "import", str(listing),
               "--reason", "broadcast list before 2026-12", "--config", str(cfg)]
        if args.welcome:
            cmd.append("--welcome")
        t = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - t
        out = p.stdout.splitlines()
        outcomes = {}
        for line in out:
            m = re.match(r"line (\d+): .*?: (added|already subscribed|invalid)", line)
            if m:
                outcomes[int(m.group(1))] = m.group(2)
        wrong = [i for i in range(2, args.lines + 2)
                 if outcomes.get(i) != ("invalid" if i in broken else "added")]
        count = subprocess.run([sys.executable, "-m", "bridge", "subscribers", "count",
                                "--config", str(cfg)], capture_output=True, text=True,
                               cwd=ROOT).stdout.strip()
        print(f"lines: {args.lines:,} ({len(broken):,} invalid), exit status {p.returncode}")
        print(f"wall time: {wall:.2f} s for the whole command (start-up, reading, checking, "
              f"one transaction, printing every line) = {args.lines / wall:,.0f} lines/s")
        print(out[-2] if args.welcome else out[-1])
        if args.welcome:
            print(out[-1])
        print(f"subscribers in the store: {count}; outcomes that differ from the list: "
              f"{len(wrong)}")
        ok = p.returncode == 1 and not wrong and int(count) == args.lines - len(broken)
        print(f"target < 10 s: {'met' if wall < 10 and ok else 'NOT met'}")
        return 0 if ok and wall < 10 else 1


if __name__ == "__main__":
    sys.exit(main())
