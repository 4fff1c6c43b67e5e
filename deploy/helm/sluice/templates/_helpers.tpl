{{/* Chart name, overridable. */}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-wide prefix of every resource name. */}}
{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Name of one component's resources. StatefulSet pods carry a
controller-revision-hash label built from the set's name, so names stay
within 52 characters.
*/}}
{{- define "sluice.componentName" -}}
{{- printf "%s-%s" (include "sluice.fullname" .root) .component | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{- define "sluice.brokerName" -}}{{ include "sluice.componentName" (dict "root" . "component" "broker") }}{{- end -}}
{{- define "sluice.bookieName" -}}{{ include "sluice.componentName" (dict "root" . "component" "bookie") }}{{- end -}}
{{- define "sluice.etcdName" -}}{{ include "sluice.componentName" (dict "root" . "component" "etcd") }}{{- end -}}
{{- define "sluice.etcdClientName" -}}{{ include "sluice.componentName" (dict "root" . "component" "etcd-client") }}{{- end -}}
{{- define "sluice.initJobName" -}}{{ include "sluice.componentName" (dict "root" . "component" "init") }}{{- end -}}
{{- define "sluice.s3SecretName" -}}{{ include "sluice.componentName" (dict "root" . "component" "s3") }}{{- end -}}

{{- define "sluice.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that never change for a component's pods: the workload's selector. Call with (dict "root" $ "component" "broker"). */}}
{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Every label of a component's resources. Call with (dict "root" $ "component" "broker"). */}}
{{- define "sluice.labels" -}}
helm.sh/chart: {{ include "sluice.chart" .root }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: sluice
{{- end -}}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "sluice.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "sluice.clusterName" -}}
{{- default .Release.Name .Values.clusterName -}}
{{- end -}}

{{/* etcd client endpoints as host:port,host:port: every bundled member, or the external list. */}}
{{- define "sluice.etcdEndpoints" -}}
{{- if .Values.etcd.enabled -}}
{{- $name := include "sluice.etcdName" . -}}
{{- $members := list -}}
{{- range $i := until (int .Values.etcd.replicas) -}}
{{- $members = append $members (printf "%s-%d.%s.%s.svc:2379" $name $i $name $.Release.Namespace) -}}
{{- end -}}
{{- join "," $members -}}
{{- else -}}
{{- $endpoints := .Values.etcd.external.endpoints | default (list) -}}
{{- if not $endpoints -}}
{{- fail "etcd.external.endpoints is empty: list the host:port client endpoints of your etcd cluster, or set etcd.enabled=true to run a bundled one" -}}
{{- end -}}
{{- join "," $endpoints -}}
{{- end -}}
{{- end -}}

{{/* The --metadata URL every broker and bookie is started with. */}}
{{- define "sluice.metadataUrl" -}}
{{- printf "etcd://%s/sluice/%s" (include "sluice.etcdEndpoints" .) (include "sluice.clusterName" .) -}}
{{- end -}}

{{/* The --offload URL of brokers: s3://bucket/prefix?endpoint=...&region=... */}}
{{- define "sluice.offloadUrl" -}}
{{- $s3 := .Values.offload.s3 -}}
{{- $bucket := required "offload.s3.bucket is required when offload.s3.enabled is true" $s3.bucket -}}
{{- $query := list -}}
{{- if $s3.endpoint -}}{{- $query = append $query (printf "endpoint=%s" (urlquery $s3.endpoint)) -}}{{- end -}}
{{- if $s3.region -}}{{- $query = append $query (printf "region=%s" (urlquery $s3.region)) -}}{{- end -}}
{{- $url := printf "s3://%s" $bucket -}}
{{- with trimAll "/" (default "" $s3.prefix) -}}{{- $url = printf "%s/%s" $url . -}}{{- end -}}
{{- if $query -}}{{- $url = printf "%s?%s" $url (join "&" $query) -}}{{- end -}}
{{- $url -}}
{{- end -}}

{{/* Name of the Secret holding S3 keys, or nothing when the pod identity is used. */}}
{{- define "sluice.s3CredentialsSecret" -}}
{{- $c := .Values.offload.s3.credentials -}}
{{- if $c.existingSecret -}}
{{- $c.existingSecret -}}
{{- else if or $c.accessKeyId $c.secretAccessKey -}}
{{- include "sluice.s3SecretName" . -}}
{{- end -}}
{{- end -}}

{{/*
Pod anti-affinity from a mode (required | preferred | none), or the user's
own affinity when given. Call with (dict "root" $ "component" "bookie" "mode" "required" "affinity" $values.affinity).
*/}}
{{- define "sluice.affinity" -}}
{{- if .affinity -}}
{{ toYaml .affinity }}
{{- else if eq .mode "required" -}}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- include "sluice.selectorLabels" . | nindent 10 }}
{{- else if eq .mode "preferred" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "sluice.selectorLabels" . | nindent 12 }}
{{- end -}}
{{- end -}}

{{/* Environment every Sluice container gets: its own pod identity and the log level. */}}
{{- define "sluice.commonEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: SLUICE_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- end -}}

{{/* The client address of the broker Service, for the CLI (--url). */}}
{{- define "sluice.brokerUrl" -}}
{{- printf "%s.%s.svc:%d" (include "sluice.brokerName" .) .Release.Namespace (int .Values.broker.ports.grpc) -}}
{{- end -}}
