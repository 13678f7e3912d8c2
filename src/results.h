/* results.h: placeholder while the consumer pipeline is being written. */
#ifndef COUPONSD_RESULTS_H
#define COUPONSD_RESULTS_H

#endif
