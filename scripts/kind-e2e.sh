#!/usr/bin/env bash
# End-to-end check of the image, the chart and KubeRay on a local kind cluster.
#
# For a machine WITH a running Docker engine and kind, kubectl and helm on PATH (no Python
# needed on the host). It cannot run in CI or on the project's dev machines: they have no
# Docker engine.
#
#   scripts/kind-e2e.sh                   # create, build, install, run, check, tear down
#   KEEP_CLUSTER=1 scripts/kind-e2e.sh    # keep the cluster and what is in it afterwards
#   SUBMIT_MODE=job scripts/kind-e2e.sh   # plain Jobs even where `runner submit` exists
#
# What it does: creates the kind cluster of kind-config.yaml (or reuses it), builds
# runner:dev from docker/Dockerfile and loads it into the nodes, installs the KubeRay
# operator (Helm, pinned), deploys MinIO as the S3 artifact store (credentials in Secrets),
# installs charts/runner, runs alpha.full and alpha.parallel (on a RayCluster) as Jobs,
# checks in the artifact store that both runs succeeded, prints the pods' logs when
# something fails, and tears down on exit. It never touches your kubeconfig or Helm repos:
# it works with a kubeconfig of its own.
#
# Exit codes: 0 passed, 1 a step failed, 2 a tool is missing or Docker is not running.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# ---------------------------------------------------------------- knobs (env overrides)
CLUSTER_NAME="${CLUSTER_NAME:-runner}"
KIND_CONFIG="${KIND_CONFIG:-$REPO_ROOT/kind-config.yaml}"
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-}"        # e.g. kindest/node:vX.Y.Z; empty: kind's own
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
NAMESPACE="${NAMESPACE:-runner-e2e}"
POD_SECURITY="${POD_SECURITY:-restricted}"    # Pod Security level enforced on NAMESPACE
JOB_TIMEOUT_SECONDS="${JOB_TIMEOUT_SECONDS:-1200}"

IMAGE_REPOSITORY="${IMAGE_REPOSITORY:-runner}"
IMAGE_TAG="${IMAGE_TAG:-dev}"
IMAGE="$IMAGE_REPOSITORY:$IMAGE_TAG"

KUBERAY_REPO_URL="https://ray-project.github.io/kuberay-helm/"
KUBERAY_CHART_VERSION="${KUBERAY_CHART_VERSION:-1.7.1}"   # chart kuberay/kuberay-operator
KUBERAY_NAMESPACE="${KUBERAY_NAMESPACE:-kuberay-system}"

MINIO_IMAGE="${MINIO_IMAGE:-docker.io/minio/minio:RELEASE.2025-09-07T16-13-09Z}"
MINIO_NAMESPACE="${MINIO_NAMESPACE:-minio}"
MINIO_NODE_PORT=30900                         # = extraPortMappings in kind-config.yaml
ARTIFACTS_BUCKET="${ARTIFACTS_BUCKET:-runner-artifacts}"
ARTIFACTS_URL="s3://$ARTIFACTS_BUCKET"
S3_ENDPOINT="http://minio.$MINIO_NAMESPACE.svc.cluster.local:9000"
# The runner's S3 credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION
# and AWS_ENDPOINT_URL (honoured by botocore, so s3fs finds MinIO with no storage option).
S3_SECRET=runner-s3

# Our chart, and the values passed to it (align with charts/runner/values.yaml).
CHART_DIR="$REPO_ROOT/charts/runner"
RELEASE=runner
RUN_HELM_TEST="${RUN_HELM_TEST:-1}"
CHART_VALUES=(
    "image.repository=$IMAGE_REPOSITORY"
    "image.tag=$IMAGE_TAG"
    "image.pullPolicy=Never"                  # loaded into the nodes by kind, never pulled
    "artifacts.url=$ARTIFACTS_URL"
    "artifacts.storageOptions.endpoint_url=$S3_ENDPOINT"
    "artifacts.secretName=$S3_SECRET"         # envFrom: the AWS_* variables above
)

