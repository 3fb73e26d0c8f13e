"""(Re)write a trained model's training report (:func:`training.evaluation.reports.write_training_report`).

    python -m training.report --model DIR
"""

import argparse
import sys
from collections.abc import Sequence

from training.evaluation.reports import write_training_report


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point: rewrite a trained model's training report."""
    parser = argparse.ArgumentParser(prog="python -m training.report",
                                     description="(Re)write a trained model's report/ from its history.json.")
    parser.add_argument("--model", required=True, help="a training run's output directory (with history.json)")
    args = parser.parse_args(argv)
    try:
        print(f"report: {write_training_report(args.model)}")
    except FileNotFoundError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
