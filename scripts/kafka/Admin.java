/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Admin.java: the test cluster's admin client for scripts/kafka.sh (not part of couponsd, which is C).
 *
 * It runs on the broker's own jars (kafka-clients is among them), compiled once into the jar cache:
 *
 *   Admin wait BOOTSTRAP NODES SECONDS          until the cluster's metadata lists NODES brokers
 *   Admin create BOOTSTRAP SPEC...              SPEC = name:partitions:replicas[:key=value[,key=value]]
 *                                               an existing topic with the same partition count is kept
 *   Admin leader BOOTSTRAP TOPIC PARTITION      prints the partition leader's node id (-1: none)
 *   Admin controller BOOTSTRAP                  prints the active controller's node id (the quorum leader)
 *   Admin wait-isr BOOTSTRAP SECONDS TOPIC...   until every partition of the topics has all replicas in sync
 *
 * Exit 0 on success, 1 with one line on stderr otherwise.
 */
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.AdminClient;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.errors.TopicExistsException;

public final class Admin {
    private Admin() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            die("usage: Admin wait|create|leader|controller|wait-isr BOOTSTRAP ...");
        }
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[1]);
        /* Short requests, a longer whole call: a stopped (SIGSTOP) broker still accepts connections and
           never answers, and the client must have time to give up on it and ask another. */
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "3000");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "20000");
        try (AdminClient admin = AdminClient.create(p)) {
            String[] rest = Arrays.copyOfRange(args, 2, args.length);
            switch (args[0]) {
                case "wait" -> waitNodes(admin, rest);
                case "create" -> create(admin, rest);
                case "leader" -> leader(admin, rest);
                case "controller" -> System.out.println(
                        admin.describeMetadataQuorum().quorumInfo().get().leaderId());
                case "wait-isr" -> waitIsr(admin, rest);
                default -> die("unknown command " + args[0]);
            }
        } catch (ExecutionException e) {
            die(args[0] + ": " + e.getCause());
        }
    }

    private static void die(String why) {
        System.err.println(why);
        System.exit(1);
    }

    private static long deadline(String seconds) {
        return System.nanoTime() + TimeUnit.SECONDS.toNanos(Long.parseLong(seconds));
    }

    /* Brokers register with the controller one by one; a test must not start before all are in. */
    private static void waitNodes(AdminClient admin, String[] a) throws Exception {
        int want = Integer.parseInt(a[0]);
        long end = deadline(a[1]);
        int seen = 0;
        while (System.nanoTime() < end) {
            try {
                seen = admin.describeCluster().nodes().get(3, TimeUnit.SECONDS).size();
                if (seen >= want) {
                    return;
                }
            } catch (ExecutionException | java.util.concurrent.TimeoutException e) {
                seen = 0; /* not up yet */
            }
            Thread.sleep(200);
        }
        die("wait: " + seen + " of " + want + " brokers in the metadata after " + a[1] + " s");
    }

    private static NewTopic parseSpec(String spec) {
        String[] f = spec.split(":", 4);
        if (f.length < 3) {
            die("create: bad spec '" + spec + "' (name:partitions:replicas[:key=value,...])");
        }
        NewTopic t = new NewTopic(f[0], Integer.parseInt(f[1]), Short.parseShort(f[2]));
        Map<String, String> configs = new HashMap<>();
        if (f.length == 4 && !f[3].isEmpty()) {
            for (String kv : f[3].split(",")) {
                String[] pair = kv.split("=", 2);
                configs.put(pair[0], pair.length > 1 ? pair[1] : "");
            }
        }
        return t.configs(configs);
    }

    private static void create(AdminClient admin, String[] specs) throws Exception {
        List<NewTopic> topics = new ArrayList<>();
        for (String s : specs) {
            topics.add(parseSpec(s));
        }
        var result = admin.createTopics(topics);
        for (NewTopic t : topics) {
            try {
                result.values().get(t.name()).get();
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof TopicExistsException)) {
                    throw e;
                }
                int have = describe(admin, t.name()).partitions().size();
                if (have != t.numPartitions()) {
                    die("create: topic " + t.name() + " exists with " + have + " partitions, not "
                            + t.numPartitions());
                }
            }
        }
    }

    private static TopicDescription describe(AdminClient admin, String topic) throws Exception {
        return admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
    }

    private static void leader(AdminClient admin, String[] a) throws Exception {
        TopicPartitionInfo info = describe(admin, a[0]).partitions().get(Integer.parseInt(a[1]));
        System.out.println(info.leader() == null || info.leader().isEmpty() ? -1 : info.leader().id());
    }

    /* After a broker comes back it must catch up before the next fault, or two faults overlap. */
    private static void waitIsr(AdminClient admin, String[] a) throws Exception {
        long end = deadline(a[0]);
        List<String> topics = Arrays.asList(a).subList(1, a.length);
        String lagging = "";
        while (System.nanoTime() < end) {
            lagging = "";
            try {
                for (TopicDescription d : admin.describeTopics(topics).allTopicNames().get().values()) {
                    for (TopicPartitionInfo pi : d.partitions()) {
                        if (pi.isr().size() < pi.replicas().size() || pi.leader() == null) {
                            lagging = d.name() + "-" + pi.partition();
                        }
                    }
                }
            } catch (ExecutionException e) {
                lagging = e.getCause().toString();
            }
            if (lagging.isEmpty()) {
                return;
            }
            Thread.sleep(200);
        }
        die("wait-isr: " + lagging + " still not fully in sync after " + a[0] + " s");
    }
}
