#!/usr/bin/env bash
# Runs every `delicate bench` scenario at its default size, one after the
# other, with a release build. Each scenario prints its table on stdout and
# writes its figures to OUT_DIR/SCENARIO.json (default: bench-results/).
# The whole run took 4.5 minutes on an otherwise idle 2-core machine.
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