# How runs are submitted: `cli` (runner submit ... --wait), `job` (a Job applied here, the
# parallel one against a RayCluster applied here), or `auto` (cli when `runner submit`
# exists: $RUNNER_CLI, else .venv/bin/runner, else runner on PATH).
SUBMIT_MODE="${SUBMIT_MODE:-auto}"
RUNNER_CLI="${RUNNER_CLI:-}"
SUBMIT_FLAGS=(                                # align with `runner submit --help`
    --namespace "$NAMESPACE"
    --image "$IMAGE"
    --artifacts "$ARTIFACTS_URL"
    --secret-env "$S3_SECRET"
    --storage-option "endpoint_url=$S3_ENDPOINT"
    --wait
)
RAY_CLUSTER=runner-e2e-ray                    # job mode only
RUN_SUFFIX="$(date +%Y%m%d%H%M%S)"

# ---------------------------------------------------------------- state for the teardown
CREATED_CLUSTER=0
INSTALLED_KUBERAY=0
RAY_VERSION=""
WORK_DIR=""                                   # this run's kubeconfig and scratch files

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

require_tools() {
    local tool missing=""
    for tool in docker kind kubectl helm; do
        command -v "$tool" > /dev/null 2>&1 || missing="$missing $tool"
    done
    if [ -n "$missing" ]; then
        printf 'error: not found on PATH:%s\n' "$missing" >&2
        printf '%s\n' "This script needs Docker (a running engine), kind, kubectl and helm:" \
            "  https://docs.docker.com/get-docker/" \
            "  https://kind.sigs.k8s.io/docs/user/quick-start/#installation" \
            "  https://kubernetes.io/docs/tasks/tools/" \
            "  https://helm.sh/docs/intro/install/" >&2
        exit 2
    fi
    if ! docker info > /dev/null 2>&1; then
        echo "error: docker is installed but no Docker engine answers (is it running?)" >&2
        exit 2
    fi
}

# ---------------------------------------------------------------- diagnostics, teardown
dump_diagnostics() {
    [ -n "$WORK_DIR" ] && [ -s "$KUBECONFIG" ] || return 0
    log "diagnostics"
    kubectl get nodes -o wide
    kubectl get pods --all-namespaces -o wide
    kubectl -n "$NAMESPACE" get jobs,rayclusters -o wide 2> /dev/null
    kubectl -n "$NAMESPACE" get events --sort-by=.lastTimestamp | tail -n 40
    print_logs "$NAMESPACE" --field-selector=status.phase!=Succeeded
    print_logs "$MINIO_NAMESPACE" --field-selector=status.phase!=Running
    print_logs "$KUBERAY_NAMESPACE"
}

# print_logs NAMESPACE [SELECTOR...]: events and every container's log of those pods.
print_logs() {
    local namespace=$1 pod
    shift
    # ${1+"$@"}: an empty "$@" under set -u is an error in the bash 3.2 of macOS
    kubectl -n "$namespace" get pods ${1+"$@"} -o name 2> /dev/null |
        while read -r pod; do
            printf '\n----- %s/%s\n' "$namespace" "$pod" >&2
            kubectl -n "$namespace" describe "$pod" | sed -n '/^Events:/,$p' >&2 || true
            kubectl -n "$namespace" logs "$pod" --all-containers --prefix --tail=300 >&2 ||
                true
        done || true
}

