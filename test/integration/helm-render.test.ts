/**
 * The Helm chart, rendered by the Go harness (text/template + sprig, the
 * engine Helm itself runs) for the default values and each override file
 * under deploy/helm/sluice/ci, then checked as Kubernetes would: every
 * document parses as YAML and passes the Kubernetes object schemas; selectors
 * match pod labels; probes hit served paths on declared ports; values are
 * checked against values.schema.json the way `helm install` does.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { Ajv, type ErrorObject } from 'ajv';
import test from 'ava';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { Job } from 'kubernetes-models/batch/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { Secret, Service, ServiceAccount } from 'kubernetes-models/v1';
import { parse, parseAllDocuments } from 'yaml';
import { BOOKIE_NODE_OPTIONS } from '../../packages/bookie/src/node-options.js';
import { type RenderOptions, renderChart } from '../support/helm-render/render.js';

const root = new URL('../..', import.meta.url).pathname;
const chart = join(root, 'deploy/helm/sluice');
const ciDir = join(chart, 'ci');
const NS = 'mq';
const RELEASE = 'prod';
const PREFIX = 'prod-sluice';

type Obj = Record<string, any>;

/** The model class that validates each kind the chart may emit. */
const MODELS: Record<string, new (o: any) => { validate(): void }> = {
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'batch/v1/Job': Job,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
};

/** Paths each Sluice process serves on its HTTP port. */
const SERVED_HTTP_PATHS = ['/healthz', '/readyz', '/metrics'];

const overrideFiles = readdirSync(ciDir)
  .filter((f) => f.endsWith('.yaml'))
  .sort();
const cases: { name: string; valueFiles: string[] }[] = [
  { name: 'default values', valueFiles: [] },
  ...overrideFiles.map((f) => ({ name: basename(f, '.yaml'), valueFiles: [join(ciDir, f)] })),
];

const scratch = mkdtempSync(join(tmpdir(), 'sluice-helm-'));
test.after.always(() => rmSync(scratch, { recursive: true, force: true }));

function valuesFile(name: string, yamlText: string): string {
  const path = join(scratch, `${name}.yaml`);
  writeFileSync(path, yamlText);
  return path;
}

function render(opts: Partial<RenderOptions> = {}): Obj[] {
  const res = renderChart({ chart, releaseName: RELEASE, namespace: NS, ...opts });
  if (!res.ok) throw new Error(`render failed: ${res.error}`);
  return parseManifests(res.output);
}

function parseManifests(text: string): Obj[] {
  const docs: Obj[] = [];
  for (const doc of parseAllDocuments(text, { uniqueKeys: true, prettyErrors: true })) {
    if (doc.errors.length) throw new Error(`rendered YAML does not parse: ${doc.errors[0]!.message}`);
    const js = doc.toJS();
    if (js !== null && js !== undefined) docs.push(js);
  }
  return docs;
}

const key = (o: Obj) => `${o.apiVersion}/${o.kind}`;
const named = (docs: Obj[], kind: string, name: string) =>
  docs.find((d) => d.kind === kind && d.metadata?.name === name);
const one = (docs: Obj[], kind: string, name: string): Obj => {
  const found = named(docs, kind, name);
  if (!found) throw new Error(`no ${kind} ${name} among ${docs.map((d) => `${d.kind}/${d.metadata?.name}`)}`);
  return found;
};
const workloads = (docs: Obj[]) => docs.filter((d) => d.kind === 'Deployment' || d.kind === 'StatefulSet');
const selects = (selector: Record<string, string>, labels: Record<string, string> = {}) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);
const podLabels = (w: Obj): Record<string, string> => w.spec.template.metadata.labels;
const arg = (args: string[], flag: string) => {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
};

// Helm merges user values over values.yaml (null deletes a key) and checks the result against the schema.
function mergeValues(base: Obj, override: Obj): Obj {
  const out: Obj = { ...base };
  for (const [k, v] of Object.entries(override)) {
    if (v === null) delete out[k];
    else if (
      typeof v === 'object' &&
      !Array.isArray(v) &&
      typeof out[k] === 'object' &&
      !Array.isArray(out[k])
    )
      out[k] = mergeValues(out[k], v);
    else out[k] = v;
  }
  return out;
}

const defaults = parse(readFileSync(join(chart, 'values.yaml'), 'utf8')) as Obj;
const ajv = new Ajv({ allErrors: true, strict: true });
const validateValues = ajv.compile(JSON.parse(readFileSync(join(chart, 'values.schema.json'), 'utf8')));

