"""One chart of a load run, from its slo_report.json: the edge hit ratio, the reads' p95
through the edge, and each purge's delay from write to delivery, over the measured run (the
purge storm shaded, when there was one).

    python load/chart.py slo_report.json load_chart.png
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Seconds the hit ratio is counted over: a second holds a few hundred reads and few misses.
WINDOW = 5


def windows(seconds, *series):
    """`(window start, the values of each series in it)`, by WINDOW-second windows."""
    buckets = {}
    for index, second in enumerate(seconds):
        bucket = buckets.setdefault(int(max(second, 0) // WINDOW) * WINDOW,
                                    [[] for _ in series])
        for values, column in zip(bucket, series):
            values.append(column[index])
    return sorted(buckets.items())


def draw(report, path):
    line = report["timeline"]
    buckets = windows(line["seconds"], line["edge_hits"], line["edge_misses"])
    starts = [start for start, _ in buckets]
    ratios = [sum(hits) / (sum(hits) + sum(misses)) if sum(hits) + sum(misses) else None
              for _, (hits, misses) in buckets]
    figure, (top, middle, bottom) = plt.subplots(3, 1, sharex=True, figsize=(9, 7))
    top.plot(starts, ratios, drawstyle="steps-post")
    top.axhline(0.995, color="grey", linestyle="--", linewidth=0.8)
    top.set_ylabel(f"edge hit ratio\n({WINDOW} s windows)")
    middle.plot(line["seconds"], line["read_p95_ms"], color="tab:orange", linewidth=0.8)
    middle.set_ylabel("read p95, ms\n(each second)")
    purges = line["purges"]
    bottom.scatter([at for at, _ in purges], [ms for _, ms in purges], s=8, color="tab:green")
    bottom.set_ylabel("purge delay, ms\n(write to delivered)")
    bottom.set_xlabel("seconds into the measured run")
    for axis in (top, middle, bottom):
        if line.get("storm"):
            axis.axvspan(*line["storm"], color="tab:red", alpha=0.1)
        axis.grid(alpha=0.3)
    settings = report.get("settings", {})
    figure.suptitle(f"{settings.get('users', '?')} analysts, {report['duration_s']} s measured"
                    + (" (purge storm shaded)" if line.get("storm") else ""))
    figure.tight_layout()
    figure.savefig(path, dpi=80)


def main(argv):
    with open(argv[1], encoding="utf-8") as source:
        draw(json.load(source), argv[2])
    print(f"chart: {argv[2]}")


if __name__ == "__main__":
    main(sys.argv)
