#!/usr/bin/env bash
# Build the autoinfer image from wheels built on this host (`make image`).
#
# Steps:
#   1. Wheels: `pip wheel . -w dist/wheels` builds the project and every runtime dependency
#      of pyproject.toml's `[project] dependencies` (SOURCE_DATE_EPOCH makes the project
#      wheel reproducible, so an unchanged tree gives the same bytes), minus LEAVE_OUT;
#      deps.sha256 lists the dependency wheels and project.sha256 the project's (the
#      Dockerfile keys its two layers on them).
#   2. Base: BASE_IMAGE if given, else the local Debian base (docker/make-base-image.sh,
#      made once and cached), because no registry may be reachable.
#   3. Key: a hash of the wheels, the Dockerfile and the base image id. An image already
#      tagged localhost/autoinfer:wheels-<key> is reused (FORCE=1 rebuilds).
#   4. Build with --network none (the build needs no network: proof by construction),
#      tag IMAGE too, and print the image reference as the last line of stdout.
#
# Variables: IMAGE (default localhost/autoinfer:latest), BASE_IMAGE, ENGINE (podman|docker),
# PYTHON (the host python; its minor version must match the base image's), FORCE=1.
#
# LEAVE_OUT: wheels a dependency pulls in that autoinfer never imports. hf-xet comes with
# huggingface_hub for Xet-backed downloads (11 MB); autoinfer asks the hub for metadata
# only and downloads the bytes itself, and huggingface_hub imports without it.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
IMAGE="${IMAGE:-localhost/autoinfer:latest}"
ENGINE="${ENGINE:-podman}"
PYTHON="${PYTHON:-python3}"
WHEELS="$REPO/dist/wheels"
LEAVE_OUT="${LEAVE_OUT:-hf-xet}"

if [[ "$ENGINE" == podman ]]; then
    # crun fails on some hosts' cgroups; runc with cgroupfs works everywhere we run.
    ENG=(podman --runtime runc --cgroup-manager cgroupfs)
    BUILD_FLAGS=(--format docker --network none --ulimit nofile=20000:20000)
else
    ENG=("$ENGINE")
    BUILD_FLAGS=(--network none)
fi
log() { echo "build-image: $*" >&2; }

# 1. Wheels, from a clean folder so no stale version is picked up.
rm -rf "$WHEELS"
mkdir -p "$WHEELS"
log "building wheels into dist/wheels"
(cd "$REPO" && SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-315532800}" \
    "$PYTHON" -m pip wheel --quiet --disable-pip-version-check . -w "$WHEELS" >&2)
shopt -s nullglob
project=("$WHEELS"/autoinfer-*.whl)
[[ ${#project[@]} -eq 1 ]] || { log "expected one autoinfer wheel, found ${#project[@]}"; exit 1; }
for name in $LEAVE_OUT; do
    # Wheel file names spell a project's name with underscores (hf-xet -> hf_xet-1.8.0-...).
    for w in "$WHEELS/${name//-/_}"-*.whl; do
        log "leaving out $(basename "$w")"
        rm -f "$w"
    done
done
(cd "$WHEELS" && for w in *.whl; do [[ "$w" == autoinfer-* ]] || sha256sum "$w"; done | sort -k2) > "$WHEELS/deps.sha256"
(cd "$WHEELS" && sha256sum "$(basename "${project[0]}")") > "$WHEELS/project.sha256"
log "$(wc -l < "$WHEELS/deps.sha256") dependency wheels + $(basename "${project[0]}")"

# 2. Base image.
if [[ -z "${BASE_IMAGE:-}" ]]; then
    BASE_IMAGE=localhost/autoinfer-base:bookworm-slim
    if [[ "$ENGINE" == podman ]]; then
        bash "$HERE/make-base-image.sh"
    fi
fi
base_id="$("${ENG[@]}" image inspect --format '{{.Id}}' "$BASE_IMAGE" 2>/dev/null || echo "$BASE_IMAGE")"
base_py="$("${ENG[@]}" run --rm --network none --entrypoint python3 "$BASE_IMAGE" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)"
host_py="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [[ -n "$base_py" && "$base_py" != "$host_py" ]]; then
    log "the base image has Python $base_py but the wheels are built with $PYTHON ($host_py): set PYTHON=python$base_py"
    exit 78
fi

# 3. Key and cache.
key="$( { cat "$WHEELS/deps.sha256"; sha256sum < "${project[0]}"; sha256sum < "$HERE/Dockerfile"; \
          sha256sum < "$REPO/.dockerignore"; echo "$base_id"; } | sha256sum | cut -c1-16)"
cached="localhost/autoinfer:wheels-$key"
if [[ "${FORCE:-0}" != 1 ]] && "${ENG[@]}" image exists "$cached" 2>/dev/null; then
    log "reusing $cached (same wheels, Dockerfile and base)"
else
    log "building $cached from $BASE_IMAGE"
    "${ENG[@]}" build "${BUILD_FLAGS[@]}" \
        --build-arg BASE_IMAGE="$BASE_IMAGE" \
        --build-arg VERSION="$(basename "${project[0]}" | cut -d- -f2)" \
        --build-arg REVISION="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
        --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
        --build-arg LEAVE_OUT="$LEAVE_OUT" \
        -t "$cached" -f "$HERE/Dockerfile" "$REPO" >&2
fi
[[ "$IMAGE" == "$cached" ]] || "${ENG[@]}" tag "$cached" "$IMAGE"
echo "$IMAGE"
