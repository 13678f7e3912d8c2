/* SPDX-License-Identifier: BSD-2-Clause */
/* http_admin_ops.h: what the operator's list and live figures share (http_admin_ops.c, http_admin_events.c).
 */
#ifndef COUPONSD_HTTP_ADMIN_OPS_H
#define COUPONSD_HTTP_ADMIN_OPS_H

#include "http/http_api.h"

/* A timestamptz as "2026-01-01T00:00:00.000Z" (NULL stays NULL). */
#define ADMIN_ISO(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/*
 * A coupon's figures from PostgreSQL: id, then one JSON object. issued is
 * total - remaining (the invariant the consumer keeps); rejected counts
 * rejected_requests by reason (kept for issue.result_ttl); status as GET
 * /api/coupons/{id} says it, and CLOSED once an admin change closed it.
 */
#define ADMIN_FIGURES_SELECT                                                                                 \
	"SELECT c.id, json_build_object('couponId', c.id, 'name', c.name, 'totalQuantity', "                 \
	"c.total_quantity,"                                                                                  \
	" 'remaining', c.remaining, 'issued', c.total_quantity - c.remaining, 'rejected', coalesce((SELECT"  \
	" json_object_agg(reason, n) FROM (SELECT reason, count(*) AS n FROM rejected_requests r WHERE"      \
	" r.coupon_id = c.id GROUP BY reason) x), '{}'::json), 'status', st.status, 'startsAt', " ADMIN_ISO( \
	    "c.starts_at") ", 'endsAt', " ADMIN_ISO("c.ends_at") ")::text FROM coupons c, LATERAL (SELECT "  \
	                                                         "CASE"                                      \
	                                                         " WHEN c.starts_at > now() THEN "           \
	                                                         "'SCHEDULED'"                               \
	                                                         " WHEN c.closed OR c.ends_at <= now() THEN" \
	                                                         " 'CLOSED' WHEN c.remaining <= 0 THEN"      \
	                                                         " 'SOLD_OUT' ELSE 'OPEN' END AS status) st"

/* One row's figures (its JSON column) plus "pending" from the partition's admission counters; NULL if bad. */
json_t *http_admin_figures(http_ctx_t *ctx, const char *row_json);

#endif