cleanup() {
    local status=$?
    set +eu
    trap - EXIT INT TERM
    [ "$status" -eq 0 ] || dump_diagnostics
    if [ "$KEEP_CLUSTER" = 1 ]; then
        log "KEEP_CLUSTER=1: cluster $CLUSTER_NAME kept (kind export kubeconfig --name" \
            "$CLUSTER_NAME; delete it with: kind delete cluster --name $CLUSTER_NAME)"
    elif [ "$CREATED_CLUSTER" = 1 ]; then
        log "deleting kind cluster $CLUSTER_NAME"
        kind delete cluster --name "$CLUSTER_NAME" --kubeconfig "$KUBECONFIG"
    elif [ -n "$WORK_DIR" ] && [ -s "$KUBECONFIG" ]; then
        log "cluster $CLUSTER_NAME existed before this run: removing only what it added"
        kubectl delete namespace "$NAMESPACE" "$MINIO_NAMESPACE" --ignore-not-found --wait=false
        if [ "$INSTALLED_KUBERAY" = 1 ]; then
            helm uninstall kuberay-operator --namespace "$KUBERAY_NAMESPACE"
        fi
    fi
    [ -z "$WORK_DIR" ] || rm -rf "$WORK_DIR"
    if [ "$status" -eq 0 ]; then log "kind e2e passed"; else log "kind e2e FAILED ($status)"; fi
    exit "$status"
}

# ---------------------------------------------------------------- small helpers
# A DNS-1123 label from any text (run ids and pipeline names hold dots).
dns_label() { printf '%s' "$1" | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9-' '-'; }

# One YAML scalar, double-quoted with JSON escapes, whatever the text holds.
yaml_quote() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\t'/\\t}
    printf '"%s"' "$s"
}

ensure_namespace() {  # NAME [POD_SECURITY_LEVEL]
    kubectl create namespace "$1" --dry-run=client -o yaml | kubectl apply -f - > /dev/null
    if [ -n "${2:-}" ]; then
        kubectl label namespace "$1" "pod-security.kubernetes.io/enforce=$2" --overwrite \
            > /dev/null
    fi
}

# A Secret from KEY=VALUE lines on stdin (kept off command lines), created or updated.
apply_secret() {  # NAMESPACE NAME
    local file="$WORK_DIR/secret.env"
    (umask 077 && cat > "$file")
    kubectl -n "$1" create secret generic "$2" --from-env-file="$file" \
        --dry-run=client -o yaml | kubectl apply -f - > /dev/null
    rm -f "$file"
}

secret_value() {  # NAMESPACE NAME KEY
    kubectl -n "$1" get secret "$2" -o "jsonpath={.data.$3}" | base64 --decode
}

# The hardened pod spec of the runner image (non-root, read-only root with an emptyDir at
# /tmp, no privilege escalation, no capabilities, RuntimeDefault seccomp), as the chart
# and the controller make it; one place for the check pods and the job-mode Jobs.
#   pod_spec INDENT [--env NAME=VALUE]... (--args|--command) WORD...
pod_spec() {
    local indent=$1 env="" field="" word
    shift
    while [ $# -gt 0 ]; do
        case "$1" in
            --env) env="$env$2"$'\n'; shift 2 ;;
            --args) field="args"; shift; break ;;
            --command) field="command"; shift; break ;;
            *) die "pod_spec: unexpected $1" ;;
        esac
    done
    {
        cat <<EOF
restartPolicy: Never
automountServiceAccountToken: false
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  seccompProfile: {type: RuntimeDefault}
volumes:
  - {name: tmp, emptyDir: {}}
containers:
  - name: runner
    image: $IMAGE
    imagePullPolicy: Never
    envFrom:
      - secretRef: {name: $S3_SECRET}
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {drop: [ALL]}
    volumeMounts:
      - {name: tmp, mountPath: /tmp}
    resources:
      requests: {cpu: 500m, memory: 1Gi}
      limits: {memory: 2Gi}
EOF
        if [ -n "$env" ]; then
            echo "    env:"
            printf '%s' "$env" | while IFS='=' read -r name value; do
                printf '      - {name: %s, value: %s}\n' "$name" "$(yaml_quote "$value")"
            done
        fi
        echo "    $field:"
        for word in "$@"; do
            printf '      - %s\n' "$(yaml_quote "$word")"
        done
    } | sed "s/^/$indent/"
}

