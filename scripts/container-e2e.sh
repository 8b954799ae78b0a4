#!/usr/bin/env bash
# The image built from scratch and run in a real container engine, with no registry.
#
# For CI and developers on a Debian 12 machine as root (no Docker needed beforehand).
#
#   scripts/container-e2e.sh               # install, start, build, run, check, tear down
#   KEEP_IMAGES=1 scripts/container-e2e.sh # keep the engine's data root (images, build
#                                          # cache) in the work folder for the next run
#                                          # (else it is a tmpfs: DATA_TMPFS_SIZE=8g)
#   BUILD_RAY_IMAGE=0 scripts/container-e2e.sh   # the Job image only
#   PODMAN=0 scripts/container-e2e.sh      # without the Podman 5 node
#   KEEP_IMAGES=1 CONTAINER_E2E_ONLY=podman scripts/container-e2e.sh
#                                          # the Podman steps alone (the Job image is
#                                          # built only if not kept from an earlier run)
#
# Steps, each under a timeout and failing with one line that names it:
#   packages  apt-get install docker.io debootstrap (skipped when both are there)
#   engine    a private dockerd: its own socket, data root, exec root, pidfile and config
#             file under WORK_DIR, no iptables, no IP masquerading, no bridge, no IP
#             forwarding (the host's network is never touched), its own cgroup parent
#   base      debootstrap of Debian bookworm with Python 3.11 (the mirror of this
#             machine's apt sources, its extra CA certificates), imported as BASE_IMAGE
#   image     docker/Dockerfile on BASE_IMAGE: IMAGE (a Job's, at most MAX_IMAGE_MB) and
#             RAY_IMAGE (VARIANT=ray); USER_IMAGE, examples/user-image FROM IMAGE
#   smoke     `runner run alpha.full` in IMAGE: no network, read-only root, /tmp a tmpfs,
#             the artifacts in a bind-mounted folder; Ray's version in RAY_IMAGE
#   engine-tests  tests/integration/deploy/test_podrun_engine.py against this engine
#   pods      the pods of the Jobs we generate, run as a kubelet would
#             (`python -m tests.containers.e2e`, when that module exists)
#   podman    a Podman 5 node: debootstrap of Debian trixie with podman, runc, conmon
#             and catatonit, imported as PODMAN_IMAGE and run as a container of this
#             engine (every capability but SYS_RESOURCE, no seccomp, AppArmor or masked
#             paths, its own cgroup namespace over the kernel's cgroup hierarchies, no
#             network); IMAGE loaded into it; `podman kube play` of what we generate
#             (`python -m tests.containers.podman`)
# A trap stops what the script started, by PID, and removes its mounts, its cgroups and
# the work folder's runtime state. Installed packages stay (their services never start).
#
# Exit codes: 0 passed, 1 a step failed, 2 cannot run here (not root, no apt-get).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# ---------------------------------------------------------------- knobs (env overrides)
WORK_DIR="${WORK_DIR:-$REPO_ROOT/.container-e2e}"    # git-ignored, docker-ignored
KEEP_IMAGES="${KEEP_IMAGES:-0}"
# The engine's data root on a tmpfs of this size (memory, used as written; a teardown in
# seconds where deleting the layers from disk takes minutes); 0, or KEEP_IMAGES=1: disk.
DATA_TMPFS_SIZE="${DATA_TMPFS_SIZE:-8g}"
BUILD_RAY_IMAGE="${BUILD_RAY_IMAGE:-1}"
PODMAN="${PODMAN:-1}"                                # 0: no Podman node
ONLY="${CONTAINER_E2E_ONLY:-}"                       # podman: the Podman steps alone
SUITE=bookworm                                       # Debian 12: its python3 is 3.11
PODMAN_SUITE=trixie                                  # Debian 13: Podman 5 plays Jobs
DEBIAN_MIRROR="${DEBIAN_MIRROR:-}"                   # empty: from this machine's apt sources
APT_ETC="${APT_ETC:-/etc/apt}"                       # where those sources are
BASE_IMAGE="${BASE_IMAGE:-local/debian-python:3.11}"
IMAGE="${IMAGE:-runner:e2e}"
RAY_IMAGE="${RAY_IMAGE:-runner:e2e-ray}"
USER_IMAGE="${USER_IMAGE:-runner:e2e-user}"         # examples/user-image FROM IMAGE
PODMAN_IMAGE="${PODMAN_IMAGE:-local/podman:trixie}"  # the Podman node's image
PODMAN_TMPFS_SIZE="${PODMAN_TMPFS_SIZE:-4g}"         # the node's image store (memory)
PYTHON="${PYTHON:-}"                                 # runs the pods' driver; empty: .venv's
MAX_IMAGE_MB="${MAX_IMAGE_MB:-700}"                  # the Job image's size limit (10^6 bytes)
# Timeouts in seconds: the whole run (each step gets at most what is left of it), then
# one per step.
TOTAL_TIMEOUT="${TOTAL_TIMEOUT:-1500}"
APT_TIMEOUT="${APT_TIMEOUT:-900}"
ENGINE_TIMEOUT="${ENGINE_TIMEOUT:-60}"
DEBOOTSTRAP_TIMEOUT="${DEBOOTSTRAP_TIMEOUT:-900}"
IMPORT_TIMEOUT="${IMPORT_TIMEOUT:-300}"
BUILD_TIMEOUT="${BUILD_TIMEOUT:-1200}"
RUN_TIMEOUT="${RUN_TIMEOUT:-300}"
PODS_TIMEOUT="${PODS_TIMEOUT:-900}"
PODMAN_TIMEOUT="${PODMAN_TIMEOUT:-900}"

