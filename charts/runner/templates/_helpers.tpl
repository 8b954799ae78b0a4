{{/*
Helpers of the runner chart. Every pod the chart makes (scheduled runs, GitOps runs, Ray
pods, the helm test) is built from the same pieces: runner.podSecurityContext,
runner.containerSecurityContext, runner.commonEnv / runner.envFrom and, for runs,
runner.podSpec. Every pod runs as the run ServiceAccount (no Role, no token); the
controller's ServiceAccount, bound to the Role, is for the controller only.
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

{{/* The controller's ServiceAccount (`runner submit` & co. in a pod), bound to the Role. */}}
{{- define "runner.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "runner.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The ServiceAccount every pod of the chart runs as: no Role, no token. */}}
{{- define "runner.runServiceAccountName" -}}
{{- if .Values.runServiceAccount.create }}
{{- default (printf "%s-run" (include "runner.fullname" . | trunc 59 | trimSuffix "-")) .Values.runServiceAccount.name }}
{{- else }}
{{- default "default" .Values.runServiceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the store's signing key (RUNNER_ARTIFACT_KEY): made by the chart, or named. */}}
{{- define "runner.artifactKeySecretName" -}}
{{- default (printf "%s-artifact-key" (include "runner.fullname" . | trunc 50 | trimSuffix "-")) .Values.artifacts.keySecretName }}
{{- end }}

{{/* The Secret holding the shared RayCluster's auth token (RAY_AUTH_TOKEN). */}}
{{- define "runner.rayTokenSecretName" -}}
{{- printf "%s-token" (include "runner.rayClusterName" .) }}
{{- end }}

{{/*
A random value kept across upgrades: (dict "root" $ "name" SECRET "key" KEY). The Secret's
current value when it exists (Helm `lookup`; `helm template` sees none), else 48 random
characters. Rendered base64-encoded, for `data`.
*/}}
{{- define "runner.keptRandom" -}}
{{- $found := lookup "v1" "Secret" .root.Release.Namespace .name }}
{{- if and $found $found.data (hasKey $found.data .key) }}
{{- index $found.data .key }}
{{- else }}
{{- randAlphaNum 48 | b64enc }}
{{- end }}
{{- end }}

{{/* A value as the kubelet passes it on: it expands $(VAR) in args and env values and turns $$ into $, so every $ is doubled. */}}
{{- define "runner.literal" -}}
{{- replace "$" "$$" (toString .) }}
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

{{/* Where run pods mount artifacts.persistentVolumeClaim (as `runner submit --artifacts-pvc`). */}}
{{- define "runner.artifactsMount" -}}/var/lib/runner/artifacts{{- end }}

{{/*
Why an artifact root stays inside the pod, in words, or nothing when it is a store outside
it: a path, file:// or memory:// (of a chained URL, the last part). As `runner submit` says.
*/}}
{{- define "runner.podLocalStore" -}}
{{- $last := splitList "::" (toString .) | last }}
{{- if not (contains "://" $last) }}a path inside the pod
{{- else }}
{{- $scheme := splitList "://" $last | first | lower }}
{{- if eq $scheme "memory" }}the memory of the pod's process
{{- else if has $scheme (list "file" "local") }}a path inside the pod
{{- end }}
{{- end }}
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
{{- if $v.artifacts.url }}
{{- $env = append $env (dict "name" "RUNNER_ARTIFACTS" "value" (include "runner.literal" $v.artifacts.url)) }}
{{- else if $v.artifacts.persistentVolumeClaim }}
{{- $env = append $env (dict "name" "RUNNER_ARTIFACTS" "value" (include "runner.artifactsMount" .)) }}
{{- end }}
{{- $env = append $env (dict "name" "OTEL_SERVICE_NAME" "value" (include "runner.literal" $v.otel.serviceName)) }}
{{- with $v.otel.endpoint }}
{{- $env = append $env (dict "name" "OTEL_EXPORTER_OTLP_ENDPOINT" "value" (include "runner.literal" .)) }}
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
{{- $env = append $env (dict "name" "OTEL_RESOURCE_ATTRIBUTES" "value" (include "runner.literal" (join "," $attrs))) }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/* envFrom of the run pods (never the Ray pods): the artifact credentials Secret, if any. */}}
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
{{- $args := list "run" $e.pipeline "--run-id" .runId "--resume" "--or-start" "--json" }}
{{- with $e.executor }}
{{- $args = concat $args (list "--executor" .) }}
{{- end }}
{{- range $key, $value := $e.params }}
{{- $args = concat $args (list "--param" (include "runner.literal" (printf "%s=%s" $key (include "runner.paramValue" $value)))) }}
{{- end }}
{{- range $key, $value := .root.Values.artifacts.storageOptions }}
{{- $args = concat $args (list "--storage-option" (include "runner.literal" (printf "%s=%s" $key (include "runner.paramValue" $value)))) }}
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
{{- $env = append $env (dict "name" "RUNNER_TERM_GRACE" "value" (toString .root.Values.job.termGraceSeconds)) }}
{{- $key := dict "secretKeyRef" (dict "name" (include "runner.artifactKeySecretName" .root) "key" "RUNNER_ARTIFACT_KEY") }}
{{- $env = append $env (dict "name" "RUNNER_ARTIFACT_KEY" "valueFrom" $key) }}
{{- if include "runner.parallel" . }}
{{- $env = append $env (dict "name" "TV_ORCH_PARALLEL" "value" "1") }}
{{- if .root.Values.rayCluster.enabled }}
{{- $env = append $env (dict "name" "RAY_ADDRESS" "value" (include "runner.rayAddress" .root)) }}
{{- $env = concat $env (include "runner.rayAuthEnv" .root | fromYamlArray) }}
{{- end }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/* Ray's token authentication: the env of the Ray pods and of the runs that are its clients. */}}
{{- define "runner.rayAuthEnv" -}}
{{- $ref := dict "secretKeyRef" (dict "name" (include "runner.rayTokenSecretName" .) "key" "RAY_AUTH_TOKEN") }}
{{- toYaml (list (dict "name" "RAY_AUTH_MODE" "value" "token") (dict "name" "RAY_AUTH_TOKEN" "valueFrom" $ref)) }}
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
The hardened pod spec of a runner container: (dict "root" $ "args" JSON-LIST "env" YAML-LIST
"credentials" BOOL); a run pod (credentials) also mounts artifacts.persistentVolumeClaim. Never restarted in place (Jobs retry with a new pod, which resumes the
run); on SIGTERM the runner finishes within RUNNER_TERM_GRACE, inside the grace period.
*/}}
{{- define "runner.podSpec" -}}
{{- $root := .root -}}
serviceAccountName: {{ include "runner.runServiceAccountName" $root }}
automountServiceAccountToken: false
enableServiceLinks: false
restartPolicy: Never
terminationGracePeriodSeconds: {{ $root.Values.job.terminationGracePeriodSeconds }}
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
    {{- if .credentials }}
    {{- with include "runner.envFrom" $root }}
    {{- . | trim | nindent 4 }}
    {{- end }}
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
      {{- if and .credentials $root.Values.artifacts.persistentVolumeClaim }}
      - name: artifacts
        mountPath: {{ include "runner.artifactsMount" $root }}
      {{- end }}
