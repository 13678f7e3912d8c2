/* SPDX-License-Identifier: BSD-2-Clause */
/* keys.c: every Redis key and channel name couponsd uses, in one place. */
#include "core/keys.h"

#include "core/text.h"

/* "{" + a 20-digit id + "}:rsv:" + a 36-character UUID, and the NUL. */
_Static_assert(KEYS_PREFIX_MAX + 1 + 20 + 6 + 36 + 1 <= KEYS_MAX,
               "KEYS_PREFIX_MAX leaves no room for the longest key");

/* <prefix>{<c>}<suffix>: the start of every key of a coupon. snprintf's cost, four keys per accepted request,
 * was worth saving (text.h). */
static void coupon_key(text_t *t, char *buf, size_t size, const char *prefix, int64_t coupon_id,
                       const char *suffix)
{
	text_init(t, buf, size);
	text_str(t, prefix);
	text_str(t, "{");
	text_i64(t, coupon_id);
	text_str(t, "}");
	text_str(t, suffix);
}

int keys_stock(const char *prefix, int64_t coupon_id, char *buf, size_t size)
{
	text_t t;

	coupon_key(&t, buf, size, prefix, coupon_id, ":stock");
	return text_end(&t);
}

int keys_user(const char *prefix, int64_t coupon_id, int64_t user_id, char *buf, size_t size)
{
	text_t t;

	coupon_key(&t, buf, size, prefix, coupon_id, ":user:");
	text_i64(&t, user_id);
	return text_end(&t);
}

int keys_inflight(const char *prefix, int64_t coupon_id, char *buf, size_t size)
{
	text_t t;

	coupon_key(&t, buf, size, prefix, coupon_id, ":inflight");
	return text_end(&t);
}

int keys_reservation(const char *prefix, int64_t coupon_id, const char *request_id, char *buf, size_t size)
{
	text_t t;

	coupon_key(&t, buf, size, prefix, coupon_id, ":rsv:");
	text_str(&t, request_id);
	return text_end(&t);
}

int keys_status(const char *prefix, const char *request_id, char *buf, size_t size)
{
	text_t t;

	text_init(&t, buf, size);
	text_str(&t, prefix);
	text_str(&t, "req:{");
	text_str(&t, request_id);
	text_str(&t, "}");
	return text_end(&t);
}

int keys_results_channel(const char *prefix, char *buf, size_t size)
{
	text_t t;

	text_init(&t, buf, size);
	text_str(&t, prefix);
	text_str(&t, "results");
	return text_end(&t);
}