# Debian's own CLI, by its full path (a newer one may come first on PATH); the classic
# builder, which dockerd 20.10 has without buildx.
DOCKER=/usr/bin/docker
DOCKERD=/usr/sbin/dockerd
DEBOOTSTRAP=/usr/sbin/debootstrap
SOCKET="$WORK_DIR/docker.sock"
DATA_ROOT="$WORK_DIR/data"
EXEC_ROOT="$WORK_DIR/exec"
PIDFILE="$WORK_DIR/dockerd.pid"
CONFIG_FILE="$WORK_DIR/daemon.json"
DOCKERD_LOG="$WORK_DIR/dockerd.log"
ROOTFS="$WORK_DIR/rootfs"
PODMAN_ROOTFS="$WORK_DIR/rootfs-podman"
PODMAN_WORK="$WORK_DIR/podman"                       # mounted at the same path in the node
ARTIFACTS="$WORK_DIR/artifacts"
CGROUP_PARENT="runner-container-e2e-$$"
PODMAN_NODE="runner-podman-$$"

DOCKERD_PID=""
MADE_POLICY_RC=0
PEAK_MB=0
PEAK_TMPFS_MB=0
STARTED=$SECONDS
TIMES=()

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

log() { printf '[container-e2e] %s\n' "$*" >&2; }

die() {  # die CODE MESSAGE: the one line that says what failed
    printf 'container-e2e: %s\n' "$2" >&2
    exit "$1"
}

# ---------------------------------------------------------------- steps and timing

# step NAME SECONDS COMMAND...: runs COMMAND under a timeout (SECONDS, or what is left of
# TOTAL_TIMEOUT); on failure, one line naming the step (and whether it timed out), exit 1.
step() {
    local name="$1" seconds="$2" start=$SECONDS rc=0 left
    shift 2
    left=$((STARTED + TOTAL_TIMEOUT - SECONDS))
    if [ "$left" -le 0 ]; then
        die 1 "step '$name' not started: the run is past TOTAL_TIMEOUT=${TOTAL_TIMEOUT}s"
    fi
    if [ "$left" -lt "$seconds" ]; then seconds=$left; fi
    log "step $name (timeout ${seconds}s)"
    timeout --kill-after=30 "$seconds" "$@" || rc=$?
    if [ "$rc" -ne 0 ]; then
        if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
            die 1 "step '$name' timed out after ${seconds}s"
        fi
        die 1 "step '$name' failed (exit $rc): $*"
    fi
    TIMES+=("$name $((SECONDS - start))s")
    note_disk
}

note_disk() {  # the work folder's size on disk and in its tmpfs, kept at their peaks
    local mb
    mb="$(du -sxm "$WORK_DIR" 2>/dev/null | cut -f1)" || mb=0
    if [ "${mb:-0}" -gt "$PEAK_MB" ]; then PEAK_MB="$mb"; fi
    if mountpoint -q "$DATA_ROOT" 2> /dev/null; then
        mb="$(df -m --output=used "$DATA_ROOT" | tail -n 1 | tr -d ' ')" || mb=0
        if [ "${mb:-0}" -gt "$PEAK_TMPFS_MB" ]; then PEAK_TMPFS_MB="$mb"; fi
    fi
}

