/* migrate.c: placeholder while the consumer pipeline is being written. */
#include "migrate.h"

/* ISO C forbids an empty translation unit. */
typedef int migrate_placeholder_t;
