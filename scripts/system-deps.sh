#!/usr/bin/env bash
# Debian packages the demo corpus and the report test use. Installs what is missing when it can
# (root + apt), otherwise says what is missing; never fails the build: the demo skips a source
# whose files are absent and the browser test skips without Chromium.
set -u
want=()
[ -d /usr/share/doc/python3.11-doc/html/_sources ] || want+=(python3.11-doc)
[ -d /usr/share/games/fortunes ] || want+=(fortunes)
command -v chromium >/dev/null 2>&1 || want+=(chromium)
[ ${#want[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${want[*]}"
  apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}" >/dev/null 2>&1 \
    || echo "warning: could not install ${want[*]}; the demo skips what is missing"
else
  echo "note: missing Debian packages ${want[*]} (install them as root for the full demo)"
fi
exit 0