report() {
    local t
    for t in "${TIMES[@]}"; do log "  $t"; done
    log "total $((SECONDS - STARTED))s; work folder at most ${PEAK_MB} MB on disk," \
        "${PEAK_TMPFS_MB} MB in its tmpfs"
}

# ---------------------------------------------------------------- packages

install_packages() {
    if [ -x "$DOCKERD" ] && [ -x "$DOCKER" ] && [ -x "$DEBOOTSTRAP" ]; then
        log "docker.io and debootstrap already installed"
        return 0
    fi
    # Keep the packages' services from starting (Debian's images ship this file already).
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        MADE_POLICY_RC=1
    fi
    step apt-update "$APT_TIMEOUT" apt-get -o DPkg::Lock::Timeout=600 -q update
    step apt-install "$APT_TIMEOUT" env DEBIAN_FRONTEND=noninteractive \
        apt-get -o DPkg::Lock::Timeout=600 -q -y install --no-install-recommends \
        docker.io debootstrap
    if [ "$MADE_POLICY_RC" = 1 ]; then
        rm -f /usr/sbin/policy-rc.d
        MADE_POLICY_RC=0
    fi
}

# ---------------------------------------------------------------- engine

start_engine() {
    mkdir -p "$DATA_ROOT" "$EXEC_ROOT" "$WORK_DIR/cli"
    if [ "$KEEP_IMAGES" != 1 ] && [ "$DATA_TMPFS_SIZE" != 0 ]; then
        mount -t tmpfs -o "size=$DATA_TMPFS_SIZE,mode=0711" runner-container-e2e "$DATA_ROOT"
    fi
    cat > "$CONFIG_FILE" <<'JSON'
{
  "storage-driver": "overlay2",
  "exec-opts": ["native.cgroupdriver=cgroupfs"],
  "log-driver": "json-file",
  "log-opts": {"max-size": "10m"}
}
JSON
    log "starting dockerd on unix://$SOCKET"
    "$DOCKERD" --host "unix://$SOCKET" --data-root "$DATA_ROOT" --exec-root "$EXEC_ROOT" \
        --pidfile "$PIDFILE" --config-file "$CONFIG_FILE" --cgroup-parent "$CGROUP_PARENT" \
        --iptables=false --ip-masq=false --ip-forward=false --bridge=none \
        > "$DOCKERD_LOG" 2>&1 &
    DOCKERD_PID=$!
    export DOCKER_HOST="unix://$SOCKET" DOCKER_BUILDKIT=0 DOCKER_CONFIG="$WORK_DIR/cli"
    unset DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH
    # shellcheck disable=SC2016  # expanded by the inner bash, from its arguments
    step engine "$ENGINE_TIMEOUT" bash -c \
        'until "$1" version > /dev/null 2>&1; do kill -0 "$2" || exit 1; sleep 0.5; done' \
        _ "$DOCKER" "$DOCKERD_PID"
    log "dockerd $("$DOCKER" version --format '{{.Server.Version}}') ready (pid $DOCKERD_PID)"
}

# ---------------------------------------------------------------- base image

