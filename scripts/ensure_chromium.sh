#!/usr/bin/env bash
# make test's browser check needs Chromium: use the one on PATH ($CHROMIUM, chromium, chromium-browser), else install
# Debian's package (as root, or with sudo), else say what is missing. Prints the browser's path.
set -euo pipefail
for name in "${CHROMIUM:-}" chromium chromium-browser google-chrome; do
    [[ -n $name ]] && command -v "$name" >/dev/null 2>&1 && { command -v "$name"; exit 0; }
done
if command -v apt-get >/dev/null 2>&1; then
    sudo=""; [[ $(id -u) == 0 ]] || sudo=sudo
    echo "installing Debian's chromium for the browser check of the book" >&2
    $sudo apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null && { command -v chromium; exit 0; }
fi
echo "the browser check needs Chromium: install it (Debian: apt-get install chromium) or set CHROMIUM=/path/to/it" >&2
exit 1
