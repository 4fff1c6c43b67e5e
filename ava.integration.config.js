export default {
  files: ['test/integration/**/*.test.ts'],
  extensions: { ts: 'module' },
  nodeArguments: ['--import=tsx', '--conditions=sluice-src'],
  workerThreads: false,
  concurrency: 1,
  serial: true,
  timeout: '180s',
};
