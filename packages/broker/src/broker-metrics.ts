import { counter, gauge, type Registry } from '@sluice/common';
import type { TopicCounters } from './topic.js';

/** The broker's `sluice_broker_*` metrics (Prometheus names with units). */
export function brokerMetrics(registry: Registry): {
  counters: TopicCounters;
  topics: ReturnType<typeof gauge>;
  bundles: ReturnType<typeof gauge>;
  producers: ReturnType<typeof gauge>;
  consumers: ReturnType<typeof gauge>;
  sessionUp: ReturnType<typeof gauge>;
} {
  const msgIn = counter(registry, 'sluice_broker_messages_in_total', 'Messages stored by producers');
  const bytesIn = counter(
    registry,
    'sluice_broker_in_bytes_total',
    'Batch payload bytes stored by producers',
  );
  const msgOut = counter(registry, 'sluice_broker_messages_out_total', 'Messages delivered to consumers');
  const bytesOut = counter(
    registry,
    'sluice_broker_out_bytes_total',
    'Batch payload bytes delivered to consumers',
  );
  return {
    counters: {
      published(messages, bytes) {
        msgIn.inc(messages);
        bytesIn.inc(bytes);
      },
      delivered(messages, bytes) {
        msgOut.inc(messages);
        bytesOut.inc(bytes);
      },
    },
    topics: gauge(registry, 'sluice_broker_topics', 'Topics served by this broker'),
    bundles: gauge(registry, 'sluice_broker_owned_bundles', 'Namespace bundles owned by this broker'),
    producers: gauge(registry, 'sluice_broker_producers', 'Connected producers'),
    consumers: gauge(registry, 'sluice_broker_consumers', 'Connected consumers'),
    sessionUp: gauge(
      registry,
      'sluice_broker_metadata_session_up',
      '1 while the broker holds a live metadata session',
    ),
  };
}
