#!/usr/bin/env bash
# Runs every `delicate bench` scenario at its default size, one after the
# other, with a `dist` build (both binaries). Each scenario prints its table
# on stdout and writes its figures to OUT_DIR/SCENARIO.json (default:
# bench-results/). The scenarios took 7 minutes on an otherwise idle 2-core
# machine, after a build of about 4 minutes with dependencies cached.
set -euo pipefail
cd "$(dirname "$0")/.."

out_dir="${1:-bench-results}"
mkdir -p "$out_dir"
cargo build --profile dist --quiet
for scenario in idle frames api dispatch fire scale; do
    echo "== $scenario (load average: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    target/dist/delicate bench "$scenario" --json "$out_dir/$scenario.json"
done
echo "figures written to $out_dir/" >&2