volumes:
  - name: tmp
    emptyDir: {}
  - name: manifest
    configMap:
      name: {{ include "runner.manifestName" $root }}
  {{- if and .credentials $root.Values.artifacts.persistentVolumeClaim }}
  - name: artifacts
    persistentVolumeClaim:
      claimName: {{ $root.Values.artifacts.persistentVolumeClaim }}
  {{- end }}
{{- end }}

{{/* The pod template annotations: podAnnotations. */}}
{{- define "runner.podAnnotations" -}}
{{- with .Values.podAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The least-privilege rules, namespaced, written once: exactly what the controller
(`runner submit | status | logs | cancel | schedule | unschedule`) calls -- a test records
its every request and checks this list both ways. No wildcards; on Secrets and
NetworkPolicies only `create` (a run's key and Ray token, its head's policy; owned by
its Job, deleted with it).
*/}}
{{- define "runner.rbacRules" -}}
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["create", "get", "list", "watch", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["cronjobs"]
  verbs: ["create", "get", "patch", "delete"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["create", "patch", "delete"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["list"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["create"]
- apiGroups: ["ray.io"]
  resources: ["rayclusters"]
  verbs: ["create", "get", "delete"]
{{- end }}

{{/*
A Ray pod of the shared cluster, as hardened as a run pod: (dict "root" $ "kind" "head"
"image" IMAGE "resources" RESOURCES). KubeRay adds the `ray start` command and the ports;
Ray writes only under /tmp (HOME, its session dir /tmp/ray) and /dev/shm (its object
store, in memory). Token authentication on; no storage credentials (the run's pod writes
every checkpoint). With autoscaling, the head keeps the ServiceAccount KubeRay makes for
its autoscaler sidecar (which calls the Kubernetes API).
*/}}
{{- define "runner.rayPodSpec" -}}
{{- $root := .root -}}
{{- if not (and (eq .kind "head") $root.Values.rayCluster.enableInTreeAutoscaling) }}
serviceAccountName: {{ include "runner.runServiceAccountName" $root }}
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
      - name: HOME
        value: /tmp
      - name: RUNNER_LOG_FORMAT
        value: {{ $root.Values.logFormat }}
      {{- include "runner.rayAuthEnv" $root | nindent 6 }}
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

{{/*
The Job spec fields every run shares: retries that a disruption (preemption, eviction,
node drain: the DisruptionTarget condition) does not count, and the deadline.
*/}}
{{- define "runner.jobPolicy" -}}
backoffLimit: {{ .Values.job.backoffLimit }}
podFailurePolicy:
  rules:
    - action: Ignore
      onPodConditions:
        - type: DisruptionTarget
          status: "True"
{{- with .Values.job.activeDeadlineSeconds }}
activeDeadlineSeconds: {{ . }}
{{- end }}
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
