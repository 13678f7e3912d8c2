/* results.c: placeholder while the consumer pipeline is being written. */
#include "results.h"

/* ISO C forbids an empty translation unit. */
typedef int results_placeholder_t;
