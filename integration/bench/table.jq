# Prints the results JSON of run.sh as plain-text tables (jq -r).

def pad(width): tostring | if length >= width then . else . + " " * (width - length) end;
def lpad(width): tostring | if length >= width then . else " " * (width - length) + . end;
def ms: if . == null then "-" else (. * 10 | round) / 10 | tostring end;

. as $results
| ["cross-executor", "pooled", "reference", "floor"] as $drivers
| ($results.trivial_job["cross-executor"].stages_ms | keys_unsorted) as $stages
| "cross-executor benchmark, \($results.settings.mode) mode: \($results.settings.rounds) rounds, image \($results.settings.image)",
  "machine: \($results.machine.nproc) CPUs (\($results.machine.cpu)), \($results.machine.memory_kib / 1048576 | . * 10 | round / 10) GiB, kernel \($results.machine.kernel), Docker \($results.machine.docker), \($results.machine.qemu)",
  "load average (1, 5, 15 min) before: \($results.machine.load_average_before), after: \($results.machine.load_average_after)",
  "cross-executor: \($results.settings.cross_executor_build)",
  "",
  "(a, b) trivial job, median ms per stage (pooled = cross-executor with pool_size = 1,",
  "       reference = bash + docker CLI driver)",
  ("stage" | pad(22)) + ($drivers | map(lpad(16)) | join("")),
  ($stages[] as $stage
    | ($stage | if . == "refill" then "refill, after the job" else . end | pad(22))
      + ($drivers | map($results.trivial_job[.].stages_ms[$stage].median | ms | lpad(16)) | join(""))),
  ("5 run stages" | pad(22)) + ($drivers | map($results.trivial_job[.].run_stages_ms | ms | lpad(16)) | join("")),
  ("whole job" | pad(22)) + ($drivers | map($results.trivial_job[.].total_ms.median | ms | lpad(16)) | join("")),
  "whole-job ratios, of the medians / median of the per-round ratios:",
  "  cross-executor / reference \($results.trivial_job.ratios.cross_executor_over_reference) / \($results.trivial_job.paired_ratios.cross_executor_over_reference), cross-executor / floor \($results.trivial_job.ratios.cross_executor_over_floor) / \($results.trivial_job.paired_ratios.cross_executor_over_floor), floor / reference \($results.trivial_job.ratios.floor_over_reference) / \($results.trivial_job.paired_ratios.floor_over_reference)",
  "  pooled / reference \($results.trivial_job.ratios.pooled_over_reference) / \($results.trivial_job.paired_ratios.pooled_over_reference), pooled / floor \($results.trivial_job.ratios.pooled_over_floor) / \($results.trivial_job.paired_ratios.pooled_over_floor)",
  "",
  "(c, d) output of head -c (\($results.settings.stream_bytes.head / 1048576) MiB) and dd bs=1M (\($results.settings.stream_bytes.dd / 1048576) MiB), median of \($results.settings.stream_repetitions)",
  ("producer / client" | pad(30)) + ("MiB/s" | lpad(10)) + ("peak RSS MiB" | lpad(14)) + ("CPU s" | lpad(8)),
  ($results.stream | to_entries[] | .key as $kind | .value | to_entries[]
    | select(.value | type == "object")
    | ("\($kind) / \(.key)" | pad(30)) + (.value.mib_per_second | lpad(10))
      + (.value.peak_rss_kib / 1024 | . * 10 | round / 10 | lpad(14)) + (.value.cpu_seconds_median | lpad(8))),
  "throughput ratio cross-executor / docker exec: head \($results.stream.head.throughput_ratio_cross_executor_over_docker_cli), dd \($results.stream.dd.throughput_ratio_cross_executor_over_docker_cli)",
  "cross-executor RSS for a trivial run stage: \($results.rss.trivial_run_kib / 1024 | . * 10 | round / 10) MiB",
  "",
  "(e) \($results.settings.concurrent_jobs) trivial jobs, median ms of \($results.settings.concurrency_repetitions)",
  ("driver" | pad(22)) + ("sequential" | lpad(12)) + ("concurrent" | lpad(12)) + ("speed-up" | lpad(10)),
  ($results.concurrency | to_entries[]
    | (.key | pad(22)) + (.value.sequential_ms.median | ms | lpad(12))
      + (.value.concurrent_ms.median | ms | lpad(12)) + (.value.speedup | lpad(10))),
  "",
  "targets",
  ($results.targets[] | (.name | pad(58)) + (.value | tostring | lpad(8)) + ("  " + .limit | pad(10)) + (if .met then "met" else "MISSED" end))
