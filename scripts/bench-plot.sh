#!/usr/bin/env bash
# Draws the sweep's JSON (asyncdb_bench --sweep --json FILE) as one PNG of three panels against the operations
# in flight: throughput, median latency and p99 latency, for S, the hand-rolled peer and asyncdb with 1, 2 and 4
# readers (the peer: pool threads). Needs jq and gnuplot (Debian: jq, gnuplot-nox).
#   scripts/bench-plot.sh [SWEEP_JSON [PNG]]   defaults: build/bench/sweep.json, bench/plots/sweep.png
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

json=${1:-build/bench/sweep.json}
png=${2:-bench/plots/sweep.png}
./scripts/install-deps.sh jq gnuplot-nox

data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
# One file per line of the plot: in_flight, ops/s, p50 us, p99 us.
series() {
  jq -r --arg who "$1" --argjson readers "$2" \
    '.points[] | select(.contender == $who and .readers == $readers) | [.in_flight, .ops_per_s, .p50_us, .p99_us] | @tsv' \
    "$json" | sort -n >"$data/$1-$2.tsv"
}
series S 0
for r in 1 2 4; do
  series peer "$r"
  series asyncdb "$r"
done
title=$(jq -r '"W1 point reads, \(.ops_per_point) per point, median of \(.runs_per_point // 1), \(.host) (\(.cores) cores), load \(.load_before | floor)-\(.load_after | floor), \(.date[0:10])"' "$json")

mkdir -p "$(dirname "$png")"
gnuplot <<PLOT
set terminal pngcairo size 1080,380 font ",8"
set output "$png"
set multiplot layout 1,3 title "$title"
set logscale x 2
set xlabel "operations in flight"
set grid
set key top left font ",8"
set style line 1 lc rgb "#000000" lw 2 dt 1 pt 7 ps 0.5
set style line 11 lc rgb "#1f77b4" lw 1.5 dt 3 pt 5 ps 0.5
set style line 12 lc rgb "#1f77b4" lw 1.5 dt 2 pt 5 ps 0.5
set style line 14 lc rgb "#1f77b4" lw 1.5 dt 1 pt 5 ps 0.5
set style line 21 lc rgb "#d62728" lw 2 dt 3 pt 9 ps 0.6
set style line 22 lc rgb "#d62728" lw 2 dt 2 pt 9 ps 0.6
set style line 24 lc rgb "#d62728" lw 2 dt 1 pt 9 ps 0.6
do for [panel=2:4] {
  if (panel == 2) { set title "throughput (higher is better)"; set ylabel "lookups/s"; unset logscale y; set format y "%.0s%c" }
  if (panel == 3) { set title "median latency (lower is better)"; set ylabel "us"; set logscale y; set format y "%g" }
  if (panel == 4) { set title "p99 latency (lower is better)"; set ylabel "us"; set logscale y; set format y "%g" }
  plot "$data/S-0.tsv" u 1:panel w lp ls 1 t "S (synchronous)", \
       "$data/peer-1.tsv" u 1:panel w lp ls 11 t "peer, 1 thread", \
       "$data/peer-2.tsv" u 1:panel w lp ls 12 t "peer, 2 threads", \
       "$data/peer-4.tsv" u 1:panel w lp ls 14 t "peer, 4 threads", \
       "$data/asyncdb-1.tsv" u 1:panel w lp ls 21 t "asyncdb, 1 reader", \
       "$data/asyncdb-2.tsv" u 1:panel w lp ls 22 t "asyncdb, 2 readers", \
       "$data/asyncdb-4.tsv" u 1:panel w lp ls 24 t "asyncdb, 4 readers"
}
unset multiplot
PLOT
echo "plot written to $png ($(du -k "$png" | cut -f1) KB)"
