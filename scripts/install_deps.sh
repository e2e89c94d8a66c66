#!/bin/sh
# Installs what the project needs on Debian/Ubuntu, and nothing when all is present.
set -e
PKGS="lua5.4 liblua5.4-dev libopenblas-dev libdnnl-dev libhdf5-dev hdf5-tools pkg-config make gcc perl bible-kjv dict-gcide dict-wn gnuplot-nox python3-h5py openmpi-bin libopenmpi-dev"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq $missing
