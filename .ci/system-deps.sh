#!/bin/sh
# System packages Holo needs beyond Python: libusb (open3d and pyrealsense2 load it), Mesa's GL and
# EGL (offscreen rendering, the viewer), Xvfb and xdotool (a virtual display and key presses for
# window tests), coturn (a TURN server for the call tests). As root on Debian/Ubuntu the missing
# ones are installed; otherwise this prints the command to run.
set -eu
PKGS="libusb-1.0-0 libgl1 libegl1 libgl1-mesa-dri libegl-mesa0 libglib2.0-0 xvfb xdotool coturn"
PY=${PY:-python3.11}
if ! command -v "$PY" >/dev/null 2>&1; then
  PKGS="$PKGS python3.11 python3.11-venv"
elif ! "$PY" -c "import venv, ensurepip" >/dev/null 2>&1; then
  PKGS="$PKGS python3.11-venv"
fi
command -v dpkg >/dev/null 2>&1 || { echo "system-deps: not a Debian system; install the equivalents of: $PKGS"; exit 0; }
missing=""
for p in $PKGS; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
  echo "system-deps: Holo needs these system packages:$missing"
  echo "system-deps: install them with: sudo apt-get install -y$missing"
  exit 1
fi