function fieldOf(e: ErrorObject): string {
  const path = e.instancePath.split('/').slice(1);
  if (e.keyword === 'additionalProperties') path.push(e.params.additionalProperty);
  if (e.keyword === 'required') path.push(e.params.missingProperty);
  return path.join('.') || '(root)';
}

/** Schema problems as "field: message" lines, the way an operator reads them. */
function schemaErrors(override: Obj): string[] {
  if (validateValues(mergeValues(defaults, override))) return [];
  return (validateValues.errors ?? [])
    .filter((e) => e.keyword !== 'if' && e.keyword !== 'anyOf')
    .map((e) => `${fieldOf(e)}: ${e.message}`);
}

test('helm - the Kubernetes validator used here rejects broken objects', (t) => {
  // Guards the checks below against a validator that accepts anything.
  const err = t.throws(() =>
    new Deployment({ metadata: { name: 'x' }, spec: { replicas: 'two' } } as any).validate(),
  );
  t.regex(err!.message, /selector/);
  t.regex(err!.message, /replicas must be integer/);
});

test('helm - values.yaml and every override file validate against values.schema.json', (t) => {
  t.deepEqual(schemaErrors({}), []);
  t.true(overrideFiles.length >= 4);
  for (const f of overrideFiles) {
    const override = parse(readFileSync(join(ciDir, f), 'utf8')) as Obj;
    t.deepEqual(schemaErrors(override), [], f);
  }
});

test('helm - invalid values are refused with a message naming the field', (t) => {
  const bad: [Obj, string][] = [
    [{ broker: { replicas: 'two' } }, 'broker.replicas: must be integer'],
    [{ bookie: { replicas: 0 } }, 'bookie.replicas: must be >= 1'],
    [{ broker: { replica: 3 } }, 'broker.replica: must NOT have additional properties'],
    [
      { bookie: { podAntiAffinity: 'sometimes' } },
      'bookie.podAntiAffinity: must be equal to one of the allowed values',
    ],
    [{ bookie: { persistence: { journal: { size: 'ten gigs' } } } }, 'bookie.persistence.journal.size'],
    [{ etcd: { enabled: true, replicas: 2 } }, 'etcd.replicas: must be equal to one of the allowed values'],
    [
      { etcd: { external: { endpoints: ['http://etcd:2379'] } } },
      'etcd.external.endpoints.0: must match pattern',
    ],
    [{ etcd: { external: { endpoints: [] } } }, 'etcd.external.endpoints: must NOT have fewer than 1 items'],
    [{ offload: { s3: { enabled: true } } }, 'offload.s3.bucket: must NOT have fewer than 3 characters'],
    [{ offload: { s3: { enabled: true, bucket: 'b1', endpoint: 'minio:9000' } } }, 'offload.s3.endpoint'],
    [{ broker: { ports: { grpc: 70000 } } }, 'broker.ports.grpc: must be <= 65535'],
    [{ logLevel: 'loud' }, 'logLevel: must be equal to one of the allowed values'],
  ];
  for (const [override, expected] of bad) {
    const errors = schemaErrors(override);
    t.true(
      errors.some((e) => e.startsWith(expected)),
      `${JSON.stringify(override)} → ${JSON.stringify(errors)}`,
    );
  }
});

test('helm - the templates refuse settings the schema cannot see, naming the field', (t) => {
  const refusals: [string, string][] = [
    ['etcd:\n  external:\n    endpoints: []\n', 'etcd.external.endpoints is empty'],
    ['offload:\n  s3:\n    enabled: true\n', 'offload.s3.bucket is required'],
    [
      'offload:\n  s3:\n    enabled: true\n    bucket: b1\n    credentials:\n      accessKeyId: AKIA\n',
      'offload.s3.credentials.secretAccessKey is required',
    ],
    [
      'broker:\n  autoscaling:\n    enabled: true\n    minReplicas: 5\n    maxReplicas: 2\n',
      'broker.autoscaling.minReplicas (5) is above broker.autoscaling.maxReplicas (2)',
    ],
  ];
  for (const [i, [yamlText, message]] of refusals.entries()) {
    const res = renderChart({
      chart,
      releaseName: RELEASE,
      namespace: NS,
      valueFiles: [valuesFile(`bad-${i}`, yamlText)],
    });
    t.false(res.ok, yamlText);
    if (!res.ok) t.true(res.error.includes(message), res.error);
  }
});

