#!/usr/bin/env python3
"""Summarize the helper benchmark's timings into a table and a JSON file.

Input is the metadata JSON and the timings file that run.sh writes. A
timings line has eight tab-separated fields. They are the configuration
(emulated or helper), run number, job id, kind (warmup or timed) and stage
(`total` for the whole job). Then follow the start and end time in seconds
since the epoch and the host's 1-minute load average at the end. Only timed
jobs enter the medians, and the JSON lists the warm-up jobs separately.
"""

import argparse
import datetime
import json
import statistics
import sys

CONFIGS = ("emulated", "helper")
# Driver calls in the order of a job, then the whole job.
STAGES = (
    "config",
    "prepare",
    "get_sources",
    "restore_cache",
    "build_script",
    "archive_cache",
    "cleanup",
    "total",
)


def read_timings(path):
    """Return the timing lines as dicts with the duration in seconds."""
    rows = []
    with open(path) as timings:
        for number, line in enumerate(timings, start=1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 8:
                sys.exit(f"{path}:{number}: expected 8 tab-separated fields, found {len(fields)}")
            config, run, job_id, kind, stage, start, end, load = fields
            rows.append(
                {
                    "config": config,
                    "run": int(run) if run else None,
                    "job_id": int(job_id),
                    "kind": kind,
                    "stage": stage,
                    "seconds": round(float(end) - float(start), 3),
                    "load_average": float(load),
                }
            )
    return rows


def summarize_stage(rows, stage):
    """Return the median, minimum, maximum and all values per configuration,
    and the ratio helper/emulated of the medians."""
    summary = {}
    for config in CONFIGS:
        values = [row["seconds"] for row in rows if row["config"] == config and row["stage"] == stage]
        if not values:
            sys.exit(f"no timed {config} job has a {stage} timing")
        summary[config] = {
            "median": round(statistics.median(values), 3),
            "min": min(values),
            "max": max(values),
            "runs": values,
        }
    emulated = summary["emulated"]["median"]
    summary["ratio"] = round(summary["helper"]["median"] / emulated, 3) if emulated > 0 else None
    return summary


def format_ratio(ratio):
    return "-" if ratio is None else f"{ratio:.2f}x"


def print_table(results):
    metadata = results["metadata"]
    print(
        f"Helper benchmark ({metadata['mode']} mode): median seconds of "
        f"{metadata['runs_per_config']} timed job(s) per configuration"
    )
    print(
        f"repository: {metadata['repository']['files']} files, {metadata['repository']['commits']} commits, "
        f"{metadata['repository']['pack_bytes'] / 2**20:.1f} MiB packed; "
        f"cache payload: {metadata['cache_payload_bytes'] / 2**20:.1f} MiB "
        f"({metadata['cache_archive_bytes'] / 2**20:.1f} MiB as .tgz)"
    )
    print(f"get_sources: {metadata['clone_command']}")
    print(f"{'stage':<15}{'emulated':>10}{'helper':>10}{'helper/emulated':>17}")
    for stage in STAGES:
        summary = results["stages"][stage]
        label = "whole job" if stage == "total" else stage
        print(
            f"{label:<15}{summary['emulated']['median']:>10.2f}{summary['helper']['median']:>10.2f}"
            f"{format_ratio(summary['ratio']):>17}"
        )
    verdict = "met" if results["target_met"] else "NOT met"
    print(
        f"target: whole job at most {results['target_ratio']:.2f}x the emulated time: "
        f"{verdict} ({format_ratio(results['ratio'])})"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("metadata", help="metadata JSON written by run.sh")
    parser.add_argument("timings", help="timings file written by run.sh")
    parser.add_argument("output", help="results JSON to write")
    parser.add_argument("--target", type=float, required=True, help="maximum ratio helper/emulated of the whole job")
    parser.add_argument("--cache-archive-bytes", type=int, required=True, help="size of the cache archive in bytes")
    args = parser.parse_args()

    with open(args.metadata) as metadata_file:
        metadata = json.load(metadata_file)
    rows = read_timings(args.timings)
    timed = [row for row in rows if row["kind"] == "timed"]
    with open("/proc/loadavg") as loadavg:
        metadata["host"]["load_average_at_end"] = " ".join(loadavg.read().split()[:3])
    metadata["cache_archive_bytes"] = args.cache_archive_bytes
    metadata["finished_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

    stages = {stage: summarize_stage(timed, stage) for stage in STAGES}
    for config in CONFIGS:
        stages["total"][config]["load_averages"] = [
            row["load_average"] for row in timed if row["config"] == config and row["stage"] == "total"
        ]
    ratio = stages["total"]["ratio"]
    results = {
        "metadata": metadata,
        "stages": stages,
        "ratio": ratio,
        "target_ratio": args.target,
        "target_met": ratio is not None and ratio <= args.target,
        "warmup_jobs": [row for row in rows if row["kind"] == "warmup"],
    }
    with open(args.output, "w") as output:
        json.dump(results, output, indent=2)
        output.write("\n")
    print_table(results)
    print(f"results: {args.output}")


if __name__ == "__main__":
    main()