# The first URI of this machine's apt sources that serves a suite (the first argument,
# else SUITE; deb822 or one-line).
apt_mirror() {
    local file suite="${1:-$SUITE}"
    for file in "$APT_ETC"/sources.list.d/*.sources; do
        [ -f "$file" ] || continue
        awk -v suite="$suite" 'BEGIN { RS = ""; FS = "\n" }
            {
                uri = ""; ok = 0; deb = 0
                for (i = 1; i <= NF; i++) {
                    n = split($i, w, /[ \t]+/)
                    if (w[1] == "URIs:" && n > 1) uri = w[2]
                    if (w[1] == "Types:") for (j = 2; j <= n; j++) if (w[j] == "deb") deb = 1
                    if (w[1] == "Suites:") for (j = 2; j <= n; j++) if (w[j] == suite) ok = 1
                }
                if (uri != "" && ok && deb) { print uri; exit }
            }' "$file"
    done
    for file in "$APT_ETC"/sources.list "$APT_ETC"/sources.list.d/*.list; do
        [ -f "$file" ] || continue
        sed -e 's/\[[^]]*\]//' "$file" \
            | awk -v suite="$suite" '$1 == "deb" && $3 == suite { print $2; exit }'
    done
}

build_base() {
    if [ "$KEEP_IMAGES" = 1 ] && "$DOCKER" image inspect "$BASE_IMAGE" > /dev/null 2>&1; then
        log "$BASE_IMAGE kept from an earlier run"
        return 0
    fi
    local mirror="$DEBIAN_MIRROR"
    if [ -z "$mirror" ]; then mirror="$(apt_mirror | head -n 1)"; fi
    if [ -z "$mirror" ]; then
        die 1 "step 'base': no apt source serves $SUITE; set DEBIAN_MIRROR"
    fi
    log "debootstrap $SUITE from $mirror"
    rm -rf "$ROOTFS"
    step debootstrap "$DEBOOTSTRAP_TIMEOUT" "$DEBOOTSTRAP" --variant=minbase \
        --include=python3,python3-venv,python-is-python3,ca-certificates \
        "$SUITE" "$ROOTFS" "$mirror"
    # TLS to the package index may be re-signed by a proxy: trust what this machine trusts.
    local certs=(/usr/local/share/ca-certificates/*.crt)
    if [ -e "${certs[0]}" ]; then
        cp "${certs[@]}" "$ROOTFS/usr/local/share/ca-certificates/"
        step ca-certificates 120 chroot "$ROOTFS" update-ca-certificates --fresh
    fi
    # What no container reads: package caches and lists, documentation, translations.
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
        "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
        "$ROOTFS"/usr/share/locale/*
    # shellcheck disable=SC2016  # expanded by the inner bash, from its arguments
    step import "$IMPORT_TIMEOUT" bash -o pipefail -c \
        'tar --numeric-owner -C "$1" -c . | "$2" import --change "ENV LANG=C.UTF-8" \
             --change "CMD [\"python3\"]" - "$3" > /dev/null' _ "$ROOTFS" "$DOCKER" "$BASE_IMAGE"
    rm -rf "$ROOTFS"
}

# ---------------------------------------------------------------- our images

build_image() {  # build_image TAG VARIANT
    step "build-$2" "$BUILD_TIMEOUT" "$DOCKER" build --file "$REPO_ROOT/docker/Dockerfile" \
        --build-arg "PYTHON_IMAGE=$BASE_IMAGE" --build-arg "VARIANT=$2" \
        --build-arg "REVISION=$(git -C "$REPO_ROOT" rev-parse HEAD 2>/dev/null || echo unknown)" \
        --pull=false --network host --tag "$1" "$REPO_ROOT"
}

# Your own stages: the README's example image, FROM the Job image, installing a package
# of the quickstart's stages (pip fetches its build backend: the host network, as above).
build_user_image() {
    step build-user "$BUILD_TIMEOUT" "$DOCKER" build \
        --build-arg "BASE_IMAGE=$IMAGE" --pull=false --network host --tag "$USER_IMAGE" \
        "$REPO_ROOT/examples/user-image"
}

# ---------------------------------------------------------------- Podman 5 node

# Debian trixie's mirror: a source of this machine's that serves it, else the host that
# serves bookworm (the same archive) with suite trixie.
podman_mirror() {
    local mirror="$DEBIAN_MIRROR"
    if [ -z "$mirror" ]; then mirror="$(apt_mirror "$PODMAN_SUITE" | head -n 1)"; fi
    if [ -z "$mirror" ]; then mirror="$(apt_mirror "$SUITE" | head -n 1)"; fi
    printf '%s\n' "$mirror"
}

# Podman's configuration in the node: runc (crun refuses cgroup v1 hybrid), cgroupfs (no
# systemd), events in a file (no journald), containers without a network, and ulimits
# the node may set (root here lacks CAP_SYS_RESOURCE, so no limit above the host's
# hard nofile).
write_podman_config() {  # write_podman_config ROOTFS NOFILE
    mkdir -p "$1/etc/containers"
    cat > "$1/etc/containers/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$2:$2"]
netns = "none"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
CONF
    cat > "$1/etc/containers/storage.conf" <<'CONF'
[storage]
driver = "overlay"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
CONF
}

build_podman_base() {
    if [ "$KEEP_IMAGES" = 1 ] && "$DOCKER" image inspect "$PODMAN_IMAGE" > /dev/null 2>&1; then
        log "$PODMAN_IMAGE kept from an earlier run"
        return 0
    fi
    local mirror
    mirror="$(podman_mirror)"
    if [ -z "$mirror" ]; then
        die 1 "step 'podman-base': no apt source serves $SUITE; set DEBIAN_MIRROR"
    fi
    log "debootstrap $PODMAN_SUITE from $mirror"
    rm -rf "$PODMAN_ROOTFS"
    step debootstrap-podman "$DEBOOTSTRAP_TIMEOUT" "$DEBOOTSTRAP" --variant=minbase \
        --include=podman,runc,conmon,catatonit "$PODMAN_SUITE" "$PODMAN_ROOTFS" "$mirror"
    write_podman_config "$PODMAN_ROOTFS" "$(ulimit -Hn)"
    rm -rf "$PODMAN_ROOTFS"/var/cache/apt/archives/*.deb "$PODMAN_ROOTFS"/var/lib/apt/lists/* \
        "$PODMAN_ROOTFS"/usr/share/doc/* "$PODMAN_ROOTFS"/usr/share/man/* \
        "$PODMAN_ROOTFS"/usr/share/locale/*
    # shellcheck disable=SC2016  # expanded by the inner bash, from its arguments
    step import-podman "$IMPORT_TIMEOUT" bash -o pipefail -c \
        'tar --numeric-owner -C "$1" -c . | "$2" import - "$3" > /dev/null' \
        _ "$PODMAN_ROOTFS" "$DOCKER" "$PODMAN_IMAGE"
    rm -rf "$PODMAN_ROOTFS"
}

# The node: a container of our engine (so it goes with it), no network, its image store a
# tmpfs, PODMAN_WORK at the same path. Podman needs what a privileged container has but
# CAP_SYS_RESOURCE (not ours to give); its own cgroup namespace roots the kernel's
# cgroup hierarchies (mounted by the engine, remounted writable) at the node's cgroup, so
# the pods' cgroups are made under our cgroup parent and removed with it.
start_podman_node() {
    mkdir -p "$PODMAN_WORK"
    step podman-node "$RUN_TIMEOUT" "$DOCKER" run --network none --detach \
        --name "$PODMAN_NODE" --cap-add ALL --cap-drop SYS_RESOURCE \
        --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
        --security-opt systempaths=unconfined --cgroupns private \
        --mount "type=tmpfs,dst=/var/lib/containers,tmpfs-size=$PODMAN_TMPFS_SIZE" \
        --tmpfs /run --tmpfs /tmp --volume "$PODMAN_WORK:$PODMAN_WORK" \
        --env PODMAN_IGNORE_CGROUPSV1_WARNING=1 \
        --entrypoint /usr/bin/catatonit "$PODMAN_IMAGE" -- sleep infinity
    # shellcheck disable=SC2016  # expanded by the node's shell
    step podman-cgroups "$RUN_TIMEOUT" "$DOCKER" exec "$PODMAN_NODE" sh -ec \
        'for m in /sys/fs/cgroup/*/; do mount -o remount,bind,rw "$m"; done'
    step podman-version "$RUN_TIMEOUT" "$DOCKER" exec "$PODMAN_NODE" podman version \
        --format 'podman {{.Client.Version}}'
    # shellcheck disable=SC2016  # expanded by the inner bash, from its arguments
    step podman-load "$IMPORT_TIMEOUT" bash -o pipefail -c \
        '"$1" save "$2" | "$1" exec -i "$3" podman load --quiet' \
        _ "$DOCKER" "$IMAGE" "$PODMAN_NODE"
}

