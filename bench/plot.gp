# SPDX-License-Identifier: BSD-2-Clause
# bench/plot.gp: rate and latency over time for one benchmark run (bench/run.py writes the data files).
#   gnuplot -e "datadir='DIR'; output='FILE.png'; title='...'" bench/plot.gp
# DIR/ceiling.dat, DIR/couponsd.dat, DIR/peer.dat (empty without the peer): x_s responses/s 2xx/s 409/s p50_ms p99_ms (one row per 250 ms)
# DIR/decisions.dat: x_s decisions/s (results-topic decidedAt, 250 ms buckets)
# DIR/pgbench.dat: x_s rows/s (pgbench -P 1)
# DIR/labels.gp: a label per phase
if (!exists("title")) title = "couponsd benchmark"
set terminal pngcairo size 1400,900 font ",10"
set output output
set multiplot layout 2,1 title title
set grid
set key outside right top width -2
set xlabel "seconds since the benchmark started"
set lmargin 12
set rmargin 36
if (exists("xmax")) set xrange [0:xmax]
load datadir."/labels.gp"

set ylabel "per second"
set format y "%.0s%c"
plot datadir."/ceiling.dat" using 1:2 with lines lw 1.5 lc rgb "#999999" title "bare evhttp: responses/s", \
     datadir."/decisions.dat" using 1:2 with lines lw 1.5 dt 2 lc rgb "#2ca02c" title "decisions/s into PostgreSQL", \
     datadir."/couponsd.dat" using 1:3 with lines lw 2 lc rgb "#1f77b4" title "couponsd: 2xx/s", \
     datadir."/couponsd.dat" using 1:4 with lines lw 1.5 lc rgb "#ff7f0e" title "couponsd: 409/s", \
     datadir."/peer.dat" using 1:3 with lines lw 2 lc rgb "#8c564b" title "peer: 2xx/s", \
     datadir."/pgbench.dat" using 1:2 with lines lw 1.5 lc rgb "#9467bd" title "pgbench: rows/s"

set ylabel "latency (ms, log)"
set logscale y
set format y "%g"
plot datadir."/ceiling.dat" using 1:6 with lines lw 1 lc rgb "#999999" title "bare evhttp p99", \
     datadir."/couponsd.dat" using 1:5 with lines lw 1.5 lc rgb "#17becf" title "couponsd p50", \
     datadir."/couponsd.dat" using 1:6 with lines lw 1.5 lc rgb "#d62728" title "couponsd p99", \
     datadir."/peer.dat" using 1:6 with lines lw 1.5 lc rgb "#8c564b" title "peer p99"
unset multiplot
