"""Replay a recorded event stream in the TUI, without TensorFlow: python -m tfaudit.tui FILE.jsonl [DELAY_S]"""
import sys

from tfaudit.tui import ReplaySource, run_app

if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    delay = float(sys.argv[2]) if len(sys.argv) == 3 else 0.02
    raise SystemExit(run_app(ReplaySource.from_file(sys.argv[1], delay_s=delay)))
