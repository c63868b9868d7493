#!/bin/sh
# Install the Debian packages that are missing.  Each argument is CHECK:PACKAGE,
# where CHECK is a command name or an absolute path that the package provides.
set -e
missing=""
for pair in "$@"; do
  check=${pair%%:*}; pkg=${pair#*:}
  case $check in
    /*) [ -e "$check" ] && continue ;;
    *)  command -v "$check" >/dev/null 2>&1 && continue ;;
  esac
  missing="$missing $pkg"
done
[ -z "$missing" ] && exit 0
echo "setup: installing$missing"
if [ "$(id -u)" = 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
else
  echo "setup: need root or sudo to install:$missing" >&2
  echo "setup: run as root: apt-get install$missing" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || true
$SUDO apt-get install -y -qq $missing >/dev/null
