#!/usr/bin/env bash
# Installs what minik and its tests need on a fresh Debian 12 machine (as root).
# Safe to run again. Packages one by one: installing them in one transaction can
# trip over qemu-utils from backports on these machines.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" != 0 ]; then echo "run as root (sudo $0)" >&2; exit 1; fi
apt-get update -qq
pkgs=(runc busybox-static nftables iproute2 curl
      qemu-system-x86 qemu-utils xorriso isolinux syslinux-common cpio
      protobuf-compiler chromium etcd-server
      docker-registry skopeo umoci apache2-utils
      libvirt-daemon-system libvirt-clients libvirt-dev pkg-config dnsmasq-base)
for p in "${pkgs[@]}"; do
  if ! dpkg -s "$p" >/dev/null 2>&1 || ! dpkg -s "$p" | grep -q '^Status: install ok installed'; then
    apt-get install -y -qq "$p" >/dev/null || { echo "apt-get install $p failed" >&2; exit 1; }
  fi
done
echo "setup: all packages present"