for (const c of cases) {
  test(`helm - ${c.name}: every rendered document passes the Kubernetes schemas`, (t) => {
    const docs = render({ valueFiles: c.valueFiles });
    t.true(docs.length >= 8);
    for (const d of docs) {
      const Model = MODELS[key(d)];
      t.truthy(Model, `unexpected ${key(d)} ${d.metadata?.name}`);
      t.notThrows(() => new Model!(d).validate(), `${d.kind} ${d.metadata?.name}`);
      t.is(d.metadata.namespace, NS, `${d.kind} ${d.metadata.name} namespace`);
      t.is(d.metadata.labels?.['app.kubernetes.io/instance'], RELEASE);
    }
    const names = docs.map((d) => `${d.kind}/${d.metadata.name}`);
    t.is(new Set(names).size, names.length, `duplicate objects: ${names}`);
  });

  test(`helm - ${c.name}: selectors match pod labels and never cross tiers`, (t) => {
    const docs = render({ valueFiles: c.valueFiles });
    const ws = workloads(docs);
    for (const w of ws) {
      t.true(selects(w.spec.selector.matchLabels, podLabels(w)), `${w.kind} ${w.metadata.name} selector`);
      // Exactly one workload owns each pod: a selector matching another tier would let scaling one touch the other.
      const owners = ws.filter((o) => selects(o.spec.selector.matchLabels, podLabels(w)));
      t.deepEqual(
        owners.map((o) => o.metadata.name),
        [w.metadata.name],
      );
    }
    for (const s of docs.filter((d) => d.kind === 'Service')) {
      const targets = ws.filter((w) => selects(s.spec.selector, podLabels(w)));
      t.is(targets.length, 1, `Service ${s.metadata.name} selects ${targets.length} workloads`);
      const containerPorts = targets[0]!.spec.template.spec.containers.flatMap((ct: Obj) => ct.ports ?? []);
      for (const p of s.spec.ports) {
        t.true(
          containerPorts.some((cp: Obj) => cp.name === p.targetPort || cp.containerPort === p.targetPort),
          `Service ${s.metadata.name} port ${p.name} → ${p.targetPort}`,
        );
      }
    }
    const pdbs = docs.filter((d) => d.kind === 'PodDisruptionBudget');
    for (const pdb of pdbs) {
      const targets = ws.filter((w) => selects(pdb.spec.selector.matchLabels, podLabels(w)));
      t.deepEqual(
        targets.map((w) => w.metadata.name),
        [pdb.metadata.name],
        `PDB ${pdb.metadata.name} guards its own tier`,
      );
    }
    // The eviction API refuses to evict a pod covered by two budgets.
    for (const w of ws) {
      t.true(
        pdbs.filter((p) => selects(p.spec.selector.matchLabels, podLabels(w))).length <= 1,
        w.metadata.name,
      );
    }
    const job = docs.find((d) => d.kind === 'Job');
    if (job) t.false(ws.some((w) => selects(w.spec.selector.matchLabels, job.spec.template.metadata.labels)));
  });

  test(`helm - ${c.name}: probes point at served paths on declared ports`, (t) => {
    const docs = render({ valueFiles: c.valueFiles });
    for (const w of workloads(docs)) {
      for (const ct of w.spec.template.spec.containers as Obj[]) {
        const ports = new Map<string | number, number>();
        for (const p of ct.ports ?? []) {
          ports.set(p.name, p.containerPort);
          ports.set(p.containerPort, p.containerPort);
        }
        for (const kind of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
          const probe = ct[kind]?.httpGet;
          if (!probe) continue;
          t.true(ports.has(probe.port), `${w.metadata.name} ${kind} port ${probe.port}`);
          if (ct.name !== 'etcd') {
            t.true(SERVED_HTTP_PATHS.includes(probe.path), `${w.metadata.name} ${kind} path ${probe.path}`);
            t.is(ports.get(probe.port), Number(arg(ct.args, '--http-port')), `${kind} is on the HTTP port`);
          }
        }
        if (ct.name === 'broker' || ct.name === 'bookie') {
          t.is(ct.readinessProbe.httpGet.path, '/readyz');
          t.is(ct.livenessProbe.httpGet.path, '/healthz');
        }
      }
    }
  });
}

