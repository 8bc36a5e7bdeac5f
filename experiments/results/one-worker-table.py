"""Engine / baseline ratios of a one-worker before/after sitting (the `one-worker-scale*` folders).

    python3 experiments/results/one-worker-table.py DIR

DIR holds the sweeps `before-N` and `after-N` (each a `runs.jsonl` of `tidemark sweep` or of
`tidemark bench --json`), one per repetition. Prints, per query found, the ratio of the engine's
achieved rate to the baseline's in every repetition and their median, before and after, as the
markdown table of the folders' READMEs, then the rates themselves (M events/s, engine/baseline).
"""
import glob
import json
import statistics
import sys

ORDER = ["ysb", "q5", "q7", "q8", "q11"]
TARGET = {"ysb": "1.0"}


def sweeps(base, build):
    dirs = [d for d in glob.glob(f"{base}/{build}-*") if d.rsplit("-", 1)[1].isdigit()]
    return sorted(dirs, key=lambda d: int(d.rsplit("-", 1)[1]))


def main():
    base = sys.argv[1] if len(sys.argv) > 1 else "."
    res = {}
    for build in ["before", "after"]:
        for sweep in sweeps(base, build):
            rate = {}
            with open(f"{sweep}/runs.jsonl") as f:
                for line in f:
                    run = json.loads(line)
                    rate[(run["query"], run["engine"])] = run["achieved_rate"]
            for (query, engine), engine_rate in rate.items():
                if engine == "timely":
                    res.setdefault((build, query), []).append(
                        (engine_rate, rate[(query, "baseline")]))
    queries = [q for q in ORDER if (("before", q) in res)] + sorted(
        {q for (_, q) in res if q not in ORDER})
    print("| query | before (main) per repetition | after per repetition "
          "| median before -> after | target |")
    print("| --- | --- | --- | --- | --- |")
    for q in queries:
        cells, medians = [], []
        for build in ["before", "after"]:
            ratios = [t / b for t, b in res.get((build, q), [])]
            cells.append(", ".join(f"{x:.2f}" for x in ratios))
            medians.append(f"{statistics.median(ratios):.2f}" if ratios else "-")
        name = q.upper() if q == "ysb" else q
        print(f"| {name} | {cells[0]} | {cells[1]} | {medians[0]} -> {medians[1]} "
              f"| {TARGET.get(q, '0.9')} |")
    print()
    for q in queries:
        for build in ["before", "after"]:
            rates = " ".join(f"{t / 1e6:.1f}/{b / 1e6:.1f}" for t, b in res.get((build, q), []))
            print(q, build, rates)


if __name__ == "__main__":
    main()