# run_pod NAME (--args|--command) WORD...: runs the image once in NAMESPACE, prints its
# log on stdout and fails when the pod fails or does not finish in time.
run_pod() {
    local name=$1 phase waited=0
    shift
    kubectl -n "$NAMESPACE" delete pod "$name" --ignore-not-found > /dev/null
    {
        printf 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  namespace: %s\n' \
            "$name" "$NAMESPACE"
        printf '  labels: {app.kubernetes.io/name: runner, app.kubernetes.io/component: e2e}\n'
        printf 'spec:\n'
        pod_spec "  " "$@"
    } | kubectl apply -f - > /dev/null || return 1
    while :; do
        phase="$(kubectl -n "$NAMESPACE" get pod "$name" -o jsonpath='{.status.phase}' ||
            true)"
        case "$phase" in Succeeded | Failed) break ;; esac
        if [ "$waited" -ge 300 ]; then
            echo "pod $name did not finish within 300s" >&2
            print_logs "$NAMESPACE" --field-selector="metadata.name=$name"
            return 1
        fi
        sleep 3
        waited=$((waited + 3))
    done
    kubectl -n "$NAMESPACE" logs "$name" || true
    kubectl -n "$NAMESPACE" delete pod "$name" --wait=false > /dev/null || true
    [ "$phase" = Succeeded ]
}

# wait_job NAME: until the Job completes (0) or fails or times out (1); a failed Job
# returns at once rather than after the whole `kubectl wait` timeout.
wait_job() {
    local name=$1 waited=0 failed
    while [ "$waited" -lt "$JOB_TIMEOUT_SECONDS" ]; do
        if kubectl -n "$NAMESPACE" wait --for=condition=complete "job/$name" --timeout=15s \
            > /dev/null 2>&1; then
            return 0
        fi
        failed="$(kubectl -n "$NAMESPACE" get job "$name" \
            -o jsonpath='{.status.conditions[?(@.type=="Failed")].status}' 2> /dev/null || true)"
        if [ "$failed" = True ]; then
            echo "job $name failed" >&2
            return 1
        fi
        waited=$((waited + 15))
    done
    echo "job $name did not complete within ${JOB_TIMEOUT_SECONDS}s" >&2
    return 1
}

# ---------------------------------------------------------------- steps
ensure_cluster() {
    local clusters args
    clusters="$(kind get clusters 2> /dev/null || true)"
    case $'\n'"$clusters"$'\n' in
        *$'\n'"$CLUSTER_NAME"$'\n'*)
            log "kind cluster $CLUSTER_NAME exists: reusing it"
            kind export kubeconfig --name "$CLUSTER_NAME" --kubeconfig "$KUBECONFIG"
            ;;
        *)
            log "creating kind cluster $CLUSTER_NAME from $KIND_CONFIG"
            CREATED_CLUSTER=1    # before: a half-created cluster is deleted too
            args=(create cluster --name "$CLUSTER_NAME" --config "$KIND_CONFIG"
                --kubeconfig "$KUBECONFIG" --wait 180s)
            if [ -n "$KIND_NODE_IMAGE" ]; then args+=(--image "$KIND_NODE_IMAGE"); fi
            kind "${args[@]}"
            ;;
    esac
    kubectl wait --for=condition=Ready nodes --all --timeout=180s > /dev/null
}

build_image() {
    local revision
    revision="$(git -C "$REPO_ROOT" rev-parse HEAD 2> /dev/null || echo unknown)"
    # The Ray variant: it runs the Jobs, alpha.parallel's pod and the RayCluster alike.
    log "building $IMAGE from docker/Dockerfile (VARIANT=ray)"
    docker build --file "$REPO_ROOT/docker/Dockerfile" --tag "$IMAGE" \
        --build-arg VARIANT=ray --build-arg "REVISION=$revision" \
        --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$REPO_ROOT"
    log "loading $IMAGE into the kind nodes"
    kind load docker-image "$IMAGE" --name "$CLUSTER_NAME"
    RAY_VERSION="$(docker run --rm --entrypoint python "$IMAGE" -c \
        'import ray; print(ray.__version__)')"
    log "image $IMAGE has Ray $RAY_VERSION"
}