test('helm - brokers: Deployment on 6650/8080 with preferred anti-affinity, a PDB and a Service', (t) => {
  const docs = render();
  const d = one(docs, 'Deployment', `${PREFIX}-broker`);
  t.is(d.spec.replicas, 2);
  const pod = d.spec.template.spec;
  const ct = pod.containers[0];
  t.deepEqual(ct.args.slice(0, 1), ['broker']);
  t.is(arg(ct.args, '--metadata'), `etcd://etcd:2379/sluice/${RELEASE}`);
  t.is(arg(ct.args, '--port'), '6650');
  t.is(arg(ct.args, '--http-port'), '8080');
  t.is(arg(ct.args, '--advertise-address'), '$(POD_IP):6650');
  t.is(arg(ct.args, '--offload'), undefined);
  t.true(ct.env.some((e: Obj) => e.name === 'POD_IP' && e.valueFrom.fieldRef.fieldPath === 'status.podIP'));
  t.truthy(pod.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution);
  t.is(pod.securityContext.runAsNonRoot, true);
  t.is(ct.securityContext.readOnlyRootFilesystem, true);
  const svc = one(docs, 'Service', `${PREFIX}-broker`);
  t.deepEqual(
    svc.spec.ports.map((p: Obj) => [p.name, p.port]),
    [
      ['grpc', 6650],
      ['http', 8080],
    ],
  );
  t.is(one(docs, 'PodDisruptionBudget', `${PREFIX}-broker`).spec.maxUnavailable, 1);
  t.is(named(docs, 'HorizontalPodAutoscaler', `${PREFIX}-broker`), undefined);
});

test('helm - bookies: StatefulSet behind a headless Service with stable addresses and two volumes', (t) => {
  const docs = render();
  const ss = one(docs, 'StatefulSet', `${PREFIX}-bookie`);
  const headless = one(docs, 'Service', ss.spec.serviceName);
  t.is(headless.spec.clusterIP, 'None');
  t.true(headless.spec.publishNotReadyAddresses);
  t.true(selects(headless.spec.selector, podLabels(ss)));
  t.is(ss.spec.replicas, 3);
  const pod = ss.spec.template.spec;
  const ct = pod.containers[0];
  t.is(ct.args[0], 'bookie');
  t.is(arg(ct.args, '--advertise-address'), `$(POD_NAME).${headless.metadata.name}.${NS}.svc:3181`);
  t.is(arg(ct.args, '--port'), '3181');
  t.is(arg(ct.args, '--http-port'), '8000');
  t.is(arg(ct.args, '--add-port'), '3182');
  t.deepEqual(
    headless.spec.ports.map((p: Obj) => [p.name, p.port]),
    [
      ['grpc', 3181],
      ['add', 3182],
      ['http', 8000],
    ],
  );
  t.true(
    ct.env.some((e: Obj) => e.name === 'POD_NAME' && e.valueFrom.fieldRef.fieldPath === 'metadata.name'),
  );
  // The V8 flags the benchmarks measured bookies with.
  t.deepEqual(
    ct.env.filter((e: Obj) => e.name === 'NODE_OPTIONS'),
    [{ name: 'NODE_OPTIONS', value: BOOKIE_NODE_OPTIONS }],
  );
  const off = one(render({ set: ['bookie.nodeOptions='] }), 'StatefulSet', `${PREFIX}-bookie`);
  t.false(off.spec.template.spec.containers[0].env.some((e: Obj) => e.name === 'NODE_OPTIONS'));
  t.deepEqual(
    ss.spec.volumeClaimTemplates.map((v: Obj) => [v.metadata.name, v.spec.resources.requests.storage]),
    [
      ['journal', '10Gi'],
      ['ledgers', '50Gi'],
    ],
  );
  // Every directory the bookie writes is on a claim, the data dir (bookie id) with the ledgers.
  const mounts = new Map<string, Obj>(ct.volumeMounts.map((m: Obj) => [m.mountPath, m]));
  for (const flag of ['--data-dir', '--journal-dir', '--ledger-dir']) {
    const dir = arg(ct.args, flag)!;
    t.truthy(mounts.get(dir), `${flag} ${dir} is mounted`);
    t.true(['journal', 'ledgers'].includes(mounts.get(dir)!.name), `${flag} is on a persistent volume`);
  }
  t.is(mounts.get(arg(ct.args, '--data-dir')!)!.name, 'ledgers');
  t.truthy(pod.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution);
  t.is(one(docs, 'PodDisruptionBudget', `${PREFIX}-bookie`).spec.maxUnavailable, 1);
});

