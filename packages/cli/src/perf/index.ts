export { type ConsumeOptions, type ConsumeResult, type PerfReceiver, runConsume } from './consume-driver.js';
export { InFlightWindow } from './in-flight-window.js';
export { LatencyRecorder, type LatencySummary } from './latency-recorder.js';
export { PayloadFactory, readSendTimestamp, TIMESTAMP_BYTES } from './payload.js';
export { type PerfClock, systemClock } from './perf-clock.js';
export {
  consumeSummary,
  formatConsumeProgress,
  formatProduceProgress,
  formatSummary,
  type PerfSummary,
  produceSummary,
} from './perf-report.js';
export { type PerfSender, type ProduceOptions, type ProduceResult, runProduce } from './produce-driver.js';
export { RateScheduler } from './rate-scheduler.js';
export { loadWorkload, parseWorkload, type Workload, type WorkloadPersistence } from './workload.js';
