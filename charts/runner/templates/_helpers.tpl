{{/*
Helpers of the runner chart. Every pod the chart makes (scheduled runs, GitOps runs, Ray
pods, the helm test) is built from the same pieces: runner.podSecurityContext,
runner.containerSecurityContext, runner.commonEnv / runner.envFrom and, for runs,
runner.runPodSpec.
*/}}

{{/* The chart name, 63 characters at most. */}}
{{- define "runner.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every resource name: "<release>-<chart>", or the release when it holds the chart name. */}}
{{- define "runner.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "runner.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* A string made safe as a label value: [A-Za-z0-9_.-], 63 characters, alphanumeric at both ends. */}}
{{- define "runner.labelValue" -}}
{{- regexReplaceAll "[^A-Za-z0-9_.-]+" (toString .) "-" | trunc 63 | trimAll "-_." }}
{{- end }}

{{/* Selector labels: name and instance. */}}
{{- define "runner.selectorLabels" -}}
app.kubernetes.io/name: {{ include "runner.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The labels of every object: (dict "root" $ "component" "run").
Pod templates get runner.podLabels instead (no chart version: a Job's template is immutable).
*/}}
{{- define "runner.labels" -}}
helm.sh/chart: {{ include "runner.chart" .root }}
{{ include "runner.selectorLabels" .root }}
app.kubernetes.io/version: {{ include "runner.labelValue" (include "runner.imageTag" .root) | quote }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{/* The labels of a pod template: (dict "root" $ "component" "run"). */}}
{{- define "runner.podLabels" -}}
{{ include "runner.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The labels the controller finds a run by: (dict "pipeline" P "runId" ID); runId optional. */}}
{{- define "runner.runLabels" -}}
runner.dev/pipeline: {{ include "runner.labelValue" .pipeline | quote }}
{{- if .runId }}
runner.dev/run-id: {{ include "runner.labelValue" .runId | quote }}
{{- end }}
{{- end }}

{{/* The ServiceAccount the pods run as. */}}
{{- define "runner.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "runner.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "runner.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "runner.image" -}}
{{- printf "%s:%s" .Values.image.repository (include "runner.imageTag" .) }}
{{- end }}

{{/* The manifest ConfigMap, mounted read-only at /etc/runner in every run pod. */}}
{{- define "runner.manifestName" -}}
{{- printf "%s-manifest" (include "runner.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{- define "runner.manifestDir" -}}/etc/runner{{- end }}

{{/* The manifest's JSON text: files/manifest.json, or manifest.inline. */}}
{{- define "runner.manifestJson" -}}
{{- if .Values.manifest.fromFile }}
{{- $text := .Files.Get "files/manifest.json" }}
{{- if not $text }}
{{- fail "manifest.fromFile is true but files/manifest.json is missing from the chart" }}
{{- end }}
{{- $text }}
{{- else if .Values.manifest.inline }}
{{- toPrettyJson .Values.manifest.inline }}
{{- else }}
{{- fail "set manifest.inline (a manifest object) when manifest.fromFile is false" }}
{{- end }}
{{- end }}

{{- define "runner.manifestChecksum" -}}
{{- include "runner.manifestJson" . | sha256sum }}
{{- end }}

{{/* The shared RayCluster's name (KubeRay derives pod and service names from it). */}}
{{- define "runner.rayClusterName" -}}
{{- default (printf "%s-ray" (include "runner.fullname" . | trunc 36 | trimSuffix "-")) .Values.rayCluster.name }}
{{- end }}

{{/*
RAY_ADDRESS of a parallel run: the Ray client port of the cluster's head service. A run pod
is not a Ray node, so it connects as a Ray client (ray://); the GCS port 6379 is only for
pods that are part of the cluster.
*/}}
{{- define "runner.rayAddress" -}}
{{- printf "ray://%s-head-svc:10001" (include "runner.rayClusterName" .) }}
{{- end }}

{{/* The pod-level security context of every pod. */}}
{{- define "runner.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The container-level security context of every container. */}}
{{- define "runner.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
The environment of every pod, as a list (toYaml it): HOME on the writable /tmp, the manifest,
artifacts, log format, OpenTelemetry. Credentials only by Secret reference.
*/}}
{{- define "runner.commonEnv" -}}
{{- $v := .Values }}
{{- $env := list (dict "name" "HOME" "value" "/tmp") }}
{{- $env = append $env (dict "name" "RUNNER_MANIFEST" "value" (printf "%s/manifest.json" (include "runner.manifestDir" .))) }}
{{- $env = append $env (dict "name" "RUNNER_LOG_FORMAT" "value" $v.logFormat) }}
{{- with $v.artifacts.url }}
{{- $env = append $env (dict "name" "RUNNER_ARTIFACTS" "value" .) }}
{{- end }}
{{- $env = append $env (dict "name" "OTEL_SERVICE_NAME" "value" $v.otel.serviceName) }}
{{- with $v.otel.endpoint }}
{{- $env = append $env (dict "name" "OTEL_EXPORTER_OTLP_ENDPOINT" "value" .) }}
{{- $env = append $env (dict "name" "OTEL_EXPORTER_OTLP_PROTOCOL" "value" $v.otel.protocol) }}
{{- end }}
{{- with $v.otel.headersSecretName }}
{{- $ref := dict "secretKeyRef" (dict "name" . "key" $v.otel.headersSecretKey) }}
{{- $env = append $env (dict "name" "OTEL_EXPORTER_OTLP_HEADERS" "valueFrom" $ref) }}
{{- end }}
{{- with $v.otel.resourceAttributes }}
{{- $attrs := list }}
{{- range $key, $value := . }}
{{- $attrs = append $attrs (printf "%s=%v" $key $value) }}
{{- end }}
{{- $env = append $env (dict "name" "OTEL_RESOURCE_ATTRIBUTES" "value" (join "," $attrs)) }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/* envFrom of every pod: the artifact credentials Secret, if any. */}}
{{- define "runner.envFrom" -}}
{{- with .Values.artifacts.secretName }}
envFrom:
  - secretRef:
      name: {{ . }}
{{- end }}
{{- end }}

{{/* A params value as the CLI takes it: strings as they are, anything else as JSON. */}}
{{- define "runner.paramValue" -}}
{{- if kindIs "string" . }}
{{- . }}
{{- else if and (kindIs "float64" .) (eq (float64 (int64 .)) .) }}
{{- int64 . }}
{{- else }}
{{- toJson . }}
{{- end }}
{{- end }}

{{/*
`runner run` arguments of a run, as JSON (a YAML flow list):
(dict "root" $ "entry" ENTRY "runId" ID). ENTRY has pipeline and optional executor, params.
*/}}
{{- define "runner.runArgs" -}}
{{- $e := .entry }}
{{- $args := list "run" $e.pipeline "--run-id" .runId "--resume" "--json" }}
{{- with $e.executor }}
{{- $args = concat $args (list "--executor" .) }}
{{- end }}
{{- range $key, $value := $e.params }}
{{- $args = concat $args (list "--param" (printf "%s=%s" $key (include "runner.paramValue" $value))) }}
{{- end }}
{{- range $key, $value := .root.Values.artifacts.storageOptions }}
{{- $args = concat $args (list "--storage-option" (printf "%s=%s" $key (include "runner.paramValue" $value))) }}
{{- end }}
{{- toJson $args }}
{{- end }}

{{/* Does this entry run its branches in parallel? Default: when the shared RayCluster is on. */}}
{{- define "runner.parallel" -}}
{{- $parallel := .root.Values.rayCluster.enabled }}
{{- if hasKey .entry "parallel" }}
{{- $parallel = .entry.parallel }}
{{- end }}
{{- if $parallel }}true{{ end }}
{{- end }}

{{/* The run-specific environment: (dict "root" $ "entry" ENTRY "runId" ID-or-empty). */}}
{{- define "runner.runEnv" -}}
{{- $env := list }}
{{- if .runId }}
{{- $env = append $env (dict "name" "RUNNER_RUN_ID" "value" .runId) }}
{{- else }}
{{- $path := "metadata.labels['batch.kubernetes.io/job-name']" }}
{{- $env = append $env (dict "name" "RUNNER_RUN_ID" "valueFrom" (dict "fieldRef" (dict "fieldPath" $path))) }}
{{- end }}
{{- if include "runner.parallel" . }}
{{- $env = append $env (dict "name" "TV_ORCH_PARALLEL" "value" "1") }}
{{- if .root.Values.rayCluster.enabled }}
{{- $env = append $env (dict "name" "RAY_ADDRESS" "value" (include "runner.rayAddress" .root)) }}
{{- end }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/* Scheduling and pull settings shared by every pod. */}}
{{- define "runner.podPlacement" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The hardened pod spec of a runner container: (dict "root" $ "args" JSON-LIST "env" YAML-LIST).
Never restarted in place (Jobs retry with a new pod, which resumes the run).
*/}}
{{- define "runner.podSpec" -}}
{{- $root := .root -}}
serviceAccountName: {{ include "runner.serviceAccountName" $root }}
automountServiceAccountToken: {{ $root.Values.serviceAccount.automountToken }}
enableServiceLinks: false
restartPolicy: Never
securityContext:
  {{- include "runner.podSecurityContext" $root | nindent 2 }}
{{- include "runner.podPlacement" $root }}
containers:
  - name: runner
    image: {{ include "runner.image" $root | quote }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    args: {{ .args }}
    env:
      {{- include "runner.commonEnv" $root | nindent 6 }}
      {{- with .env }}
      {{- . | trim | nindent 6 }}
      {{- end }}
    {{- with include "runner.envFrom" $root }}
    {{- . | trim | nindent 4 }}
    {{- end }}
    {{- with $root.Values.resources }}
    resources:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    securityContext:
      {{- include "runner.containerSecurityContext" $root | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      - name: manifest
        mountPath: {{ include "runner.manifestDir" $root }}
        readOnly: true
volumes:
  - name: tmp
    emptyDir: {}
  - name: manifest
    configMap:
      name: {{ include "runner.manifestName" $root }}
{{- end }}

{{/* The pod template annotations: podAnnotations. */}}
{{- define "runner.podAnnotations" -}}
{{- with .Values.podAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The least-privilege rules, namespaced, written once: what `runner submit | status | logs |
cancel | schedule | unschedule` and the runner use. No wildcards, nothing on Secrets.
*/}}
{{- define "runner.rbacRules" -}}
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["create", "get", "list", "watch", "delete"]
- apiGroups: ["batch"]
  resources: ["cronjobs"]
  verbs: ["create", "get", "list", "watch", "update", "patch", "delete"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["create", "get", "list", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["list"]
- apiGroups: ["ray.io"]
  resources: ["rayclusters"]
  verbs: ["create", "get", "list", "watch", "delete"]
{{- end }}

{{/*
A Ray pod of the shared cluster, as hardened as a run pod: (dict "root" $ "kind" "head"
"image" IMAGE "resources" RESOURCES). KubeRay adds the `ray start` command and the ports;
Ray writes only under /tmp (HOME too) and /dev/shm (its object store, in memory).
With autoscaling, the head keeps the ServiceAccount KubeRay makes for its autoscaler
sidecar (which calls the Kubernetes API).
*/}}
{{- define "runner.rayPodSpec" -}}
{{- $root := .root -}}
{{- if not (and (eq .kind "head") $root.Values.rayCluster.enableInTreeAutoscaling) }}
serviceAccountName: {{ include "runner.serviceAccountName" $root }}
automountServiceAccountToken: false
{{- end }}
enableServiceLinks: false
securityContext:
  {{- include "runner.podSecurityContext" $root | nindent 2 }}
{{- include "runner.podPlacement" $root }}
containers:
  - name: {{ printf "ray-%s" .kind }}
    image: {{ .image | quote }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    env:
      {{- include "runner.commonEnv" $root | nindent 6 }}
    {{- with include "runner.envFrom" $root }}
    {{- . | trim | nindent 4 }}
    {{- end }}
    resources:
      {{- toYaml .resources | nindent 6 }}
    securityContext:
      {{- include "runner.containerSecurityContext" $root | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      - name: dshm
        mountPath: /dev/shm
      - name: manifest
        mountPath: {{ include "runner.manifestDir" $root }}
        readOnly: true
volumes:
  - name: tmp
    emptyDir: {}
  - name: dshm
    emptyDir:
      medium: Memory
      sizeLimit: {{ $root.Values.rayCluster.sharedMemorySize }}
  - name: manifest
    configMap:
      name: {{ include "runner.manifestName" $root }}
{{- end }}

{{/* A schedule's CronJob name, 52 characters at most (its Jobs add 11): (dict "root" $ "name" NAME). */}}
{{- define "runner.cronJobName" -}}
{{- $prefix := include "runner.fullname" .root | trunc (int (sub 51 (len .name))) | trimSuffix "-" }}
{{- printf "%s-%s" $prefix .name }}
{{- end }}

{{/*
A GitOps run's Job name, from the entry only: "<fullname>-run-<name>-<hash of pipeline and run id>"
(dict "root" $ "entry" ENTRY "runId" ID). The same entry always gives the same name, so a
re-sync finds the Job it made; a new runId gives a new Job.
*/}}
{{- define "runner.runJobName" -}}
{{- $hash := printf "%s\n%s" .entry.pipeline .runId | sha256sum | trunc 8 }}
{{- $prefix := include "runner.fullname" .root | trunc (int (sub 49 (len .entry.name))) | trimSuffix "-" }}
{{- printf "%s-run-%s-%s" $prefix .entry.name $hash }}
{{- end }}