run_podman() {
    local python="$PYTHON" start=$SECONDS
    if [ -z "$python" ]; then
        python="$REPO_ROOT/.venv/bin/python"
        [ -x "$python" ] || python=python3
    fi
    build_podman_base
    start_podman_node
    step podman "$PODMAN_TIMEOUT" "$python" -m tests.containers.podman --docker "$DOCKER" \
        --node "$PODMAN_NODE" --image "$IMAGE" --work "$PODMAN_WORK"
    TIMES+=("podman-all $((SECONDS - start))s (what Podman adds)")
}

# ---------------------------------------------------------------- checks

check_size() {  # the Job image stays small: every pod of every run pulls it
    local bytes mb
    bytes="$("$DOCKER" image inspect --format '{{.Size}}' "$IMAGE")"
    mb=$(((bytes + 999999) / 1000000))
    log "$IMAGE is $mb MB (at most $MAX_IMAGE_MB)"
    if [ "$mb" -gt "$MAX_IMAGE_MB" ]; then
        die 1 "step 'size': $IMAGE is $mb MB, over $MAX_IMAGE_MB MB"
    fi
}

smoke() {
    rm -rf "$ARTIFACTS"
    mkdir -p "$ARTIFACTS"
    chown 10001:10001 "$ARTIFACTS"
    # One artifact key for every container (HOME, where a key file would go, is a tmpfs).
    RUNNER_ARTIFACT_KEY="$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
    export RUNNER_ARTIFACT_KEY
    local run=("$DOCKER" run --rm --network none --read-only --tmpfs /tmp
               --user 10001:10001 --cap-drop ALL --security-opt no-new-privileges
               --volume "$ARTIFACTS:/artifacts" --env RUNNER_ARTIFACTS=/artifacts
               --env RUNNER_ARTIFACT_KEY)
    step smoke-run "$RUN_TIMEOUT" "${run[@]}" "$IMAGE" run alpha.full
    step smoke-runs-list "$RUN_TIMEOUT" "${run[@]}" "$IMAGE" runs list
    if [ -z "$(find "$ARTIFACTS" -name run.json -print -quit)" ]; then
        die 1 "step 'smoke': alpha.full left no run.json in the artifact folder"
    fi
    if [ "$BUILD_RAY_IMAGE" = 1 ]; then
        # A parallel run's pods and its RayCluster must run the cluster's Ray.
        step smoke-ray "$RUN_TIMEOUT" "${run[@]}" --entrypoint python "$RAY_IMAGE" -c \
            'import ray; from runner.k8s.builders import RayClusterSpec as S
assert ray.__version__ == S.ray_version, (ray.__version__, S.ray_version)
print("ray", ray.__version__)'
    fi
}

