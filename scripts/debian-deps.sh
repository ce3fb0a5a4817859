# Sourced by scripts/test and scripts/demo: installs the Debian packages sealdesk needs
# to build and test, when they are missing.
# C/C++ compilers for the bundled SQLite, aws-lc (rustls' crypto) and libFuzzer
# (fuzz targets are compile-checked). Xvfb for sealdesk-media's capture and XTest tests, which
# start their own X server (no xauth needed: -nolisten tcp, local socket only). libvpx-dev for
# sealdesk-media's VP9/VP8 encoder and decoder (found with pkg-config by env-libvpx-sys).
# The native viewer window (winit's X11 backend and softbuffer) links no X library at build
# time but loads these at run time: libX11, libX11-xcb, libxcb, libXcursor, libXi,
# libxkbcommon and libxkbcommon-x11.
# A sourcing script may add its own in test_packages (scripts/test does).
packages=(gcc g++ libc6-dev make pkg-config ca-certificates xvfb libvpx-dev
  libx11-6 libx11-xcb1 libxcb1 libxcursor1 libxi6 libxkbcommon0 libxkbcommon-x11-0
  ${test_packages[@]+"${test_packages[@]}"})
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