install_kuberay() {
    if ! helm status kuberay-operator --namespace "$KUBERAY_NAMESPACE" > /dev/null 2>&1; then
        INSTALLED_KUBERAY=1
    fi
    # = chart kuberay/kuberay-operator of that repository, without adding the repo to
    # your Helm configuration.
    log "installing the KubeRay operator (chart $KUBERAY_CHART_VERSION)"
    helm upgrade --install kuberay-operator kuberay-operator \
        --repo "$KUBERAY_REPO_URL" --version "$KUBERAY_CHART_VERSION" \
        --namespace "$KUBERAY_NAMESPACE" --create-namespace --wait --timeout 5m
    kubectl wait --for=condition=established crd/rayclusters.ray.io --timeout=60s > /dev/null
}

deploy_minio() {
    local user password
    log "deploying MinIO ($MINIO_IMAGE) in namespace $MINIO_NAMESPACE"
    ensure_namespace "$MINIO_NAMESPACE" "$POD_SECURITY"
    if kubectl -n "$MINIO_NAMESPACE" get secret minio-root > /dev/null 2>&1; then
        user="$(secret_value "$MINIO_NAMESPACE" minio-root MINIO_ROOT_USER)"
        password="$(secret_value "$MINIO_NAMESPACE" minio-root MINIO_ROOT_PASSWORD)"
    else
        user=runner
        password="$(od -An -N18 -tx1 /dev/urandom | tr -d ' \n')"
        printf 'MINIO_ROOT_USER=%s\nMINIO_ROOT_PASSWORD=%s\n' "$user" "$password" |
            apply_secret "$MINIO_NAMESPACE" minio-root
    fi
    printf '%s\n' "AWS_ACCESS_KEY_ID=$user" "AWS_SECRET_ACCESS_KEY=$password" \
        "AWS_DEFAULT_REGION=us-east-1" "AWS_ENDPOINT_URL=$S3_ENDPOINT" |
        apply_secret "$NAMESPACE" "$S3_SECRET"
    kubectl apply -f - > /dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: minio
  namespace: $MINIO_NAMESPACE
  labels: {app.kubernetes.io/name: minio}
spec:
  replicas: 1
  selector:
    matchLabels: {app.kubernetes.io/name: minio}
  template:
    metadata:
      labels: {app.kubernetes.io/name: minio}
    spec:
      securityContext:
        runAsNonRoot: true
        runAsUser: 1000
        runAsGroup: 1000
        fsGroup: 1000
        seccompProfile: {type: RuntimeDefault}
      containers:
        - name: minio
          image: $MINIO_IMAGE
          args: [server, /data, --address, ":9000", --console-address, ":9001"]
          envFrom:
            - secretRef: {name: minio-root}
          env:
            - {name: HOME, value: /tmp}
          ports:
            - {name: s3, containerPort: 9000}
          readinessProbe:
            httpGet: {path: /minio/health/ready, port: s3}
            periodSeconds: 5
          securityContext:
            allowPrivilegeEscalation: false
            capabilities: {drop: [ALL]}
          volumeMounts:
            - {name: data, mountPath: /data}
            - {name: tmp, mountPath: /tmp}
      volumes:
        - {name: data, emptyDir: {}}
        - {name: tmp, emptyDir: {}}
---
apiVersion: v1
kind: Service
metadata:
  name: minio
  namespace: $MINIO_NAMESPACE
  labels: {app.kubernetes.io/name: minio}
spec:
  type: NodePort
  selector: {app.kubernetes.io/name: minio}
  ports:
    - {name: s3, port: 9000, targetPort: s3, nodePort: $MINIO_NODE_PORT}
EOF
    kubectl -n "$MINIO_NAMESPACE" rollout status deployment/minio --timeout=180s
    log "creating bucket $ARTIFACTS_BUCKET (with the runner image and its credentials)"
    run_pod make-bucket --command python -c "import s3fs; fs = s3fs.S3FileSystem(); \
b = '$ARTIFACTS_BUCKET'; fs.exists(b) or fs.mkdir(b); print('bucket', b, 'ready')" ||
        die "could not create bucket $ARTIFACTS_BUCKET"
}

