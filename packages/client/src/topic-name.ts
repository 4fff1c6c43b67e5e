/**
 * Client-side view of topic names: only what the client needs to derive
 * partition names and print full names. The broker validates names.
 */

/** `topic` → `persistent://public/default/topic`; `t/ns/topic` → `persistent://t/ns/topic`. */
export function fullTopicName(topic: string): string {
  if (topic.includes('://')) return topic;
  const parts = topic.split('/');
  if (parts.length === 3) return `persistent://${topic}`;
  if (parts.length === 1) return `persistent://public/default/${topic}`;
  return topic;
}

/** Name of partition `index` of partitioned topic `topic` (see broker.proto). */
export function partitionTopicName(topic: string, index: number): string {
  return `${fullTopicName(topic)}-partition-${index}`;
}
