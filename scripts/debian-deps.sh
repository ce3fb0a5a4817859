# Sourced by scripts/test and scripts/demo: installs the Debian packages sealdesk needs
# to build and test, when they are missing.
# C/C++ compilers for the bundled SQLite, aws-lc (rustls' crypto) and libFuzzer
# (fuzz targets are compile-checked). Xvfb for sealdesk-media's capture and XTest tests, which
# start their own X server (no xauth needed: -nolisten tcp, local socket only). libvpx-dev for
# sealdesk-media's VP9/VP8 encoder and decoder (found with pkg-config by env-libvpx-sys).
packages=(gcc g++ libc6-dev make pkg-config ca-certificates xvfb libvpx-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
