#!/usr/bin/env bash
# Build the container image from the repository's Dockerfile with buildah and run it the way a cluster would.
#
#   bash scripts/image-test.sh [--dockerfile PATH] [--tag NAME] [--python PATH]
#
# No container registry is reachable here, so python:*-slim cannot be pulled: a stand-in base is built
# once with debootstrap (Debian bookworm's python3, linked into /usr/local/bin as in the official image,
# trimmed like debian:bookworm-slim) and kept in buildah's storage under $TFLOCK_IMAGE_CACHE (default
# /var/cache/tflock-image) for the next run. The image is then built from the Dockerfile with the
# stand-in as PYTHON_IMAGE, and tests/image/checks.py runs it: --version, `db upgrade`, `serve` against
# moto's server and a local Slack Web API on loopback (probes, one signed /tflock status, the
# HEALTHCHECK), as UID 10001, writing only under /tmp, stopping on SIGTERM within the chart's grace
# period. Exit 0 only when every check passed.
#
# The repository's Dockerfile is always built from scratch (--no-cache); another --dockerfile may reuse
# the layers of that build where its steps are the same. Storage driver: overlay when this kernel can
# mount it, else vfs (TFLOCK_IMAGE_STORAGE_DRIVER overrides). Needs root (apt-get, debootstrap, buildah's
# chroot isolation); installs buildah and debootstrap with apt-get when they are missing. One run at a
# time (a lock file in the cache directory).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

dockerfile=Dockerfile
tag=localhost/tflock:image-test
python=${PYTHON:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --dockerfile) dockerfile=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "image-test: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$python" ]; then
  if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
fi
[ -f "$dockerfile" ] || { echo "image-test: no Dockerfile at $dockerfile" >&2; exit 2; }

fail() { echo "image-test: FAILED: $*" >&2; exit 1; }
step() { echo "== image-test: $* ($(date -u +%H:%M:%S), $((SECONDS - started)) s)"; }
started=$SECONDS

[ "$(id -u)" = 0 ] || fail "needs root (apt-get, debootstrap and buildah's chroot isolation); run it as root or skip the 'image' tests"

# -- tools -------------------------------------------------------------------------------------------
if ! command -v buildah >/dev/null || ! command -v debootstrap >/dev/null; then
  step "installing buildah and debootstrap with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || fail "apt-get update did not work; buildah and debootstrap cannot be installed"
  apt-get install -y -qq buildah debootstrap >/dev/null \
    || fail "apt-get install buildah debootstrap did not work"
fi
command -v buildah >/dev/null && command -v debootstrap >/dev/null || fail "buildah or debootstrap still missing"

cache=${TFLOCK_IMAGE_CACHE:-/var/cache/tflock-image}
mkdir -p "$cache"
exec 9>"$cache/lock"
flock -w 900 9 || fail "another image-test held $cache/lock for 15 minutes"

work=$(mktemp -d /tmp/tflock-image-test.XXXXXX)
overlay_mounts() {  # can this kernel (or gVisor) mount overlayfs? vfs copies every layer in full instead
  mkdir -p "$work/ov/lower" "$work/ov/upper" "$work/ov/work" "$work/ov/merged"
  mount -t overlay overlay -o "lowerdir=$work/ov/lower,upperdir=$work/ov/upper,workdir=$work/ov/work" \
    "$work/ov/merged" 2>/dev/null && umount "$work/ov/merged"
}
driver=${TFLOCK_IMAGE_STORAGE_DRIVER:-}
if [ -z "$driver" ]; then
  if overlay_mounts; then driver=overlay; else driver=vfs; fi
fi
store=$cache/$driver
bah() { buildah --root "$store/storage" --runroot "$store/run" --storage-driver "$driver" "$@"; }
export BUILDAH_ISOLATION=chroot
step "buildah $(buildah --version | awk '{print $3}'), storage driver $driver in $store"

