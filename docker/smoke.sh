#!/usr/bin/env bash
# docker/smoke.sh (`make docker-smoke`): the image built and run for real, on CPU, with no registry.
# See docker/README.md, "Smoke run". Needs root, apt (Debian) and the network to a Debian mirror and
# to PyPI; no GPU and no image registry (nothing is pulled). From the project root:
#   1. Docker: `apt-get install -y docker.io` where docker or dockerd is missing; where no daemon
#      answers, `dockerd --storage-driver=overlay2` (falling back to vfs) in the background, left
#      running afterwards.
#   2. A local base image, $SMOKE_BASE (nexus-base:bookworm): `debootstrap --variant=minbase bookworm`
#      from the apt sources' Debian mirror, then `docker import`. Skipped when the image exists.
#   3. docker/Dockerfile built on that base with the CPU torch (TORCH_VARIANT=cpu) as $SMOKE_IMAGE.
#      Where a torch-<version>+cpu wheel lies on this machine (SMOKE_TORCH_WHEEL, else pip's
#      find-links folders), a loopback index serves it to the build (every other project is
#      redirected to PyPI); otherwise the build uses https://download.pytorch.org/whl/cpu.
#   4. `make train CAPS=cot QUICK=1` in a container with the mounts of `make docker-train`
#      (DOCKER_DIRS) under $SMOKE_DIR. The trainer is paused at its first step boundary
#      (`docker kill -s USR1`, sent once stages/train.py handles it), then `docker stop -t 120`:
#      a checkpoints/cot/checkpoint-N holding nexus_schedule.json must be left. A second container
#      must log "resuming from ...checkpoint-N", write models/capabilities/cot and exit 0.
#   5. Prints the image size and the times; writes them to $SMOKE_DIR/smoke.json (the logs and the
#      checkpoint's nexus_schedule.json, as checkpoint-schedule.json, lie beside it).
# Exit status 0 when every check passed. Settings (environment; make passes its variables on):
#   SMOKE_DIR      host folders mounted into the containers, logs, smoke.json (build/docker-smoke;
#                  emptied first: use a folder of its own)
#   SMOKE_IMAGE    image tag (nexus:cpu-smoke)      SMOKE_BASE    base image (nexus-base:bookworm)
#   SMOKE_SUITE    Debian release (bookworm)         SMOKE_MIRROR  Debian mirror (from the apt sources)
#   SMOKE_CAPS     capability (cot)                  SMOKE_NAME    container name (nexus-smoke)
#   SMOKE_UID/GID  the image's user (1000: the non-root user; the mounted folders are chowned to it)
#   SMOKE_TORCH_WHEEL  a torch-<version>+cpu wheel to serve; SMOKE_TORCH_INDEX  the CPU index otherwise
#   SMOKE_PYPI     where the loopback index redirects (https://pypi.org/simple); SMOKE_INDEX_PORT its
#                  port (38765: a fixed one, so that the torch layer stays in the build cache)
#   SMOKE_BUILD_ONLY=1  stop after the build (steps 1-3 and the image's size and build time)
#   SMOKE_TIMEOUT  seconds each container may run (3600)
#   DOCKER_DIRS    the mounted folders (the Makefile's: data/raw models .dvc/cache checkpoints logs results)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