test('helm - scaling one tier leaves the other tier byte-for-byte unchanged', (t) => {
  const base = render();
  const moreBrokers = render({ set: ['broker.replicas=7'] });
  const moreBookies = render({ set: ['bookie.replicas=6'] });
  const tier = (docs: Obj[], component: string) =>
    docs.filter((d) => d.metadata.labels['app.kubernetes.io/component'] === component);
  t.deepEqual(tier(moreBrokers, 'bookie'), tier(base, 'bookie'));
  t.is(one(moreBrokers, 'Deployment', `${PREFIX}-broker`).spec.replicas, 7);
  t.deepEqual(tier(moreBookies, 'broker'), tier(base, 'broker'));
  t.is(one(moreBookies, 'StatefulSet', `${PREFIX}-bookie`).spec.replicas, 6);
});

test('helm - external etcd: every endpoint and the cluster name reach both tiers', (t) => {
  const docs = render({ valueFiles: [join(ciDir, 'external-etcd-values.yaml')] });
  const url =
    'etcd://etcd-0.etcd.infra.svc:2379,etcd-1.etcd.infra.svc:2379,etcd-2.etcd.infra.svc:2379/sluice/prod-eu1';
  for (const w of workloads(docs)) t.is(arg(w.spec.template.spec.containers[0].args, '--metadata'), url);
  t.false(docs.some((d) => d.metadata.labels['app.kubernetes.io/component'] === 'etcd'));
});

test('helm - bundled etcd: a 3-member StatefulSet that Sluice lists member by member', (t) => {
  const docs = render({ valueFiles: [join(ciDir, 'bundled-etcd-values.yaml')] });
  const etcd = one(docs, 'StatefulSet', `${PREFIX}-etcd`);
  t.is(etcd.spec.replicas, 3);
  t.is(etcd.spec.podManagementPolicy, 'Parallel');
  const headless = one(docs, 'Service', etcd.spec.serviceName);
  t.is(headless.spec.clusterIP, 'None');
  t.true(headless.spec.publishNotReadyAddresses);
  const args: string[] = etcd.spec.template.spec.containers[0].args;
  const members = [0, 1, 2].map((i) => `${PREFIX}-etcd-${i}`);
  t.true(
    args.includes(
      `--initial-cluster=${members.map((m) => `${m}=http://${m}.${headless.metadata.name}.${NS}.svc:2380`).join(',')}`,
    ),
  );
  t.is(etcd.spec.volumeClaimTemplates[0].spec.storageClassName, 'fast-ssd');
  t.is(one(docs, 'PodDisruptionBudget', `${PREFIX}-etcd`).spec.minAvailable, 2);
  const endpoints = members.map((m) => `${m}.${headless.metadata.name}.${NS}.svc:2379`).join(',');
  for (const name of [`${PREFIX}-broker`, `${PREFIX}-bookie`]) {
    const w = workloads(docs).find((d) => d.metadata.name === name)!;
    t.is(arg(w.spec.template.spec.containers[0].args, '--metadata'), `etcd://${endpoints}/sluice/${RELEASE}`);
  }
});

test('helm - HPA on: the autoscaler owns the broker count, bookies keep theirs', (t) => {
  const docs = render({ valueFiles: [join(ciDir, 'hpa-values.yaml')] });
  const d = one(docs, 'Deployment', `${PREFIX}-broker`);
  t.false('replicas' in d.spec);
  const hpa = one(docs, 'HorizontalPodAutoscaler', `${PREFIX}-broker`);
  t.deepEqual(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: d.metadata.name });
  t.is(hpa.spec.minReplicas, 3);
  t.is(hpa.spec.maxReplicas, 12);
  t.deepEqual(
    hpa.spec.metrics.map((m: Obj) => [m.resource.name, m.resource.target.averageUtilization]),
    [
      ['cpu', 60],
      ['memory', 75],
    ],
  );
  t.is(hpa.spec.behavior.scaleDown.stabilizationWindowSeconds, 300);
  const bookies = one(docs, 'StatefulSet', `${PREFIX}-bookie`);
  t.is(bookies.spec.replicas, 5);
  t.truthy(
    bookies.spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution,
  );
});

