#!/usr/bin/env bash
# Installs what minik8s needs on a Debian machine, skipping whatever is already there.
# Debian packages with apt-get; Python packages into ./.venv from pyproject.toml (pinned).
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES="docker.io etcd-server etcd-client docker-registry iproute2 nftables iptables
  busybox-static debootstrap gcc libc6-dev procps util-linux openssl nginx-light tmux wrk"

missing=""
for p in $DEB_PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "installing Debian packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends $missing
  # The Debian packages start their own services; minik8s runs its own instances.
  for svc in docker etcd docker-registry nginx; do
    (command -v systemctl >/dev/null && systemctl stop "$svc" 2>/dev/null) || true
  done
fi

stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  touch "$stamp"
fi
