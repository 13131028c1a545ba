#!/usr/bin/env bash
# Fetch the default collection of real photos and Fashion-MNIST from Debian packages.
#   scripts/fetch_data.sh [DEST]    (default: data/)
# Makes DEST/photos/{opencv,mate}/ (about 120 real photos and test images) and
# DEST/fashion-mnist/ (the IDX files). Needs apt-get (Debian/Ubuntu); no other download.
set -euo pipefail
dest=${1:-data}
mkdir -p "$dest/debs" "$dest/root"
dest=$(cd "$dest" && pwd)
packages=(opencv-doc mate-backgrounds dataset-fashion-mnist)

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
if ! apt-cache show "${packages[@]}" >/dev/null 2>&1; then
  echo "apt-get update (package lists are missing)" >&2
  $sudo apt-get update -qq
fi
cd "$dest/debs"
for p in "${packages[@]}"; do
  ls "$p"_*.deb >/dev/null 2>&1 || apt-get download -q "$p" 2>/dev/null || apt-get download "$p"
done
for deb in *.deb; do dpkg -x "$deb" "$dest/root"; done

mkdir -p "$dest/photos/opencv" "$dest/photos/mate"
find "$dest/root/usr/share/doc/opencv-doc/examples/data" -maxdepth 1 -type f \
  \( -iname '*.jpg' -o -iname '*.png' \) -exec cp -p {} "$dest/photos/opencv/" \;
cp -rp "$dest/root/usr/share/backgrounds/mate/." "$dest/photos/mate/"
rm -rf "$dest/fashion-mnist"
cp -rp "$dest/root/usr/share/datasets/fashion-mnist" "$dest/fashion-mnist"
echo "photos: $(find "$dest/photos" -type f | wc -l) files in $dest/photos" >&2
echo "fashion-mnist: $dest/fashion-mnist" >&2
