/* SPDX-License-Identifier: BSD-2-Clause */
/* fuzz_config.c: libFuzzer harness for the YAML configuration loader (couponsd -t, start and reload). */
#include "core/config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NAME "fuzz.yaml"

static void require(int cond)
{
	if (!cond)
		abort();
}

/* Either a configuration, or at least one error, each naming the file first (file:line:column). */
static void check_result(const config_t *cfg, const config_errors_t *errs)
{
	require((cfg != NULL) == (errs->count + errs->lost == 0));
	for (int i = 0; i < errs->count; i++)
		require(strncmp(errs->items[i], NAME ":", strlen(NAME) + 1) == 0);
	if (cfg == NULL)
		return;
	require(cfg->http_listen_count >= 1 && cfg->http_workers >= 1);
	require(cfg->kafka_partitions >= 1 && cfg->kafka_owned_count <= cfg->kafka_partitions);
	for (int i = 1; i < cfg->kafka_owned_count; i++)
		require(cfg->kafka_owned[i - 1] < cfg->kafka_owned[i]);
	require(cfg->issue_max_pending >= 1 && cfg->issue_batch_size >= 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static config_t *defaults;
	config_errors_t errs = {0}, restart = {0};
	config_t *cfg;

	if (defaults == NULL)
		defaults = config_load_buffer("defaults", "", 0, NULL);
	cfg = config_load_buffer(NAME, (const char *)data, size, &errs);
	check_result(cfg, &errs);
	/* What a reload does with a valid file: compare it with the running one. */
	if (cfg != NULL && defaults != NULL)
		config_restart_keys(defaults, cfg, &restart);
	config_errors_clear(&restart);
	config_errors_clear(&errs);
	config_free(cfg);
	return 0;
}