SMOKE_DIR=${SMOKE_DIR:-$ROOT/build/docker-smoke}
SMOKE_IMAGE=${SMOKE_IMAGE:-nexus:cpu-smoke}
SMOKE_BASE=${SMOKE_BASE:-nexus-base:bookworm}
SMOKE_SUITE=${SMOKE_SUITE:-bookworm}
SMOKE_MIRROR=${SMOKE_MIRROR:-}
SMOKE_CAPS=${SMOKE_CAPS:-cot}
SMOKE_NAME=${SMOKE_NAME:-nexus-smoke}
SMOKE_UID=${SMOKE_UID:-1000}
SMOKE_GID=${SMOKE_GID:-$SMOKE_UID}
SMOKE_TORCH_WHEEL=${SMOKE_TORCH_WHEEL:-}
SMOKE_TORCH_INDEX=${SMOKE_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
SMOKE_PYPI=${SMOKE_PYPI:-https://pypi.org/simple}
SMOKE_INDEX_PORT=${SMOKE_INDEX_PORT:-38765}
SMOKE_BUILD_ONLY=${SMOKE_BUILD_ONLY:-0}
SMOKE_TIMEOUT=${SMOKE_TIMEOUT:-3600}
DOCKER_DIRS=${DOCKER_DIRS:-data/raw models .dvc/cache checkpoints logs results}
# The Dockerfile's torch version, and the Python tag of the base's python3 (bookworm: 3.11).
TORCH_VERSION=${SMOKE_TORCH_VERSION:-$(sed -n 's/^ARG TORCH_VERSION=//p' docker/Dockerfile)}
SMOKE_PYTAG=${SMOKE_PYTAG:-cp311}
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/nexus-smoke-dockerd.log}

START=$(date +%s)
ROOTFS=""
INDEX_PID=""
CONTAINER_STARTED=""

say() { printf 'smoke: %s\n' "$*" >&2; }
die() { printf 'smoke: FAILED: %s\n' "$*" >&2; exit 1; }
elapsed() { echo $(($(date +%s) - $1)); }

cleanup() {
    local status=$?
    if [ -n "$INDEX_PID" ]; then kill "$INDEX_PID" 2>/dev/null || true; fi
    if [ -n "$ROOTFS" ]; then rm -rf -- "$ROOTFS"; fi
    if [ -n "$CONTAINER_STARTED" ]; then
        docker logs "$SMOKE_NAME" >"$SMOKE_DIR/last-container.log" 2>&1 || true
        docker rm -f "$SMOKE_NAME" >/dev/null 2>&1 || true
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[ "$(id -u)" = 0 ] || die "run as root: it installs packages (apt-get) and may start dockerd"
case "$SMOKE_DIR" in /*) ;; *) SMOKE_DIR=$ROOT/$SMOKE_DIR ;; esac
for d in $DOCKER_DIRS; do
    case "$d" in /*|..|../*|*/..|*/../*|-*) die "DOCKER_DIRS: '$d' must be a relative folder without '..'" ;; esac
done

apt_install() {
    command -v apt-get >/dev/null || die "no apt-get: install $* yourself"
    say "apt-get install -y $*"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# ---------------------------------------------------------------------------- 1. Docker
step_start=$(date +%s)
if ! command -v docker >/dev/null || ! command -v dockerd >/dev/null; then
    apt_install docker.io
fi

daemon_up() { docker info >/dev/null 2>&1; }

start_dockerd() {  # $1: storage driver; 0 when the daemon answers within 60 s
    say "starting dockerd --storage-driver=$1 in the background (log: $DOCKERD_LOG)"
    setsid dockerd --storage-driver="$1" >>"$DOCKERD_LOG" 2>&1 </dev/null &
    local pid=$!
    for _ in $(seq 60); do
        if daemon_up; then say "dockerd (pid $pid, $1) answers; it is left running"; return 0; fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 1
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    return 1
}

if daemon_up; then
    say "a Docker daemon answers: using it"
else
    start_dockerd overlay2 || start_dockerd vfs || die "dockerd did not start (see $DOCKERD_LOG)"
fi

# The build needs BuildKit (COPY --chmod): buildx where it is installed, else a client older than
# 23 (Debian's /usr/bin/docker 20.10) with DOCKER_BUILDKIT=1. Newer clients without buildx refuse.
BUILD_DOCKER=""
if docker buildx version >/dev/null 2>&1; then
    BUILD_DOCKER=docker
else
    while IFS= read -r client; do
        version=$("$client" version --format '{{.Client.Version}}' 2>/dev/null || true)
        case "$version" in 1[0-9].*|2[0-2].*) BUILD_DOCKER=$client; break ;; esac
    done < <(type -ap docker | awk '!seen[$0]++')
fi
[ -n "$BUILD_DOCKER" ] || die "no Docker client with BuildKit: install docker-buildx (or Debian's docker.io)"
say "docker ready ($(elapsed "$step_start") s); builds with $BUILD_DOCKER"

# ---------------------------------------------------------------------------- 2. base image
step_start=$(date +%s)
base_seconds=0
if docker image inspect "$SMOKE_BASE" >/dev/null 2>&1; then
    say "base image $SMOKE_BASE exists: kept"
else
    command -v debootstrap >/dev/null || apt_install debootstrap
    if [ -z "$SMOKE_MIRROR" ]; then
        # The first Debian archive URI of the apt sources (deb822 *.sources or one-line *.list).
        SMOKE_MIRROR=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
            2>/dev/null | sed -n -E 's,^(URIs:|deb( \[[^]]*\])?)[[:space:]]+(https?://[^[:space:]]*/debian)/?([[:space:]].*)?$,\3,p' \
            | head -n 1 || true)
        SMOKE_MIRROR=${SMOKE_MIRROR:-http://deb.debian.org/debian}
    fi
    ROOTFS=$(mktemp -d /var/tmp/nexus-rootfs.XXXXXX)
    say "debootstrap --variant=minbase $SMOKE_SUITE from $SMOKE_MIRROR (about a minute)"
    debootstrap --variant=minbase "$SMOKE_SUITE" "$ROOTFS" "$SMOKE_MIRROR" >"$ROOTFS.log" 2>&1 \
        || { tail -n 20 "$ROOTFS.log" >&2; die "debootstrap failed (log: $ROOTFS.log)"; }
    printf 'deb %s %s main\ndeb %s %s-updates main\n' \
        "$SMOKE_MIRROR" "$SMOKE_SUITE" "$SMOKE_MIRROR" "$SMOKE_SUITE" >"$ROOTFS/etc/apt/sources.list"
    rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb
    # An imported image has no configuration: give it the PATH and command of Debian's own images.
    changes=(--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' --change 'CMD ["bash"]')
    # This machine's own CA certificates (a TLS-inspecting proxy's, for one): the Dockerfile's
    # `apt-get install ca-certificates` adds them to the image's bundle, and PIP_CERT has pip (whose
    # own bundle would not know them) use that bundle, so pip in the build reaches PyPI as pip here does.
    if [ -n "$(find /usr/local/share/ca-certificates -name '*.crt' 2>/dev/null | head -n 1)" ]; then
        mkdir -p "$ROOTFS/usr/local/share/ca-certificates"
        cp -R /usr/local/share/ca-certificates/. "$ROOTFS/usr/local/share/ca-certificates/"
        changes+=(--change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt')
        say "base image: with this machine's CA certificates (/usr/local/share/ca-certificates) and PIP_CERT"
    fi
    tar -C "$ROOTFS" -c . | docker import "${changes[@]}" - "$SMOKE_BASE" >/dev/null
    rm -rf -- "$ROOTFS" "$ROOTFS.log"
    ROOTFS=""
    base_seconds=$(elapsed "$step_start")
    say "base image $SMOKE_BASE made in $base_seconds s"
fi

# ---------------------------------------------------------------------------- 3. the image
mkdir -p "$SMOKE_DIR"
# A local CPU wheel of the Dockerfile's torch: SMOKE_TORCH_WHEEL, else pip's find-links folders.
if [ -z "$SMOKE_TORCH_WHEEL" ]; then
    links=${PIP_FIND_LINKS:-}
    if command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1; then
        links="$links $(python3 -m pip config list 2>/dev/null | sed -n -E "s/^[^=]*find-links='(.*)'$/\1/p" | tr '\n' ' ')"
    fi
    for dir in $links; do
        dir=${dir#file://}
        for wheel in "$dir"/torch-"$TORCH_VERSION"+cpu-"$SMOKE_PYTAG"-"$SMOKE_PYTAG"-*linux*_x86_64.whl; do
            if [ -f "$wheel" ]; then SMOKE_TORCH_WHEEL=$wheel; break 2; fi
        done
    done
fi

build_args=(--build-arg BASE_IMAGE="$SMOKE_BASE" --build-arg TORCH_VARIANT=cpu
    --build-arg NEXUS_UID="$SMOKE_UID" --build-arg NEXUS_GID="$SMOKE_GID")
if [ -n "$SMOKE_TORCH_WHEEL" ]; then
    [ -f "$SMOKE_TORCH_WHEEL" ] || die "SMOKE_TORCH_WHEEL: no file $SMOKE_TORCH_WHEEL"
    command -v python3 >/dev/null || apt_install python3
    # The loopback index: /simple/torch/ lists the wheel (with its sha256), /simple/<other>/ redirects
    # to PyPI, so torch's own dependencies come from there. The build shares the host's network to
    # reach it (--network host); the server ends with this script.
    port_file="$SMOKE_DIR/index.port"
    rm -f "$port_file"
    python3 - "$SMOKE_TORCH_WHEEL" "$SMOKE_PYPI" "$port_file" "$SMOKE_INDEX_PORT" <<'PYTHON' >"$SMOKE_DIR/index.log" 2>&1 &
import hashlib, html, http.server, os, shutil, sys, urllib.parse

wheel, upstream, port_file = sys.argv[1], sys.argv[2].rstrip("/"), sys.argv[3]
name = os.path.basename(wheel)
digest = hashlib.sha256()
with open(wheel, "rb") as handle:
    for block in iter(lambda: handle.read(1 << 20), b""):
        digest.update(block)
page = (f'<!DOCTYPE html><html><body><a href="/files/{urllib.parse.quote(name)}#sha256={digest.hexdigest()}">'
        f"{html.escape(name)}</a></body></html>\n").encode()


class Index(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        parts = [p for p in urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).split("/") if p]
        if parts == ["simple", "torch"]:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
        elif parts == ["files", name]:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(os.path.getsize(wheel)))
            self.end_headers()
            with open(wheel, "rb") as handle:
                shutil.copyfileobj(handle, self.wfile)
        elif len(parts) == 2 and parts[0] == "simple":
            self.send_response(302)
            self.send_header("Location", f"{upstream}/{urllib.parse.quote(parts[1])}/")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_error(404)


try:  # a fixed port keeps TORCH_INDEX_URL, and so the build cache of the torch layer, the same
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[4])), Index)
except OSError as exc:
    print(f"port {sys.argv[4]}: {exc}; a free one instead (the torch layer is rebuilt)", file=sys.stderr)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Index)