install_chart() {
    local sets=() kv
    [ -f "$CHART_DIR/Chart.yaml" ] || die "no chart at $CHART_DIR"
    for kv in "${CHART_VALUES[@]}"; do sets+=(--set "$kv"); done
    log "installing chart charts/runner as release $RELEASE in $NAMESPACE"
    helm upgrade --install "$RELEASE" "$CHART_DIR" --namespace "$NAMESPACE" \
        "${sets[@]}" --wait --timeout 5m
    if [ "$RUN_HELM_TEST" = 1 ]; then
        helm test "$RELEASE" --namespace "$NAMESPACE" --logs --timeout 5m
    fi
}

choose_submit_mode() {
    if [ -z "$RUNNER_CLI" ]; then
        if [ -x "$REPO_ROOT/.venv/bin/runner" ]; then
            RUNNER_CLI="$REPO_ROOT/.venv/bin/runner"
        else
            RUNNER_CLI="$(command -v runner || true)"
        fi
    fi
    if [ "$SUBMIT_MODE" = auto ]; then
        if [ -n "$RUNNER_CLI" ] && "$RUNNER_CLI" submit --help > /dev/null 2>&1; then
            SUBMIT_MODE=cli
        else
            SUBMIT_MODE=job
        fi
    fi
    case "$SUBMIT_MODE" in
        cli | job) log "submitting runs with: $SUBMIT_MODE" ;;
        *) die "SUBMIT_MODE must be auto, cli or job, not $SUBMIT_MODE" ;;
    esac
}

# A RayCluster of the runner image for job-mode parallel runs (the controller makes its
# own per run). rayVersion >= 2.53 makes KubeRay probe over HTTP, so no wget is needed;
# KubeRay starts Ray with `bash -lc`, which finds the venv through /etc/profile.d.
ensure_raycluster() {
    log "starting RayCluster $RAY_CLUSTER (Ray $RAY_VERSION)"
    {
        cat <<EOF
apiVersion: ray.io/v1
kind: RayCluster
metadata:
  name: $RAY_CLUSTER
  namespace: $NAMESPACE
  labels: {app.kubernetes.io/name: runner, app.kubernetes.io/component: ray}
spec:
  rayVersion: $(yaml_quote "$RAY_VERSION")
  headGroupSpec:
EOF
        ray_group head "    "
        printf '  workerGroupSpecs:\n    - groupName: workers\n'
        printf '      replicas: 1\n      minReplicas: 1\n      maxReplicas: 1\n'
        ray_group worker "      "
    } | kubectl apply -f - > /dev/null || return 1
    kubectl -n "$NAMESPACE" wait --for=jsonpath='{.status.state}'=ready \
        "raycluster/$RAY_CLUSTER" --timeout=600s
}

ray_group() {  # KIND INDENT: rayStartParams and pod template of one Ray node group
    sed "s/^/$2/" <<EOF
rayStartParams: {}
template:
  spec:
    securityContext:
      runAsNonRoot: true
      runAsUser: 10001
      runAsGroup: 10001
      fsGroup: 10001
      seccompProfile: {type: RuntimeDefault}
    containers:
      - name: ray-$1
        image: $IMAGE
        imagePullPolicy: Never
        resources:
          requests: {cpu: "1", memory: 2Gi}
          limits: {cpu: "1", memory: 2Gi}
        securityContext:
          allowPrivilegeEscalation: false
          capabilities: {drop: [ALL]}
EOF
}

submit_with_cli() {  # PIPELINE RUN_ID PARALLEL(0|1)
    local flags=(submit "$1" --run-id "$2" "${SUBMIT_FLAGS[@]}")
    if [ "$3" = 1 ]; then flags+=(--parallel); fi
    (cd "$REPO_ROOT" && "$RUNNER_CLI" "${flags[@]}")
}