containers=()
cleanup() {
  for c in "${containers[@]}"; do bah rm "$c" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# -- the stand-in base -------------------------------------------------------------------------------
# Bump the number when the recipe below changes: the cached base is rebuilt only when its tag is missing.
base=localhost/tflock-stand-in-python:3.11-bookworm-2
if bah inspect --type image "$base" >/dev/null 2>&1; then
  step "stand-in base $base is cached"
else
  step "building the stand-in base $base with debootstrap"
  # The Debian mirror this machine's apt uses (deb822 .sources or sources.list), not the security archive.
  configured=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '$1 == "URIs:" {print $2}' | grep -v security | head -1 || true)
  [ -n "$configured" ] || configured=$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
    | awk '{print $2}' | grep -v security | head -1 || true)
  base_started=$SECONDS
  mirror=${TFLOCK_DEBIAN_MIRROR:-${configured:-http://deb.debian.org/debian}}
  rootfs=$work/rootfs
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; fail "debootstrap bookworm from $mirror did not work"; }
  echo "debootstrap from $mirror: $((SECONDS - base_started)) s"
  # As in python:*-slim: python/pip on PATH under /usr/local/bin, and no PEP 668 marker (the official
  # image's interpreter is not Debian's, so pip may install into it). As in debian:bookworm-slim, which
  # it is built on: no apt lists or .debs, no manuals, info pages, translations or docs but copyrights.
  for name in python python3; do ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/$name"; done
  for name in pip pip3; do ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/$name"; done
  rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  ctr=$(bah from scratch)
  containers+=("$ctr")
  cp -a "$rootfs/." "$(bah mount "$ctr")/"
  bah umount "$ctr" >/dev/null
  bah config --env PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
    --cmd python3 --label org.opencontainers.image.description="tflock image-test stand-in for python:3.11-slim-bookworm" \
    "$ctr"
  bah commit --quiet --format docker --rm "$ctr" "$base" >/dev/null
  containers=()
  rm -rf "$rootfs"
fi

# -- the image ---------------------------------------------------------------------------------------
# pip inside the build reaches the same package index as this machine's pip, trusting the same CA bundle.
ca=${TFLOCK_IMAGE_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[ -f "$ca" ] || fail "no CA bundle at $ca (set TFLOCK_IMAGE_CA_BUNDLE)"
mounts=(--volume "$ca:/etc/ssl/certs/ca-certificates.crt:ro")
# Debian's pip trusts that bundle already; an index other than PyPI configured on this machine is passed
# on (mounting a pip.conf leaves an empty /etc/pip.conf in the image, so only when there is one).
index=${PIP_INDEX_URL:-$(python3 -m pip config get global.index-url 2>/dev/null || true)}
case "$index" in
  http*) printf '[global]\nindex-url = %s\n' "$index" >"$work/pip.conf"
         mounts+=(--volume "$work/pip.conf:/etc/pip.conf:ro") ;;
esac
cache_flags=(--layers)
if [ "$(realpath "$dockerfile")" = "$repo/Dockerfile" ]; then
  bah rmi --prune >/dev/null 2>&1 || true  # the previous run's images and layers, now untagged
  cache_flags+=(--no-cache)
fi
step "building $tag from $dockerfile on $base (${cache_flags[*]})"
build_started=$SECONDS
bah build --isolation chroot --format docker --pull=never "${cache_flags[@]}" \
  --build-arg "PYTHON_IMAGE=$base" "${mounts[@]}" \
  --file "$dockerfile" --tag "$tag" "$repo" >"$work/build.log" 2>&1 \
  || { tail -40 "$work/build.log" >&2; fail "buildah build of $dockerfile did not work"; }
echo "built in $((SECONDS - build_started)) s"

# -- run it ------------------------------------------------------------------------------------------
step "running $tag"
"$python" -m tests.image.checks --image "$tag" --buildah-root "$store/storage" --buildah-runroot "$store/run" \
  --storage-driver "$driver" --base "$base" \
  || fail "the image $tag did not pass its checks"
step "passed in $((SECONDS - started)) s"
