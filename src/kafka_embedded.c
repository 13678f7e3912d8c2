/* kafka_embedded.c: the embedded Kafka child (librdkafka's in-memory mock cluster). */
#include "kafka_embedded.h"

#include "kafka_conf.h"
#include "log.h"

#include <librdkafka/rdkafka_mock.h>
#include <string.h>

/*
 * kafka.brokers: embedded runs librdkafka's mock cluster in this process, so
 * development and tests need no Kafka installation. The cluster lives in the
 * threads of a throw-away producer handle; it is in memory only, so a crash
 * of this child loses its messages (the master then restarts every Kafka
 * client against the new cluster). Production points kafka.brokers at a
 * real cluster and this child is never started.
 */
typedef struct {
	rd_kafka_t *rk;
	rd_kafka_mock_cluster_t *cluster;
} kafka_embedded_t;

static int create_topics(kafka_embedded_t *ke, const config_t *cfg)
{
	const char *topics[] = {cfg->kafka_topic, cfg->kafka_results_topic, cfg->kafka_dlq_topic};

	for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
		rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(
		    ke->cluster, topics[i], cfg->kafka_partitions, KAFKA_EMBEDDED_BROKERS);

		if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			log_error("cannot create topic %s: %s", topics[i], rd_kafka_err2str(err));
			return -1;
		}
	}
	return 0;
}

static int cluster_start(kafka_embedded_t *ke, const config_t *cfg)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char err[512];

	kafka_conf_set_logger(conf);
	if (kafka_conf_set(conf, "client.id", "couponsd-embedded-kafka") != 0) {
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	ke->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	if (ke->rk == NULL) {
		log_error("cannot create the mock cluster's handle: %s", err);
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	ke->cluster = rd_kafka_mock_cluster_new(ke->rk, KAFKA_EMBEDDED_BROKERS);
	if (ke->cluster == NULL) {
		log_error("cannot start the mock cluster");
		return -1;
	}
	return create_topics(ke, cfg);
}

static void cluster_stop(kafka_embedded_t *ke)
{
	if (ke->cluster != NULL)
		rd_kafka_mock_cluster_destroy(ke->cluster);
	if (ke->rk != NULL)
		rd_kafka_destroy(ke->rk);
}

int kafka_embedded_main(worker_t *w)
{
	kafka_embedded_t ke;
	const char *bootstraps;
	int rc = 1;

	memset(&ke, 0, sizeof(ke));
	if (cluster_start(&ke, w->args.cfg) == 0) {
		bootstraps = rd_kafka_mock_cluster_bootstraps(ke.cluster);
		log_info("embedded kafka up: %d brokers at %s, %d partitions per topic",
		         KAFKA_EMBEDDED_BROKERS, bootstraps, w->args.cfg->kafka_partitions);
		if (worker_ready(w, bootstraps) == 0)
			rc = worker_run(w);
	}
	cluster_stop(&ke);
	return rc;
}