# The translation's own test against this engine (skipped in the suite, which has none).
run_engine_tests() {
    local python="$PYTHON"
    if [ -z "$python" ]; then
        python="$REPO_ROOT/.venv/bin/python"
        [ -x "$python" ] || python=python3
    fi
    step engine-tests "$RUN_TIMEOUT" env PODRUN_DOCKER="$DOCKER" PODRUN_IMAGE="$BASE_IMAGE" \
        "$python" -m pytest -q -p no:cacheprovider \
        tests/integration/deploy/test_podrun_engine.py
}

# The hook for the pods of every Job we generate, run as a kubelet would: the pod spec to
# `docker run` translation and its driver live in tests/containers/. It reaches this
# engine through DOCKER_HOST (exported by start_engine) and Debian's CLI.
run_pods() {
    if [ ! -f "$REPO_ROOT/tests/containers/e2e.py" ]; then
        log "skipping the pods: tests/containers/e2e.py is not there yet"
        return 0
    fi
    local python="$PYTHON" args=(--docker "$DOCKER" --image "$IMAGE" --work "$WORK_DIR/pods")
    if [ -z "$python" ]; then
        python="$REPO_ROOT/.venv/bin/python"
        [ -x "$python" ] || python=python3
    fi
    if [ "$BUILD_RAY_IMAGE" = 1 ]; then args+=(--ray-image "$RAY_IMAGE"); fi
    args+=(--user-image "$USER_IMAGE")
    mkdir -p "$WORK_DIR/pods"
    step pods "$PODS_TIMEOUT" "$python" -m tests.containers.e2e "${args[@]}"
}

# ---------------------------------------------------------------- teardown

# What dockerd may leave behind if it died hard, each to be stopped by its PID: the
# processes in our cgroup parent (containers) and those whose command line names our work
# folder (its containerd and shims, an interrupted debootstrap).
own_pids() {
    local procs f args
    for procs in /sys/fs/cgroup/pids/"$CGROUP_PARENT" /sys/fs/cgroup/"$CGROUP_PARENT"; do
        [ -d "$procs" ] && find "$procs" -name cgroup.procs -exec cat {} + 2> /dev/null
    done
    for f in /proc/[0-9]*/cmdline; do
        mapfile -d '' args 2> /dev/null < "$f" || continue
        case " ${args[*]} " in
            *"$WORK_DIR/"*) f="${f#/proc/}"; f="${f%/cmdline}" ;;
            *) continue ;;
        esac
        if [ "$f" != "$$" ] && [ "$f" != "$BASHPID" ]; then echo "$f"; fi
    done
}

