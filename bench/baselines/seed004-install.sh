#!/usr/bin/env bash
# Baseline: seed 004's install-on-boot plan, followed step by step, as a shell script.
#
#   seed004-install.sh ARCHIVE ROOT [PKG]
#
# 1. Validate the archive exists and has a supported extension.
# 2. Ensure ROOT/cache exists; copy the archive to ROOT/cache/<basename> unless it is there.
# 3. Compute the sha256 of the cached archive (on every boot: the plan keeps no stat cache).
# 4. If ROOT/PKG/.installed-from.json records that basename and sha256: done.
# 5. Otherwise extract into a temp dir under ROOT, find llama-server (releases are a flat
#    llama-bNNNN/ folder: move it under bin/), validate bin/llama-server exists.
# 6. Write the marker, then move the new tree into place (old one aside, new one in, old removed).
#
# It is what a careful user would write from the seed; it is the baseline of the
# benchmarks, not part of autoinfer.
set -euo pipefail

archive="$1"
root="$2"
pkg="${3:-llama-cpp}"
name="$(basename "$archive")"

[ -f "$archive" ] || { echo "no such archive: $archive" >&2; exit 66; }
case "$name" in
    *.tar|*.tar.gz|*.tgz|*.tar.zst|*.zip) ;;
    *) echo "unsupported archive: $name" >&2; exit 65 ;;
esac

mkdir -p "$root/cache"
cached="$root/cache/$name"
if [ ! -f "$cached" ]; then
    echo "copying $name to cache" >&2
    cp "$archive" "$cached.tmp"
    mv "$cached.tmp" "$cached"
fi

sha="$(sha256sum "$cached" | cut -d' ' -f1)"
marker="$root/$pkg/.installed-from.json"
if [ -f "$marker" ] && grep -q "\"sha256\": \"$sha\"" "$marker" && grep -q "\"archive_name\": \"$name\"" "$marker"; then
    echo "$pkg already installed from $name" >&2
    exit 0
fi

tmp="$(mktemp -d "$root/.tmp-$pkg.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "extracting $name" >&2
case "$name" in
    *.tar.gz|*.tgz) tar -xzf "$cached" -C "$tmp" ;;
    *.tar.zst) zstd -dc -q "$cached" | tar -x -C "$tmp" ;;
    *.tar) tar -xf "$cached" -C "$tmp" ;;
    *.zip) python3 -m zipfile -e "$cached" "$tmp" ;;
esac

server="$(find "$tmp" -name llama-server -type f -print -quit)"
[ -n "$server" ] || { echo "no llama-server in $name" >&2; exit 65; }
top="$tmp/tree"
if [ "$(basename "$(dirname "$server")")" = bin ]; then
    mv "$(dirname "$(dirname "$server")")" "$top"
else
    mkdir -p "$top/bin"
    src="$(dirname "$server")"
    find "$src" -mindepth 1 -maxdepth 1 -exec mv -t "$top/bin" {} +
fi
[ -x "$top/bin/llama-server" ] || { echo "bin/llama-server missing after extraction" >&2; exit 65; }

printf '{"archive_name": "%s", "sha256": "%s", "installed_at_unix": %s}\n' "$name" "$sha" "$(date +%s)" \
    > "$top/.installed-from.json"
if [ -e "$root/$pkg" ]; then
    mv "$root/$pkg" "$tmp/old"
fi
mv "$top" "$root/$pkg"
echo "installed $pkg from $name" >&2