with open(port_file + ".tmp", "w") as handle:
    handle.write(str(server.server_address[1]))
os.replace(port_file + ".tmp", port_file)
server.serve_forever()
PYTHON
    INDEX_PID=$!
    for _ in $(seq 60); do [ -s "$port_file" ] && break; kill -0 "$INDEX_PID" 2>/dev/null || break; sleep 0.5; done
    [ -s "$port_file" ] || { cat "$SMOKE_DIR/index.log" >&2; die "the loopback torch index did not start"; }
    torch_index="http://127.0.0.1:$(cat "$port_file")/simple"
    build_args+=(--network host)
    say "torch: $SMOKE_TORCH_WHEEL, served at $torch_index (other projects: $SMOKE_PYPI)"
else
    torch_index=$SMOKE_TORCH_INDEX
    say "torch: no local torch-$TORCH_VERSION+cpu wheel; from $torch_index"
fi
build_args+=(--build-arg TORCH_INDEX_URL="$torch_index")

# The `# syntax=docker/dockerfile:1` line would pull that frontend image from Docker Hub: with no
# registry, the Dockerfile goes in on stdin without it, and the daemon's built-in frontend reads it.
say "building $SMOKE_IMAGE from docker/Dockerfile (log: $SMOKE_DIR/build.log)"
previous_image=$(docker image inspect -f '{{.Id}}' "$SMOKE_IMAGE" 2>/dev/null || true)
step_start=$(date +%s)
if ! sed '1{/^# syntax=/d}' docker/Dockerfile | DOCKER_BUILDKIT=1 "$BUILD_DOCKER" build --progress=plain \
        -f - -t "$SMOKE_IMAGE" "${build_args[@]}" . >"$SMOKE_DIR/build.log" 2>&1; then
    tail -n 40 "$SMOKE_DIR/build.log" >&2
    die "docker build failed (log: $SMOKE_DIR/build.log)"
