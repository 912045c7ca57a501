#!/usr/bin/env bash
# scripts/container_setup.sh: a container engine ready to run the reference service's image.
#
# On this project's CI machine (Debian bookworm, no container registry reachable, hybrid
# cgroups): installs podman, runc and debootstrap (apt), podman-compose (pip, into the
# active virtual environment or .venv), writes a user-scoped containers.conf (runc,
# cgroupfs, no default ulimits: the defaults crun and the ulimits refuse this machine),
# builds the base image localhost/debian-min:bookworm with debootstrap when it is missing,
# then the service's image from the Dockerfile with local wheels (torch's CPU wheel lies in
# /opt/wheels here). Idempotent: every step is skipped when its result is already there,
# the images too when their inputs have not changed (build/container-images/ holds the
# digest each was built from).
#
# Environment: PERFGATE_IMAGE (default localhost/perfgate-service:latest),
# PERFGATE_BASE_IMAGE (default localhost/debian-min:bookworm), PERFGATE_WHEELS (default
# /opt/wheels: wheels the build installs from before PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${PERFGATE_IMAGE:-localhost/perfgate-service:latest}
BASE=${PERFGATE_BASE_IMAGE:-localhost/debian-min:bookworm}
WHEELS=${PERFGATE_WHEELS:-/opt/wheels}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
say() { echo "container_setup: $*"; }

# 1. packages
missing=()
for tool in podman runc debootstrap; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq podman runc debootstrap uidmap slirp4netns >/dev/null
fi

# 2. podman-compose, into the virtual environment the tests run in
PIP=pip
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x .venv/bin/pip ]; then PIP=.venv/bin/pip; fi
if ! command -v podman-compose >/dev/null 2>&1 && [ ! -x "$(dirname "$(command -v "$PIP")")/podman-compose" ]; then
  say "installing podman-compose (pip)"
  "$PIP" install -q podman-compose
fi

# 3. containers.conf. Rootful podman 4.3 reads only the system files (not ~/.config), so
# root writes /etc/containers/containers.conf, which Debian does not ship; a file there
# that this script did not write is left alone. CONTAINERS_CONF names another file.
if [ "$(id -u)" = 0 ]; then CONF=${CONTAINERS_CONF:-/etc/containers/containers.conf}
else CONF=${CONTAINERS_CONF:-${XDG_CONFIG_HOME:-$HOME/.config}/containers/containers.conf}; fi
MARK="# written by pytest-perfgate's scripts/container_setup.sh"
if [ ! -e "$CONF" ] || grep -qF "$MARK" "$CONF"; then
  mkdir -p "$(dirname "$CONF")"
  cat >"$CONF" <<CONF
$MARK
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
else
  say "$CONF exists and was not written here; left as it is"
fi
if ! podman info >/dev/null 2>&1; then
  say "podman cannot run here:"; podman info 2>&1 | tail -5; exit 1
fi

# 4. the base image: Debian's minimal root file system (no registry is reachable here)
if ! podman image exists "$BASE"; then
  say "building $BASE with debootstrap (a few minutes, once)"
  root=$(mktemp -d /tmp/perfgate-rootfs.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  nice -n 10 debootstrap --variant=minbase bookworm "$root" "$MIRROR" >/dev/null
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | podman import --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
  rm -rf "$root"; trap - EXIT
fi

# 5. the images (the service's, and the gate's for compose.yaml's loadtest profile), from
# wheels made here: the build itself reaches no index (this machine's CA bundle and
# torch's CPU wheel stay outside it). Rebuilt only when their inputs changed: the
# service's image on Dockerfile, pyproject.toml and service/; the gate's on the plugin too.
ctx_wheels=build/container-wheels
digest_of() {  # the inputs' digest: the Dockerfile's, pyproject's and these files'
  (cat Dockerfile .dockerignore pyproject.toml; find "$@" -type f ! -name '*.pyc' | sort | xargs cat) \
    | sha256sum | cut -c1-16
}
service_digest=$(digest_of service)
loadtest_digest=$(digest_of service pytest_perfgate thresholds.yaml tests/load)
say "inputs: service $service_digest, loadtest $loadtest_digest"
wheels_ready=
build_image() {  # TARGET TAG DIGEST
  # the digest an image was built from: a stamp here (buildah keeps a cached image's
  # old --label when every layer comes from its cache) and the image's ID beside it
  local stamp="build/container-images/$1.inputs" id
  id=$(podman image inspect --format '{{.Id}}' "$2" 2>/dev/null || true)
  if [ -n "$id" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$3 $id" ]; then
    say "$2 is up to date"; return
  fi
  if [ -z "$wheels_ready" ]; then
    say "collecting wheels into $ctx_wheels"
    mkdir -p "$ctx_wheels"
    reqs=$(python3 -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print(' '.join(p['optional-dependencies']['service'] + p['dependencies']))")
    # shellcheck disable=SC2086  # one argument per requirement
    nice -n 10 "$(dirname "$(command -v "$PIP")")/python" -m pip wheel -q -w "$ctx_wheels" \
      --find-links "$WHEELS" "setuptools>=77" wheel $reqs
    wheels_ready=1
  fi
  say "building $2 (target $1) from $BASE"
  nice -n 10 podman build -q --format docker --network host --target "$1" -t "$2" \
    --build-arg BASE_IMAGE="$BASE" --build-arg WHEELS="$ctx_wheels" \
    --build-arg TORCH_INDEX=none --build-arg PIP_OPTIONS=--no-index \
    --label perfgate.inputs="$3" . >/dev/null
  mkdir -p "$(dirname "$stamp")"
  echo "$3 $(podman image inspect --format '{{.Id}}' "$2")" >"$stamp"
}
build_image service "$IMAGE" "$service_digest"
build_image loadtest "${PERFGATE_LOADTEST_IMAGE:-localhost/perfgate-loadtest:latest}" "$loadtest_digest"
podman image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' --filter reference='localhost/perfgate-*'