cleanup() {
    local rc=$? pid mnt cg
    trap - EXIT INT TERM
    local start=$SECONDS
    if [ -n "$DOCKERD_PID" ] && kill -0 "$DOCKERD_PID" 2> /dev/null; then
        log "stopping dockerd (pid $DOCKERD_PID)"
        # shellcheck disable=SC2016  # expanded by the inner bash, from its arguments
        timeout 60 bash -c '"$1" ps -aq | xargs -r "$1" rm -f > /dev/null' _ "$DOCKER" || true
        kill -TERM "$DOCKERD_PID" 2> /dev/null || true
        for _ in $(seq 60); do
            kill -0 "$DOCKERD_PID" 2> /dev/null || break
            sleep 0.5
        done
        if kill -0 "$DOCKERD_PID" 2> /dev/null; then kill -KILL "$DOCKERD_PID" || true; fi
        wait "$DOCKERD_PID" 2> /dev/null || true
    fi
    for pid in $(own_pids); do kill -KILL "$pid" 2> /dev/null || true; done
    # Mounts under the work folder (overlay2 layers, debootstrap's /proc), deepest first.
    while read -r mnt; do
        umount "$mnt" 2> /dev/null || umount -l "$mnt" 2> /dev/null || true
    done < <(awk -v root="$WORK_DIR/" 'index($5, root) == 1 { print $5 }' /proc/self/mountinfo \
             | sort -r)
    # Our cgroup parent in every hierarchy: at the root, or under this script's own cgroup
    # where the engine's cgroup is not the root (dockerd makes it relative to its own).
    while read -r cg; do
        find "$cg" -depth -type d -exec rmdir {} + 2> /dev/null || true
    done < <(find /sys/fs/cgroup -maxdepth 6 -type d -name "$CGROUP_PARENT" 2> /dev/null)
    if [ "$MADE_POLICY_RC" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    if [ -d "$WORK_DIR" ]; then
        log "removing the work folder's state"
        if [ "$rc" -ne 0 ] && [ -s "$DOCKERD_LOG" ]; then
            log "dockerd's last lines:"
            tail -n 20 "$DOCKERD_LOG" >&2 || true
        fi
        if [ "$KEEP_IMAGES" = 1 ]; then
            find "$WORK_DIR" -mindepth 1 -maxdepth 1 ! -name data -exec rm -rf {} +
        else
            rm -rf "$WORK_DIR"
        fi
    fi
    TIMES+=("cleanup $((SECONDS - start))s")
    report
    exit "$rc"
}

# ---------------------------------------------------------------- main

main() {
    case "${1:-}" in
        -h|--help) usage; return 0 ;;
        "") ;;
        *) die 2 "unknown argument '$1' (try --help)" ;;
    esac
    case "$ONLY" in
        ""|podman) ;;
        *) die 2 "CONTAINER_E2E_ONLY='$ONLY': only 'podman' is known" ;;
    esac
    if [ "$(id -u)" -ne 0 ]; then die 2 "needs root (it installs packages and runs dockerd)"; fi
    command -v apt-get > /dev/null || die 2 "needs a Debian machine with apt-get"
    cd "$REPO_ROOT"
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    mkdir -p "$WORK_DIR"

    install_packages
    start_engine
    build_base
    if [ "$ONLY" = podman ]; then
        if [ "$KEEP_IMAGES" != 1 ] || ! "$DOCKER" image inspect "$IMAGE" > /dev/null 2>&1; then
            build_image "$IMAGE" job
        fi
        run_podman
        log "passed (the Podman steps only)"
        return 0
    fi
    build_image "$IMAGE" job
    if [ "$BUILD_RAY_IMAGE" = 1 ]; then build_image "$RAY_IMAGE" ray; fi
    build_user_image
    "$DOCKER" image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' >&2
    check_size
    smoke
    run_engine_tests
    run_pods
    if [ "$PODMAN" = 1 ]; then run_podman; fi
    log "passed"
}

# Sourced (by the tests), it only defines its functions.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
