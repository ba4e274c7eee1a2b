# Turns the benchmark's raw records into the results JSON.
#
# Input (jq -R -s): lines "SECTION<TAB>CLIENT<TAB>KEY<TAB>REPETITION<TAB>VALUE"
# written by run.sh. Arguments: $machine, $settings and $run_stages (JSON).
# Times are milliseconds unless a key says seconds; RSS is in KiB.

def median:
  sort as $sorted
  | ($sorted | length) as $count
  | if $count == 0 then null
    elif $count % 2 == 1 then $sorted[($count - 1) / 2]
    else ($sorted[$count / 2 - 1] + $sorted[$count / 2]) / 2
    end;

def round(digits):
  pow(10; digits) as $scale | (. * $scale | round) / $scale;

def ratio(numerator; denominator):
  if numerator == null or denominator == null or denominator == 0 then null
  else numerator / denominator | round(3)
  end;

def summary:
  if length == 0 then {median: null, min: null, max: null, samples: []}
  else {median: (median | round(3)), min: min, max: max, samples: .}
  end;

[split("\n")[] | select(length > 0) | split("\t")
 | {section: .[0], client: .[1], key: .[2], repetition: (.[3] | tonumber), value: (.[4] | tonumber)}]
as $records

| def samples_of($section; $client; $key):
    [$records[] | select(.section == $section and .client == $client and .key == $key) | .value];

  ["cross-executor", "pooled", "reference", "floor"] as $drivers
| (["config", "prepare"] + $run_stages + ["cleanup", "refill"]) as $stages

| ($drivers | map({key: ., value: (. as $driver
      | {stages_ms: ($stages | map({key: ., value: (samples_of("job"; $driver; .) | summary)}) | from_entries),
         total_ms: (samples_of("job"; $driver; "total") | summary)}
      | .run_stages_ms = ([.stages_ms[$run_stages[]].median] | add | round(3)))})
   | from_entries) as $jobs

# Ratios of two drivers' whole-job times within each round, which run next to
# each other, so slow drift of the host's load cancels out.
| def paired_ratio($numerator; $denominator):
    [$records[] | select(.section == "job" and .key == "total")] as $totals
    | [$totals[] | select(.client == $numerator) | .repetition as $round | .value as $value
       | ($totals[] | select(.client == $denominator and .repetition == $round) | $value / .value)]
    | if length == 0 then null else median | round(3) end;

  (["head", "dd"] | map({key: ., value: (. as $kind
      | ["cross-executor", "docker-cli", "floor"]
      | map(. as $client
          | samples_of("stream-" + $kind; $client; "seconds") as $seconds
          | select($seconds | length > 0)
          | {key: $client, value: {
              seconds: ($seconds | summary),
              mib_per_second: (($settings.stream_bytes[$kind] / 1048576) / ($seconds | median) | round(1)),
              peak_rss_kib: (samples_of("stream-" + $kind; $client; "rss_kb") | max),
              cpu_seconds_median: (samples_of("stream-" + $kind; $client; "cpu_seconds") | median)}})
      | from_entries
      | .throughput_ratio_cross_executor_over_docker_cli =
          ratio(.["cross-executor"].mib_per_second; .["docker-cli"].mib_per_second))})
   | from_entries) as $streams

| ([$streams[]["cross-executor"].peak_rss_kib] | max) as $peak_rss_kib

| (["cross-executor", "reference"] | map({key: ., value: (. as $driver
      | {sequential_ms: (samples_of("concurrency"; $driver; "sequential_ms") | summary),
         concurrent_ms: (samples_of("concurrency"; $driver; "concurrent_ms") | summary)}
      | .speedup = ratio(.sequential_ms.median; .concurrent_ms.median))})
   | from_entries) as $concurrency

| {
    machine: $machine,
    settings: $settings,
    trivial_job: ($jobs + {
      ratios: {
        cross_executor_over_reference: ratio($jobs["cross-executor"].total_ms.median; $jobs.reference.total_ms.median),
        cross_executor_over_floor: ratio($jobs["cross-executor"].total_ms.median; $jobs.floor.total_ms.median),
        floor_over_reference: ratio($jobs.floor.total_ms.median; $jobs.reference.total_ms.median),
        pooled_over_reference: ratio($jobs.pooled.total_ms.median; $jobs.reference.total_ms.median),
        pooled_over_floor: ratio($jobs.pooled.total_ms.median; $jobs.floor.total_ms.median)
      },
      paired_ratios: {
        cross_executor_over_reference: paired_ratio("cross-executor"; "reference"),
        cross_executor_over_floor: paired_ratio("cross-executor"; "floor"),
        floor_over_reference: paired_ratio("floor"; "reference"),
        pooled_over_reference: paired_ratio("pooled"; "reference"),
        pooled_over_floor: paired_ratio("pooled"; "floor")
      }
    }),
    stream: $streams,
    rss: {
      stream_peak_kib: $peak_rss_kib,
      trivial_run_kib: (samples_of("rss"; "cross-executor"; "trivial_run_rss_kb") | max)
    },
    concurrency: $concurrency,
    # The requirement for (e) is "a real speed-up on 2 cores", without a
    # number, so this benchmark applies 1.5.
    targets: [
      {name: "a: cross-executor / reference CLI driver, trivial job", value: ratio($jobs["cross-executor"].total_ms.median; $jobs.reference.total_ms.median), limit: "<= 0.6"},
      {name: "a: cross-executor / floor, trivial job", value: ratio($jobs["cross-executor"].total_ms.median; $jobs.floor.total_ms.median), limit: "<= 1.1"},
      {name: "a: pooled / reference CLI driver, trivial job", value: ratio($jobs.pooled.total_ms.median; $jobs.reference.total_ms.median), limit: "<= 0.6"},
      {name: "a: pooled / floor, trivial job", value: ratio($jobs.pooled.total_ms.median; $jobs.floor.total_ms.median), limit: "<= 1.1"},
      {name: "c: throughput cross-executor / docker exec (head -c)", value: $streams.head.throughput_ratio_cross_executor_over_docker_cli, limit: ">= 1.0"},
      {name: "d: peak RSS of cross-executor run while streaming, MiB", value: ($peak_rss_kib / 1024 | round(1)), limit: "<= 20"},
      {name: "e: speed-up of 8 concurrent over 8 sequential jobs", value: $concurrency["cross-executor"].speedup, limit: ">= 1.5"}
    ]
    | map(.met = (.value != null and
        (if .limit | startswith("<= ") then .value <= (.limit[3:] | tonumber)
         else .value >= (.limit[3:] | tonumber) end)))
  }
