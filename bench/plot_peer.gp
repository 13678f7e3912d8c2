# SPDX-License-Identifier: BSD-2-Clause
# bench/plot_peer.gp: couponsd against the peer, one cluster of bars per Kafka (bench/peer_plot.py writes the data).
#   gnuplot -e "datafile='FILE.dat'; output='FILE.png'; title='...'" bench/plot_peer.gp
# FILE.dat, one row per run: "kafka" then couponsd/peer pairs: hot 202/s, hot 202 p99 ms, sell-out s,
# HTTP CPU us per 202, whole-stack CPU us per 202, % of the hot phase's 202s decided when its load ended,
# then the two sell-out labels (a sale that did not finish says how far it got). NaN: not measured.
if (!exists("title")) title = "couponsd against the peer"
set terminal pngcairo size 1500,900 font ",10"
set output output
set datafile missing "NaN"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key top center horizontal samplen 2
set xtics nomirror
set offsets 0, 0, graph 0.22, 0   # room above the bars for the key and the labels
set multiplot layout 2,3 title title

C = "#1f77b4"
P = "#8c564b"
# with gap 1 and two bars, a cluster's bars are centred at x - 1/6 and x + 1/6
bar(n) = n == 0 ? -1.0/6 : 1.0/6
lbl(v) = v != v ? "" : (v >= 100 ? sprintf("%.0f", v) : sprintf("%.3g", v))

set title "hot coupon: 202 per s (higher is better)"
set yrange [0:*]
plot datafile using 2:xtic(1) lc rgb C title "couponsd", \
     '' using 3 lc rgb P title "peer", \
     '' using ($0 + bar(0)):2:(lbl($2)) with labels offset 0,0.7 notitle, \
     '' using ($0 + bar(1)):3:(lbl($3)) with labels offset 0,0.7 notitle

set logscale y
set format y "%g"
set yrange [*:*]
set title "hot coupon: p99 of the 202s, ms (log; lower is better)"
plot datafile using 4:xtic(1) lc rgb C title "couponsd", \
     '' using 5 lc rgb P title "peer", \
     '' using ($0 + bar(0)):4:(lbl($4)) with labels offset 0,0.7 notitle, \
     '' using ($0 + bar(1)):5:(lbl($5)) with labels offset 0,0.7 notitle

set title "10,000 units: until all issued, s (log; lower is better)"
plot datafile using 6:xtic(1) lc rgb C title "couponsd", \
     '' using 7 lc rgb P title "peer", \
     '' using ($0 + bar(0)):6:14 with labels offset 0,0.7 font ",8" notitle, \
     '' using ($0 + bar(1)):7:15 with labels offset 0,0.7 font ",8" notitle

set title "hot coupon: HTTP processes' CPU per 202, us (log)"
plot datafile using 8:xtic(1) lc rgb C title "couponsd (429s incl.)", \
     '' using 9 lc rgb P title "peer", \
     '' using ($0 + bar(0)):8:(lbl($8)) with labels offset 0,0.7 notitle, \
     '' using ($0 + bar(1)):9:(lbl($9)) with labels offset 0,0.7 notitle

set title "hot coupon: whole stack's CPU per 202, us (log; Kafka included)"
plot datafile using 10:xtic(1) lc rgb C title "couponsd", \
     '' using 11 lc rgb P title "peer", \
     '' using ($0 + bar(0)):10:(lbl($10)) with labels offset 0,0.7 notitle, \
     '' using ($0 + bar(1)):11:(lbl($11)) with labels offset 0,0.7 notitle

unset logscale y
set yrange [0:140]
set title "hot coupon: % of its 202s decided when the load ended"
plot datafile using 12:xtic(1) lc rgb C title "couponsd", \
     '' using 13 lc rgb P title "peer", \
     '' using ($0 + bar(0)):12:(lbl($12)) with labels offset 0,0.7 notitle, \
     '' using ($0 + bar(1)):13:(lbl($13)) with labels offset 0,0.7 notitle
unset multiplot
