#!/usr/bin/env bash
# Make the local base image localhost/autoinfer-base:bookworm-slim from Debian's packages.
#
# Why: where no container registry is reachable (CI machines, air-gapped hosts), nothing can
# be pulled, but Debian's package mirror answers. debootstrap builds a minimal bookworm root
# with python3 (and libgomp1, which llama.cpp's Linux builds link) from that mirror, and
# `podman import` turns it into an image the Dockerfile takes as BASE_IMAGE. The mirror is
# read at run time from this machine's apt sources (override with MIRROR=...), so no
# registry host is written into the repository.
#
# Steps: skip if the image exists with the same recipe (package list and trimmed folders, in
# its label; FORCE=1 rebuilds); find the mirror; debootstrap into a temp dir; trim what an
# image never reads (like Debian's own -slim images); import; remove the temp dir.
set -euo pipefail

IMAGE="${BASE_IMAGE_TAG:-localhost/autoinfer-base:bookworm-slim}"
SUITE="${SUITE:-bookworm}"
PODMAN=(podman --runtime runc --cgroup-manager cgroupfs)
# What the image must hold; the Dockerfile's OS_PACKAGES step then needs no network.
PACKAGES="python3,python3-venv,ca-certificates,libgomp1"
# What an image never reads: package caches, docs, man pages, message translations (33 MB
# of the 160 MB; programs fall back to their English messages), old logs.
TRIM="var/cache/apt/archives/*.deb var/lib/apt/lists/* usr/share/doc/* usr/share/man/* usr/share/info/* usr/share/locale/* var/log/*.log var/cache/debconf/*-old"
RECIPE="$PACKAGES; trimmed: $TRIM"
LABEL=org.autoinfer.base.recipe

if [[ "${FORCE:-0}" != 1 ]] && "${PODMAN[@]}" image exists "$IMAGE" &&
    [[ "$("${PODMAN[@]}" image inspect --format "{{index .Labels \"$LABEL\"}}" "$IMAGE")" == "$RECIPE" ]]; then
    echo "make-base-image: $IMAGE exists (FORCE=1 rebuilds)" >&2
    exit 0
fi

# The first URI of a deb822 stanza (or a one-line `deb` entry) that serves $SUITE itself
# (not -security/-updates, which live elsewhere on some mirrors).
find_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] || continue
        awk -v suite="$SUITE" '
            BEGIN { RS = ""; FS = "\n" }
            {
                uris = ""; ok = 0; deb = 0
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^Types:/ && $i ~ /(^|[ \t])deb([ \t]|$)/) deb = 1
                    if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); uris = a[2] }
                    if ($i ~ /^Suites:/) { n = split($i, s, /[ \t]+/); for (j = 2; j <= n; j++) if (s[j] == suite) ok = 1 }
                }
                if (deb && ok && uris != "") { print uris; exit }
            }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f "$f" ]] || continue
        awk -v suite="$SUITE" '$1 == "deb" {
            i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
            if ($(i + 1) == suite) { print $i; exit }
        }' "$f"
    done
}

MIRROR="${MIRROR:-$(find_mirror | head -n 1)}"
if [[ -z "$MIRROR" ]]; then
    echo "make-base-image: no apt source for suite '$SUITE' found; set MIRROR=<debian mirror URI>" >&2
    exit 66
fi
command -v debootstrap >/dev/null || { echo "make-base-image: debootstrap is missing (apt-get install debootstrap)" >&2; exit 69; }

ROOTFS="$(mktemp -d "${TMPDIR:-/tmp}/autoinfer-rootfs.XXXXXX")"
trap 'rm -rf "$ROOTFS"' EXIT

echo "make-base-image: debootstrap $SUITE from $MIRROR" >&2
debootstrap --variant=minbase --include="$PACKAGES" \
    "$SUITE" "$ROOTFS" "$MIRROR" >&2

read -ra trim <<< "$TRIM"
for pattern in "${trim[@]}"; do
    rm -rf "$ROOTFS"/$pattern  # unquoted on purpose: a glob inside the new root
done

tar --numeric-owner -C "$ROOTFS" -c . | "${PODMAN[@]}" import \
    --change 'CMD ["/bin/bash"]' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL $LABEL=\"$RECIPE\"" \
    - "$IMAGE" >&2
echo "make-base-image: built $IMAGE" >&2