fi
build_seconds=$(elapsed "$step_start")
cached_steps=$(grep -c '^#[0-9]* CACHED' "$SMOKE_DIR/build.log" || true)
if [ -n "$INDEX_PID" ]; then kill "$INDEX_PID" 2>/dev/null || true; INDEX_PID=""; fi
image_bytes=$(docker image inspect -f '{{.Size}}' "$SMOKE_IMAGE")
# The image this build replaced, left without a tag: removed (gigabytes), unless a container uses it.
if [ -n "$previous_image" ] && [ "$previous_image" != "$(docker image inspect -f '{{.Id}}' "$SMOKE_IMAGE")" ] \
        && [ -z "$(docker image inspect -f '{{join .RepoTags ""}}' "$previous_image" 2>/dev/null)" ]; then
    docker image rm "$previous_image" >/dev/null 2>&1 || true
fi
image_size=$(awk -v b="$image_bytes" 'BEGIN { printf "%.2f GB", b / 1e9 }')
say "image $SMOKE_IMAGE: $image_size ($image_bytes bytes), built in $build_seconds s ($cached_steps steps cached)"
if [ "$SMOKE_BUILD_ONLY" = 1 ]; then
    say "SMOKE_BUILD_ONLY=1: built in $(elapsed "$START") s in all; no training run"
    exit 0
