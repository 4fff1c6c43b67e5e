export default {
  files: ['packages/*/src/**/*.test.ts'],
  extensions: { ts: 'module' },
  nodeArguments: ['--import=tsx', '--conditions=sluice-src'],
  workerThreads: false,
  timeout: '60s',
};