test('helm - S3 on: brokers get the offload URL and keys from the chart-made Secret', (t) => {
  const docs = render({ valueFiles: [join(ciDir, 's3-values.yaml')] });
  const d = one(docs, 'Deployment', `${PREFIX}-broker`);
  const ct = d.spec.template.spec.containers[0];
  const offload = new URL(arg(ct.args, '--offload')!);
  t.is(offload.protocol, 's3:');
  t.is(offload.host, 'sluice-offload');
  t.is(offload.pathname, '/clusters/dev');
  t.is(offload.searchParams.get('endpoint'), 'http://minio.minio.svc:9000');
  t.is(offload.searchParams.get('region'), 'us-east-1');
  const secret = one(docs, 'Secret', `${PREFIX}-s3`);
  for (const name of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY']) {
    const ref = ct.env.find((e: Obj) => e.name === name).valueFrom.secretKeyRef;
    t.is(ref.name, secret.metadata.name);
    t.is(Buffer.from(secret.data[ref.key], 'base64').toString(), 'minioadmin');
  }
  t.regex(d.spec.template.metadata.annotations['checksum/s3-secret'], /^[0-9a-f]{64}$/);
  // Bookies never talk to S3.
  const bookie = one(docs, 'StatefulSet', `${PREFIX}-bookie`).spec.template.spec.containers[0];
  t.false(bookie.env.some((e: Obj) => e.name.startsWith('AWS_')));
  const sm = one(docs, 'ServiceMonitor', PREFIX);
  t.is(sm.metadata.labels.release, 'prometheus');
  t.deepEqual(
    docs
      .filter(
        (s) =>
          s.kind === 'Service' &&
          sm.spec.selector.matchExpressions[0].values.includes(
            s.metadata.labels['app.kubernetes.io/component'],
          ),
      )
      .map((s) => s.metadata.name)
      .sort(),
    [`${PREFIX}-bookie`, `${PREFIX}-broker`],
  );
  t.true(sm.spec.endpoints.every((e: Obj) => e.port === 'http' && e.path === '/metrics'));
});

test('helm - S3 with an existing Secret: keys are read from it and no Secret is rendered', (t) => {
  const docs = render({ valueFiles: [join(ciDir, 's3-existing-secret-values.yaml')] });
  const ct = one(docs, 'Deployment', `${PREFIX}-broker`).spec.template.spec.containers[0];
  t.is(arg(ct.args, '--offload'), 's3://acme-sluice/sluice?region=eu-west-1');
  const refs = Object.fromEntries(
    ct.env.filter((e: Obj) => e.name.startsWith('AWS_')).map((e: Obj) => [e.name, e.valueFrom.secretKeyRef]),
  );
  t.deepEqual(refs, {
    AWS_ACCESS_KEY_ID: { name: 'sluice-s3-keys', key: 'access-key' },
    AWS_SECRET_ACCESS_KEY: { name: 'sluice-s3-keys', key: 'secret-key' },
  });
  t.false(docs.some((d) => d.kind === 'Secret'));
});

test('helm - init job: post-install/upgrade hook creates the default tenant and namespace idempotently', (t) => {
  const docs = render();
  const job = one(docs, 'Job', `${PREFIX}-init`);
  t.is(job.metadata.annotations['helm.sh/hook'], 'post-install,post-upgrade');
  t.regex(job.metadata.annotations['helm.sh/hook-delete-policy'], /before-hook-creation/);
  const svc = one(docs, 'Service', `${PREFIX}-broker`);
  const url = `${svc.metadata.name}.${NS}.svc:${svc.spec.ports.find((p: Obj) => p.name === 'grpc').port}`;
  const pod = job.spec.template.spec;
  t.deepEqual(pod.initContainers[0].args, ['tenants', 'create', 'public', '--if-not-exists', '--url', url]);
  t.deepEqual(pod.containers[0].args, [
    'namespaces',
    'create',
    'public/default',
    '--if-not-exists',
    '--url',
    url,
  ]);
  t.is(pod.restartPolicy, 'OnFailure');
  t.false(render({ set: ['initJob.enabled=false'] }).some((d) => d.kind === 'Job'));
});

test('helm - NOTES.txt renders the client address and how to scale each tier', (t) => {
  for (const valueFiles of [[], [join(ciDir, 'hpa-values.yaml')], [join(ciDir, 's3-values.yaml')]]) {
    const res = renderChart({ chart, releaseName: RELEASE, namespace: NS, valueFiles, notes: true });
    t.true(res.ok, res.ok ? '' : res.error);
    if (!res.ok) continue;
    t.true(res.output.includes(`${PREFIX}-broker.${NS}.svc:6650`));
    t.regex(res.output, /--set bookie\.replicas=/);
    t.regex(res.output, /--set broker\.(replicas|autoscaling\.maxReplicas)=/);
    t.false(res.output.includes('<no value>'));
  }
  const upgraded = renderChart({ chart, releaseName: RELEASE, namespace: NS, notes: true, upgrade: true });
  t.true(upgraded.ok && upgraded.output.includes('is upgraded'));
});