submit_as_job() {  # PIPELINE RUN_ID PARALLEL(0|1)
    local pipeline=$1 run_id=$2 name labels
    local env=(--env "RUNNER_RUN_ID=$run_id" --env "RUNNER_LOG_FORMAT=json")
    local args=(run "$pipeline" --run-id "$run_id" --resume --json
        --artifacts "$ARTIFACTS_URL" --storage-option "endpoint_url=$S3_ENDPOINT")
    if [ "$3" = 1 ]; then
        ensure_raycluster || return 1
        env+=(--env "RAY_ADDRESS=ray://$RAY_CLUSTER-head-svc.$NAMESPACE.svc.cluster.local:10001")
        args+=(--executor ray)
    fi
    name="runner-$(dns_label "$run_id")"
    labels="{app.kubernetes.io/name: runner, app.kubernetes.io/component: run, \
runner.dev/run-id: $(yaml_quote "$run_id"), runner.dev/pipeline: $(yaml_quote "$pipeline")}"
    {
        cat <<EOF
apiVersion: batch/v1
kind: Job
metadata:
  name: $name
  namespace: $NAMESPACE
  labels: $labels
spec:
  backoffLimit: 2
  activeDeadlineSeconds: $JOB_TIMEOUT_SECONDS
  template:
    metadata:
      labels: $labels
    spec:
EOF
        pod_spec "      " "${env[@]}" --args "${args[@]}"
    } | kubectl apply -f - > /dev/null || return 1
    wait_job "$name" || return 1
    kubectl -n "$NAMESPACE" logs "job/$name" --tail=5 || true
}

# submit_run PIPELINE [--parallel]: one run as a Job, waited for, then checked in the store.
submit_run() {
    local pipeline=$1 parallel=0 run_id
    if [ "${2:-}" = --parallel ]; then parallel=1; fi
    run_id="e2e-$(dns_label "$pipeline")-$RUN_SUFFIX"
    log "run $run_id: $pipeline (mode $SUBMIT_MODE, parallel $parallel)"
    if ! case "$SUBMIT_MODE" in
        cli) submit_with_cli "$pipeline" "$run_id" "$parallel" ;;
        *) submit_as_job "$pipeline" "$run_id" "$parallel" ;;
    esac; then
        print_logs "$NAMESPACE" -l "runner.dev/run-id=$run_id"
        die "run $run_id ($pipeline) did not complete"
    fi
    check_run "$run_id" "$pipeline"
}

# check_run RUN_ID PIPELINE: the store says the run succeeded (read from inside the cluster).
check_run() {
    local run_id=$1 pipeline=$2 out="$WORK_DIR/show.txt"
    log "checking run $run_id in $ARTIFACTS_URL"
    if ! run_pod "check-$(dns_label "$run_id")" --args runs show "$run_id" \
        --artifacts "$ARTIFACTS_URL" --storage-option "endpoint_url=$S3_ENDPOINT" > "$out"; then
        cat "$out" >&2
        die "could not read run $run_id from $ARTIFACTS_URL"
    fi
    cat "$out"
    grep -qF "$run_id pipeline=$pipeline status=succeeded" "$out" ||
        die "run $run_id is not recorded as succeeded in $ARTIFACTS_URL"
}

main() {
    case "${1:-}" in
        -h | --help) usage; exit 0 ;;
        "") ;;
        *) echo "usage: $0 [--help]" >&2; exit 2 ;;
    esac
    require_tools
    WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/runner-kind-e2e.XXXXXX")"
    export KUBECONFIG="$WORK_DIR/kubeconfig"
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    ensure_cluster
    build_image
    install_kuberay
    ensure_namespace "$NAMESPACE" "$POD_SECURITY"
    deploy_minio
    install_chart
    choose_submit_mode
    submit_run alpha.full
    submit_run alpha.parallel --parallel
}

main "$@"
