#!/usr/bin/env bash
# Runs every fuzz target for a bounded time, one after the other on one core, and reports
# executions and crashes per target (README, "Bad input").
#
#   fuzz/run.sh [SECONDS] [TARGET...]     SECONDS per target (default 60); all targets by default
#
# Needs `cargo install cargo-fuzz`; works on the stable toolchain: the targets are built with
# `-s none` (coverage instrumentation, no sanitizer; the code under test forbids `unsafe`).
# Seeds come from fuzz/corpus/<target>/ (read only); what the run adds goes to
# fuzz/target/corpus/<target>/, crashes to fuzz/artifacts/<target>/. Exits 1 if any target
# crashed, timed out (10 s for one input) or ran out of memory (2 GiB).
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-60}"
shift || true
all=(form jws signed_claims qr_jwe device_api consents_api client_certificate jwk_sets)
targets=("${@:-${all[@]}}")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

cargo fuzz build -s none >/dev/null
# The seeds, written afresh (deterministic); the private JWK Sets among them are never committed.
cargo run -q --release --example seed-corpus >/dev/null
bin="target/$(rustc -vV | sed -n 's/^host: //p')/release"

# The largest input each target sees in service: bodies up to 64 KiB, a JWE up to 16 KiB
# (plus a margin to reach the size check), a certificate header up to 16 KiB.
max_len() {
  case "$1" in
    qr_jwe | client_certificate | signed_claims) echo 17000 ;;
    *) echo 65536 ;;
  esac
}

summary="target/fuzz-summary.txt"
printf '%-20s %12s %10s %8s %s\n' target executions exec/s crashes corpus >"$summary"
failed=0
for t in "${targets[@]}"; do
  work="target/corpus/$t"
  artifacts="artifacts/$t"
  mkdir -p "$work" "$artifacts"
  before=$(find "$artifacts" -type f | wc -l)
  log="target/fuzz-$t.log"
  set +e
  "$bin/$t" "$work" "corpus/$t" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len "$t")" \
    -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1
  status=$?
  set -e
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  crashes=$(( $(find "$artifacts" -type f | wc -l) - before ))
  files=$(find "$work" -type f | wc -l)
  if [ "$status" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    failed=1
    echo "$t: exit $status, see $log and $artifacts/" >&2
  fi
  printf '%-20s %12s %10s %8s %s\n' "$t" "${runs:-?}" "${rate:-?}" "$crashes" "$files" | tee -a "$summary"
done
echo "($seconds s per target; summary in fuzz/$summary)"
exit "$failed"