fi

# ---------------------------------------------------------------------------- 4. stop, then resume
# The folders of `make docker-train`, under SMOKE_DIR and emptied, owned by the image's user.
read -r -a dirs <<<"$DOCKER_DIRS"
mounts=()
for d in "${dirs[@]}"; do
    rm -rf -- "${SMOKE_DIR:?}/$d"
    mkdir -p -- "$SMOKE_DIR/$d"
    chown "$SMOKE_UID:$SMOKE_GID" "$SMOKE_DIR/$d"
    mounts+=(-v "$SMOKE_DIR/$d:/workspace/$d")
done

run_container() {  # detached `make train CAPS=$SMOKE_CAPS QUICK=1`, as make docker-train runs it (CPU: no --gpus)
    docker rm -f "$SMOKE_NAME" >/dev/null 2>&1 || true
    CONTAINER_STARTED=1
    CAPS=$SMOKE_CAPS QUICK=1 docker run -d --name "$SMOKE_NAME" --shm-size 2g --stop-timeout 120 \
        "${mounts[@]}" -e CAPS -e QUICK "$SMOKE_IMAGE" make train >/dev/null
}

finish_container() {  # $1: log file; sets RC to the exit status, keeps the log, removes the container
    RC=$(timeout "$SMOKE_TIMEOUT" docker wait "$SMOKE_NAME") || {
        docker logs "$SMOKE_NAME" >"$1" 2>&1 || true
        die "the container ran past SMOKE_TIMEOUT=$SMOKE_TIMEOUT s (log: $1)"
    }
    docker logs "$SMOKE_NAME" >"$1" 2>&1
    docker rm "$SMOKE_NAME" >/dev/null
    CONTAINER_STARTED=""
}

ckpt_root="$SMOKE_DIR/checkpoints/$SMOKE_CAPS"
say "run 1: make train CAPS=$SMOKE_CAPS QUICK=1; pause at the first step, then docker stop -t 120"
step_start=$(date +%s)
run_container
sent=0
stop_step=""
while :; do
    [ "$(elapsed "$step_start")" -lt "$SMOKE_TIMEOUT" ] || die "no pause within SMOKE_TIMEOUT=$SMOKE_TIMEOUT s"
    if [ "$(docker inspect -f '{{.State.Running}}' "$SMOKE_NAME")" != true ]; then
        docker logs "$SMOKE_NAME" >"$SMOKE_DIR/run1.log" 2>&1 || true
        tail -n 30 "$SMOKE_DIR/run1.log" >&2
        die "run 1 ended before the trainer paused (log: $SMOKE_DIR/run1.log)"
    fi
    logs=$(docker logs "$SMOKE_NAME" 2>&1)
    stop_step=$(sed -n -E 's/.*Paused at step ([0-9]+).*/\1/p;T;q' <<<"$logs")
    [ -z "$stop_step" ] || break
    # One SIGUSR1 reaches the trainer: sent once stages/train.py runs, and again only while the
    # relay answers that nothing handles it yet (two would pause and resume). Served at step 1.
    if ! grep -q 'nexus-entrypoint: SIGUSR1 -> ' <<<"$logs"; then
        ignored=$(grep -c 'nexus-entrypoint: SIGUSR1: no process handles it' <<<"$logs" || true)
        if [ "$ignored" -ge "$sent" ] && docker exec "$SMOKE_NAME" pgrep -f 'stages/train\.py' >/dev/null 2>&1; then
            docker kill -s USR1 "$SMOKE_NAME" >/dev/null
            sent=$((sent + 1))
        fi
    fi
    sleep 1
done
say "run 1: trainer paused at step $stop_step after $(elapsed "$step_start") s; docker stop -t 120"
if compgen -G "$ckpt_root/checkpoint-*" >/dev/null; then
    die "a checkpoint exists before the stop: $(ls "$ckpt_root")"
fi
stop_start=$(date +%s)
docker stop -t 120 "$SMOKE_NAME" >/dev/null
stop_seconds=$(elapsed "$stop_start")
finish_container "$SMOKE_DIR/run1.log"
rc_stop=$RC
run1_seconds=$(elapsed "$step_start")
say "run 1: stopped in $stop_seconds s, exit status $rc_stop (log: $SMOKE_DIR/run1.log)"
grep -q 'Stop requested by SIGTERM' "$SMOKE_DIR/run1.log" || die "run 1: the trainer never logged the SIGTERM stop"
[ "$rc_stop" != 0 ] || die "run 1: exit status 0 after docker stop (the stop should fail the stage)"
checkpoint=""
for folder in "$ckpt_root"/checkpoint-*; do
    if [ -f "$folder/nexus_schedule.json" ]; then checkpoint=$(basename "$folder"); fi
done
[ -n "$checkpoint" ] || die "run 1: no checkpoint with nexus_schedule.json under $ckpt_root"
cp "$ckpt_root/$checkpoint/nexus_schedule.json" "$SMOKE_DIR/checkpoint-schedule.json"  # run 2 removes the folder
say "run 1: left $ckpt_root/$checkpoint"

say "run 2: the same command: it must resume from $checkpoint and finish"
step_start=$(date +%s)
run_container
finish_container "$SMOKE_DIR/run2.log"
rc_resume=$RC
run2_seconds=$(elapsed "$step_start")
say "run 2: exit status $rc_resume after $run2_seconds s (log: $SMOKE_DIR/run2.log)"
if [ "$rc_resume" != 0 ]; then tail -n 30 "$SMOKE_DIR/run2.log" >&2; die "run 2 exited with $rc_resume"; fi
resumed=$(grep -o -m 1 -E "resuming from [^ :]*/$checkpoint" "$SMOKE_DIR/run2.log" || true)
[ -n "$resumed" ] || die "run 2 did not log 'resuming from ...$checkpoint'"
model_dir="$SMOKE_DIR/models/capabilities/$SMOKE_CAPS"
if [ ! -d "$model_dir" ] || [ -z "$(ls -A "$model_dir")" ]; then die "run 2: no trained model in $model_dir"; fi

# ---------------------------------------------------------------------------- 5. the figures
total_seconds=$(elapsed "$START")
cat >"$SMOKE_DIR/smoke.json" <<JSON
{
  "image": "$SMOKE_IMAGE",
  "base_image": "$SMOKE_BASE",
  "image_bytes": $image_bytes,
  "base_seconds": $base_seconds,
  "build_seconds": $build_seconds,
  "build_cached_steps": $cached_steps,
  "stop_step": $stop_step,
  "stop_seconds": $stop_seconds,
  "rc_stop": $rc_stop,
  "checkpoint": "checkpoints/$SMOKE_CAPS/$checkpoint",
  "run1_seconds": $run1_seconds,
  "resumed": "$resumed",
  "rc_resume": $rc_resume,
  "run2_seconds": $run2_seconds,
  "model_dir": "models/capabilities/$SMOKE_CAPS",
  "total_seconds": $total_seconds
}
JSON
cat >&2 <<EOF
smoke: PASSED in $total_seconds s
  image       $SMOKE_IMAGE on $SMOKE_BASE: $image_size, built in $build_seconds s ($cached_steps steps cached; base image: $base_seconds s)
  stop        paused at step $stop_step, docker stop -t 120 took $stop_seconds s, exit $rc_stop, left checkpoints/$SMOKE_CAPS/$checkpoint
  resume      $resumed; exit $rc_resume after $run2_seconds s; models/capabilities/$SMOKE_CAPS written
  results     $SMOKE_DIR (smoke.json, build.log, run1.log, run2.log)
EOF
